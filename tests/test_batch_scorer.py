"""Micro-batching across queued jobs, on a real Redis and a real RQ queue."""

from __future__ import annotations

import threading
import time

from pipeline_support import FixedScorer

from worker.events import TicketEvent
from worker.jobs import BatchScorer
from worker.queueing import Enqueuer, make_queue
from worker.store import Store


class CountingScorer(FixedScorer):
    def __init__(self) -> None:
        self.batches: list[int] = []

    def score(self, texts):
        self.batches.append(len(texts))
        return super().score(texts)


def events(n: int) -> list[TicketEvent]:
    return [TicketEvent(source="zendesk", ticket_id=str(i), revision="r1", subject="s", text=f"ticket {i} is down")
            for i in range(n)]


def test_one_model_call_scores_the_tickets_queued_behind(redis):
    queue = make_queue(redis, "t")
    enqueuer = Enqueuer(queue, (1,), 10)
    evs = events(6)
    for e in evs:
        enqueuer.submit(e)
    scorer = CountingScorer()
    batch = BatchScorer(scorer, Store(redis), queue, batch_size=4)
    queue.pop_job_id()  # the worker took the first job
    first = batch.scores_for(evs[0])
    assert first.sentiment.label == "frustrated"
    assert scorer.batches == [4]  # itself + the next 3 in the queue
    for e in evs[1:4]:
        queue.pop_job_id()
        batch.scores_for(e)  # cached: no model call
    assert scorer.batches == [4]
    queue.pop_job_id()
    batch.scores_for(evs[4])  # itself + the one left
    assert scorer.batches == [4, 2]


def test_a_ticket_another_worker_is_scoring_is_awaited_not_rescored(redis):
    queue = make_queue(redis, "t")
    store = Store(redis)
    [e] = events(1)
    assert store.claim([e.key]) == [e.key]  # another worker's batch holds it

    def other_worker_finishes() -> None:
        time.sleep(0.2)
        store.cache_scores({e.key: FixedScorer().score(["the site is down"])[0]})

    threading.Thread(target=other_worker_finishes).start()
    scorer = CountingScorer()
    s = BatchScorer(scorer, store, queue).scores_for(e)
    assert s.urgency.label == "high" and scorer.batches == []


def test_batch_size_one_scores_alone_and_leaves_redis_alone(redis):
    queue = make_queue(redis, "t")
    evs = events(3)
    for e in evs:
        Enqueuer(queue, (1,), 10).submit(e)
    before = set(redis.keys("triage:*"))
    scorer = CountingScorer()
    BatchScorer(scorer, Store(redis), queue, batch_size=1).scores_for(evs[0])
    assert scorer.batches == [1] and set(redis.keys("triage:*")) == before
