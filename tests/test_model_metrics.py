"""Figures the held-out report rests on."""

from __future__ import annotations

import numpy as np

from model.metrics import precision_at_recall, precision_recall_curve


def test_precision_recall_curve_per_distinct_threshold() -> None:
    scores = np.array([0.9, 0.8, 0.8, 0.3, 0.1])
    positive = np.array([1, 1, 0, 1, 0])
    precision, recall, thresholds = precision_recall_curve(scores, positive)
    assert thresholds.tolist() == [0.9, 0.8, 0.3, 0.1]
    assert np.allclose(precision, [1, 2 / 3, 3 / 4, 3 / 5]) and np.allclose(recall, [1 / 3, 2 / 3, 1, 1])


def test_precision_at_recall_takes_the_highest_threshold_reaching_it() -> None:
    scores = np.array([0.9, 0.8, 0.8, 0.3, 0.1])
    positive = np.array([1, 1, 0, 1, 0])
    assert precision_at_recall(scores, positive, 0.5) == 2 / 3  # t = 0.8
    assert precision_at_recall(scores, positive, 1.0) == 3 / 4  # t = 0.3, not 0.1
    assert precision_at_recall(scores, np.zeros(5, dtype=int), 0.5) == 0.0  # no positives: nothing reaches it
