"""The refit urgency head (model/urgency_head.py): written into the graph exactly, sentiment untouched."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

pytest.importorskip("onnx", reason="the train extra (onnx, scikit-learn) is not installed")
pytest.importorskip("sklearn", reason="the train extra (onnx, scikit-learn) is not installed")

from model.decision import DecisionRule  # noqa: E402
from model.runtime import DEFAULT_MODEL_DIR, TriageModel  # noqa: E402
from model.urgency_head import (  # noqa: E402
    SUPPORT_SET,
    choose_threshold,
    fit_head,
    pooled_features,
    read_support,
    support_figures,
    write_head,
)

TEXTS = ["The checkout is down for everyone, we are losing sales", "How do I change my email address?",
         "Your new logo is hideous!!!", "ok"]


def test_a_written_head_gives_exactly_its_logits_and_leaves_sentiment_alone(tmp_path) -> None:
    folder = tmp_path / "m"
    shutil.copytree(DEFAULT_MODEL_DIR, folder, ignore=shutil.ignore_patterns("figures", "*.md"))
    rng = np.random.default_rng(0)
    w, b = rng.normal(size=(3, 384)) * 0.05, np.array([0.1, -0.2, 0.3])
    write_head(DEFAULT_MODEL_DIR, folder / "model.int8.onnx", w, b)
    shipped, rewritten = TriageModel(DEFAULT_MODEL_DIR), TriageModel(folder)
    s0, _ = shipped.logits(TEXTS)
    s1, u1 = rewritten.logits(TEXTS)
    x = pooled_features(folder, TEXTS)
    assert np.array_equal(s0, s1)  # the encoder and the sentiment head are the shipped ones
    assert np.abs(u1 - (x @ w.T + b)).max() < 1e-4
    [p] = rewritten.score(TEXTS[:1])
    assert p.top_words["urgency"]  # per-token shares still come out of the same head


def test_fit_head_learns_a_separable_problem() -> None:
    rng = np.random.default_rng(1)
    y = np.repeat([0, 1, 2], 50)
    x = rng.normal(size=(150, 8)) + np.eye(3, 8)[y] * 4
    w, b = fit_head(x, y, np.ones(150), c=1.0)
    assert w.shape == (3, 8) and b.shape == (3,)
    assert ((x @ w.T + b).argmax(1) == y).mean() > 0.95


def test_choose_threshold_meets_the_precision_floor() -> None:
    rows = [{"urgency": u, "obvious": "1", "kind": "plain"} for u in ["high"] * 10 + ["low"] * 10]
    p_high = np.r_[np.linspace(0.9, 0.5, 10), np.linspace(0.6, 0.05, 10)]
    logits = np.log(np.c_[p_high, (1 - p_high) / 2, (1 - p_high) / 2])
    rule = DecisionRule(("high", "medium", "low"), 1.0, (), "high", 0.5, 0.45)
    t, notes = choose_threshold(rule, logits, rows, 0.8, 0.9)
    assert notes["select"]["obvious_high_precision"] >= 0.9 and notes["select"]["obvious_high_recall"] >= 0.8
    assert 0.5 < t <= 0.6


def test_support_set_is_labelled_as_the_guideline_says() -> None:
    rows = read_support()
    assert len(rows) >= 250 and (SUPPORT_SET.parent / "GUIDELINE.md").is_file()
    assert {r["urgency"] for r in rows} == {"high", "medium", "low"}
    assert {r["domain"] for r in rows} == {"saas", "ecommerce", "banking", "itsd"}
    assert {r["split"] for r in rows} == {"select", "report"}
    assert sum(r["kind"] == "calm_urgent" for r in rows) >= 30
    assert sum(r["kind"] == "angry_not_urgent" for r in rows) >= 30
    assert all(r["urgency"] == "high" for r in rows if r["kind"] == "calm_urgent")
    assert all(r["urgency"] != "high" for r in rows if r["kind"] == "angry_not_urgent")
    fig = support_figures([r["urgency"] for r in rows], rows)  # the labels score perfectly against themselves
    assert fig["macro_f1"] == 1.0 and fig["obvious_high_recall"] == 1.0


