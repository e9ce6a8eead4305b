"""The worker's model thread (the order of its calls, micro-batches, a stopped job's calls dropped) and its
model warmed before the first ticket."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest
from pipeline_support import FixedScorer

from worker.decision import Scores
from worker.events import TicketEvent
from worker.jobs import ModelThread
from worker.scoring import ModelScorer


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


def test_a_stopped_job_drops_its_queued_calls() -> None:
    scorer = CountingScorer()
    scorer.gate.clear()
    model = ModelThread(scorer)
    first = model.score_later([event(1), event(2), event(3), event(4)])[0]
    assert scorer.entered.wait(5)
    model.cancel_queued()  # the job met a 429: the calls not started are dropped
    scorer.gate.set()
    first()
    model.score_later([event(9)])[0]()
    assert len(scorer.calls) == 2  # ticket 1 (already running) and ticket 9


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


def test_the_model_is_warmed_at_load_not_on_the_first_ticket() -> None:
    class Model:  # records the texts of each call, as TriageModel.score takes them
        version = "test"

        def __init__(self) -> None:
            self.calls: list[list[str]] = []

        def score(self, texts: Sequence[str]) -> list:
            self.calls.append(list(texts))
            return []

    model = Model()
    ModelScorer(model)  # type: ignore[arg-type]
    assert model.calls == [[ModelScorer.warm_text]]  # one call, before any ticket
