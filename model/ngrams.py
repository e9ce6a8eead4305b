"""The n-gram part of a learned urgency head: TF-IDF over the tokenizer's wordpieces and wordpiece
pairs, computed inside the ONNX graph, so the runtime still needs only onnxruntime + tokenizers + numpy
and still makes one call per batch.

A text's keys are its token ids as the graph reads them ([CLS] and [SEP] included, padding not): each
wordpiece id (a unigram) and, for each neighbouring pair, `vocab + (a * vocab + b) mod BUCKETS` (a
hashed bigram). A key's value is its count in the text times its idf, 0 for a key fewer than MIN_DOCS
training texts have; the vector is L2-normalised; `vector @ table` is added to the urgency logits. What
a team's priorities depend on is mostly its own words and phrases: this is the in-domain TF-IDF model
the challenger has to match, on top of the champion's logits (model/learn.py).

`Ngrams.matrix` computes the vectors for the fit; `wrap` adds the same computation to the graph, and
each key's term into the per-token shares (a pair's half to each of its two tokens), so `top_words`
stays exact (tests/test_model_ngrams.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

BUCKETS = 262_139  # a prime: wordpiece pairs hash into this many table rows
MIN_DOCS = 2


def keys(ids: Sequence[int], vocab: int) -> np.ndarray:
    """A text's keys: its ids, then its hashed pairs (the graph's `urgency_ngrams0/keys`)."""
    a = np.asarray(ids, dtype=np.int64)
    return np.concatenate([a, vocab + (a[:-1] * vocab + a[1:]) % BUCKETS])


class Ngrams:
    """The key space fitted on the training texts' token ids: which keys count, and their idf."""

    def __init__(self, ids: Sequence[Sequence[int]], vocab: int):
        self.vocab = vocab
        self.size = vocab + BUCKETS
        counts = self._counts(ids)
        docs = np.bincount(counts.indices, minlength=self.size)  # csr: one entry per (text, key)
        n = len(ids)
        # sklearn's smooth idf, over the keys enough texts have; 0 elsewhere (those keys count for nothing)
        self.idf = np.where(docs >= MIN_DOCS, np.log((1 + n) / (1 + docs)) + 1.0, 0.0)
        self.columns = np.flatnonzero(self.idf)

    def _counts(self, ids: Sequence[Sequence[int]]):
        import scipy.sparse as sp

        cols = [keys(i, self.vocab) for i in ids]
        rows = np.repeat(np.arange(len(cols)), [len(c) for c in cols])
        flat = np.concatenate(cols) if cols else np.zeros(0, np.int64)
        m = sp.csr_matrix((np.ones(len(flat)), (rows, flat)), shape=(len(cols), self.size))
        m.sum_duplicates()
        return m

    def matrix(self, ids: Sequence[Sequence[int]]):
        """(n, kept keys) sparse: each text's L2-normalised TF-IDF vector, as the graph computes it."""
        import scipy.sparse as sp

        m = self._counts(ids)[:, self.columns].multiply(self.idf[self.columns]).tocsr()
        norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
        return sp.diags(1.0 / np.maximum(norms, 1e-12)) @ m

    def table(self, weights: np.ndarray) -> np.ndarray:
        """(size, classes): the kept keys' fitted weights, zeros elsewhere."""
        out = np.zeros((self.size, weights.shape[1]), np.float32)
        out[self.columns] = weights
        return out


def _add(graph, p: str, idf: np.ndarray, table: np.ndarray, mix: np.ndarray, bias: np.ndarray,
         logits: str, tokens: str) -> None:
    """urgency_logits := `logits` @ mix + bias + tfidf(keys) @ table, and the per-token shares
    := `tokens` @ mix + each key's term (a pair's half on each of its tokens). `logits` and `tokens` are
    the names the graph's old urgency outputs were renamed to; `p` prefixes every new name."""
    from onnx import TensorProto, helper, numpy_helper

    vocab = int(len(idf) - BUCKETS)

    def const(name: str, value, dtype=None) -> str:
        graph.initializer.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), p + name))
        return p + name

    idf_t, table_t = const("idf", idf, np.float32), const("table", table, np.float32)
    mix_t, bias_t = const("mix", mix, np.float32), const("bias", bias, np.float32)
    v, h = const("vocab", [vocab], np.int64), const("buckets", [BUCKETS], np.int64)
    zero, one, minus1, big = (const(n, [x], np.int64) for n, x in
                              (("zero", 0), ("one", 1), ("minus1", -1), ("end", 2**62)))
    ax1, ax2 = const("axis1", [1], np.int64), const("axis2", [2], np.int64)
    half, eps = const("half", 0.5, np.float32), const("eps", 1e-24, np.float32)
    pads_after, pads_before = const("pads_after", [0, 0, 0, 0, 1, 0], np.int64), \
        const("pads_before", [0, 1, 0, 0, 0, 0], np.int64)

    def node(op: str, inputs: list[str], name: str, **attrs) -> str:
        graph.node.append(helper.make_node(op, inputs, [p + name], name=p + name, **attrs))
        return p + name

    first = node("Slice", ["input_ids", zero, minus1, ax1], "first")
    second = node("Slice", ["input_ids", one, big, ax1], "second")
    pair = node("Add", [node("Mod", [node("Add", [node("Mul", [first, v], "scaled"), second], "pair_id"), h],
                             "hashed", fmod=0), v], "pair_key")
    key = node("Concat", ["input_ids", pair], "keys", axis=1)
    mask = node("Cast", ["attention_mask"], "mask", to=TensorProto.FLOAT)
    pair_mask = node("Mul", [node("Slice", [mask, zero, minus1, ax1], "mask_first"),
                             node("Slice", [mask, one, big, ax1], "mask_second")], "pair_mask")
    kmask = node("Concat", [mask, pair_mask], "key_mask", axis=1)
    value = node("Mul", [node("Gather", [idf_t, key], "key_idf", axis=0), kmask], "value")  # idf per occurrence
    same = node("Cast", [node("Equal", [node("Unsqueeze", [key, ax2], "key_row"),
                                        node("Unsqueeze", [key, ax1], "key_col")], "same_key")],
                "same", to=TensorProto.FLOAT)
    count = node("ReduceSum", [node("Mul", [same, node("Unsqueeze", [kmask, ax1], "mask_col")], "same_live"),
                               ax2], "count", keepdims=0)  # each occurrence: its key's count in the text
    # |tfidf|^2 = sum over keys (count * idf)^2 = sum over occurrences count * idf^2
    norm2 = node("ReduceSum", [node("Mul", [node("Mul", [value, value], "value2"), count], "terms2"), ax1],
                 "norm2", keepdims=1)
    share = node("Div", [value, node("Sqrt", [node("Max", [norm2, eps], "norm2_floor")], "norm")], "share")
    term = node("Mul", [node("Gather", [table_t, key], "key_weights", axis=0),
                        node("Unsqueeze", [share, ax2], "share3")], "terms")
    summed = node("ReduceSum", [term, ax1], "sum", keepdims=0)
    base = node("Add", [node("MatMul", [logits, mix_t], "mixed"), bias_t], "base")
    graph.node.append(helper.make_node("Add", [base, summed], ["urgency_logits"], name=p + "logits"))
    # per-token shares: a unigram's term on its token, a pair's half on each of its two
    length = node("Shape", ["input_ids"], "shape", start=1, end=2)
    uni = node("Slice", [term, zero, length, ax1], "unigram_terms")
    pairs = node("Mul", [node("Slice", [term, length, big, ax1], "pair_terms"), half], "pair_halves")
    spread = node("Add", [node("Pad", [pairs, pads_after], "on_first"), node("Pad", [pairs, pads_before], "on_second")],
                  "pair_shares")
    mixed_tokens = node("MatMul", [tokens, mix_t], "mixed_tokens")
    graph.node.append(helper.make_node("Add", [node("Add", [mixed_tokens, uni], "token_sum"), spread],
                                       ["urgency_token_logits"], name=p + "tokens"))


def wrap(model, idf: np.ndarray, table: np.ndarray, mix: np.ndarray, bias: np.ndarray) -> None:
    """Rename the graph's urgency outputs and add the n-gram part after them (in place). Each part's
    names carry its own number, so a challenger learnt on top of a challenger adds its part after the
    one before."""
    graph = model.graph
    taken = {i.name for i in graph.initializer}
    gen = next(g for g in range(1000) if f"urgency_ngrams{g}/idf" not in taken)
    renamed = {name: f"{name}_before{gen}" for name in ("urgency_logits", "urgency_token_logits")}
    for n in graph.node:
        n.output[:] = [renamed.get(o, o) for o in n.output]
        n.input[:] = [renamed.get(i, i) for i in n.input]
    _add(graph, f"urgency_ngrams{gen}/", idf, table, mix, bias, renamed["urgency_logits"],
         renamed["urgency_token_logits"])
