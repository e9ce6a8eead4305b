"""The pipeline under test: real Redis, real ingress over HTTP, real RQ worker, real zenpy talking to
the Zendesk sandbox. Only the model is replaced by a fixed scorer (our own port), so the rules'
outcomes are known; tests/test_demo.py runs the same flow with the real model."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import uvicorn
from rq.serializers import JSONSerializer

from connectors.zendesk.sandbox import ZendeskSandbox
from worker import bootstrap
from worker.decision import HeadScore, Scores
from worker.jobs import TriageWorker
from worker.local_redis import free_port
from worker.settings import Secret, Settings, ZendeskSettings

SECRET = "test-webhook-secret"
EMAIL, TOKEN = "triage-bot@example.com", "sandbox-token"
RULES = """
rules:
  - name: urgent
    when: {urgency: high}
    then: {priority: urgent, add_tags: [escalated]}
  - name: explain
    then: {note: true}
"""


class StopAfter(threading.Event):
    """A poller's stop event that records each wait's timeout and is set after `n` waits."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout or 0.0)
        if len(self.waits) == self.n:
            self.set()
        return self.is_set()


class FixedScorer:
    """Angry words -> frustrated + high; thanks -> satisfied + low; else neutral + medium."""

    version = "fixed-test"

    def score(self, texts: Sequence[str]) -> list[Scores]:
        out = []
        for t in texts:
            low = t.lower()
            if any(w in low for w in ("down", "unacceptable", "broken")):
                s, u = "frustrated", "high"
            elif "thank" in low:
                s, u = "satisfied", "low"
            else:
                s, u = "neutral", "medium"
            out.append(Scores(HeadScore(s, {s: 0.9}, 0.9), HeadScore(u, {u: 0.8}, 0.8), self.version,
                              {"sentiment": [("down", 0.5)]}))
        return out


def settings(redis_url: str, rules_path: str, zd: ZendeskSandbox, **kw) -> Settings:
    base = dict(redis_url=redis_url, rules_path=rules_path, queue_name="triage-test", retry_intervals_s=(1, 1, 1),
                job_timeout_s=10,
                zendesk=ZendeskSettings("sandbox", EMAIL, Secret(TOKEN), Secret(SECRET), str(zd.bot_user_id)))
    base.update(kw)
    return Settings(**base)  # type: ignore[arg-type]


def runtime(s: Settings) -> bootstrap.Runtime:
    rt = bootstrap.build(s)
    rt.__dict__["scorer"] = FixedScorer()  # cached_property: the fixed scorer replaces the model
    return rt


def serve(rt: bootstrap.Runtime) -> tuple[uvicorn.Server, str]:
    return serve_app(bootstrap.http_app(rt))


def serve_app(app: Any) -> tuple[uvicorn.Server, str]:
    """Serve an ASGI app on a free local port from a daemon thread; stop it with should_exit."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{port}"


def drain(rt: bootstrap.Runtime, until: float = 15.0) -> None:
    """Run a worker until no job is queued, scheduled (retries) or running."""
    queue = rt.enqueuer.queue
    deadline = time.monotonic() + until
    while time.monotonic() < deadline:
        TriageWorker([queue], connection=rt.redis, serializer=JSONSerializer, context=rt.job_context).work(
            burst=True, with_scheduler=True, logging_level="WARNING")
        if not queue.count and not queue.scheduled_job_registry.count and not queue.started_job_registry.count:
            return
        time.sleep(0.2)
    raise AssertionError("the queue did not drain")


WORKER_SCRIPT = """
import sys
from rq.serializers import JSONSerializer
sys.path.insert(0, {tests!r})
from pipeline_support import runtime, settings
from connectors.zendesk.sandbox import ZendeskSandbox
from worker.jobs import TriageWorker
from worker.settings import load_settings
s = load_settings(dotenv=None)
rt = runtime(s)
TriageWorker.job_heartbeat_ttl_s, TriageWorker.beat_every_s, TriageWorker.sweep_every_s = {ttl}, {beat}, {sweep}
{extra}
TriageWorker([rt.enqueuer.queue], connection=rt.redis, serializer=JSONSerializer, context=rt.job_context).work(
    burst={burst}, with_scheduler={scheduler}, logging_level="INFO")
"""


HEARTBEAT_TTL_S, BEAT_S, SWEEP_S = 2, 0.5, 1.0  # a test worker's: seconds, not TriageWorker's half minute


def worker_process_cmd(burst: bool = True, scheduler: bool = False, extra: str = "") -> list[str]:
    """A `TriageWorker` process on the test's settings (from worker_env) and the fixed scorer, with
    a short job heartbeat (HEARTBEAT_TTL_S) and sweep (SWEEP_S); `extra`: Python run before it starts."""
    return [sys.executable, "-c", WORKER_SCRIPT.format(tests=str(Path(__file__).parent), burst=burst,
                                                       scheduler=scheduler, ttl=HEARTBEAT_TTL_S, beat=BEAT_S,
                                                       sweep=SWEEP_S, extra=extra)]


def worker_env(s: Settings, zd: ZendeskSandbox) -> dict[str, str]:
    return {**os.environ, **zd.env, "REDIS_URL": s.redis_url, "TRIAGE_RULES": s.rules_path,
            "TRIAGE_QUEUE": s.queue_name, "TRIAGE_JOB_TIMEOUT": "2", "TRIAGE_RETRY_INTERVALS": "1,1,1",
            "ZENDESK_SUBDOMAIN": "sandbox", "ZENDESK_EMAIL": EMAIL, "ZENDESK_API_TOKEN": TOKEN,
            "ZENDESK_WEBHOOK_SECRET": SECRET, "ZENDESK_BOT_USER_ID": str(zd.bot_user_id)}


def dead_proxy(monkeypatch: Any) -> None:
    """Only HTTP_PROXY set, to a port where nothing listens: a request that takes it fails."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")
