"""Scoring ahead of the jobs, and micro-batching across queued jobs, on a real Redis and a real RQ queue."""

from __future__ import annotations

import threading
import time

from pipeline_support import FixedScorer

from worker.events import TicketEvent
from worker.jobs import BatchScorer
from worker.queueing import Enqueuer, job_id, make_queue
from worker.store import Store


class CountingScorer(FixedScorer):
    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def score(self, texts):
        self.batches.append([t.split()[2] for t in texts])  # "s\n\nticket N is down": N
        return super().score(texts)


def events(n: int) -> list[TicketEvent]:
    return [TicketEvent(source="zendesk", ticket_id=str(i), revision="r1", subject="s", text=f"ticket {i} is down")
            for i in range(n)]


def queued(redis, n: int):
    queue = make_queue(redis, "t")
    evs = events(n)
    for e in evs:
        Enqueuer(queue, (1,), 10).submit(e)
    return queue, evs


def take(queue, scorer: BatchScorer, e: TicketEvent):
    """What the worker does: take the job off the queue, then ask for its ticket's scores."""
    assert queue.pop_job_id().endswith(f"-{e.ticket_id}-r1")
    return scorer.scores_for(e)


def test_the_next_tickets_are_scored_while_the_current_one_is_written_back(redis):
    queue, evs = queued(redis, 4)
    model = CountingScorer()
    scorer = BatchScorer(model, Store(redis), queue)  # two model calls kept queued ahead
    assert take(queue, scorer, evs[0]).sentiment.label == "frustrated"
    scorer.settle()  # the model thread is done with the next two tickets
    assert model.batches == [["0"], ["1"], ["2"]]  # its own ticket first, then two ahead; batch 1
    take(queue, scorer, evs[1])  # ready: no model call of its own; the last ticket goes ahead
    scorer.settle()
    assert model.batches[3:] == [["3"]]
    take(queue, scorer, evs[2])
    take(queue, scorer, evs[3])
    assert len(model.batches) == 4  # each ticket scored once


def test_one_model_call_scores_several_queued_tickets(redis):
    queue, evs = queued(redis, 6)
    model = CountingScorer()
    scorer = BatchScorer(model, Store(redis), queue, batch_size=4)
    take(queue, scorer, evs[0])
    scorer.settle()
    # its own ticket with the next three to fill the batch, then the rest ahead
    assert model.batches == [["0", "1", "2", "3"], ["4", "5"]]
    for e in evs[1:]:
        take(queue, scorer, e)
    assert len(model.batches) == 2


def test_tickets_another_worker_claimed_are_skipped_ahead_and_awaited_not_rescored(redis):
    queue, evs = queued(redis, 3)
    store = Store(redis)
    assert store.claim(job_id(evs[0])) and store.claim(job_id(evs[1]))  # another worker's

    def other_worker_finishes() -> None:
        time.sleep(0.2)
        store.cache_scores({e.key: s for e, s in zip(evs[:2], FixedScorer().score(["down", "down"]))})

    threading.Thread(target=other_worker_finishes).start()
    model = CountingScorer()
    scorer = BatchScorer(model, store, queue)
    assert take(queue, scorer, evs[0]).urgency.label == "high"
    scorer.settle()
    assert model.batches == [["2"]]  # ticket 1 is the other worker's: this one scored ahead past it
    take(queue, scorer, evs[1])
    assert model.batches == [["2"]]


def test_a_claim_never_answered_is_scored_after_the_wait(redis):
    queue, evs = queued(redis, 1)
    store = Store(redis)
    store.claim(job_id(evs[0]))  # a worker that died while scoring
    model = CountingScorer()
    t = time.monotonic()
    take(queue, BatchScorer(model, store, queue, wait_s=0.2), evs[0])
    assert model.batches == [["0"]] and time.monotonic() - t >= 0.2


def test_a_ticket_whose_scoring_ahead_failed_is_scored_at_once_not_awaited(redis):
    queue, evs = queued(redis, 2)

    class FailsOnce(CountingScorer):
        def score(self, texts):
            if len(self.batches) == 1:  # the call scoring ticket 1 ahead
                self.batches.append(["failed"])
                raise RuntimeError("model error")
            return super().score(texts)

    model = FailsOnce()
    scorer = BatchScorer(model, Store(redis), queue, wait_s=5)
    take(queue, scorer, evs[0])
    scorer.settle()
    t = time.monotonic()
    assert take(queue, scorer, evs[1]).urgency.label == "high"
    assert model.batches == [["0"], ["failed"], ["1"]] and time.monotonic() - t < 1
