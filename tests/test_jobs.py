"""The worker's model thread: the order of its calls, micro-batches, and scoring the next job ahead."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest
from pipeline_support import FixedScorer
from redis import Redis

from worker.decision import Scores
from worker.events import TicketEvent
from worker.jobs import ModelThread
from worker.queueing import Enqueuer, make_queue


def event(ticket: int, text: str = "It is down") -> TicketEvent:
    return TicketEvent(source="zendesk", ticket_id=str(ticket), revision="c1", subject=f"T{ticket}", text=text)


class CountingScorer(FixedScorer):
    """Records each model call's texts; `gate` holds the calls until the test opens it."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()  # a call is running

    def score(self, texts: Sequence[str]) -> list[Scores]:
        self.entered.set()
        self.gate.wait(5)
        self.calls.append(list(texts))
        return super().score(texts)


def test_scores_come_in_order_in_calls_of_batch_size() -> None:
    scorer = CountingScorer()
    waits = ModelThread(scorer, batch_size=2).score_later([event(1), event(2, "thanks!"), event(3, "a question")])
    assert [w().sentiment.label for w in waits] == ["frustrated", "satisfied", "neutral"]
    assert [len(c) for c in scorer.calls] == [2, 1]


def test_tickets_scored_ahead_are_not_scored_again() -> None:
    scorer = CountingScorer()
    model = ModelThread(scorer)
    model.score_ahead([event(1)])  # the next job's first ticket, while this job finishes
    waits = model.score_later([event(1), event(2)])  # this worker took that job
    assert [w().sentiment.label for w in waits] == ["frustrated", "frustrated"]
    assert len(scorer.calls) == 2  # one call each: ticket 1 was not scored twice
    model.score_later([event(1)])[0]()  # taken from the ahead list once; asked again, it is scored
    assert len(scorer.calls) == 3


def test_a_stopped_job_drops_its_queued_calls() -> None:
    scorer = CountingScorer()
    scorer.gate.clear()
    model = ModelThread(scorer)
    first = model.score_later([event(1), event(2), event(3)])[0]
    model.score_ahead([event(4)])
    assert scorer.entered.wait(5)
    model.cancel_queued()  # the job met a 429: the calls not started are dropped
    scorer.gate.set()
    first()
    model.score_later([event(9)])[0]()
    assert len(scorer.calls) == 2  # ticket 1 (already running) and ticket 9


def test_peek_reads_the_next_job_without_taking_it(redis: Redis) -> None:
    q = Enqueuer(make_queue(redis, "triage-test"), (1,), 60)
    assert q.peek(1) == []
    q.submit_many([event(1), event(2), event(3)])
    q.submit_many([event(4)])
    assert [e.ticket_id for e in q.peek(2)] == ["1", "2"] and q.queue.count == 2


def test_a_text_the_model_cannot_score_fails_alone_in_its_batch() -> None:
    class Picky(CountingScorer):
        def score(self, texts: Sequence[str]) -> list[Scores]:
            if any("#unencodable" in t for t in texts):
                raise TypeError("TextEncodeInput must be Union[...]")
            return super().score(texts)

    scorer = Picky()
    waits = ModelThread(scorer, batch_size=3).score_later([event(1), event(2, "bad #unencodable"), event(3, "thanks!")])
    assert waits[0]().sentiment.label == "frustrated" and waits[2]().sentiment.label == "satisfied"
    with pytest.raises(TypeError, match="TextEncodeInput"):
        waits[1]()
    assert [len(c) for c in scorer.calls] == [1, 1]  # the batch failed, then each text alone
