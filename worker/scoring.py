"""The Scorer adapter over the model runtime: model predictions -> the core's Scores."""

from __future__ import annotations

from collections.abc import Sequence

from model.decision import HeadResult
from model.runtime import Prediction, TriageModel
from worker.decision import HeadScore, Scores


def _head(h: HeadResult) -> HeadScore:
    return HeadScore(h.label, dict(h.probabilities), h.confidence, h.abstained, h.reason, h.best_guess)


def to_scores(p: Prediction) -> Scores:
    return Scores(_head(p.sentiment), _head(p.urgency), p.model_version,
                  {k: [(w, s) for w, s in v] for k, v in p.top_words.items()}, language=p.language,
                  group=_head(p.group) if p.group else None)


class ModelScorer:
    """The worker's scorer over one loaded model. A fresh ONNX session's first call is many times
    slower than the next ones, so it is made here, on a made-up text as long as the model reads:
    no ticket waits for it (docs/performance.md, "Hot path devices")."""

    warm_text = "warm up " * 512

    def __init__(self, model: TriageModel):
        self.model = model
        model.score([self.warm_text])

    @property
    def version(self) -> str:
        return self.model.version

    def score(self, texts: Sequence[str]) -> list[Scores]:
        return [to_scores(p) for p in self.model.score(texts)]
