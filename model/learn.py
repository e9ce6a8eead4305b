"""`triage learn`: a challenger model from a team's own history, on CPU, in minutes.

Starts from the shipped (or champion) model and keeps its encoder and its urgency head: the challenger's
urgency logits are the champion's plus a "wide" correction learnt from the team, a per-wordpiece weight
table gathered over input_ids and averaged over the text's tokens inside the graph
(model/urgency_head.py `write_head(wide=...)`), the team's own vocabulary as a TF-IDF model would use
it, in the same single ONNX call (top_words include its per-token shares exactly). The champion's logits
come from every ticket's pooled vector, computed once from the int8 graph as served (cached on disk by
text and model). Sentiment and the encoder are untouched.

    result = learn(LearnConfig(data=[Path("history/zendesk.jsonl")], out=Path("models/candidate")))

Data: the history file(s) (`triage history pull`), Slack corrections (`triage feedback export`
CSVs, or read from Redis with the LLM second opinion's labels: `triage learn --from-redis`; any about
a held-out ticket left out) and a replay sample of the public urgency data (provenance public, so the
head does not forget what the public sets taught it). Labels weigh by provenance.

Support-like replay: the urgency prototypes (model/prototypes) and the `select` half of the support-like
validation set (model/validation/urgency_support.csv) are mixed into training, each with a fixed share of
the team's total weight, so the correction keeps what the champion knows about obvious urgency while it
learns the team's priorities. The gate's support-like checks then use only that set's `report` half.

Split by time: the newest `eval_share` of the team's tickets is held out for the challenger-vs-champion
report; the newest `val_share` of the rest picks the correction's L2 strength, fits the temperature and
the decision rule (log-prior shifts and the high-urgency threshold, keeping every class's recall near the
champion's); the correction is then refitted on all the training part.

Refuses (LearnRefused) when the training part has fewer than `min_per_class` labelled tickets of a
class, or when one class holds more than `max_share` of them.

Needs the `train` extra (onnx, scikit-learn).
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
import shutil
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from model import metrics
from model.data import URGENCY_LABELS, Row, urgency_index
from model.gate import RECALL_DROP
from model.textprep import ticket_text
from worker.errors import TriageError
from worker.history import PROVENANCE_WEIGHTS, read_rows

MIN_PER_CLASS = 120  # labelled training tickets a class needs: measured, docs/learning.md
MAX_SHARE = 0.9
L2_GRID = (3e-3, 1e-3, 3e-4)  # the wide correction's L2 strength, picked on the validation slice
WIDE_SCALE = 30.0  # the bag-of-wordpieces columns' scale (fixed; the L2 strength does the rest)
WIDE_MIN_DOCS = 2  # a wordpiece gets a weight when at least this many training texts have it
PROTOTYPE_SHARE = 0.3  # the prototypes' total weight, as a share of the team's (measured: docs/learning.md)
SUPPORT_SHARE = 0.1  # the support set's select half, likewise
PROTOTYPES = Path(__file__).parent / "prototypes" / "urgency_prototypes.csv"


class LearnRefused(TriageError):
    """The data cannot make a model worth comparing: too few labels, or one class only."""


@dataclass
class LearnConfig:
    data: list[Path]
    out: Path
    base: Path | None = None  # the model to start from (default: the shipped one)
    feedback_csv: list[Path] = field(default_factory=list)
    extra: list[Example] = field(default_factory=list)  # labelled rows from elsewhere: Redis (stored_examples)
    replay: int = 1000  # public urgency rows mixed into training (0: none)
    data_root: Path | None = None  # the public data (default ../shared/data); absent: no replay
    eval_share: float = 0.2
    val_share: float = 0.15
    min_per_class: int = MIN_PER_CLASS
    max_share: float = MAX_SHARE
    weights: dict[str, float] = field(default_factory=dict)  # provenance -> weight overrides
    version: str = ""  # default: <base version>+team-<date>
    seed: int = 13
    threads: int = 1
    cache_dir: Path | None = None  # pooled features by (model, text); default ~/.cache/helpdesk-triage
    shuffle_labels: bool = False  # a deliberately bad challenger (bench: the gate must refuse it)
    prototype_share: float = PROTOTYPE_SHARE  # support-like replay (0: none)
    support_share: float = SUPPORT_SHARE
    route_by: str = "group"  # the routing head's history field (model/routing_head.py); "": none
    min_group_tickets: int | None = None  # default: routing_head.MIN_GROUP_TICKETS
    progress: bool = True


@dataclass(frozen=True)
class Example:
    text: str
    y: int
    weight: float
    provenance: str
    created_at: str = ""
    id: str = ""


@dataclass
class LearnResult:
    out: Path
    version: str
    base: Path
    base_version: str
    train: int
    eval_rows: list[Row]
    counts: dict[str, Any]
    c: float  # the wide correction's L2 strength
    seconds: dict[str, float]
    routing: dict[str, Any] | None = None  # the routing head's summary (model/routing_head.py)


# -- data -----------------------------------------------------------------------------------------


def team_examples(paths: Sequence[Path], weights: dict[str, float] | None = None) -> list[Example]:
    """The team's urgency labels, oldest first (weight 0 left out). Each weighs what the pull gave it,
    unless `weights` names its provenance."""
    table = dict(weights or {})
    out = []
    for path in paths:
        for row in read_rows(path):
            got = row.label("urgency")
            if got is None:
                continue
            label, provenance, weight = got
            weight = table.get(provenance, weight)
            text = ticket_text(row.subject, row.text)
            if weight <= 0 or not text:
                continue
            out.append(Example(text, URGENCY_LABELS.index(label), weight, provenance, row.created_at, row.id))
    out.sort(key=lambda e: (e.created_at, e.id))
    return out


def feedback_examples(paths: Sequence[Path], weights: dict[str, float] | None = None) -> list[Example]:
    """Urgency corrections from `triage feedback export` CSVs (columns text, urgency)."""
    weight = {**PROVENANCE_WEIGHTS, **(weights or {})}["slack-correction"]
    out = []
    for path in paths:
        if not Path(path).is_file():
            raise LearnRefused(f"{path}: no such file; make it with `triage feedback export --out {path}`")
        with Path(path).open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if not {"text", "urgency"} <= set(reader.fieldnames or []):
                raise LearnRefused(f"{path}: needs columns text and urgency (from `triage feedback export`)")
            for n, rec in enumerate(reader, 2):
                try:
                    y = urgency_index(rec.get("urgency") or "")
                except ValueError as e:
                    raise LearnRefused(f"{path}:{n}: {e}") from None
                if y >= 0 and (rec.get("text") or "").strip():
                    out.append(Example(rec["text"], y, weight, "slack-correction", rec.get("at") or "",
                                       rec.get("item") or ""))
    return out


def stored_examples(rows: Iterable[Mapping[str, Any]], provenance: str,
                    weights: dict[str, float] | None = None) -> list[Example]:
    """Urgency labels kept in the team's Redis (`triage learn --from-redis`): Slack corrections
    (worker.feedback.export_rows: agents' verdicts only) or the LLM second opinion's answers
    (worker.escalation.llm_labels), weighing what their provenance weighs."""
    weight = {**PROVENANCE_WEIGHTS, **(weights or {})}[provenance]
    out = []
    for rec in rows:
        y = urgency_index(str(rec.get("urgency") or ""))
        text = str(rec.get("text") or "")
        if y >= 0 and text.strip() and weight > 0:
            out.append(Example(text, y, weight, provenance, str(rec.get("at") or ""), str(rec.get("item") or "")))
    return out


def not_held_out(rows: Sequence[Example], newest: Sequence[Example]) -> tuple[list[Example], int]:
    """The rows whose text is none of the held-out tickets' (a Slack correction or an LLM answer about a
    ticket of the newest part would leak its label into training), and how many were left out. Texts
    are compared redacted (worker/pii.py), as the history pull stores them and the LLM saw them."""
    from worker.pii import redact

    def key(text: str) -> str:
        return _key(" ".join(redact(text).split()))

    held = {key(e.text) for e in newest}
    kept = [e for e in rows if key(e.text) not in held]
    return kept, len(rows) - len(kept)


def replay_examples(data_root: Path | None, n: int, seed: int,
                    weights: dict[str, float] | None = None) -> list[Example]:
    """A stratified sample of the public urgency training rows the shipped model learnt from."""
    if n <= 0 or data_root is None or not Path(data_root).is_dir():
        return []
    from model.cli import DEFAULT_CONFIG
    from model.data import load_config, load_splits

    cfg = load_config(DEFAULT_CONFIG)
    specs = [s for s in cfg["datasets"] if s.get("urgency_col")]
    rows = [r for r in load_splits(specs, data_root, seed).train if r.urgency >= 0]
    rng = random.Random(seed)
    rng.shuffle(rows)
    weight = {**PROVENANCE_WEIGHTS, **(weights or {})}["public"]
    return [Example(r.text, r.urgency, weight, "public", "", "") for r in rows[:n]]


def _csv_rows(path: Path, split: str | None = None) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        return [r for r in csv.DictReader(f) if split is None or r.get("split") == split]


def support_replay(team: Sequence[Example], prototype_share: float, support_share: float) -> list[Example]:
    """The urgency prototypes and the support set's `select` half, each weighing `share` of the team's total."""
    from model.gate import SUPPORT_SET

    total = sum(e.weight for e in team)
    out = []
    for rows, share, provenance in ((_csv_rows(PROTOTYPES), prototype_share, "prototype"),
                                    (_csv_rows(SUPPORT_SET, "select"), support_share, "support-select")):
        if share > 0 and rows:
            out += [Example(r["text"], URGENCY_LABELS.index(r["urgency"]), share * total / len(rows), provenance)
                    for r in rows]
    return out


def support_report_rows() -> list[Row]:
    """The support set's `report` half: what the gate checks (the `select` half is trained on)."""
    from model.gate import SUPPORT_SET

    return [Row(r["text"], -1, URGENCY_LABELS.index(r["urgency"]), 1.0, "support_validation")
            for r in _csv_rows(SUPPORT_SET, "report")]


def time_split(examples: list[Example], share: float) -> tuple[list[Example], list[Example]]:
    """(older, newest `share`), by created_at."""
    ordered = sorted(examples, key=lambda e: (e.created_at, e.id))
    cut = len(ordered) - max(1, round(share * len(ordered)))
    return ordered[:cut], ordered[cut:]


def check_enough(train: Sequence[Example], min_per_class: int, max_share: float) -> dict[str, int]:
    """Counts per class of the team's training labels; LearnRefused with what is missing."""
    counts = {lab: sum(1 for e in train if e.y == i) for i, lab in enumerate(URGENCY_LABELS)}
    total = sum(counts.values())
    have = ", ".join(f"{lab} {n}" for lab, n in counts.items())
    short = [lab for lab, n in counts.items() if n < min_per_class]
    if short:
        raise LearnRefused(
            f"too little to learn from: the training part (the older {total} labelled tickets) needs at least "
            f"{min_per_class} of each urgency class (with fewer, a new head seldom beats the shipped model: "
            f"docs/learning.md), and has {have}. Pull a longer history "
            f"(`triage history pull --since` an earlier date) or add Slack corrections (--feedback-csv)")
    top = max(counts, key=lambda k: counts[k])
    if total and counts[top] / total > max_share:
        raise LearnRefused(
            f"too one-sided to learn from: {counts[top]} of the {total} training labels are {top} "
            f"({counts[top] / total:.0%}, the limit is {max_share:.0%}); have {have}. A model trained on it "
            "would answer {top} for everything")
    return counts


# -- features ---------------------------------------------------------------------------------------


def _key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


class FeatureCache:
    """Pooled vectors by text, for one model file (a changed graph gets a new cache)."""

    def __init__(self, model_dir: Path, cache_dir: Path | None, threads: int = 1, progress: bool = True):
        from model.data import file_sha256

        self.model_dir = model_dir
        self.threads = threads
        self.progress = progress
        digest = file_sha256(model_dir / "model.int8.onnx")[:16]
        base = cache_dir or Path.home() / ".cache" / "helpdesk-triage" / "features"
        self.path = base / f"{digest}.npz"
        self._vectors: dict[str, np.ndarray] = {}
        if self.path.is_file():
            with np.load(self.path) as data:
                self._vectors = dict(zip(data["keys"].tolist(), data["x"]))

    def features(self, texts: Sequence[str]) -> np.ndarray:
        from model.urgency_head import pooled_features

        keys = [_key(t) for t in texts]
        missing = list(dict.fromkeys(k for k in keys if k not in self._vectors))
        if missing:
            first = {k: t for k, t in zip(keys, texts)}
            x = pooled_features(self.model_dir, [first[k] for k in missing], threads=self.threads,
                                progress=self.progress)
            self._vectors.update(zip(missing, x))
            self._save()
        return np.stack([self._vectors[k] for k in keys]).astype(np.float32)

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        keys = list(self._vectors)
        tmp = self.path.with_name(self.path.stem + ".tmp.npz")
        np.savez(tmp, keys=np.array(keys), x=np.stack([self._vectors[k] for k in keys]))
        tmp.replace(self.path)


class Wide:
    """The wide part's inputs: WIDE_SCALE * bag of wordpieces, over the wordpieces training uses."""

    def __init__(self, model_dir: Path, train_texts: Sequence[str]):
        from model.urgency_head import bag_features, token_ids, vocab_size

        self.model_dir = model_dir
        self.vocab = vocab_size(model_dir)
        bag = bag_features(token_ids(model_dir, train_texts), self.vocab)
        docs = np.bincount(bag.indices, minlength=self.vocab)  # csr: one entry per (text, wordpiece)
        self.columns = np.flatnonzero(docs >= WIDE_MIN_DOCS)

    def matrix(self, texts: Sequence[str]) -> Any:
        from model.urgency_head import bag_features, token_ids

        return bag_features(token_ids(self.model_dir, texts), self.vocab)[:, self.columns] * WIDE_SCALE

    def table(self, delta: np.ndarray) -> np.ndarray:
        """(vocab, classes): the fitted columns' weights in the graph's per-token table."""
        table = np.zeros((self.vocab, delta.shape[1]))
        table[self.columns] = delta * WIDE_SCALE
        return table


# -- fitting ------------------------------------------------------------------------------------------


def _logits(x: Any, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray(x @ w.T + b)


def decision(probs: np.ndarray, y: np.ndarray, floor: Sequence[float] | None = None) -> tuple[tuple[float, ...], float]:
    """The decision rule's log-prior shifts of medium and low and its P(high) threshold (1.0: none) with
    the best macro-F1 on validation (the gate's measure), among those that keep every class's recall
    within the gate's 2 points of the champion's recall there (`floor`); when none does, the best
    macro-F1 (the gate will say). (model/export.py's cost-based threshold, tuned on the public mix,
    calls nearly every team ticket high when the head is unsure, as a team's priorities often leave it.)"""

    def key(bias: tuple[float, ...], t: float) -> tuple[bool, float, float, float]:
        m = _rule_summary(probs, y, (bias, t))
        recalls = [m["per_class"][lab]["recall"] for lab in URGENCY_LABELS]
        kept = floor is None or all(r >= f - RECALL_DROP for r, f, lab in zip(recalls, floor, URGENCY_LABELS)
                                    if m["per_class"][lab]["support"])
        return kept, round(m["macro_f1"], 4), -sum(abs(b) for b in bias), t

    thresholds = [1.0] + sorted({round(float(q), 3) for q in np.quantile(probs[:, 0], np.linspace(0.05, 0.95, 19))})
    shifts = [round(float(v), 2) for v in np.linspace(-1.0, 1.0, 9)]
    options = [((0.0, m, lo), t) for m in shifts for lo in shifts for t in thresholds]
    return max(options, key=lambda o: key(*o))


def base_head(base: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The champion's urgency head (W, b, wide table or None); LearnRefused for a graph whose head is not
    one model/urgency_head.py wrote (an int8 export of model/export.py: refit it first)."""
    from model.urgency_head import read_head

    try:
        return read_head(base)
    except ValueError as e:
        raise LearnRefused(f"{e}: `python -m model.urgency_head` writes one") from None


def champion_report(model_dir: Path, texts: Sequence[str], y: np.ndarray, threads: int = 1) -> dict[str, Any]:
    """The champion's urgency report (model/gate.py) on labelled texts, as it decides."""
    from model.gate import evaluate
    from model.runtime import TriageModel

    rows = [Row(t, -1, int(label)) for t, label in zip(texts, y)]
    return evaluate(TriageModel(model_dir, threads=threads), rows, "urgency")


def fit(train: tuple[np.ndarray, Any, Sequence[Example]], val: tuple[np.ndarray, Any, Sequence[Example]],
        floor: Sequence[float] | None = None
        ) -> tuple[np.ndarray, np.ndarray, float, float, tuple[tuple[float, ...], float], dict]:
    """The wide correction on the champion's logits. `train`, `val`: (champion logits, wide inputs, rows).
    For each L2 strength, a fit on `train`, the temperature and the decision rule on the validation slice;
    the strength kept is the best validation macro-F1 after its rule among those whose rule keeps every
    class's recall within 2 points of the champion's there (`floor`). Then refitted on both.
    Returns (D, d, strength, temperature, (bias, high threshold), notes)."""
    from model.urgency_head import fit_wide

    (z_t, x_t, rows_t), (z_v, x_v, rows_v) = train, val
    y_t, y_v = np.array([e.y for e in rows_t]), np.array([e.y for e in rows_v])
    w_t, w_v = np.array([e.weight for e in rows_t], float), np.array([e.weight for e in rows_v], float)
    tried = {}
    for lam in L2_GRID:
        d_w, d_b = fit_wide(z_t, x_t, y_t, w_t, lam)
        logits = z_v + x_v @ d_w + d_b
        temperature = metrics.fit_temperature(logits, y_v)
        probs = metrics.softmax(logits, temperature)
        rule = decision(probs, y_v, floor)
        m = _rule_summary(probs, y_v, rule)
        kept = floor is None or all(m["per_class"][lab]["recall"] >= f - RECALL_DROP - 1e-12
                                    for lab, f in zip(URGENCY_LABELS, floor) if m["per_class"][lab]["support"])
        tried[lam] = (kept, round(m["macro_f1"], 4), temperature, rule)
    lam = max(L2_GRID, key=lambda k: (tried[k][0], tried[k][1], k))  # ties: the stronger regularisation
    _, _, temperature, rule = tried[lam]
    d_w, d_b = fit_wide(np.concatenate([z_t, z_v]), _vstack(x_t, x_v), np.concatenate([y_t, y_v]),
                        np.concatenate([w_t, w_v]), lam)
    notes = {"l2": lam, "validation_macro_f1_by_l2": {str(k): v[1] for k, v in tried.items()},
             "validation_rule_keeps_champion_recalls_by_l2": {str(k): v[0] for k, v in tried.items()},
             "temperature": "NLL on the validation slice (newest part of the training tickets)",
             "bias_and_threshold": "best macro-F1 on the validation slice keeping every class's recall within "
                                   "2 points of the champion's there (threshold 1.0: none)"}
    return d_w, d_b, lam, temperature, rule, notes


def coverage_floor(probs: np.ndarray, decided: tuple[tuple[float, ...], float], share: float) -> tuple[float, str]:
    """The confidence floor at which the challenger answers, on the validation slice, the share of
    tickets the champion answers there at its own floor: the challenger's temperature changes what its
    confidences mean, so the champion's floor would make it abstain more (or less) than the champion.
    A high decided by the P(high) threshold is answered whatever its confidence, as the runtime does."""
    from model.decision import DecisionRule

    bias, threshold = decided
    rule = DecisionRule(URGENCY_LABELS, bias=bias, threshold_label="high" if threshold < 1.0 else "",
                        threshold=threshold)
    pred = rule.decide_indices(probs)
    conf = probs[np.arange(len(pred)), pred]
    free = (pred == 0) if threshold < 1.0 else np.zeros(len(pred), bool)
    ranked = np.sort(conf[~free])[::-1]
    need = int(np.ceil(share * len(pred))) - int(free.sum())  # answered beyond the thresholded highs
    if need <= 0 or not len(ranked):
        floor = float(ranked[0]) + 1e-4 if len(ranked) and need <= 0 else 0.0
    else:
        floor = float(ranked[min(need, len(ranked)) - 1])
    floor = float(np.floor(min(floor, 1.0) * 1e4) / 1e4)  # rounded down: the need-th ticket stays answered
    return floor, (f"answers {share:.0%} of the validation slice, the share the champion answers there at its "
                   "own floor (the challenger's temperature changes what a confidence means)")


def _rule_summary(probs: np.ndarray, y: np.ndarray, decided: tuple[tuple[float, ...], float]) -> dict[str, Any]:
    from model.decision import DecisionRule

    bias, t = decided
    rule = DecisionRule(URGENCY_LABELS, bias=bias, threshold_label="high" if t < 1.0 else "", threshold=t)
    return metrics.summary(y, rule.decide_indices(probs), URGENCY_LABELS)


def _vstack(*parts: Any) -> Any:
    import scipy.sparse as sp

    return sp.vstack(list(parts)).tocsr()


# -- the run ---------------------------------------------------------------------------------------------


def _stage(progress: bool, text: str) -> None:
    if progress:
        import sys

        print(text, file=sys.stderr, flush=True)


def learn(cfg: LearnConfig, on_stage: Callable[[str], None] | None = None) -> LearnResult:
    from model.runtime import DEFAULT_MODEL_DIR
    from model.urgency_head import write_head

    stage = on_stage or partial(_stage, cfg.progress)
    seconds: dict[str, float] = {}
    began = time.monotonic()
    base = Path(cfg.base or DEFAULT_MODEL_DIR)
    base_meta = json.loads((base / "triage.json").read_text())
    team = team_examples(cfg.data, cfg.weights)
    if not team:
        raise LearnRefused(f"no urgency labels in {', '.join(map(str, cfg.data))}: pull a history first "
                           "(`triage history pull zendesk`)")
    older, newest = time_split(team, cfg.eval_share)
    fit_part, val_part = time_split(older, cfg.val_share)
    counts = check_enough(older, cfg.min_per_class, cfg.max_share)
    extra, leaked = not_held_out(feedback_examples(cfg.feedback_csv, cfg.weights) + cfg.extra, newest)
    replay = replay_examples(cfg.data_root, cfg.replay, cfg.seed, cfg.weights)
    supported = support_replay(fit_part, cfg.prototype_share, cfg.support_share)
    train = fit_part + extra + replay + supported
    if cfg.shuffle_labels:
        rng = random.Random(cfg.seed)
        ys = [e.y for e in train]
        rng.shuffle(ys)
        train = [Example(e.text, y, e.weight, e.provenance, e.created_at, e.id) for e, y in zip(train, ys)]
    seconds["data"] = time.monotonic() - began
    stage(f"learn: {len(fit_part)} team tickets to fit, {len(val_part)} to tune, {len(newest)} newest held out; "
          f"{len(extra)} Slack corrections and LLM labels"
          + (f" ({leaked} about held-out tickets left out)" if leaked else "")
          + f", {len(replay)} public rows and {len(supported)} support-like ones replayed")

    t0 = time.monotonic()
    cache = FeatureCache(base, cfg.cache_dir, cfg.threads, cfg.progress)
    head_w, head_b, old_table = base_head(base)
    wide = Wide(base, [e.text for e in train])
    parts = []
    for part in (train, val_part):  # the champion's logits from its pooled vectors and wide part (if any)
        texts = [e.text for e in part]
        z = cache.features(texts).astype(np.float64) @ head_w.T + head_b if texts else np.zeros((0, 3))
        if old_table is not None and texts:
            from model.urgency_head import bag_features, token_ids

            z = z + bag_features(token_ids(base, texts), wide.vocab) @ old_table
        parts.append((np.asarray(z), wide.matrix(texts), part))
    seconds["features"] = time.monotonic() - t0
    t0 = time.monotonic()
    stage("learn: fitting the urgency head's wide correction")
    y_val = np.array([e.y for e in val_part])
    champ_val = champion_report(base, [e.text for e in val_part], y_val, cfg.threads)
    floor = [champ_val["per_class"][lab]["recall"] for lab in URGENCY_LABELS]
    d_w, d_b, lam, temperature, rule, notes = fit(parts[0], parts[1], floor)
    abstain_below, notes["abstain_below"] = coverage_floor(
        metrics.softmax(parts[1][0] + parts[1][1] @ d_w + d_b, temperature), rule, champ_val["answered"]["share"])
    table = wide.table(d_w) + (old_table if old_table is not None else 0.0)
    notes["wide"] = {"wordpieces": int(len(wide.columns)), "scale": WIDE_SCALE, "min_texts": WIDE_MIN_DOCS}
    notes["champion_validation_recall"] = {lab: round(r, 4) for lab, r in zip(URGENCY_LABELS, floor)}
    seconds["fit"] = time.monotonic() - t0

    t0 = time.monotonic()
    version = cfg.version or f"{base_meta['version']}+team-{datetime.now(UTC):%Y%m%d%H%M}"
    out = export_challenger(base, cfg.out, head_w, head_b + d_b, temperature, rule, abstain_below, version,
                            partial(write_head, wide=table), {
        "base": str(base), "base_version": base_meta["version"], "data": [str(p) for p in cfg.data],
        "feedback_csv": [str(p) for p in cfg.feedback_csv], "replay_public_rows": len(replay),
        "corrections_and_llm_labels": len(extra), "left_out_about_held_out_tickets": leaked,
        "replay_support_like": {"prototypes": sum(e.provenance == "prototype" for e in supported),
                                "support_select_half": sum(e.provenance == "support-select" for e in supported),
                                "shares": [cfg.prototype_share, cfg.support_share]},
        "team_train_counts": counts, "train_rows": len(train), "validation_rows": len(val_part),
        "held_out_newest": len(newest), "split": "by created_at: older part trains, newest held out",
        "provenance": {p: sum(1 for e in train if e.provenance == p) for p in sorted({e.provenance for e in train})},
        "shuffled_labels": cfg.shuffle_labels, "notes": notes,
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")})
    seconds["export"] = time.monotonic() - t0
    routing = None
    if cfg.route_by:  # the routing head, from the same history (written into `out` when it ships)
        from model.routing_head import attach

        routing = attach(out, cfg.data, cache.features, cfg.route_by, cfg.min_group_tickets, stage,
                         cfg.eval_share, cfg.val_share, cfg.seed)
        seconds["routing"] = time.monotonic() - t0 - seconds["export"]
    eval_rows = [Row(e.text, -1, e.y, e.weight, "team") for e in newest]
    seconds["total"] = time.monotonic() - began
    return LearnResult(out, version, base, base_meta["version"], len(train), eval_rows,
                       {"team": counts, "replay": len(replay), "feedback": len(extra)}, lam, seconds, routing)


def export_challenger(base: Path, out: Path, w: np.ndarray, b: np.ndarray, temperature: float,
                      decided: tuple[tuple[float, ...], float], abstain_below: float,
                      version: str, write_head: Callable[..., None], learned: dict) -> Path:
    """A copy of the base artifact with the urgency head `write_head` writes and its decision rule."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise LearnRefused(f"{out} exists and is not empty: pick another --out (models are never overwritten)")
    out.mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.json",):
        shutil.copy2(base / name, out / name)
    write_head(base, out / "model.int8.onnx", w, b)
    meta = json.loads((base / "triage.json").read_text())
    rule = dict(meta["decision"]["urgency"])
    bias, threshold = decided
    rule.update(temperature=float(temperature), bias=[float(v) for v in bias], abstain_below=abstain_below,
                threshold_label="high" if threshold < 1.0 else "", threshold=round(float(threshold), 4),
                notes={**learned["notes"], "validation": "the newest part of the team's training tickets"})
    meta["decision"]["urgency"] = rule
    meta.update(version=version, created=learned["created"], learned=learned)
    meta.pop("metrics", None)  # the base's figures do not describe this model: see learn_report/
    (out / "triage.json").write_text(json.dumps(meta, indent=2))
    (out / "MODEL_CARD.md").write_text(
        f"# {version}\n\nA challenger learnt by `triage learn` from {base_meta_name(base)}: the same encoder, "
        "sentiment head and urgency head, plus a per-wordpiece correction of the urgency logits learnt from the "
        f"team's own tickets ({learned['train_rows']} training rows, of which {learned['replay_public_rows']} "
        "public rows and the support-like prototypes and select half replayed). How it compares with the "
        "champion: learn_report/report.md.\n", encoding="utf-8")
    return out


def base_meta_name(base: Path) -> str:
    try:
        return str(json.loads((base / "triage.json").read_text())["version"])
    except (OSError, ValueError, KeyError):
        return str(base)


# -- learn, then compare with the champion --------------------------------------------------------------


@dataclass
class Outcome:
    result: LearnResult
    gate: Any  # model.gate.GateResult
    report: Path
    reports: dict[str, Any]


def learn_and_compare(cfg: LearnConfig, champion: Path | None = None) -> Outcome:
    """learn(), then the same report for champion and challenger on the newest team tickets and the
    public sentiment sample, and the gate's verdict (written beside the model: learn_report/, gate.json)."""
    from model import gate
    from model.runtime import TriageModel

    result = learn(cfg)

    def stage(text: str) -> None:
        _stage(cfg.progress, text)

    t0 = time.monotonic()
    champ_dir = Path(champion or result.base)
    champ = TriageModel(champ_dir, threads=cfg.threads)
    chall = TriageModel(result.out, threads=cfg.threads)
    stage(f"learn: scoring the {len(result.eval_rows)} newest tickets with champion and challenger")
    reports = {"champion": gate.evaluate(champ, result.eval_rows, "urgency"),
               "challenger": gate.evaluate(chall, result.eval_rows, "urgency")}
    public = gate.public_sentiment_rows(cfg.data_root)
    if public:
        stage(f"learn: scoring {len(public)} public sentiment texts with both")
        reports["public_champion"] = gate.evaluate(champ, public, "sentiment")
        reports["public_challenger"] = gate.evaluate(chall, public, "sentiment")
    support = support_report_rows()  # the report half: the select half is trained on
    if support:  # obvious urgency a team's head must not unlearn
        stage(f"learn: scoring the {len(support)} support-like urgency validation texts with both")
        reports["support_champion"] = gate.evaluate(champ, support, "urgency")
        reports["support_challenger"] = gate.evaluate(chall, support, "urgency")
    verdict = gate.gate(reports["champion"], reports["challenger"], reports.get("public_champion"),
                        reports.get("public_challenger"), reports.get("support_champion"),
                        reports.get("support_challenger"))
    result.seconds["compare"] = time.monotonic() - t0
    result.seconds["total"] += result.seconds["compare"]
    context = {"champion": str(champ_dir), "challenger": str(result.out), "data": [str(p) for p in cfg.data],
               "counts": result.counts, "l2": result.c, "seconds": {k: round(v, 1) for k, v in result.seconds.items()}}
    report = gate.write_report(result.out / "learn_report", reports, verdict, context, result.routing)
    (result.out / "gate.json").write_text(json.dumps({"champion": reports["champion"]["model_version"],
                                                      **verdict.to_dict()}, indent=2))
    return Outcome(result, verdict, report, reports)
