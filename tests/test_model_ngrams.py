"""The n-gram part of a learned urgency head (model/ngrams.py): what the graph computes is what the fit
saw, in a padded batch too; the per-token shares add up exactly (top_words); sentiment is untouched; a
second part goes after the first."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the train extra (onnx, scikit-learn) is not installed")
pytest.importorskip("scipy", reason="the train extra (onnx, scikit-learn) is not installed")

from model.ngrams import BUCKETS, Ngrams, keys, wrap  # noqa: E402
from model.runtime import DEFAULT_MODEL_DIR, TriageModel  # noqa: E402
from model.urgency_head import token_ids, vocab_size  # noqa: E402

TEXTS = ["The checkout is down for everyone, we are losing sales, the checkout is down",
         "How do I change my email address?", "down down down", "ok"]


def wrapped(folder, base, ngrams: Ngrams, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    weights, mix, bias = rng.normal(size=(len(ngrams.columns), 3)), rng.normal(size=(3, 3)), rng.normal(size=3)
    model = onnx.load(str(base / "model.int8.onnx"))
    wrap(model, ngrams.idf, ngrams.table(weights), mix, bias)
    onnx.checker.check_model(model)
    shutil.copytree(base, folder, ignore=shutil.ignore_patterns("figures", "*.md", "*.onnx"))
    onnx.save(model, str(folder / "model.int8.onnx"))
    return weights, mix, bias


def test_the_graph_computes_the_fitted_tfidf_exactly_in_a_padded_batch(tmp_path) -> None:
    vocab = vocab_size(DEFAULT_MODEL_DIR)
    ids = token_ids(DEFAULT_MODEL_DIR, TEXTS)
    ngrams = Ngrams(ids * 2, vocab)  # every key in two texts: all kept
    assert ngrams.size == vocab + BUCKETS and len(ngrams.columns) == len({int(k) for i in ids for k in keys(i, vocab)})
    weights, mix, bias = wrapped(tmp_path / "m", DEFAULT_MODEL_DIR, ngrams, 1)
    shipped, model = TriageModel(DEFAULT_MODEL_DIR, batch_size=8), TriageModel(tmp_path / "m", batch_size=8)
    (s0, z0), (s1, z1) = shipped.logits(TEXTS), model.logits(TEXTS)  # one batch, padded to the longest
    np.testing.assert_array_equal(s1, s0)  # sentiment untouched
    tfidf = ngrams.matrix(ids)
    assert np.allclose(np.asarray(tfidf.multiply(tfidf).sum(axis=1)).ravel(), 1.0)  # unit length
    assert np.abs(z1 - (z0 @ mix + bias + tfidf @ weights)).max() < 1e-4
    # per-token shares: the champion's mixed, each key's term on its token(s): they add up to the logits
    base_shares = shipped._forward(ids, tokens=True)[3]
    shares = model._forward(ids, tokens=True)[3]
    for i in range(len(TEXTS)):
        part = shares[i][1].sum(axis=0) - base_shares[i][1].sum(axis=0) @ mix
        assert np.abs(part - tfidf[i] @ weights).max() < 1e-4
    assert model.score(TEXTS[:1])[0].top_words["urgency"]


def test_a_key_too_few_texts_have_counts_for_nothing(tmp_path) -> None:
    vocab = vocab_size(DEFAULT_MODEL_DIR)
    ids = token_ids(DEFAULT_MODEL_DIR, TEXTS)
    ngrams = Ngrams(ids[:2] * 2 + ids[2:], vocab)  # the last two texts' own keys are in one text only
    only_last = set(keys(ids[3], vocab)) - set(keys(ids[0], vocab)) - set(keys(ids[1], vocab)) - \
        set(keys(ids[2], vocab))
    assert only_last and not ngrams.idf[sorted(only_last)].any()
    weights, mix, bias = wrapped(tmp_path / "m", DEFAULT_MODEL_DIR, ngrams, 2)
    z0, z1 = TriageModel(DEFAULT_MODEL_DIR).logits(TEXTS)[1], TriageModel(tmp_path / "m").logits(TEXTS)[1]
    assert np.abs(z1 - (z0 @ mix + bias + ngrams.matrix(ids) @ weights)).max() < 1e-4


def test_a_challenger_of_a_challenger_adds_its_part_after_the_first(tmp_path) -> None:
    vocab = vocab_size(DEFAULT_MODEL_DIR)
    ids = token_ids(DEFAULT_MODEL_DIR, TEXTS)
    first, second = Ngrams(ids * 2, vocab), Ngrams(ids[:2] * 2, vocab)
    wrapped(tmp_path / "one", DEFAULT_MODEL_DIR, first, 3)
    weights, mix, bias = wrapped(tmp_path / "two", tmp_path / "one", second, 4)
    z1, z2 = TriageModel(tmp_path / "one").logits(TEXTS)[1], TriageModel(tmp_path / "two").logits(TEXTS)[1]
    assert np.abs(z2 - (z1 @ mix + bias + second.matrix(ids) @ weights)).max() < 1e-4
    names = {i.name for i in onnx.load(str(tmp_path / "two" / "model.int8.onnx")).graph.initializer}
    assert {"urgency_ngrams0/table", "urgency_ngrams1/table"} <= names
