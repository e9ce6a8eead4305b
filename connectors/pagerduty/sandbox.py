"""A local PagerDuty Events API v2 (POST /v2/enqueue) for tests: it validates events as PagerDuty's
documentation describes them (routing key, event_action, dedup key, payload for a trigger) and keeps
the alerts by dedup key, open or resolved.

    with PagerDutySandbox() as pd:
        client = PagerDutyEvents(pd.routing_key, pd.events_url)
        ...
        pd.alerts["triage-drift-sentiment"]["status"]   # "triggered" | "resolved"
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from connectors.sandbox_http import JsonHandler, RecordingSandbox

Json = dict[str, Any]
ACTIONS = ("trigger", "acknowledge", "resolve")
SEVERITIES = ("critical", "error", "warning", "info")


class _Handler(JsonHandler):
    invalid_json = {"status": "invalid event", "message": "Event object is invalid", "errors": ["Invalid JSON"]}


class PagerDutySandbox(RecordingSandbox):
    handler = _Handler
    thread_name = "pagerduty-sandbox"

    def __init__(self, routing_key: str = "R0UT1NGKEY0123456789abcdefABCDEF") -> None:
        super().__init__()
        self.routing_key = routing_key
        self.alerts: dict[str, Json] = {}  # dedup key -> {"status", "events": [...]}
        self._alerts_lock = threading.Lock()

    @property
    def events_url(self) -> str:
        return f"http://{self.netloc}/v2/enqueue"

    def open_alerts(self) -> list[str]:
        with self._alerts_lock:
            return [k for k, a in self.alerts.items() if a["status"] == "triggered"]

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: Any) -> tuple[tuple[int, Any],
                                                                                               dict[str, str]]:
        status, payload, extra = self._answer(method, target, body)
        self._record(method, target.split("?")[0], {}, body, headers, status, payload)
        return (status, payload), extra

    def _answer(self, method: str, target: str, body: Any) -> tuple[int, Any, dict[str, str]]:
        fault = self._take_fault(method, target)
        if fault is not None:
            extra = {"Retry-After": str(int(fault.retry_after))} if fault.retry_after else {}
            return fault.status, {"status": "error", "message": "injected fault"}, extra
        if method != "POST" or target.split("?")[0] != "/v2/enqueue":
            return 404, {"status": "not found", "message": "Not Found"}, {}
        errors = self._validate(body)
        if errors:
            return 400, {"status": "invalid event", "message": "Event object is invalid", "errors": errors}, {}
        key = body.get("dedup_key") or f"sandbox-{len(self.alerts) + 1}"
        with self._alerts_lock:
            alert = self.alerts.setdefault(key, {"status": "resolved", "events": []})
            action = body["event_action"]
            if action == "trigger":
                alert["status"] = "triggered"
            elif action == "resolve":
                alert["status"] = "resolved"
            elif action == "acknowledge" and alert["status"] == "triggered":
                alert["status"] = "acknowledged"
            alert["events"].append(body)
        return 202, {"status": "success", "message": "Event processed", "dedup_key": key}, {}

    def _validate(self, body: Any) -> list[str]:
        if not isinstance(body, dict):
            return ["Event must be a JSON object"]
        errors = []
        if body.get("routing_key") != self.routing_key:
            errors.append("'routing_key' is invalid" if body.get("routing_key") else "'routing_key' is missing")
        action = body.get("event_action")
        if action not in ACTIONS:
            errors.append("'event_action' must be one of trigger, acknowledge, resolve")
        key = body.get("dedup_key")
        if key is not None and (not isinstance(key, str) or len(key) > 255):
            errors.append("'dedup_key' must be a string of at most 255 characters")
        if action in ("acknowledge", "resolve") and not key:
            errors.append(f"'dedup_key' is required to {action}")
        if action == "trigger":
            payload = body.get("payload")
            if not isinstance(payload, dict):
                errors.append("'payload' is missing or not an object")
            else:
                summary = payload.get("summary")
                if not isinstance(summary, str) or not summary or len(summary) > 1024:
                    errors.append("'payload.summary' must be a non-empty string of at most 1024 characters")
                if not payload.get("source"):
                    errors.append("'payload.source' is missing")
                if payload.get("severity") not in SEVERITIES:
                    errors.append("'payload.severity' must be one of critical, error, warning, info")
                if "custom_details" in payload and not isinstance(payload["custom_details"], dict):
                    errors.append("'payload.custom_details' must be an object")
            for link in body.get("links") or []:
                if not isinstance(link, dict) or not link.get("href"):
                    errors.append("each link needs an 'href'")
        return errors
