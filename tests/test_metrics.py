"""Prometheus metrics: names and types checked by parsing the exposition; serve's /metrics (token),
the worker's port, what Redis holds, and no ticket id in any label."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis
from rq.registry import FailedJobRegistry

import worker.store as store_module
from worker import metrics
from worker.bootstrap import build, http_app
from worker.decision import Actions, HeadScore, Scores, TriageDecision
from worker.decision_log import DecisionLog
from worker.events import TicketEvent
from worker.queueing import Enqueuer, make_queue
from worker.rules import parse_rules
from worker.settings import load_settings
from worker.triage import TriageService

TICKET = "90817263"  # must never appear in a label

EXPECTED = {  # family name (as the parser gives it) -> type
    "triage_deliveries": "counter", "triage_ingress_request_duration_seconds": "histogram",
    "triage_writebacks": "counter", "triage_writeback_errors": "counter",
    "triage_receipt_to_writeback_seconds": "histogram", "triage_model_call_duration_seconds": "histogram",
    "triage_labels": "counter", "triage_confidence": "histogram", "triage_abstentions": "counter",
    "triage_rules_fired": "counter", "triage_corrections": "counter", "triage_decision_log_errors": "counter",
    "triage_suggestions": "counter", "triage_suggestion_outcomes": "counter",
    "triage_model_info": "gauge",
}
FROM_REDIS = {
    "triage_redis_up": "gauge", "triage_queue_depth": "gauge", "triage_queue_started_jobs": "gauge",
    "triage_dlq_jobs": "gauge", "triage_scheduled_retries": "gauge", "triage_decision_log_entries": "gauge",
    "triage_feedback_verdicts": "counter", "triage_agent_overrides": "counter", "triage_drift_psi": "gauge",
    "triage_window_rate": "gauge", "triage_alerts_open": "gauge", "triage_monitor_last_run_timestamp_seconds": "gauge",
}


def families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def scores(abstain: bool = False) -> Scores:
    return Scores(HeadScore("unsure" if abstain else "frustrated", {"frustrated": 0.9}, 0.9, abstain),
                  HeadScore("high", {"high": 0.8}, 0.8), "test-v7")


class _Writer:
    def apply(self, event: TicketEvent, decision: TriageDecision) -> None:
        pass

    def already_applied(self, event: TicketEvent) -> bool:
        return False


def _decide(redis: Redis, n: int = 3) -> None:
    log = DecisionLog(redis, observer=metrics.observe_decision, failure_observer=metrics.observe_failure)
    rules = parse_rules("rules:\n  - name: urgent-one\n    when: {urgency: high}\n    then: {priority: urgent}\n")
    store_cls = getattr(store_module, "RedisStore", None) or store_module.Store
    service = TriageService(lambda: rules, {"zendesk": _Writer()}, store_cls(redis), decisions=log)
    for i in range(n):
        e = TicketEvent(source="zendesk", ticket_id=f"{TICKET}{i}", revision="1", subject="Down", text="all down")
        service.process(e, lambda e, i=i: scores(abstain=i == 0))


def value(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def test_worker_metrics_count_decisions_by_bounded_labels(redis: Redis):
    before = value("triage_labels_total", head="urgency", label="high", source="zendesk")
    rules_before = value("triage_rules_fired_total", rule="urgent-one")
    abstain_before = value("triage_abstentions_total", reason="sentiment")
    written_before = value("triage_writebacks_total", vendor="zendesk", status="written")
    _decide(redis)
    assert value("triage_labels_total", head="urgency", label="high", source="zendesk") == before + 3
    assert value("triage_rules_fired_total", rule="urgent-one") == rules_before + 3
    assert value("triage_abstentions_total", reason="sentiment") == abstain_before + 1
    assert value("triage_writebacks_total", vendor="zendesk", status="written") == written_before + 3
    text = metrics.exposition().decode()
    found = families(text)
    for name, kind in EXPECTED.items():
        assert name in found, name
        assert found[name].type == kind, (name, found[name].type)
    assert 'triage_model_info{version="test-v7"} 1.0' in text
    assert TICKET not in text  # no ticket id in any label
    for line in text.splitlines():
        if line.startswith("triage_") and not line.startswith("#"):
            name = line.split("{")[0].split(" ")[0]
            assert name.startswith("triage_"), name
    assert all(f.name.startswith("triage_") for f in found.values())


def test_counters_end_in_total_and_times_are_seconds():
    text = metrics.exposition().decode()
    for f in text_string_to_metric_families(text):
        for s in f.samples:
            if f.type == "counter":
                assert s.name.endswith("_total"), s.name
        if f.type == "histogram":
            assert f.name.endswith(("_seconds", "confidence")), f.name


def _serve(redis: Redis, **env: str) -> TestClient:
    url = redis.connection_pool.connection_kwargs
    settings = load_settings({"REDIS_URL": f"redis://{url['host']}:{url['port']}/0", "TRIAGE_QUEUE": "triage-m",
                              **env}, dotenv=None)
    return TestClient(http_app(build(settings)))


def test_serve_metrics_read_redis_and_count_deliveries(redis: Redis):
    q = Enqueuer(make_queue(redis, "triage-m"), (1,), 60)
    q.submit_many([TicketEvent(source="zendesk", ticket_id=TICKET, revision="1")])
    job = q.queue.enqueue("worker.jobs.triage_job")
    FailedJobRegistry(queue=q.queue).add(job, ttl=60, exc_string="boom")
    redis.set(metrics.MONITOR_STATE, json.dumps({"at": 1700000000, "psi": {"sentiment:hourly": 0.31},
                                                 "rates": {"abstain:current": 0.1},
                                                 "open": [{"kind": "drift", "key": "drift:sentiment"}]}))
    client = _serve(redis)
    rejected = value("triage_deliveries_total", vendor="zendesk", outcome="rejected")
    client.post("/webhooks/zendesk", content=b"{}")  # Zendesk not configured here: 404, a rejected delivery
    assert value("triage_deliveries_total", vendor="zendesk", outcome="rejected") == rejected + 1
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    found = families(r.text)
    for name, kind in {**EXPECTED, **FROM_REDIS}.items():
        assert found[name].type == kind, name
    sample = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in found.values() for s in f.samples}
    assert sample[("triage_queue_depth", ())] == 2
    assert sample[("triage_dlq_jobs", ())] == 1
    assert sample[("triage_drift_psi", (("head", "sentiment"), ("window", "hourly")))] == 0.31
    assert sample[("triage_alerts_open", (("kind", "drift"),))] == 1
    assert sample[("triage_redis_up", ())] == 1
    assert TICKET not in r.text


def test_serve_metrics_token(redis: Redis):
    client = _serve(redis, TRIAGE_METRICS_TOKEN="s3cret-metrics-token")
    r = client.get("/metrics")
    assert r.status_code == 401 and "TRIAGE_METRICS_TOKEN" in r.text and "s3cret" not in r.text
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer s3cret-metrics-token"}).status_code == 200


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_worker_port_serves_this_process_metrics_behind_the_token():
    port = _free_port()
    server = metrics.make_server("127.0.0.1", port, metrics.wsgi_app("tok-123"), metrics._ThreadingServer,
                                 handler_class=metrics._QuietHandler)
    import threading

    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)
        assert e.value.code == 401
        req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={"Authorization": "Bearer tok-123"})
        body = urllib.request.urlopen(req, timeout=5).read().decode()
        assert "triage_writebacks_total" in body or "# TYPE triage_writebacks counter" in body
    finally:
        server.shutdown()
        server.server_close()


def test_a_taken_worker_port_is_a_warning_not_a_crash(caplog):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        saved = metrics._started
        metrics._started = None
        try:
            assert metrics.start_worker_metrics(port, host="127.0.0.1") is None
        finally:
            metrics._started = saved
    assert "TRIAGE_METRICS_PORT" in caplog.text


def test_timed_scorer_times_calls_and_keeps_the_version():
    class S:
        version = "v9"

        def score(self, texts):
            return [scores()] * len(texts)

    count = value("triage_model_call_duration_seconds_count")
    t = metrics.TimedScorer(S())
    assert t.version == "v9" and len(t.score(["a", "b"])) == 2
    assert value("triage_model_call_duration_seconds_count") == count + 1


def test_actions_in_a_decision_are_not_labels():
    d = TriageDecision("zendesk:1:1", scores(), (), Actions(assignee="agent-55501"))
    assert d.actions.assignee == "agent-55501"
    assert "agent-55501" not in metrics.exposition().decode()
