"""From logits to a business decision: calibration, a threshold for the costly class, abstention."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import numpy as np

from model.metrics import softmax

UNSURE = "unsure"


@dataclass(frozen=True)
class HeadResult:
    label: str  # decided label, or "unsure" below the confidence floor
    probabilities: dict[str, float]  # calibrated
    confidence: float  # calibrated probability of the best guess
    abstained: bool
    best_guess: str  # the label even when abstaining
    reason: str = ""  # why it abstained: "confidence" (below the floor), "language" (not one the model reads), "empty"

    @classmethod
    def unsure(cls, head: str, labels: tuple[str, ...]) -> HeadResult:
        return cls(UNSURE, {lab: 0.0 for lab in labels}, 0.0, True, UNSURE, "empty")

    def withheld(self, reason: str) -> HeadResult:
        """The same scores, answered "unsure" for `reason`; the best guess is kept."""
        return replace(self, label=UNSURE, abstained=True, reason=reason)


@dataclass(frozen=True)
class DecisionRule:
    """How one head decides. Stored in the artifact's triage.json, overridable at load time.

    - temperature: divides the logits before softmax (fitted on validation: calibration)
    - bias: added to the log-probabilities before argmax (a prior shift fitted for macro-recall)
    - threshold_label / threshold: that label wins whenever its probability reaches the threshold
      (chosen on validation for a target recall or a cost ratio, e.g. urgency=high)
    - abstain_below: below this confidence the head answers "unsure"
    """

    labels: tuple[str, ...]
    temperature: float = 1.0
    bias: tuple[float, ...] = ()
    threshold_label: str = ""
    threshold: float = 1.0
    abstain_below: float = 0.0
    notes: dict = field(default_factory=dict)  # how the values were chosen, figures on validation

    @classmethod
    def from_dict(cls, d: dict) -> DecisionRule:
        d = dict(d)
        d["labels"] = tuple(d["labels"])
        d["bias"] = tuple(d.get("bias") or ())
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        return softmax(np.asarray(logits, dtype=np.float64), self.temperature)

    def decide_indices(self, probs: np.ndarray) -> np.ndarray:
        """Label index per row of calibrated probabilities (before abstention)."""
        scores = np.log(np.clip(probs, 1e-12, None))
        if self.bias:
            scores = scores + np.asarray(self.bias)
        idx = scores.argmax(axis=-1)
        if self.threshold_label:
            t = self.labels.index(self.threshold_label)
            others = scores.copy()
            others[..., t] = -np.inf
            idx = np.where(probs[..., t] >= self.threshold, t, others.argmax(axis=-1))
        return idx

    def decide(self, logits: np.ndarray) -> HeadResult:
        probs = self.probabilities(logits)
        i = int(self.decide_indices(probs[None])[0])
        conf = float(probs[i])
        label = self.labels[i]
        # A label picked by its threshold is never withheld: the threshold encodes that missing it
        # costs more than a false alarm.
        abstained = conf < self.abstain_below and label != self.threshold_label
        return HeadResult(UNSURE if abstained else label,
                          {lab: round(float(p), 4) for lab, p in zip(self.labels, probs)},
                          round(conf, 4), abstained, label, "confidence" if abstained else "")
