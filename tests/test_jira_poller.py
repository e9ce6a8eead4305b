"""JiraPoller: JQL search/jql pages through the real `jira` client, a watermark with overlap in Redis,
(issue key, updated) de-duplication, and nothing lost when enqueueing or Jira fails."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from pipeline_support import StopAfter
from redis import Redis

from connectors.jira.poller import SEEN_PREFIX, WATERMARK_KEY, JiraPoller
from connectors.jira.sandbox import JiraSandbox
from connectors.jira.transport import JiraApi
from connectors.jira.writeback import JiraWriter
from worker.decision import Actions, HeadScore, Scores, TriageDecision
from worker.errors import ConfigError, RateLimited
from worker.events import TicketEvent


@pytest.fixture
def jira() -> Iterator[JiraSandbox]:
    with JiraSandbox() as sandbox:
        yield sandbox


@pytest.fixture
def api(jira: JiraSandbox) -> JiraApi:
    return JiraApi.connect(jira.url, jira.email, jira.token, timeout=5)


def poller(api: JiraApi, redis: Redis, jira: JiraSandbox, jql: str = "project = SUP", **kw: Any) -> JiraPoller:
    return JiraPoller(api, redis, jira.bot_account_id, jql, **kw)


def seed(jira: JiraSandbox, n: int, start: float, project: str = "SUP") -> list[str]:
    return [jira.add_issue(project, f"Issue {i}", f"Message {i}", reporter=f"c{i}@example.com",
                           created_at=start + i) for i in range(n)]


def searches(jira: JiraSandbox) -> list[dict[str, list[str]]]:
    return [r.query for r in jira.requests if r.path == "/rest/api/3/search/jql"]


def test_pages_through_nextpagetoken_in_one_pass(jira: JiraSandbox, api: JiraApi, redis: Redis) -> None:
    start = time.time() - 600
    keys = seed(jira, 5, start)
    seed(jira, 2, start, project="OPS")  # outside the JQL
    queued: list[TicketEvent] = []
    done = poller(api, redis, jira, per_page=2).poll_once(queued.extend)
    assert [e.ticket_id for e in queued] == keys and done.pages == 3
    sent = searches(jira)
    assert [("nextPageToken" in q) for q in sent] == [False, True, True]
    assert sent[0]["jql"] == ['(project = SUP) AND updated >= "-60m" ORDER BY updated ASC, key ASC']
    assert all(q["maxResults"] == ["2"] and q["fields"] == ["*all"] for q in sent)
    assert any(r.path == "/rest/api/3/field" for r in jira.requests)  # the client's first search reads fields
    assert float(redis.get(WATERMARK_KEY) or 0) == pytest.approx(start + 4, abs=0.01)
    first = queued[0]
    assert (first.text, first.requester_email, first.extra["delivery"]) == ("Message 0", "c0@example.com", "poll")


def test_overlap_window_and_seen_revisions(jira: JiraSandbox, api: JiraApi, redis: Redis) -> None:
    now = time.time()
    seed(jira, 2, now - 30)
    p = poller(api, redis, jira, overlap_s=300)
    assert len(p.poll_once(lambda e: None).events) == 2
    assert p.query().startswith('(project = SUP) AND updated >= "-6m"')  # 29 s behind + 5 min overlap
    again = p.poll_once(lambda e: None)
    assert again.events == [] and set(again.skipped.values()) == {"already handled at this update"}
    assert len(redis.keys(f"{SEEN_PREFIX}*")) == 2


def test_an_issue_indexed_late_is_still_triaged_once(jira: JiraSandbox, api: JiraApi, redis: Redis) -> None:
    now = time.time()
    late = jira.add_issue("SUP", "Late", "Indexed late", created_at=now - 120, indexed=False)
    early = jira.add_issue("SUP", "Early", "Indexed at once", created_at=now - 60)
    p = poller(api, redis, jira, overlap_s=300)
    queued: list[TicketEvent] = []
    p.poll_once(queued.extend)
    assert [e.ticket_id for e in queued] == [early]  # the watermark is now past `late`
    jira.index(late)
    p.poll_once(queued.extend)
    p.poll_once(queued.extend)
    assert [e.ticket_id for e in queued] == [early, late]


def test_without_overlap_a_late_issue_would_be_missed(jira: JiraSandbox, api: JiraApi, redis: Redis) -> None:
    now = time.time()
    late = jira.add_issue("SUP", "Late", "Indexed late", created_at=now - 300, indexed=False)
    jira.add_issue("SUP", "Early", "Indexed at once", created_at=now - 60)
    p = poller(api, redis, jira, overlap_s=0)
    p.poll_once(lambda e: None)
    jira.index(late)
    assert p.poll_once(lambda e: None).events == []  # why the overlap exists


def test_a_new_comment_is_a_new_revision_our_own_update_is_not(jira: JiraSandbox, api: JiraApi,
                                                               redis: Redis) -> None:
    (key,) = seed(jira, 1, time.time() - 60)
    p = poller(api, redis, jira)
    (first,) = p.poll_once(lambda e: None).events
    writer = JiraWriter(api)
    scores = Scores(HeadScore("frustrated", {"frustrated": 0.9}, 0.9), HeadScore("high", {"high": 0.7}, 0.7), "m1")
    writer.apply(first, TriageDecision(first.key, scores, (), Actions(add_tags=("triage_x",), note=True)))
    (after_write,) = p.poll_once(lambda e: None).events  # `updated` moved; the revision did not
    assert after_write.key == first.key
    jira.add_comment(key, "Still broken, please hurry")
    (second,) = p.poll_once(lambda e: None).events
    assert second.ticket_id == key and second.revision != first.revision
    assert second.text == "Still broken, please hurry"


def test_many_comments_read_the_newest(jira: JiraSandbox, api: JiraApi, redis: Redis) -> None:
    (key,) = seed(jira, 1, time.time() - 600)
    for i in range(25):  # more than an issue's embedded comment field holds
        jira.add_comment(key, f"message {i}", created_at=time.time() - 500 + i)
    (event,) = poller(api, redis, jira).poll_once(lambda e: None).events
    assert event.text == "message 24"
    assert any(r.path == f"/rest/api/3/issue/{key}/comment" for r in jira.requests)


def test_enqueue_failure_keeps_watermark_and_revisions(jira: JiraSandbox, api: JiraApi, redis: Redis) -> None:
    seed(jira, 3, time.time() - 600)
    p = poller(api, redis, jira, per_page=2)

    def broken(events: list[TicketEvent]) -> None:
        raise ConnectionError("queue down")

    with pytest.raises(ConnectionError):
        p.poll_once(broken)
    assert p.watermark() is None and redis.keys(f"{SEEN_PREFIX}*") == []
    got: list[TicketEvent] = []
    p.poll_once(got.extend)
    assert len(got) == 3  # nothing lost


def test_rate_limit_mid_pass_keeps_what_was_done(jira: JiraSandbox, api: JiraApi, redis: Redis) -> None:
    seed(jira, 3, time.time() - 600)
    p = poller(api, redis, jira, per_page=2)
    p.poll_once(lambda e: None)  # connect and read fields first
    jira.add_comment("SUP-1", "more")
    jira.add_comment("SUP-3", "more")
    jira.fail_next(429, retry_after=12, path="search/jql")
    with pytest.raises(RateLimited) as caught:
        p.poll_once(lambda e: None)
    assert caught.value.retry_after == 12
    assert sorted(e.ticket_id for e in p.poll_once(lambda e: None).events) == ["SUP-1", "SUP-3"]


def test_run_waits_retry_after_then_the_interval(jira: JiraSandbox, api: JiraApi, redis: Redis) -> None:
    seed(jira, 1, time.time() - 60)
    p = poller(api, redis, jira)
    stop = StopAfter(2)
    jira.fail_next(429, retry_after=3, path="search/jql")
    got: list[TicketEvent] = []
    p.run(got.extend, interval_s=30, stop=stop)
    assert stop.waits == [3, 30] and len(got) == 1


def test_jql_is_checked(jira: JiraSandbox, api: JiraApi, redis: Redis) -> None:
    with pytest.raises(ConfigError, match="ORDER BY"):
        poller(api, redis, jira, jql="project = SUP ORDER BY created DESC")
    with pytest.raises(ConfigError, match="give a JQL"):
        poller(api, redis, jira, jql="  ")
    p = poller(api, redis, jira, jql="project = SUP AND status = Nonsense AND labels = x")
    assert p.poll_once(lambda e: None).events == []
