"""Prometheus metrics (prometheus_client): /metrics on `triage serve`, and a port on each worker.

Names follow Prometheus' conventions: the `triage_` prefix, base units (seconds), `_total` for
counters, and labels of bounded sets only (vendor, outcome, head, label, reason, rule name):
never a ticket or user id. docs/observability.md lists them all.

Each process counts what it does itself: `serve` its deliveries and /v1/score model calls, a
worker its decisions, write-backs and model calls. What lives in Redis (queue depth, dead
letters, the monitor's drift scores and open alerts, feedback verdicts) is read at scrape time
by `serve`'s /metrics only, so that it is not counted once per worker.

TRIAGE_METRICS_TOKEN, when set, is the Bearer token both endpoints ask for.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CollectorRegistry, Counter, Histogram, Info, disable_created_metrics, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from redis import Redis
from redis.exceptions import RedisError

from worker import suggestions
from worker.decision import Scores
from worker.events import TicketEvent
from worker.store import PREFIX

log = logging.getLogger("triage.metrics")

disable_created_metrics()  # no *_created series: they double the exposition and no panel uses them
REGISTRY = CollectorRegistry(auto_describe=True)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)
CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)

DELIVERIES = Counter("triage_deliveries", "Webhook deliveries answered by the ingress, by vendor and outcome "
                     "(accepted: 2xx, rejected: 4xx, unavailable: 5xx).", ["vendor", "outcome"], registry=REGISTRY)
INGRESS_SECONDS = Histogram("triage_ingress_request_duration_seconds", "Time to answer a webhook delivery.",
                            ["vendor"], buckets=LATENCY_BUCKETS, registry=REGISTRY)
WRITEBACKS = Counter("triage_writebacks", "Ticket revisions a worker finished, by vendor and status "
                     "(written, nothing_to_write, recovered, error).", ["vendor", "status"], registry=REGISTRY)
WRITEBACK_ERRORS = Counter("triage_writeback_errors", "Write-backs that raised (the job retries them), by vendor "
                           "and error class.", ["vendor", "error"], registry=REGISTRY)
RECEIPT_SECONDS = Histogram("triage_receipt_to_writeback_seconds", "From a ticket's receipt (its job's creation) "
                            "to its write-back.", ["vendor"], buckets=LATENCY_BUCKETS, registry=REGISTRY)
MODEL_SECONDS = Histogram("triage_model_call_duration_seconds", "One model call (a batch of texts).",
                          buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
                          registry=REGISTRY)
LABELS = Counter("triage_labels", "Labels decided, by head, label and source ('unsure': the head abstained).",
                 ["head", "label", "source"], registry=REGISTRY)
CONFIDENCE = Histogram("triage_confidence", "The model's confidence in each head's label.", ["head"],
                       buckets=CONFIDENCE_BUCKETS, registry=REGISTRY)
ABSTENTIONS = Counter("triage_abstentions", "Decisions where the model abstained, by reason.", ["reason"],
                      registry=REGISTRY)
RULES_FIRED = Counter("triage_rules_fired", "Routing rules that matched, by rule name.", ["rule"], registry=REGISTRY)
CORRECTIONS = Counter("triage_corrections", "Agents' changes to values the bot set, by field.", ["field"],
                      registry=REGISTRY)
SUGGESTIONS = Counter("triage_suggestions", "Values rules suggested in the note instead of setting (suggest mode), "
                      "by field.", ["field"], registry=REGISTRY)
SUGGESTION_OUTCOMES = Counter("triage_suggestion_outcomes", "Suggestions agents settled on a later revision, by "
                              "field and outcome (accepted: the agent set the suggested value).",
                              ["field", "outcome"], registry=REGISTRY)
DECISION_LOG_ERRORS = Counter("triage_decision_log_errors", "Decisions not logged (Redis unreachable).",
                              registry=REGISTRY)
MODEL = Info("triage_model", "The model this process scores with.", registry=REGISTRY)

MAX_RULE_LABELS = 200  # a rules file with more rules than this folds the rest into "other"
_rules_seen: set[str] = set()


def _rule_label(name: str) -> str:
    if name in _rules_seen or len(_rules_seen) < MAX_RULE_LABELS:
        _rules_seen.add(name)
        return name
    return "other"


# -- what the worker observes (the decision log's observers) -------------------------------------------


def observe_decision(data: dict[str, Any]) -> None:
    """One decision, as the decision log built it (worker.decision_log.DecisionLog.build)."""
    source = data.get("source", "")
    if "override" in data:
        for name in data["override"]:
            CORRECTIONS.labels(name).inc()
        return
    if "suggestion" in data:
        for name, outcome in data["suggestion"].items():
            SUGGESTION_OUTCOMES.labels(name, outcome).inc()
        return
    WRITEBACKS.labels(source, data["status"]).inc()
    if data.get("counted_only"):
        return
    if data.get("log_error"):
        DECISION_LOG_ERRORS.inc()
    for head in ("sentiment", "urgency"):
        h = data[head]
        LABELS.labels(head, h["label"], source).inc()
        CONFIDENCE.labels(head).observe(h["confidence"])
    if data["abstain_reason"] != "none":
        ABSTENTIONS.labels(data["abstain_reason"]).inc()
    for rule in data["rules"]:
        RULES_FIRED.labels(_rule_label(rule)).inc()
    if data["written"]:
        for name in data["actions"].get("suggested", ()):
            SUGGESTIONS.labels(name if name in suggestions.FIELDS else "field").inc()  # Jira fields: "field"
    if data.get("latency_ms") is not None and data["status"] == "written":
        RECEIPT_SECONDS.labels(source).observe(data["latency_ms"] / 1000)
    version = data.get("model_version")
    if version:
        set_model_version(version)


def observe_failure(event: TicketEvent, error: str) -> None:
    WRITEBACKS.labels(event.source, "error").inc()
    WRITEBACK_ERRORS.labels(event.source, error).inc()


_model_version = ""


def set_model_version(version: str) -> None:
    global _model_version
    if version != _model_version:
        _model_version = version
        MODEL.info({"version": version})


class TimedScorer:
    """A Scorer whose calls are timed (triage_model_call_duration_seconds)."""

    def __init__(self, scorer: Any):
        self.scorer = scorer

    @property
    def version(self) -> str:
        return str(self.scorer.version)

    def score(self, texts: Sequence[str]) -> list[Scores]:
        start = time.perf_counter()
        try:
            return self.scorer.score(texts)
        finally:
            MODEL_SECONDS.observe(time.perf_counter() - start)

    def __getattr__(self, name: str) -> Any:  # the model's other attributes (model, ...)
        return getattr(self.scorer, name)


# -- what Redis holds, read at scrape time (serve only) ------------------------------------------------

MONITOR_STATE = f"{PREFIX}:monitor:state"  # worker.monitor writes it: scores and open alerts


class RedisCollector(Collector):
    """Queue depth, dead letters, scheduled retries, logged decisions, feedback verdicts, and the
    monitor's drift scores and open alerts: read from Redis in one round trip per scrape."""

    def __init__(self, redis: Redis, queue_name: str):
        self.redis = redis
        self.queue_name = queue_name

    def collect(self) -> Iterable[Metric]:
        from worker.decision_log import OVERRIDES, STREAM
        from worker.feedback import STREAM as FEEDBACK

        q = self.queue_name
        up = GaugeMetricFamily("triage_redis_up", "1 when /metrics could read Redis.")
        try:
            pipe = self.redis.pipeline(transaction=False)
            pipe.llen(f"rq:queue:{q}")
            pipe.zcard(f"rq:wip:{q}")
            pipe.zcard(f"rq:failed:{q}")
            pipe.zcard(f"rq:scheduled:{q}")
            pipe.xlen(STREAM)
            pipe.xlen(FEEDBACK)
            pipe.xlen(OVERRIDES)
            pipe.get(MONITOR_STATE)
            depth, started, failed, scheduled, logged, feedback, overrides, state = pipe.execute()
        except RedisError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        for name, doc, value in (
                ("triage_queue_depth", "Jobs waiting in the RQ queue.", depth),
                ("triage_queue_started_jobs", "Jobs a worker is running now.", started),
                ("triage_dlq_jobs", "Jobs in the dead-letter queue (failed after their last retry).", failed),
                ("triage_scheduled_retries", "Jobs waiting for their retry.", scheduled),
                ("triage_decision_log_entries", "Entries in the decision log stream.", logged)):
            g = GaugeMetricFamily(name, doc)
            g.add_metric([], float(value or 0))
            yield g
        c = CounterMetricFamily("triage_feedback_verdicts", "Verdicts agents gave in Slack (kept in Redis).")
        c.add_metric([], float(feedback or 0))
        yield c
        c = CounterMetricFamily("triage_agent_overrides", "Agents' changes to bot-set values (kept in Redis).")
        c.add_metric([], float(overrides or 0))
        yield c
        yield from _monitor_metrics(state)


def _monitor_metrics(raw: Any) -> Iterable[Metric]:
    state: dict[str, Any] = json.loads(raw) if raw else {}
    drift = GaugeMetricFamily("triage_drift_psi", "Population stability index of each head's label mix, "
                              "against the baseline window.", labels=["head", "window"])
    for key, value in sorted(state.get("psi", {}).items()):
        head, _, window = key.partition(":")
        drift.add_metric([head, window], float(value))
    yield drift
    rates = GaugeMetricFamily("triage_window_rate", "Rates in the monitor's last window and its baseline "
                              "(abstain, high_urgency, frustrated).", labels=["rate", "window"])
    for key, value in sorted(state.get("rates", {}).items()):
        rate, _, window = key.partition(":")
        rates.add_metric([rate, window], float(value))
    yield rates
    alerts = GaugeMetricFamily("triage_alerts_open", "Monitor alerts open now, by kind.", labels=["kind"])
    open_kinds: dict[str, int] = {}
    for alert in state.get("open", []):
        open_kinds[alert["kind"]] = open_kinds.get(alert["kind"], 0) + 1
    for kind in ("drift", "surge", "abstain", "language"):
        alerts.add_metric([kind], float(open_kinds.get(kind, 0)))
    yield alerts
    checked = GaugeMetricFamily("triage_monitor_last_run_timestamp_seconds", "When the monitor last ran.")
    checked.add_metric([], float(state.get("at", 0)))
    yield checked


# -- the endpoints -------------------------------------------------------------------------------------


def authorized(header: str, token: str) -> bool:
    if not token:
        return True
    given = header.removeprefix("Bearer ").strip().encode("utf-8", "replace")
    return hmac.compare_digest(given, token.encode())


def exposition(registry: CollectorRegistry = REGISTRY) -> bytes:
    return generate_latest(registry)


def serve_registry(redis: Redis, queue_name: str) -> CollectorRegistry:
    """What serve's /metrics shows: this process's metrics and what Redis holds."""
    combined = CollectorRegistry(auto_describe=False)
    combined.register(_Delegate(REGISTRY))
    combined.register(RedisCollector(redis, queue_name))
    return combined


class _Delegate(Collector):
    def __init__(self, registry: CollectorRegistry):
        self.registry = registry

    def collect(self) -> Iterable[Metric]:
        return self.registry.collect()


_VENDOR_PATHS = (("/webhooks/zendesk", "zendesk"), ("/webhooks/jira", "jira"), ("/slack/events", "slack"))


class DeliveryMetrics:
    """ASGI middleware: each webhook delivery's outcome and time, by vendor (from its path)."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        vendor = next((v for p, v in _VENDOR_PATHS if path.startswith(p)), None)
        if vendor is None:
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), [500]

        async def send_status(message: dict) -> None:
            if message.get("type") == "http.response.start":
                status[0] = int(message.get("status", 500))
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            code = status[0]
            outcome = "accepted" if code < 400 else "rejected" if code < 500 else "unavailable"
            DELIVERIES.labels(vendor, outcome).inc()
            INGRESS_SECONDS.labels(vendor).observe(time.perf_counter() - start)


def metrics_router(redis: Redis, queue_name: str, token: str) -> APIRouter:
    """GET /metrics for `triage serve`."""
    router = APIRouter()
    registry = serve_registry(redis, queue_name)

    @router.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        if not authorized(request.headers.get("authorization", ""), token):
            return PlainTextResponse("missing or wrong token: send Authorization: Bearer <TRIAGE_METRICS_TOKEN>\n",
                                     status_code=401, headers={"WWW-Authenticate": "Bearer"})
        body = await run_in_threadpool(exposition, registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return router


# -- the worker's port -----------------------------------------------------------------------------------


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def wsgi_app(token: str, registry: CollectorRegistry = REGISTRY) -> Callable:
    def app(environ: dict, start_response: Callable) -> list[bytes]:
        if environ.get("PATH_INFO", "/") not in ("/metrics", "/"):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found: the metrics are at /metrics\n"]
        if not authorized(environ.get("HTTP_AUTHORIZATION", ""), token):
            start_response("401 Unauthorized", [("Content-Type", "text/plain"), ("WWW-Authenticate", "Bearer")])
            return [b"missing or wrong token: send Authorization: Bearer <TRIAGE_METRICS_TOKEN>\n"]
        start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
        return [exposition(registry)]
    return app


_started: WSGIServer | None = None
_lock = threading.Lock()


def start_worker_metrics(port: int, token: str = "", host: str = "0.0.0.0") -> WSGIServer | None:
    """Serve this process's metrics on `port` from a daemon thread (once a process; 0: not at all).
    A port already taken is logged, not fatal: give each worker on one host its own port."""
    global _started
    with _lock:
        if _started is not None or port <= 0:
            return _started
        try:
            server = make_server(host, port, wsgi_app(token), _ThreadingServer, handler_class=_QuietHandler)
        except OSError as e:
            log.warning("worker metrics not served: cannot listen on %s:%d (%s); give each worker on this host "
                        "its own TRIAGE_METRICS_PORT", host, port, e.strerror)
            return None
        threading.Thread(target=server.serve_forever, name="triage-metrics", daemon=True).start()
        log.info("worker metrics on http://%s:%d/metrics", host, port)
        _started = server
        return server


def serve_worker_metrics() -> WSGIServer | None:
    """TriageWorker.work calls it: the worker's port from TRIAGE_METRICS_PORT (0, the default: none)."""
    from worker.settings import load_settings

    o = load_settings().observability
    return start_worker_metrics(o.metrics_port, o.metrics_token.reveal())


# -- the LLM second opinion (worker/escalation.py calls llm_event) ---------------------------------
LLM_ESCALATIONS = Counter("triage_llm_escalations", "Tickets asked of the LLM second opinion, by reason "
                          "(abstained, language, borderline, audit).", ["reason"], registry=REGISTRY)
LLM_OUTCOMES = Counter("triage_llm_outcomes", "Escalated decisions, by outcome (used, cached, fallback_<why>: "
                       "timeout, deadline, budget, rate_limited, server_error, refusal, invalid_json, schema, ...).",
                       ["outcome"], registry=REGISTRY)
LLM_TOKENS = Counter("triage_llm_tokens", "Tokens the LLM endpoint reported (prompt + completion): spend against "
                     "TRIAGE_LLM_DAILY_TOKENS.", registry=REGISTRY)
LLM_BUDGET_REFUSED = Counter("triage_llm_budget_refused", "LLM calls not made: the day's budget was spent.",
                             registry=REGISTRY)
LLM_SECONDS = Histogram("triage_llm_request_duration_seconds", "One request to the LLM endpoint (calls: its count, "
                        "spend against TRIAGE_LLM_DAILY_CALLS).", buckets=LATENCY_BUCKETS, registry=REGISTRY)
LLM_AUDIT = Counter("triage_llm_audit", "Audit samples, by head and whether the model agreed with the LLM.",
                    ["head", "agreed"], registry=REGISTRY)


def llm_event(kind: str, **labels: Any) -> None:
    """One event of the LLM second opinion (worker/escalation.py): counted, never raising."""
    if kind == "escalation":
        LLM_ESCALATIONS.labels(labels["reason"]).inc()
    elif kind == "outcome":
        LLM_OUTCOMES.labels(labels["outcome"]).inc()
    elif kind == "tokens":
        LLM_TOKENS.inc(labels.get("n", 0))
    elif kind == "budget_refused":
        LLM_BUDGET_REFUSED.inc()
    elif kind == "latency":
        LLM_SECONDS.observe(labels["seconds"])
    elif kind == "audit":
        LLM_AUDIT.labels(labels["head"], "yes" if labels["agreed"] else "no").inc()
