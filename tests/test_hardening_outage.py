"""Issue 20 §5 on the ingress: a Redis that stops answering (SIGSTOP) or goes away.

Real redis-server (our own, so it can be frozen), the real ingress over HTTP, the Jira sandbox and
real slack-bolt. A frozen Redis must hold up only the deliveries that need it, each answered 503
within a bounded time; Slack gets the same 503 + Retry-After as Zendesk and Jira."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pipeline_support import EMAIL, RULES, SECRET, TOKEN, FixedScorer, serve, settings
from slack_support import WATCHED, Slack, sandbox, slack_settings

from connectors.jira.sandbox import JiraSandbox
from connectors.webhook import REDIS_TIMEOUT_S
from connectors.zendesk.sandbox import ZendeskSandbox
from worker import bootstrap
from worker.local_redis import LocalRedis
from worker.settings import JiraSettings, Secret

JIRA_SECRET = "jira-test-secret"


@pytest.fixture
def own_redis() -> Iterator[LocalRedis]:
    server = LocalRedis().start()
    yield server
    if server.proc is not None:
        os.kill(server.proc.pid, signal.SIGCONT)
    server.close()


@pytest.fixture
def stack(own_redis, tmp_path) -> Iterator[tuple[Any, httpx.Client, JiraSandbox, Any, ZendeskSandbox]]:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    sb = sandbox()
    with ZendeskSandbox(email=EMAIL, token=TOKEN) as zd, JiraSandbox() as jira:
        jira.add_request_type("SUP", "Report a system problem")
        rt = bootstrap.build(settings(own_redis.url, str(rules), zd, slack=slack_settings(sb),
                                      jira=JiraSettings(jira.url, jira.email, Secret(jira.token),
                                                        Secret(JIRA_SECRET), jira.bot_account_id)),
                             ingress=True)  # as `triage serve` builds it
        rt.__dict__["scorer"] = FixedScorer()
        server, url = serve(rt)
        try:
            with httpx.Client(base_url=url, timeout=30) as http:
                yield rt, http, jira, sb, zd
        finally:
            server.should_exit = True
            sb.stop()


def test_a_frozen_redis_stalls_only_the_jira_delivery(stack, own_redis) -> None:
    rt, http, jira, sb, _ = stack
    key = jira.add_issue("SUP", "Checkout down", "Checkout is down, unacceptable",
                         request_type="Report a system problem")
    body, headers = jira.signed_webhook(key, JIRA_SECRET)
    assert http.post("/webhooks/jira", content=body, headers=headers).status_code == 202  # connections made
    assert own_redis.proc is not None
    os.kill(own_redis.proc.pid, signal.SIGSTOP)
    try:
        answers: list[tuple[int, float]] = []

        def deliver() -> None:
            t0 = time.monotonic()
            b, h = jira.signed_webhook(key, JIRA_SECRET, identifier="d-frozen")
            with httpx.Client(base_url=str(http.base_url), timeout=30) as c:
                r = c.post("/webhooks/jira", content=b, headers=h)
            answers.append((r.status_code, time.monotonic() - t0))

        threads = [threading.Thread(target=deliver) for _ in range(3)]
        for t in threads:
            t.start()
        time.sleep(0.3)  # the deliveries are waiting on Redis now
        worst = 0.0
        for _ in range(10):
            t0 = time.monotonic()
            assert http.get("/healthz").status_code == 200
            worst = max(worst, time.monotonic() - t0)
        r, _, ack_s = Slack(http, sb).command("The checkout is down")  # Slack's 3 s: its ack needs no Redis
        assert r.status_code == 200 and ack_s < 1.0, ack_s
        for t in threads:
            t.join(30)
        assert worst < 0.5, f"/healthz waited {worst:.2f}s behind a Jira delivery waiting on Redis"
        assert [s for s, _ in answers] == [503, 503, 503]
        assert all(took < REDIS_TIMEOUT_S + 2 for _, took in answers), answers  # bounded, not forever
    finally:
        os.kill(own_redis.proc.pid, signal.SIGCONT)
    b, h = jira.signed_webhook(key, JIRA_SECRET, identifier="d-frozen")
    assert http.post("/webhooks/jira", content=b, headers=h).status_code == 202  # Jira's retry, once Redis is back


def test_slack_gets_503_and_retry_after_while_redis_is_down(stack, own_redis) -> None:
    rt, http, _, sb, _ = stack
    slack = Slack(http, sb)
    env = sb.user_message(WATCHED, "Everything is down")
    own_redis.stop()
    try:
        r = slack.event(env)
        assert r.status_code == 503 and r.headers["Retry-After"] == "30", r.text
        assert r.json() == {"error": "queue unavailable, retry later"}
    finally:
        own_redis.start()
    assert slack.event(env, retry_num=1).status_code == 200  # Slack's retry, once Redis is back
    assert rt.enqueuer.queue.count == 1


def test_a_frozen_redis_answers_zendesk_and_slack_503_inside_slacks_window(stack, own_redis) -> None:
    """The ingress's own Redis client gives up after INGRESS_REDIS_TIMEOUT_S (the workers' waits 5 s):
    the Zendesk webhook and the Slack channel-watch event get their 503 + Retry-After before Slack's
    3 s retry window ends."""
    rt, http, _, sb, zd = stack
    assert rt.redis.connection_pool.connection_kwargs["socket_timeout"] == bootstrap.INGRESS_REDIS_TIMEOUT_S
    first = zd.add_ticket("Checkout down", "Nobody can pay since 9am")["id"]
    body, headers = zd.signed_trigger(first, SECRET)
    assert http.post("/webhooks/zendesk", content=body, headers=headers).status_code == 202  # connections made
    ticket = zd.add_ticket("Refund", "Where is my refund? Still nothing after two weeks")["id"]
    slack = Slack(http, sb)
    env = sb.user_message(WATCHED, "Everything is down")
    assert own_redis.proc is not None
    os.kill(own_redis.proc.pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        body, headers = zd.signed_trigger(ticket, SECRET)
        z = http.post("/webhooks/zendesk", content=body, headers=headers)
        zendesk_s = time.monotonic() - t0
        t0 = time.monotonic()
        s = slack.event(env)
        slack_s = time.monotonic() - t0
    finally:
        os.kill(own_redis.proc.pid, signal.SIGCONT)
    for name, r, took in (("zendesk", z, zendesk_s), ("slack", s, slack_s)):
        assert r.status_code == 503 and r.headers["Retry-After"] == "30", (name, r.status_code, r.text)
        assert took < 2.0, f"{name} answered its 503 after {took:.2f}s (Slack retries after 3 s)"
    body, headers = zd.signed_trigger(ticket, SECRET)
    assert http.post("/webhooks/zendesk", content=body, headers=headers).status_code == 202  # the retry
    assert slack.event(env, retry_num=1).status_code == 200
