"""End to end on Jira: signed webhook (or Automation body, or the JQL poller) -> ingress -> Redis/RQ ->
worker -> the real `jira` client -> the Jira Cloud sandbox. Only the model is a fixed scorer."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pipeline_support import FixedScorer, drain, runtime, serve, serve_app

from connectors.jira.poller import JiraPoller
from connectors.jira.sandbox import TEAM_FIELD, JiraSandbox
from connectors.jira.signature import IDENTIFIER_HEADER, SIGNATURE_HEADER, sign
from connectors.webhook import GroupSubmit
from worker import bootstrap
from worker.dlq import list_failed, requeue
from worker.local_redis import LocalRedis
from worker.settings import JiraSettings, Secret, Settings

SECRET = "jira-webhook-secret"
RULES = """
rules:
  - name: urgent
    when: {urgency: high}
    then: {priority: urgent, add_tags: [escalated]}
  - name: incidents-to-tier-2
    when: {source: jira, project: [SUP], request_type: ["Report a system problem"]}
    then: {group: "Tier 2"}
  - name: explain
    then: {note: true}
"""


@pytest.fixture
def rules_file(tmp_path: Any) -> str:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    return str(path)


def settings(redis_url: str, rules_path: str, jira: JiraSandbox, **kw: Any) -> Settings:
    base: dict[str, Any] = dict(
        redis_url=redis_url, rules_path=rules_path, queue_name="triage-test", retry_intervals_s=(1, 1, 1),
        job_timeout_s=10,
        jira=JiraSettings(jira.url, jira.email, Secret(jira.token), Secret(SECRET), jira.bot_account_id,
                          group_field="Support team"))
    base.update(kw)
    return Settings(**base)


@pytest.fixture
def stack(redis: Any, redis_server: LocalRedis, jira: JiraSandbox,
          rules_file: str) -> Iterator[tuple[Any, httpx.Client]]:
    rt = runtime(settings(redis_server.url, rules_file, jira))
    server, url = serve(rt)
    with httpx.Client(base_url=url, timeout=10) as http:
        yield rt, http
    server.should_exit = True


def deliver(http: httpx.Client, jira: JiraSandbox, key: str, event: str = "jira:issue_created",
            **kw: Any) -> httpx.Response:
    body, headers = jira.signed_webhook(key, SECRET, event, **kw)
    return http.post("/webhooks/jira", content=body, headers=headers)


def post_payload(http: httpx.Client, payload: dict[str, Any], identifier: str) -> httpx.Response:
    body = json.dumps(payload).encode()
    return http.post("/webhooks/jira", content=body, headers={SIGNATURE_HEADER: sign(SECRET, body),
                                                              IDENTIFIER_HEADER: identifier})


def notes(jira: JiraSandbox, key: str) -> list[dict[str, Any]]:
    return [c for c in jira.comments(key) if c["author"] == jira.bot_account_id]


def edits(jira: JiraSandbox, key: str) -> int:
    issue_id = jira.issue(key)["id"]
    return sum(1 for r in jira.requests if r.method == "PUT" and r.path in (f"/rest/api/3/issue/{key}",
                                                                           f"/rest/api/3/issue/{issue_id}"))


def angry(jira: JiraSandbox, **kw: Any) -> str:
    return jira.add_issue("SUP", "Checkout down", "Checkout is down since 9am, this is unacceptable",
                          reporter="ops@northwind.example", labels=["enterprise"],
                          request_type="Report a system problem", **kw)


def test_signed_webhook_to_write_back(stack: Any, jira: JiraSandbox) -> None:
    rt, http = stack
    key = angry(jira)
    r = deliver(http, jira, key)
    assert r.status_code == 202 and r.json()["status"] == "queued", r.text
    drain(rt)
    assert set(jira.labels(key)) == {"enterprise", "triage_sentiment_frustrated", "triage_urgency_high", "escalated"}
    assert jira.priority(key) == "Highest"
    assert jira.field(key, TEAM_FIELD) == {"id": "10102", "value": "Tier 2"}
    [note] = notes(jira, key)
    assert note["public"] is False  # JSM internal comment
    assert "sentiment: frustrated" in note["body"] and f"[triage:jira:{key}:" in note["body"]
    assert "words behind it: down" in note["body"] and "incidents-to-tier-2" in note["body"]
    assert edits(jira, key) == 1


def test_duplicate_deliveries_are_written_once(stack: Any, jira: JiraSandbox) -> None:
    rt, http = stack
    key = angry(jira)
    body, headers = jira.signed_webhook(key, SECRET, identifier="delivery-1")
    answers = [http.post("/webhooks/jira", content=body, headers={**headers, "X-Atlassian-Webhook-Retry": str(i)})
               for i in range(3)]
    assert [a.json()["status"] for a in answers] == ["queued", "duplicate", "duplicate"]
    assert answers[1].json()["delivery"] == "delivery-1"  # Jira's retry: recognised by its identifier
    # The same change under another identifier (a second webhook on the site) is the same event key.
    assert deliver(http, jira, key, identifier="delivery-2").json()["status"] == "duplicate"
    drain(rt)
    assert deliver(http, jira, key, identifier="delivery-3").json()["status"] == "done"  # a late redelivery
    drain(rt)
    assert edits(jira, key) == 1 and len(notes(jira, key)) == 1


def test_a_comment_announced_twice_is_triaged_once(stack: Any, jira: JiraSandbox) -> None:
    rt, http = stack
    key = jira.add_issue("SUP", "Question", "How do I export my data?", reporter="a@b.example")
    deliver(http, jira, key)
    drain(rt)
    assert "triage_sentiment_neutral" in jira.labels(key)
    comment = jira.add_comment(key, "Still nothing, the export is broken and this is unacceptable")
    # Jira sends comment_created and jira:issue_updated (issue_commented) for one comment.
    assert deliver(http, jira, key, "comment_created", comment_id=comment).json()["status"] == "queued"
    assert deliver(http, jira, key, "jira:issue_updated", comment_id=comment).json()["status"] == "duplicate"
    drain(rt)
    labels = jira.labels(key)
    assert "triage_sentiment_frustrated" in labels and "triage_sentiment_neutral" not in labels
    assert len(notes(jira, key)) == 2


def test_our_own_update_fires_webhooks_that_are_ignored(stack: Any, jira: JiraSandbox) -> None:
    rt, http = stack
    key = angry(jira)
    fired: list[dict[str, Any]] = []
    jira.on_change = fired.append  # the webhooks Jira would send for the bot's own changes
    deliver(http, jira, key)
    drain(rt)
    assert {p["webhookEvent"] for p in fired} == {"jira:issue_updated", "comment_created"}
    for n, payload in enumerate(fired):
        r = post_payload(http, payload, f"own-{n}")
        assert r.status_code == 200 and r.json()["status"] == "skipped", r.text
        assert "triage bot" in r.json()["reason"]
    assert rt.enqueuer.queue.count == 0
    assert len(notes(jira, key)) == 1


def test_status_changes_are_not_triaged(stack: Any, jira: JiraSandbox) -> None:
    _, http = stack
    key = angry(jira)
    payload = jira.webhook_payload(key, "jira:issue_updated", user=jira.account_id("tom@example.com"),
                                   changelog={"id": "1", "items": [{"field": "status", "fieldId": "status"}]})
    r = post_payload(http, payload, "status-1")
    assert r.status_code == 200 and "without a new comment" in r.json()["reason"]


def test_priority_a_person_set_is_kept(stack: Any, jira: JiraSandbox) -> None:
    rt, http = stack
    key = angry(jira)
    jira.edit_issue(key, by="tom@example.com", priority="Low")  # after the webhook was built: read fresh
    deliver(http, jira, key)
    drain(rt)
    assert jira.priority(key) == "Low" and "triage_urgency_high" in jira.labels(key)


def test_429_with_retry_after_is_retried(stack: Any, jira: JiraSandbox) -> None:
    rt, http = stack
    key = angry(jira)
    jira.fail_next(429, times=1, retry_after=1, method="PUT")
    deliver(http, jira, key)
    started = time.monotonic()
    drain(rt)
    assert time.monotonic() - started >= 1.0  # waited what Retry-After said
    assert jira.priority(key) == "Highest" and len(notes(jira, key)) == 1


def test_5xx_forever_goes_to_the_dlq_and_requeue_succeeds(stack: Any, jira: JiraSandbox) -> None:
    rt, http = stack
    key = angry(jira)
    jira.fail_next(503, times=None, path="servicedeskapi")  # the note keeps failing
    deliver(http, jira, key)
    drain(rt)
    [failed] = list_failed(rt.enqueuer.queue)
    assert key in failed["description"] and "503" in failed["error"]
    assert "unacceptable" not in failed["error"]  # ticket text stays out of errors
    jira.clear_faults()
    requeue(rt.enqueuer.queue, [], everything=True)
    drain(rt)
    assert list_failed(rt.enqueuer.queue) == []
    assert len(notes(jira, key)) == 1 and jira.priority(key) == "Highest"


def test_bad_credentials_stop_with_a_clear_error(stack: Any, jira: JiraSandbox) -> None:
    rt, http = stack
    key = angry(jira)
    jira.fail_next(401, times=None, path=f"/issue/{key}")
    deliver(http, jira, key)
    drain(rt)
    [failed] = list_failed(rt.enqueuer.queue)
    assert "JIRA_API_TOKEN" in failed["error"]
    assert sum(1 for r in jira.requests if r.path == f"/rest/api/3/issue/{key}") == 1  # not retried


def test_automation_web_request_with_bearer_token(stack: Any, jira: JiraSandbox) -> None:
    rt, http = stack
    key = angry(jira)
    body = json.dumps(jira.automation_payload(key)).encode()
    assert http.post("/webhooks/jira", content=body).status_code == 401
    r = http.post("/webhooks/jira", content=body, headers={"Authorization": f"Bearer {SECRET}"})
    assert r.status_code == 202 and r.json()["status"] == "queued", r.text
    # The admin webhook for the same creation names the same revision.
    assert deliver(http, jira, key).json()["status"] == "duplicate"
    drain(rt)
    assert len(notes(jira, key)) == 1 and jira.priority(key) == "Highest"


def test_poller_pages_and_a_late_issue_are_triaged_once(redis: Any, redis_server: LocalRedis, jira: JiraSandbox,
                                                       rules_file: str) -> None:
    rt = runtime(settings(redis_server.url, rules_file, jira))
    now = time.time()
    late = angry(jira, created_at=now - 120, indexed=False)
    keys = [angry(jira, created_at=now - 90 + i) for i in range(3)]
    api = bootstrap.jira_api(rt.settings)
    poller = JiraPoller(api, rt.redis, jira.bot_account_id, "project = SUP", per_page=2, overlap_s=300)
    assert len(poller.poll_once(rt.enqueuer.submit_many).events) == 3
    drain(rt)
    jira.index(late)  # Jira's index catches up after the watermark passed the issue
    for _ in range(3):  # later passes: the late one once; our own write-backs bring issues back, never twice
        poller.poll_once(rt.enqueuer.submit_many)
        drain(rt)
    for key in [late, *keys]:
        assert len(notes(jira, key)) == 1 and jira.priority(key) == "Highest", key
        assert edits(jira, key) == 1
    pages = [r for r in jira.requests if r.path == "/rest/api/3/search/jql"]
    assert any("nextPageToken" in r.query for r in pages)


@pytest.mark.parametrize("case, status", [
    ("no signature", 401), ("wrong signature", 401), ("wrong token", 401), ("not json", 400),
    ("not an issue", 422), ("too big", 413),
])
def test_bad_requests_get_a_clear_answer(stack: Any, case: str, status: int) -> None:
    _, http = stack
    body = b'{"webhookEvent": "comment_created", "issue": {"key": "SUP-1"}}'
    if case == "not json":
        body = b"{not json"
    if case == "too big":
        body = b"x" * 1_100_000
    headers = {SIGNATURE_HEADER: sign(SECRET, body)}
    if case == "no signature":
        headers = {}
    if case == "wrong signature":
        headers = {SIGNATURE_HEADER: sign("other-secret", body)}
    if case == "wrong token":
        headers = {"Authorization": "Bearer other-secret"}
    r = http.post("/webhooks/jira", content=body, headers=headers)
    assert r.status_code == status, r.text
    assert r.json()["error"]


def test_redis_down_answers_503_and_the_retry_is_processed(jira: JiraSandbox, rules_file: str) -> None:
    server = LocalRedis(appendonly=True).start()
    try:
        rt = runtime(settings(server.url, rules_file, jira))
        http_server, url = serve(rt)
        with httpx.Client(base_url=url, timeout=10) as http:
            key = angry(jira)
            body, headers = jira.signed_webhook(key, SECRET, identifier="delivery-x")
            server.stop()
            r = http.post("/webhooks/jira", content=body, headers=headers)
            assert r.status_code == 503 and r.headers["Retry-After"]
            server.start()
            r = http.post("/webhooks/jira", content=body, headers=headers)  # Jira's retry, same identifier
            assert r.status_code == 202 and r.json()["status"] == "queued"
            drain(rt)
            assert len(notes(jira, key)) == 1
        http_server.should_exit = True
    finally:
        server.close()


def test_fixed_scorer_is_in_use(stack: Any) -> None:
    rt, _ = stack
    assert isinstance(rt.scorer, FixedScorer)


def test_bot_account_unknown_answers_503(stack: Any, jira: JiraSandbox) -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from connectors.jira.inbound import jira_router
    from worker.errors import VendorUnavailable

    rt, _ = stack

    def unknown() -> str:
        raise VendorUnavailable("cannot reach Jira on GET myself")

    app = FastAPI()
    app.include_router(jira_router(SECRET, unknown, GroupSubmit(rt.enqueuer), 1_000_000))
    key = angry(jira)
    body, headers = jira.signed_webhook(key, SECRET, identifier="d-503")
    with TestClient(app) as client:
        r = client.post("/webhooks/jira", content=body, headers=headers)
    assert r.status_code == 503 and r.headers["Retry-After"]
    assert not rt.redis.exists("triage:jira:delivery:d-503")  # Jira's retry will be processed


def test_a_crash_between_write_and_bookkeeping_is_recovered_not_repeated(redis: Any, jira: JiraSandbox,
                                                                        rules_file: str) -> None:
    from connectors.jira import normalize
    from connectors.jira.writeback import JiraWriter
    from worker.rules_file import load_rules
    from worker.store import Store
    from worker.triage import TriageService

    writer = JiraWriter(bootstrap.jira_api(settings("redis://unused", rules_file, jira)))
    store = Store(redis)
    rules = load_rules(rules_file)
    service = TriageService(lambda: rules, {"jira": writer}, store)
    key = angry(jira)
    event = normalize.to_event(jira.webhook_payload(key), jira.bot_account_id)
    assert event is not None
    scores = FixedScorer().score([event.text])[0]
    finish = store.finish
    store.finish = lambda k: (_ for _ in ()).throw(ConnectionError("worker killed"))  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        service.process(event, lambda e: scores)  # written to Jira, never recorded
    store.finish = finish  # type: ignore[method-assign]
    assert service.process(event, lambda e: scores).status == "recovered"
    assert len(notes(jira, key)) == 1 and edits(jira, key) == 1


def test_a_jira_that_does_not_answer_holds_up_its_own_delivery_not_the_ingress(stack: Any, jira: JiraSandbox) -> None:
    """Jira was down when `triage serve` started, so a delivery looks the bot's account id up; that
    runs off the event loop: while it waits on Jira, other requests are served."""
    from fastapi import FastAPI

    from connectors.jira.inbound import jira_router
    from worker.errors import VendorUnavailable

    rt, _ = stack

    def unanswered() -> str:
        time.sleep(2)  # Jira's timeout
        raise VendorUnavailable("Jira timed out on GET myself")

    app = FastAPI()
    app.include_router(jira_router(SECRET, unanswered, GroupSubmit(rt.enqueuer), 1_000_000))

    @app.get("/ping")
    async def ping() -> dict[str, str]:
        return {"status": "ok"}

    server, url = serve_app(app)
    body, headers = jira.signed_webhook(angry(jira), SECRET, identifier="d-stalled")
    answers: dict[str, int] = {}
    try:
        with httpx.Client(base_url=url, timeout=60) as http:
            webhook = threading.Thread(target=lambda: answers.update(webhook=http.post(
                "/webhooks/jira", content=body, headers=headers).status_code))
            webhook.start()
            time.sleep(0.3)  # the delivery is waiting on Jira (2 s)
            asked = time.monotonic()
            assert http.get("/ping").status_code == 200
            waited = time.monotonic() - asked  # a blocked event loop: 1.7 s or more
            webhook.join()
    finally:
        server.should_exit = True
    assert waited < 1.0, f"the ingress stalled {waited:.1f}s behind a delivery waiting on Jira"
    assert answers["webhook"] == 503  # Jira retries
