"""Enqueueing on a real Redis: deliveries that arrive together share one job; each revision once."""

from __future__ import annotations

import asyncio

import pytest
from redis import Redis
from rq.serializers import JSONSerializer

from connectors.webhook import GroupSubmit
from worker.events import TicketEvent
from worker.queueing import MAX_EVENTS_PER_JOB, Enqueuer, QueueUnavailable, make_queue
from worker.store import Store


def event(ticket: int, revision: str = "c1") -> TicketEvent:
    return TicketEvent(source="zendesk", ticket_id=str(ticket), revision=revision, subject="Login", text="It fails")


def enqueuer(redis: Redis) -> Enqueuer:
    return Enqueuer(make_queue(redis, "triage-test"), (1, 2), 60)


def job_args(q: Enqueuer) -> list[tuple]:
    return [q.queue.fetch_job(i).args for i in q.queue.job_ids]  # type: ignore[union-attr]


def test_submit_many_queues_one_job_per_group_and_each_revision_once(redis: Redis) -> None:
    q = enqueuer(redis)
    Store(redis).finish([event(9).key])  # triaged earlier
    statuses = q.submit_many([event(1), event(2), event(1), event(9), event(1, "c2")])
    assert statuses == ["queued", "queued", "duplicate", "done", "queued"]
    [args] = job_args(q)
    assert [TicketEvent.from_json(a).key for a in args] == ["zendesk:1:c1", "zendesk:2:c1", "zendesk:1:c2"]
    assert q.job_of("zendesk:2:c1") == q.queue.job_ids[0] and q.job_of("zendesk:9:c1") is None
    assert q.submit(event(2)) == "duplicate"  # queued already: a repeated delivery adds nothing
    job = q.queue.fetch_job(q.queue.job_ids[0])
    assert job is not None and job.description == "triage zendesk 1, zendesk 2, zendesk 1"
    assert job.retries_left == 2 and job.timeout == 3 * 60 and job.serializer is JSONSerializer  # 60 s a ticket


def test_a_large_group_is_split_into_jobs_of_at_most_the_limit(redis: Redis) -> None:
    q = enqueuer(redis)
    n = MAX_EVENTS_PER_JOB * 2 + 3
    assert q.submit_many([event(i) for i in range(n)]) == ["queued"] * n
    assert [len(a) for a in job_args(q)] == [MAX_EVENTS_PER_JOB, MAX_EVENTS_PER_JOB, 3]


def test_concurrent_deliveries_share_a_job(redis: Redis) -> None:
    q = enqueuer(redis)

    async def deliver() -> list[str]:
        group = GroupSubmit(q)
        first = await group.submit(event(100))  # alone: sent at once, waits for nobody
        rest = await asyncio.gather(*(group.submit(event(i)) for i in range(6)), group.submit(event(3)))
        return [first, *rest]

    assert asyncio.run(deliver()) == ["queued"] * 7 + ["duplicate"]
    assert [len(a) for a in job_args(q)] == [1, 6]


def test_redis_down_fails_every_delivery_of_the_group() -> None:
    q = Enqueuer(make_queue(Redis(port=1, socket_connect_timeout=0.2), "triage-test"), (1,), 60)

    async def deliver() -> list[object]:
        group = GroupSubmit(q)
        return await asyncio.gather(*(group.submit(event(i)) for i in range(3)), return_exceptions=True)

    assert all(isinstance(r, QueueUnavailable) for r in asyncio.run(deliver()))
    with pytest.raises(QueueUnavailable, match="Redis unreachable"):
        q.submit(event(1))


def test_a_request_that_went_away_does_not_stall_its_group(redis: Redis) -> None:
    q = enqueuer(redis)

    async def deliver() -> list[object]:
        group = GroupSubmit(q)
        gone = asyncio.ensure_future(group.submit(event(1)))
        rest = [asyncio.ensure_future(group.submit(event(i))) for i in (2, 3)]
        await asyncio.sleep(0)  # all three wait on the same group
        gone.cancel()  # its client disconnected: its event is queued all the same
        answers = await asyncio.gather(*rest)
        return [*answers, await group.submit(event(4))]

    assert asyncio.run(deliver()) == ["queued", "queued", "queued"]
    assert [len(a) for a in job_args(q)] == [3, 1]


def test_a_stopping_ingress_answers_every_waiting_request(redis: Redis) -> None:
    q = enqueuer(redis)

    async def deliver() -> list[object]:
        group = GroupSubmit(q)
        waiting = [asyncio.ensure_future(group.submit(event(i))) for i in range(3)]
        await asyncio.sleep(0)
        assert group._sender is not None
        group._sender.cancel()  # the server shuts down while a group is being sent
        return await asyncio.gather(*waiting, return_exceptions=True)

    assert all(isinstance(r, QueueUnavailable) for r in asyncio.run(deliver()))  # 503: the vendor retries
