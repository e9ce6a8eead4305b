"""ZendeskPoller: cursor export pages, cursor kept in Redis (db 15), nothing lost on failure."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from pipeline_support import StopAfter
from redis import Redis
from zenpy import Zenpy

from connectors.zendesk.poller import CURSOR_KEY, ZendeskPoller
from connectors.zendesk.sandbox import ZendeskSandbox
from connectors.zendesk.writeback import ZendeskWriter
from worker.decision import Actions, HeadScore, Scores, TriageDecision
from worker.errors import RateLimited
from worker.events import TicketEvent


@pytest.fixture
def zd(monkeypatch: pytest.MonkeyPatch) -> Iterator[ZendeskSandbox]:
    with ZendeskSandbox() as sandbox:
        for name, value in sandbox.env.items():
            monkeypatch.setenv(name, value)
        yield sandbox


@pytest.fixture
def zenpy_client(zd: ZendeskSandbox) -> Zenpy:
    return Zenpy(subdomain="sandbox", email="bot@example.com", token="t", disable_cache=True)


def seed(zd: ZendeskSandbox, n: int, start: float) -> list[int]:
    return [zd.add_ticket(f"Ticket {i}", f"Message {i}", requester=f"c{i}@example.com", organization="Acme",
                          group="Support", created_at=start + i)["id"] for i in range(n)]


def poller(zenpy_client: Any, redis: Redis, zd: ZendeskSandbox, **kw: Any) -> ZendeskPoller:
    return ZendeskPoller(zenpy_client, redis, str(zd.bot_user_id), **kw)


def exports(zd: ZendeskSandbox) -> list[dict[str, list[str]]]:
    return [q.query for q in zd.requests if q.path.endswith("/incremental/tickets/cursor.json")]


def test_pages_and_cursor_persistence(zd: ZendeskSandbox, zenpy_client: Zenpy, redis: Redis) -> None:
    start = time.time() - 600
    ids = seed(zd, 5, start)
    queue: list[TicketEvent] = []
    first = poller(zenpy_client, redis, zd, per_page=2, initial_lookback_s=3600)
    assert [e.ticket_id for e in first.poll_once(queue.extend)] == [str(i) for i in ids[:2]]
    assert redis.get(CURSOR_KEY) == first.cursor().encode()  # type: ignore[union-attr]
    again = poller(zenpy_client, redis, zd, per_page=2)  # a restart continues from Redis
    assert [e.ticket_id for e in again.poll_once(queue.extend)] == [str(i) for i in ids[2:4]]
    assert [e.ticket_id for e in again.poll_once(queue.extend)] == [str(ids[4])]
    assert again.poll_once(queue.extend) == []
    assert [e.ticket_id for e in queue] == [str(i) for i in ids]
    sent = exports(zd)
    assert "start_time" in sent[0] and "cursor" not in sent[0]
    assert int(sent[0]["start_time"][0]) <= int(start)
    assert all("cursor" in q and "start_time" not in q for q in sent[1:])
    event = queue[0]
    assert (event.text, event.requester_email, event.organization, event.group) == (
        "Message 0", "c0@example.com", "Acme", "Support")
    assert event.revision == str(zd.comments(ids[0])[0]["id"])


def test_updated_ticket_comes_back_with_a_new_revision(zd: ZendeskSandbox, zenpy_client: Zenpy,
                                                       redis: Redis) -> None:
    (tid,) = seed(zd, 1, time.time() - 600)
    p = poller(zenpy_client, redis, zd)
    (first,) = p.poll_once(lambda e: None)
    zd.add_comment(tid, "Still broken, please hurry")
    (second,) = p.poll_once(lambda e: None)
    assert second.ticket_id == first.ticket_id and second.revision != first.revision
    assert second.text == "Still broken, please hurry"


def test_enqueue_failure_keeps_the_cursor(zd: ZendeskSandbox, zenpy_client: Zenpy, redis: Redis) -> None:
    seed(zd, 3, time.time() - 600)
    p = poller(zenpy_client, redis, zd, per_page=2)

    def broken(events: list[TicketEvent]) -> None:
        raise ConnectionError("queue down")

    with pytest.raises(ConnectionError):
        p.poll_once(broken)
    assert p.cursor() is None
    got: list[TicketEvent] = []
    p.poll_once(got.extend)
    assert len(got) == 2  # the same page again, nothing lost


def test_rate_limit_keeps_the_cursor(zd: ZendeskSandbox, zenpy_client: Zenpy, redis: Redis) -> None:
    seed(zd, 3, time.time() - 600)
    p = poller(zenpy_client, redis, zd, per_page=2)
    p.poll_once(lambda e: None)
    cursor = p.cursor()
    zd.fail_next(429, retry_after=12, path="comments")
    with pytest.raises(RateLimited) as caught:
        p.poll_once(lambda e: None)
    assert caught.value.retry_after == 12 and p.cursor() == cursor
    assert len(p.poll_once(lambda e: None)) == 1 and p.cursor() != cursor


def test_bot_changes_are_skipped_or_deduplicated(zd: ZendeskSandbox, zenpy_client: Zenpy, redis: Redis) -> None:
    (tid,) = seed(zd, 1, time.time() - 600)
    p = poller(zenpy_client, redis, zd)
    (event,) = p.poll_once(lambda e: None)
    writer = ZendeskWriter(zenpy_client)
    scores = Scores(HeadScore("negative", {"negative": 0.9}, 0.9), HeadScore("high", {"high": 0.7}, 0.7), "m1")
    writer.apply(event, TriageDecision(event.key, scores, (), Actions(add_tags=("triage_negative",), note=True)))
    (after_write,) = p.poll_once(lambda e: None)  # our update moved updated_at; the revision did not
    assert after_write.key == event.key
    zd.add_comment(tid, "Automated reply", author=writer.client.users.me().email)  # a public bot comment
    page = p.fetch_page()
    assert page.events == [] and page.skipped == {str(tid): "latest public comment is the bot's"}


def test_run_waits_retry_after(zd: ZendeskSandbox, zenpy_client: Zenpy, redis: Redis) -> None:
    seed(zd, 1, time.time() - 600)
    p = poller(zenpy_client, redis, zd)
    stop = StopAfter(2)
    zd.fail_next(429, retry_after=3, path="incremental")
    got: list[TicketEvent] = []
    p.run(got.extend, interval_s=30, stop=stop)
    assert stop.waits == [3, 30] and len(got) == 1
