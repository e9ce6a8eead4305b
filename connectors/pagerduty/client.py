"""PagerDuty Events API v2 (POST /v2/enqueue): trigger an alert with a dedup key, resolve it later.

    pd = PagerDutyEvents(routing_key, url)          # url: PAGERDUTY_EVENTS_URL (default PagerDuty's)
    pd.trigger("triage-drift-sentiment", "Sentiment mix drifted (PSI 0.41)", severity="warning",
               details={...}, link=("https://triage.example.com/admin/", "Open the console"))
    pd.resolve("triage-drift-sentiment")

Errors are worker.errors.VendorError subclasses (their messages never carry the routing key):
400 -> VendorRejected, 429 -> RateLimited, 5xx / network -> VendorUnavailable.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import requests

from worker.errors import RateLimited, VendorRejected, VendorUnavailable

SEVERITIES = ("critical", "error", "warning", "info")
CLIENT = "helpdesk-triage"


class PagerDutyEvents:
    def __init__(self, routing_key: str, url: str = "https://events.pagerduty.com/v2/enqueue",
                 timeout_s: float = 10.0, session: requests.Session | None = None):
        self.routing_key = routing_key
        self.url = url
        self.timeout_s = timeout_s
        self.session = session or requests.Session()

    def trigger(self, dedup_key: str, summary: str, *, severity: str = "warning", source: str = "helpdesk-triage",
                component: str = "triage-monitor", group: str = "", kind: str = "",
                details: dict[str, Any] | None = None, link: tuple[str, str] | None = None,
                now: datetime | None = None) -> str:
        """Open (or update) the alert named `dedup_key`; returns the dedup key PagerDuty echoes."""
        if severity not in SEVERITIES:
            raise ValueError(f"severity {severity!r}: use one of {', '.join(SEVERITIES)}")
        payload: dict[str, Any] = {"summary": summary[:1024], "source": source, "severity": severity,
                                   "timestamp": (now or datetime.now(UTC)).isoformat(timespec="seconds"),
                                   "component": component}
        if group:
            payload["group"] = group
        if kind:
            payload["class"] = kind
        if details:
            payload["custom_details"] = details
        event: dict[str, Any] = {"event_action": "trigger", "dedup_key": dedup_key, "payload": payload,
                                 "client": CLIENT}
        if link:
            event["links"] = [{"href": link[0], "text": link[1]}]
            event["client_url"] = link[0]
        return self._send(event)

    def resolve(self, dedup_key: str) -> str:
        return self._send({"event_action": "resolve", "dedup_key": dedup_key})

    def _send(self, event: dict[str, Any]) -> str:
        body = {"routing_key": self.routing_key, **event}
        action = event["event_action"]
        try:
            r = self.session.post(self.url, json=body, timeout=self.timeout_s)
        except requests.RequestException as e:
            raise VendorUnavailable(f"PagerDuty {action} of {event['dedup_key']}: {type(e).__name__}") from None
        if r.status_code == 202:
            return str((r.json() or {}).get("dedup_key") or event["dedup_key"])
        try:
            answer = r.json()
        except ValueError:
            answer = {}
        why = "; ".join(answer.get("errors") or []) or answer.get("message") or r.reason
        if r.status_code == 429:
            raise RateLimited(f"PagerDuty rate limit on {action}", retry_after=60.0)
        if r.status_code >= 500:
            raise VendorUnavailable(f"PagerDuty {action}: HTTP {r.status_code}", r.status_code)
        raise VendorRejected(f"PagerDuty refused the {action} of {event['dedup_key']} (HTTP {r.status_code}: {why}); "
                             "check PAGERDUTY_ROUTING_KEY (an Events API v2 integration key)", r.status_code)
