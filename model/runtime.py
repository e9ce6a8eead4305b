"""Serving the triage model: onnxruntime + tokenizers + numpy, nothing else.

    model = TriageModel.load("model/artifacts/triage-v3")
    [p] = model.score(["My invoice is wrong and nobody answers!"])
    p.sentiment.label, p.urgency.probabilities, p.model_version, p.language

Every text's language is detected (model/language.py). A text in a language the artifact does not
support (its triage.json `language` section) is still scored, but every head abstains with
`reason` "language" and keeps its `best_guess`: the encoder reads English only.

A model learnt from a team's history may carry a routing head (model/routing_head.py): the graph's
output `group_logits`, decided by triage.json `decision.group` over `routing.labels`, in
`Prediction.group`; without one `Prediction.group` is None.

One `TriageModel` per process: the ONNX session is built once with the thread settings given.

`batch_size` is how many texts go through one ONNX call (length-sorted, padded to the longest).
The default, 1, keeps each text's scores independent of the others: dynamic int8 quantises
activations with one scale per call, so batch-mates shift the logits, enough to flip a few labels
between batch sizes. On a small machine batch 1 in one process per core is also the fastest int8
layout (docs/performance.md, bench/model_bench.py). fp32 has no such effect.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from model.data import SENTIMENT_LABELS, URGENCY_LABELS
from model.decision import DecisionRule, HeadResult
from model.language import UNDETERMINED, LanguageGate
from model.textprep import CHARS_PER_TOKEN_CAP, clean

HEADS = {"sentiment": SENTIMENT_LABELS, "urgency": URGENCY_LABELS}
LOGIT_OUTPUTS = ("sentiment_logits", "urgency_logits")
TOKEN_OUTPUTS = ("sentiment_token_logits", "urgency_token_logits")
GROUP_OUTPUT = "group_logits"  # the optional routing head (model/routing_head.py)
DEFAULT_MODEL_DIR = Path(__file__).parent / "artifacts" / "triage-v3"
# Function words carry the sentence's context in every token's vector, so their shares can be large
# without saying anything to an agent: they are left out of top_words (not out of the scores).
# ("down", "not", "no", "now" stay: they do speak to urgency and sentiment.)
_FUNCTION_WORDS = """
a about above after again against all am an and any are as at be been before being below between both
but by can could did do does doing during each few for from further had has have having he her here
hers him his how i if in into is it its itself just me more most my nor of off on once only or
other our ours out over own same she should so some such than that the their them then there these they
this those through to too under until up very was we were what when where which while who whom why will
with would you your yours i'm it's we're i've don't can't
"""
FUNCTION_WORDS = frozenset(_FUNCTION_WORDS.split())
REBUILD_HINT = ("rebuild it with `triage model train` then `triage model export`, or restore it with "
                "`git checkout -- model/artifacts`")


class ModelError(RuntimeError):
    """The model folder is missing, incomplete or corrupt; the message names the path."""


@dataclass(frozen=True)
class Prediction:
    sentiment: HeadResult
    urgency: HeadResult
    model_version: str
    truncated: bool = False  # the model read only the start of the text
    chars_scored: int = 0  # how many characters of the cleaned text it read
    empty: bool = False  # nothing to score: every head abstains
    language: str = UNDETERMINED  # detected language (ISO 639-1), "und" when too short to tell
    language_supported: bool = True  # False: every head abstained with reason "language"
    # per head: the words whose tokens pushed the decided label most (exact logit shares)
    top_words: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    # the learned routing head's group (triage.json `routing`); None when the model has none
    group: HeadResult | None = None

    def to_dict(self) -> dict:
        return asdict(self)


class TriageModel:
    def __init__(self, model_dir: str | Path = DEFAULT_MODEL_DIR, threads: int = 1,
                 batch_size: int = 1, variant: str = "int8"):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.dir = Path(model_dir)
        meta_path = self.dir / "triage.json"
        model_path = self.dir / f"model.{variant}.onnx"
        for path in (meta_path, self.dir / "tokenizer.json", model_path):
            if not path.is_file():
                raise ModelError(f"model file missing: {path}; {REBUILD_HINT}")
        try:
            self.meta = json.loads(meta_path.read_text())
            self.version: str = self.meta["version"]
            self.max_tokens: int = int(self.meta["max_tokens"])
            self.rules = {h: DecisionRule.from_dict(self.meta["decision"][h]) for h in HEADS}
            self.gate = LanguageGate.from_meta(self.meta.get("language"))
            routing = self.meta.get("routing")
            self.group_rule = DecisionRule.from_dict(self.meta["decision"]["group"]) if routing else None
            if self.group_rule is not None and tuple(routing["labels"]) != self.group_rule.labels:
                raise ValueError("routing.labels differ from decision.group's labels")
        except (ValueError, KeyError, TypeError) as e:
            raise ModelError(f"model metadata unreadable: {meta_path} ({e}); {REBUILD_HINT}") from None
        try:
            self.tokenizer = Tokenizer.from_file(str(self.dir / "tokenizer.json"))
        except Exception as e:  # tokenizers raises a bare Exception on a bad file
            raise ModelError(f"tokenizer unreadable: {self.dir / 'tokenizer.json'} ({e}); {REBUILD_HINT}") from None
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=self.max_tokens)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own untyped errors on corrupt files
            raise ModelError(f"model file corrupt: {model_path} ({type(e).__name__}); {REBUILD_HINT}") from None
        outputs = [o.name for o in self.session.get_outputs()]
        missing = [n for n in (*LOGIT_OUTPUTS, *TOKEN_OUTPUTS) if n not in outputs]
        if missing:
            raise ModelError(f"{model_path} has outputs {outputs}, lacks {missing} (logits and token logits for "
                             f"both heads); {REBUILD_HINT}")
        if (GROUP_OUTPUT in outputs) != (self.group_rule is not None):
            has = "has the output" if GROUP_OUTPUT in outputs else "lacks the output"
            raise ModelError(f"{model_path} {has} {GROUP_OUTPUT} but {meta_path} "
                             f"{'lacks' if self.group_rule is None else 'has'} a `routing` section: the routing "
                             f"head and its metadata go together; {REBUILD_HINT}")
        self._logit_names = [*LOGIT_OUTPUTS, *([GROUP_OUTPUT] if self.group_rule else [])]
        self.batch_size = batch_size
        self.variant = variant

    @classmethod
    def load(cls, model_dir: str | Path | None = None, **kwargs) -> TriageModel:
        """The model in `model_dir`, else the shipped one (TRIAGE_MODEL_DIR is read by worker.settings)."""
        return cls(model_dir or DEFAULT_MODEL_DIR, **kwargs)

    # -- logits -----------------------------------------------------------------------------
    def _encode(self, texts: Sequence[str]) -> list:
        return self.tokenizer.encode_batch(list(texts))

    def _forward(self, ids: Sequence[Sequence[int]], tokens: bool = False):
        """Run the model over token id lists: length-sorted batches, each padded to its longest.
        Returns sentiment, urgency and group logits (None without a routing head), and with `tokens`
        each text's per-token shares of sentiment and urgency."""
        n = len(ids)
        sent = np.zeros((n, 3), dtype=np.float32)
        urg = np.zeros((n, 3), dtype=np.float32)
        group = np.zeros((n, len(self.group_rule.labels)), dtype=np.float32) if self.group_rule else None
        shares: list = [None] * n
        order = sorted(range(n), key=lambda i: len(ids[i]))
        outputs = [*self._logit_names, *(TOKEN_OUTPUTS if tokens else ())]
        first_token = len(self._logit_names)
        for start in range(0, n, self.batch_size):
            idx = order[start : start + self.batch_size]
            width = len(ids[idx[-1]])
            input_ids = np.zeros((len(idx), width), dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for row, i in enumerate(idx):
                input_ids[row, : len(ids[i])] = ids[i]
                mask[row, : len(ids[i])] = 1
            result = self.session.run(outputs, {"input_ids": input_ids, "attention_mask": mask})
            sent[idx], urg[idx] = result[0], result[1]
            if group is not None:
                group[idx] = result[2]
            if tokens:
                s_tok, u_tok = result[first_token], result[first_token + 1]
                for row, i in enumerate(idx):
                    shares[i] = (s_tok[row, : len(ids[i])], u_tok[row, : len(ids[i])])
        return sent, urg, group, shares

    def logits_for_ids(self, ids: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
        sent, urg, _, _ = self._forward(ids)
        return sent, urg

    def logits(self, texts: Sequence[str | bytes]) -> tuple[np.ndarray, np.ndarray]:
        encs = self._encode([clean(t, self.max_tokens) for t in texts])
        return self.logits_for_ids([e.ids for e in encs])

    def group_logits(self, texts: Sequence[str | bytes]) -> np.ndarray:
        """The routing head's logits over `routing.labels`; ModelError when the model has none."""
        if self.group_rule is None:
            raise ModelError(f"{self.dir} has no routing head (triage.json `routing`): learn one with `triage learn`")
        encs = self._encode([clean(t, self.max_tokens) for t in texts])
        return self._forward([e.ids for e in encs])[2]

    # -- predictions ------------------------------------------------------------------------
    def score(self, texts: Sequence[str | bytes], top_words: int = 5) -> list[Prediction]:
        """Labels, calibrated probabilities, confidence and the words behind them (`top_words`, the one
        explanation: each word's share of the decided label's logit, as the internal note shows), in order."""
        cleaned = [clean(t, self.max_tokens) for t in texts]
        live = [i for i, t in enumerate(cleaned) if t]
        encs = self._encode([cleaned[i] for i in live])
        sent, urg, group, shares = self._forward([e.ids for e in encs], tokens=top_words > 0)
        out: list[Prediction] = [self._empty()] * len(texts)
        for row, i in enumerate(live):
            enc = encs[row]
            truncated = bool(enc.overflowing) or len(texts[i]) > self.max_tokens * CHARS_PER_TOKEN_CAP
            scored = max((end for _, end in enc.offsets), default=0) if enc.overflowing else len(cleaned[i])
            heads = {"sentiment": self.rules["sentiment"].decide(sent[row]),
                     "urgency": self.rules["urgency"].decide(urg[row])}
            routed = self.group_rule.decide(group[row]) if self.group_rule and group is not None else None
            lang = self.gate.detect(cleaned[i])
            if not lang.supported:  # scored, but not a language the encoder reads: say so, keep the guess
                heads = {h: r.withheld("language") for h, r in heads.items()}
                routed = routed.withheld("language") if routed else None
            words = {}
            if top_words > 0:
                for h, tok in zip(heads, shares[row]):
                    words[h] = _word_shares(enc, cleaned[i], tok, HEADS[h].index(heads[h].best_guess), top_words)
            out[i] = Prediction(
                sentiment=heads["sentiment"], urgency=heads["urgency"],
                model_version=self.version, truncated=truncated, chars_scored=scored, top_words=words,
                language=lang.code, language_supported=lang.supported, group=routed,
            )
        return out

    def _empty(self) -> Prediction:
        group = HeadResult.unsure("group", self.group_rule.labels) if self.group_rule else None
        return Prediction(HeadResult.unsure("sentiment", SENTIMENT_LABELS),
                          HeadResult.unsure("urgency", URGENCY_LABELS), self.version, empty=True, group=group)


def _word_shares(enc, text: str, tok: np.ndarray, label: int, top: int) -> list[tuple[str, float]]:
    """Sum each word's token shares of (decided label's logit - mean of the other two)."""
    others = [k for k in range(tok.shape[1]) if k != label]
    push = (tok[:, label] - tok[:, others].mean(axis=1)).tolist()
    by_word: dict[int, float] = {}
    span: dict[int, tuple[int, int]] = {}
    offsets = enc.offsets  # a tokenizers Encoding builds a new list on every attribute read
    for t, w in enumerate(enc.word_ids):
        if w is None:  # [CLS], [SEP]
            continue
        by_word[w] = by_word.get(w, 0.0) + push[t]
        start, end = offsets[t]
        span[w] = (min(span.get(w, (start, end))[0], start), max(span.get(w, (start, end))[1], end))
    merged: dict[str, float] = {}
    for w, value in by_word.items():
        word = text[span[w][0] : span[w][1]].lower()[:40]
        if word in FUNCTION_WORDS or (len(word) == 1 and word.isalpha()):  # "d" of "I'd"
            continue
        if any(ch.isalnum() for ch in word) or len(word) > 1 or ord(word[:1] or " ") > 0x2000:
            merged[word] = merged.get(word, 0.0) + value
    ranked = sorted(merged.items(), key=lambda kv: -kv[1])
    return [(w, round(v, 3)) for w, v in ranked[:top] if v > 0]
