"""The drift and surge monitor (`triage monitor`): the label mix of the last hour and the last day
against a baseline window, from the decision log's hourly counters (worker/decision_log.py).

It flags:
- drift: a head's label distribution moved, population stability index (PSI) >= TRIAGE_DRIFT_PSI
  (0.2) against the baseline (the TRIAGE_BASELINE_HOURS hours before the window);
- surge: more high-urgency or frustrated tickets than the baseline rate predicts, by
  TRIAGE_SURGE_FACTOR (2x) and at least TRIAGE_SURGE_MIN_COUNT (20) of them, so that three tickets at
  night are not a surge;
- abstain: the abstain rate rose by 10 points or more (and by half) over the baseline;
- language: a language seen 5 times or more in the window that the baseline never saw.

A window with fewer than MIN_WINDOW tickets (or a baseline with fewer than MIN_BASELINE) is not
judged. An alert opens once (Slack message, PagerDuty trigger with a dedup key naming what moved) and
is resolved (Slack, PagerDuty resolve) when the check passes again. Each alert says what moved, by
how much, and links the console. Its state lives in Redis, so any number of monitors may run: one
holds the lock (`triage:monitor:lock`) and the others wait for it; the scores and open alerts go to
`triage:monitor:state`, which serve's /metrics exports (triage_drift_psi, triage_alerts_open).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from redis import Redis
from redis.exceptions import RedisError

from worker.decision_log import DecisionLog, summarise
from worker.errors import TriageError, VendorError
from worker.metrics import MONITOR_STATE
from worker.store import PREFIX

log = logging.getLogger("triage.monitor")

LOCK = f"{PREFIX}:monitor:lock"
ALERTS = f"{PREFIX}:monitor:alerts"  # hash: alert key -> the open alert (JSON)
HEADS = {"sentiment": ("frustrated", "neutral", "satisfied", "unsure"), "urgency": ("high", "medium", "low", "unsure")}
WINDOWS = {"hourly": 1, "daily": 24}
MIN_WINDOW = 30  # tickets in a window before it is judged
MIN_BASELINE = 100
EPSILON = 0.5  # pseudo-count per label: a label absent on one side does not make PSI infinite
ABSTAIN_RISE = 0.10
NEW_LANGUAGE_MIN = 5


def psi(current: Mapping[str, float], baseline: Mapping[str, float], labels: Sequence[str]) -> float:
    """Population stability index of two label counts (smoothed): sum (p - q) ln(p / q)."""
    n_cur = sum(current.get(k, 0) for k in labels) + EPSILON * len(labels)
    n_base = sum(baseline.get(k, 0) for k in labels) + EPSILON * len(labels)
    total = 0.0
    for k in labels:
        p = (current.get(k, 0) + EPSILON) / n_cur
        q = (baseline.get(k, 0) + EPSILON) / n_base
        total += (p - q) * math.log(p / q)
    return total


@dataclass(frozen=True)
class Alert:
    kind: str  # drift | surge | abstain | language
    key: str  # the dedup key: one open alert per key
    summary: str  # what moved and by how much, one line
    severity: str = "warning"
    details: dict[str, Any] = field(default_factory=dict)
    link: str = ""  # the console's view of it


@dataclass
class Thresholds:
    psi: float = 0.2
    surge_min_count: int = 20
    surge_factor: float = 2.0
    baseline_hours: int = 168


class AlertSink(Protocol):
    def opened(self, alert: Alert) -> None:
        ...

    def resolved(self, alert: Alert) -> None:
        ...


def _rate(counts: Mapping[str, float], key: str) -> float:
    n = counts.get("n", 0)
    return counts.get(key, 0) / n if n else 0.0


def _pct(x: float) -> str:
    return f"{x:.0%}"


class Monitor:
    """Evaluates the windows ending at `now` and opens / resolves alerts through `sinks`."""

    def __init__(self, redis: Redis, decisions: DecisionLog, sinks: Sequence[AlertSink] = (),
                 thresholds: Thresholds | None = None, console_url: str = "",
                 clock: Callable[[], float] = time.time):
        self.redis = redis
        self.decisions = decisions
        self.sinks = list(sinks)
        self.t = thresholds or Thresholds()
        self.console_url = console_url.rstrip("/")
        self.clock = clock

    # -- the checks ---------------------------------------------------------------------------------------

    def evaluate(self, now: datetime) -> tuple[list[Alert], dict[str, Any]]:
        """The alerts that hold for the windows ending with the last complete hour before `now`, and
        the scores (for the state and the metrics)."""
        end = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
        span = max(WINDOWS.values()) + self.t.baseline_hours
        hours = self.decisions.hourly(end, span)
        alerts: list[Alert] = []
        scores: dict[str, Any] = {"psi": {}, "rates": {}, "counts": {}}
        for window, size in WINDOWS.items():
            current = summarise(hours[-size:])
            baseline = summarise(hours[-size - self.t.baseline_hours:-size])
            base_slice = hours[-size - self.t.baseline_hours:-size]
            first = next((i for i, (_, c) in enumerate(base_slice) if c), len(base_slice))
            base_hours = len(base_slice) - first  # a young deployment: its baseline starts with its first ticket
            scores["counts"][window] = {"current": current.get("n", 0), "baseline": baseline.get("n", 0)}
            if current.get("n", 0) < MIN_WINDOW or baseline.get("n", 0) < MIN_BASELINE:
                continue
            alerts += self._drift(window, current, baseline, scores)
            alerts += self._surges(window, size, current, baseline, max(base_hours, 1))
            if window == "hourly":
                alerts += self._abstain(current, baseline, scores)
                alerts += self._languages(current, baseline)
        return alerts, scores

    def _link(self, view: str) -> str:
        return f"{self.console_url}/admin/{view}" if self.console_url else ""

    def _drift(self, window: str, cur: Mapping[str, float], base: Mapping[str, float],
               scores: dict[str, Any]) -> list[Alert]:
        out = []
        for head, labels in HEADS.items():
            prefix = head[0] + ":"
            c = {k: cur.get(prefix + k, 0) for k in labels}
            b = {k: base.get(prefix + k, 0) for k in labels}
            value = psi(c, b, labels)
            scores["psi"][f"{head}:{window}"] = round(value, 4)
            if value < self.t.psi:
                continue
            nc, nb = sum(c.values()) or 1, sum(b.values()) or 1
            moves = sorted(((c[k] / nc - b[k] / nb, k) for k in labels), key=lambda m: -abs(m[0]))
            moved = ", ".join(f"{k} {_pct(b[k] / nb)} -> {_pct(c[k] / nc)}" for _, k in moves[:2])
            out.append(Alert("drift", f"triage-drift-{head}-{window}",
                             f"{head} label mix drifted over the last {window} window (PSI {value:.2f} >= "
                             f"{self.t.psi:g}): {moved}",
                             details={"head": head, "window": window, "psi": round(value, 3),
                                      "current": c, "baseline": b},
                             link=self._link(f"?window={window}")))
        return out

    def _surges(self, window: str, size: int, cur: Mapping[str, float], base: Mapping[str, float],
                base_hours: int) -> list[Alert]:
        out = []
        for key, what in (("u:high", "high-urgency"), ("s:frustrated", "frustrated")):
            count = cur.get(key, 0)
            expected = base.get(key, 0) / base_hours * size
            if count < self.t.surge_min_count or count < self.t.surge_factor * max(expected, 1.0):
                continue
            label = key.split(":")[1]
            out.append(Alert("surge", f"triage-surge-{label}-{window}",
                             f"surge of {what} tickets over the last {window} window: {count:.0f} against "
                             f"{expected:.1f} expected from the baseline ({count / max(expected, 1.0):.1f}x)",
                             severity="critical" if window == "hourly" else "error",
                             details={"label": label, "window": window, "count": count,
                                      "expected": round(expected, 1)},
                             link=self._link(f"feed?label={label}")))
        return out

    def _abstain(self, cur: Mapping[str, float], base: Mapping[str, float], scores: dict[str, Any]) -> list[Alert]:
        abst_c = 1 - _rate(cur, "ab:none") if cur.get("n") else 0.0
        abst_b = 1 - _rate(base, "ab:none") if base.get("n") else 0.0
        scores["rates"].update({"abstain:current": round(abst_c, 4), "abstain:baseline": round(abst_b, 4),
                                "high_urgency:current": round(_rate(cur, "u:high"), 4),
                                "high_urgency:baseline": round(_rate(base, "u:high"), 4),
                                "frustrated:current": round(_rate(cur, "s:frustrated"), 4),
                                "frustrated:baseline": round(_rate(base, "s:frustrated"), 4)})
        if abst_c - abst_b < ABSTAIN_RISE or abst_c < 1.5 * abst_b:
            return []
        return [Alert("abstain", "triage-abstain-rate",
                      f"the model abstained on {_pct(abst_c)} of the last hour's tickets, against {_pct(abst_b)} "
                      f"in the baseline (+{(abst_c - abst_b) * 100:.0f} points)",
                      details={"current": round(abst_c, 3), "baseline": round(abst_b, 3)},
                      link=self._link("feed?abstained=1"))]

    def _languages(self, cur: Mapping[str, float], base: Mapping[str, float]) -> list[Alert]:
        out = []
        for key, count in sorted(cur.items()):
            if not key.startswith("lang:") or key == "lang:und" or count < NEW_LANGUAGE_MIN or base.get(key):
                continue
            lang = key.split(":", 1)[1]
            out.append(Alert("language", f"triage-new-language-{lang}",
                             f"new language in the last hour: {count:.0f} tickets look like '{lang}', which the "
                             f"baseline never saw (the model was trained on English)",
                             severity="info", details={"language": lang, "count": count},
                             link=self._link("feed")))
        return out

    # -- opening and resolving ---------------------------------------------------------------------------

    def run_once(self, now: datetime | None = None) -> dict[str, Any]:
        """Evaluate, open the new alerts, resolve the cleared ones, write the state. The state."""
        now = now or datetime.fromtimestamp(self.clock(), UTC)
        firing, scores = self.evaluate(now)
        firing_by_key = {a.key: a for a in firing}
        open_alerts = {k.decode() if isinstance(k, bytes) else k: Alert(**json.loads(v))
                       for k, v in (self.redis.hgetall(ALERTS) or {}).items()}
        for key, alert in firing_by_key.items():
            if key not in open_alerts and self._tell("opened", alert):
                self.redis.hset(ALERTS, key, json.dumps(asdict(alert)))
                log.warning("alert opened: %s", alert.summary)
        for key, alert in open_alerts.items():
            if key not in firing_by_key and self._tell("resolved", alert):
                self.redis.hdel(ALERTS, key)
                log.info("alert resolved: %s", alert.summary)
        still_open = [json.loads(v) for v in (self.redis.hgetall(ALERTS) or {}).values()]
        state = {"at": now.timestamp(), **scores, "open": [{"kind": a["kind"], "key": a["key"],
                                                            "summary": a["summary"], "link": a["link"]}
                                                           for a in still_open]}
        self.redis.set(MONITOR_STATE, json.dumps(state))
        return state

    def _tell(self, what: str, alert: Alert) -> bool:
        """Every sink hears it; False (retried on the next run) when one failed."""
        ok = True
        for sink in self.sinks:
            try:
                getattr(sink, what)(alert)
            except (VendorError, RedisError) as e:
                ok = False
                log.warning("alert %s not %s through %s: %s", alert.key, what, type(sink).__name__, e)
        return ok

    def run(self, interval_s: float, stop: threading.Event | None = None, lock_ttl_s: int = 0) -> None:
        """Run until `stop`: every `interval_s`, while holding the Redis lock (others wait for it)."""
        stop = stop or threading.Event()
        me, ttl = uuid.uuid4().hex, lock_ttl_s or int(interval_s * 3) + 10
        leader = False
        while not stop.is_set():
            try:
                leader = self._hold_lock(me, ttl)
                if leader:
                    self.run_once()
            except RedisError as e:
                log.warning("monitor: Redis unreachable (%s); trying again in %.0f s", type(e).__name__, interval_s)
            stop.wait(interval_s)
        if leader:
            self.redis.eval(_RELEASE, 1, LOCK, me)

    def _hold_lock(self, me: str, ttl: int) -> bool:
        if self.redis.set(LOCK, me, nx=True, ex=ttl):
            return True
        return bool(self.redis.eval(_EXTEND, 1, LOCK, me, ttl))


_EXTEND = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('EXPIRE', KEYS[1], ARGV[2]) end return 0"
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


# -- where alerts go -------------------------------------------------------------------------------------


class SlackAlerts:
    """Monitor alerts as messages in a Slack channel, through the bot's Web API client (SlackApi)."""

    def __init__(self, api: Any, channel: str):
        self.api = api
        self.channel = channel

    def opened(self, alert: Alert) -> None:
        icon = {"critical": ":rotating_light:", "error": ":warning:"}.get(alert.severity, ":chart_with_upwards_trend:")
        link = f" <{alert.link}|Open the console>" if alert.link else ""
        self.api.post_message(self.channel, f"{icon} Triage monitor: {alert.summary}.{link}")

    def resolved(self, alert: Alert) -> None:
        self.api.post_message(self.channel, f":white_check_mark: Triage monitor, back to normal: {alert.summary}")


class PagerDutyAlerts:
    """Monitor alerts as PagerDuty Events API v2 triggers (dedup key = the alert's key) and resolves."""

    def __init__(self, events: Any):
        self.events = events

    def opened(self, alert: Alert) -> None:
        self.events.trigger(alert.key, f"helpdesk-triage: {alert.summary}", severity=alert.severity,
                            group="helpdesk-triage", kind=alert.kind, details=alert.details,
                            link=(alert.link, "Open the triage console") if alert.link else None)

    def resolved(self, alert: Alert) -> None:
        self.events.resolve(alert.key)


def build_monitor(rt: Any) -> Monitor:
    """The monitor of a Runtime: its decision log, Slack (when configured) and PagerDuty (when a
    routing key is set)."""
    o = rt.settings.observability
    sinks: list[AlertSink] = []
    if rt.settings.slack.enabled and o.monitor_channel:
        sinks.append(SlackAlerts(rt.slack_api, o.monitor_channel))
    if o.pagerduty_routing_key:
        from connectors.pagerduty.client import PagerDutyEvents

        sinks.append(PagerDutyAlerts(PagerDutyEvents(o.pagerduty_routing_key.reveal(), o.pagerduty_url)))
    if not sinks:
        raise TriageError("the monitor has nowhere to send alerts: set PAGERDUTY_ROUTING_KEY, or SLACK_BOT_TOKEN and "
                          "TRIAGE_MONITOR_SLACK_CHANNEL (or SLACK_ALERT_CHANNEL); see deploy/env.example")
    return Monitor(rt.redis, rt.decision_log, sinks,
                   Thresholds(o.drift_psi, o.surge_min_count, o.surge_factor, o.baseline_hours), o.console_url)
