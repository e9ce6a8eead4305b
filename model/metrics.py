"""Classification metrics in numpy (no scikit-learn at run time)."""

from __future__ import annotations

import numpy as np


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n: int) -> np.ndarray:
    m = np.zeros((n, n), dtype=np.int64)
    np.add.at(m, (y_true, y_pred), 1)
    return m


def per_class(cm: np.ndarray) -> dict[str, np.ndarray]:
    tp = np.diag(cm).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.nan_to_num(tp / cm.sum(axis=0))
        recall = np.nan_to_num(tp / cm.sum(axis=1))
        f1 = np.nan_to_num(2 * precision * recall / (precision + recall))
    return {"precision": precision, "recall": recall, "f1": f1, "support": cm.sum(axis=1)}


def summary(y_true: np.ndarray, y_pred: np.ndarray, labels: tuple[str, ...]) -> dict:
    cm = confusion(y_true, y_pred, len(labels))
    pc = per_class(cm)
    present = pc["support"] > 0  # macro averages over the classes the set holds
    return {
        "n": int(len(y_true)),
        "accuracy": float((y_true == y_pred).mean()) if len(y_true) else 0.0,
        "macro_recall": float(pc["recall"][present].mean()) if present.any() else 0.0,
        "macro_f1": float(pc["f1"][present].mean()) if present.any() else 0.0,
        "per_class": {lab: {k: float(pc[k][i]) for k in ("precision", "recall", "f1", "support")}
                      for i, lab in enumerate(labels)},
        "confusion": cm.tolist(),
    }


def expected_calibration_error(probs: np.ndarray, y_true: np.ndarray, bins: int = 15) -> float:
    """ECE of the top-1 confidence, equal-width bins."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y_true
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        mask = (conf > lo) & (conf <= hi)
        if mask.any():
            ece += mask.mean() * abs(correct[mask].mean() - conf[mask].mean())
    return float(ece)


def reliability(probs: np.ndarray, y_true: np.ndarray, bins: int = 10) -> list[tuple[float, float, int]]:
    """(mean confidence, accuracy, count) per bin, for the reliability diagram."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y_true
    edges = np.linspace(0, 1, bins + 1)
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        mask = (conf > lo) & (conf <= hi)
        if mask.any():
            out.append((float(conf[mask].mean()), float(correct[mask].mean()), int(mask.sum())))
    return out


def precision_recall_curve(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, ...]:
    """Precision and recall of `score >= t` for every distinct threshold t (descending)."""
    order = np.argsort(-scores, kind="stable")
    s, p = scores[order], positive[order].astype(float)
    tp = np.cumsum(p)
    fp = np.cumsum(1 - p)
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # last index of each distinct score
    total = max(p.sum(), 1.0)
    return tp[last] / (tp[last] + fp[last]), tp[last] / total, s[last]


def precision_at_recall(scores: np.ndarray, positive: np.ndarray, recall: float) -> float:
    """Precision of `score >= t` at the highest threshold t whose recall reaches `recall` (0.0 if none)."""
    precision, recalls, _ = precision_recall_curve(scores, positive)
    reached = np.nonzero(recalls >= recall - 1e-9)[0]
    return float(precision[reached[0]]) if len(reached) else 0.0


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def fit_temperature(logits: np.ndarray, y_true: np.ndarray) -> float:
    """Temperature that minimises the negative log-likelihood (golden-section search)."""
    def nll(t: float) -> float:
        p = softmax(logits, t)[np.arange(len(y_true)), y_true]
        return float(-np.log(np.clip(p, 1e-12, None)).mean())

    lo, hi = 0.05, 10.0
    g = (np.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    for _ in range(80):
        if nll(a) < nll(b):
            hi, b = b, a
            a = hi - g * (hi - lo)
        else:
            lo, a = a, b
            b = lo + g * (hi - lo)
    return float((lo + hi) / 2)
