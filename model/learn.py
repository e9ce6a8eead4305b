"""`triage learn`: a challenger model from a team's own history, on CPU, in minutes.

Starts from the shipped (or champion) model and keeps its encoder, its sentiment head and its urgency
head: the challenger's urgency logits mix the champion's (3 numbers, as it serves them) with a TF-IDF
vector over the team's wordpieces and wordpiece pairs, in one multinomial logistic regression, written
into a copy of the graph after the champion's head (model/ngrams.py: one ONNX call still, top_words
exact). What a team's priorities depend on is mostly its own words and phrases, which the champion's
head has never seen; its logits carry what it knows about obvious urgency. The champion's logits come
from the int8 graph as served, one text per call, cached on disk by text and model.

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
report. The rest trains: its out-of-fold logits (FOLDS folds) fit the temperature and the decision rule
(log-prior shifts keeping every class's recall RULE_MARGIN above the champion's on the same tickets) and
set the confidence floor; then the regression is fitted on all of it.

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
from model.decision import DecisionRule
from model.gate import head_report
from model.textprep import ticket_text
from worker.errors import TriageError
from worker.history import PROVENANCE_WEIGHTS, read_rows

MIN_PER_CLASS = 120  # labelled training tickets a class needs: measured, docs/learning.md
MAX_SHARE = 0.9
# The stacked regression's settings, chosen on folds of the official split's older tickets only
# (bench/learn_folds.py; docs/learning.md "How the challenger's form was chosen"): its inverse L2
# strength, and the scale of the champion's standardised logits beside the unit-length n-gram vector.
C = 1.0
CHAMPION_SCALE = 3.0
FOLDS = 5  # the temperature and the decision rule are fitted on out-of-fold logits of the training tickets
RULE_MARGIN = 0.03  # the decision rule aims every class's recall this far above the champion's (out of fold)
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
    val_share: float = 0.15  # the routing head's validation slice (model/routing_head.py)
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
    c: float  # the stacked regression's inverse L2 strength
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
    """Pooled vectors and urgency logits by text, for one model file (a changed graph gets a new cache)."""

    def __init__(self, model_dir: Path, cache_dir: Path | None, threads: int = 1, progress: bool = True):
        from model.data import file_sha256

        self.model_dir = model_dir
        self.threads = threads
        self.progress = progress
        digest = file_sha256(model_dir / "model.int8.onnx")[:16]
        base = cache_dir or Path.home() / ".cache" / "helpdesk-triage" / "features"
        self.path = base / f"{digest}.v2.npz"
        self._vectors: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        if self.path.is_file():
            with np.load(self.path) as data:
                self._vectors = dict(zip(data["keys"].tolist(), zip(data["x"], data["z"])))

    def _rows(self, texts: Sequence[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        from model.urgency_head import served_features

        keys = [_key(t) for t in texts]
        missing = list(dict.fromkeys(k for k in keys if k not in self._vectors))
        if missing:
            first = {k: t for k, t in zip(keys, texts)}
            x, z = served_features(self.model_dir, [first[k] for k in missing], threads=self.threads,
                                   progress=self.progress)
            self._vectors.update(zip(missing, zip(x, z)))
            self._save()
        return [self._vectors[k] for k in keys]

    def features(self, texts: Sequence[str]) -> np.ndarray:
        """(n, hidden) pooled vectors, as the graph computes them one text per call."""
        return np.stack([x for x, _ in self._rows(texts)]).astype(np.float32)

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        """(n, 3) the model's urgency logits, likewise."""
        return np.stack([z for _, z in self._rows(texts)]).astype(np.float64) if texts else np.zeros((0, 3))

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        keys = list(self._vectors)
        tmp = self.path.with_name(self.path.stem + ".tmp.npz")
        np.savez(tmp, keys=np.array(keys), x=np.stack([self._vectors[k][0] for k in keys]),
                 z=np.stack([self._vectors[k][1] for k in keys]))
        tmp.replace(self.path)


# -- fitting ------------------------------------------------------------------------------------------


@dataclass
class Stack:
    """The challenger's urgency inputs: the team's n-gram TF-IDF vector beside the champion's logits
    (standardised on the training rows, times CHAMPION_SCALE)."""

    ngrams: Any  # model.ngrams.Ngrams
    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fitted(cls, ids: Sequence[Sequence[int]], z: np.ndarray, vocab: int) -> Stack:
        from model.ngrams import Ngrams

        return cls(Ngrams(ids, vocab), z.mean(axis=0), CHAMPION_SCALE / (z.std(axis=0) + 1e-9))

    def inputs(self, ids: Sequence[Sequence[int]], z: np.ndarray) -> Any:
        import scipy.sparse as sp

        return sp.hstack([self.ngrams.matrix(ids), sp.csr_matrix((z - self.mean) * self.scale)]).tocsr()

    def graph_part(self, coef: np.ndarray, intercept: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(n-gram table, mix, bias) such that the logits are z @ mix + bias + tfidf @ table
        (model/ngrams.py `wrap`), from the regression's coef (classes, inputs) and intercept."""
        k = len(self.ngrams.columns)
        mix = (coef[:, k:] * self.scale).T  # (3 champion logits, classes)
        return self.ngrams.table(coef[:, :k].T), mix, intercept - self.mean @ mix


def fit_stack(x: Any, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression, classes balanced, rows weighed by provenance: (coef, intercept)."""
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=C, max_iter=3000, class_weight="balanced")
    clf.fit(x, y, sample_weight=w)
    coef, intercept = np.zeros((3, x.shape[1])), np.zeros(3)
    for k, cls in enumerate(clf.classes_):  # a class absent from y keeps zero weights
        coef[int(cls)], intercept[int(cls)] = clf.coef_[k], clf.intercept_[k]
    return coef, intercept


def decision(probs: np.ndarray, y: np.ndarray, floor: Sequence[float],
             margin: float = RULE_MARGIN) -> tuple[tuple[float, ...], float]:
    """The decision rule's log-prior shifts of medium and low (threshold 1.0: none): the best macro-F1
    (the gate's measure) among the shifts that keep every class's recall at least `margin` above the
    champion's (`floor`) on the same tickets; when none does, the shifts whose worst class is least
    below it (the gate will say). Aiming above the floor, not at it: the gate allows 2 points under the
    champion, and on the newest tickets a class's recall moves by more than that by chance."""

    def key(bias: tuple[float, ...]) -> tuple[bool, float, float]:
        m = _rule_summary(probs, y, (bias, 1.0))
        worst = min(m["per_class"][lab]["recall"] - f - margin for lab, f in zip(URGENCY_LABELS, floor)
                    if m["per_class"][lab]["support"])
        return worst >= 0, round(m["macro_f1"], 4) if worst >= 0 else worst, -sum(abs(b) for b in bias)

    shifts = [round(float(v), 2) for v in np.linspace(-1.0, 1.0, 21)]
    return max((((0.0, m, lo), 1.0) for m in shifts for lo in shifts), key=lambda o: key(o[0]))


def out_of_fold(x: Any, y: np.ndarray, w: np.ndarray, team: int, seed: int) -> np.ndarray:
    """Logits of the first `team` rows (the team's training tickets), each from a fit without its fold;
    the rows after them (replay, corrections) are in every fold's fit."""
    from sklearn.model_selection import StratifiedKFold

    out = np.zeros((team, 3))
    rest = np.arange(team, len(y))
    for fit_idx, held in StratifiedKFold(FOLDS, shuffle=True, random_state=seed).split(np.zeros(team), y[:team]):
        idx = np.concatenate([fit_idx, rest])
        coef, intercept = fit_stack(x[idx], y[idx], w[idx])
        out[held] = x[held] @ coef.T + intercept
    return out


def coverage_floor(probs: np.ndarray, decided: tuple[tuple[float, ...], float], share: float) -> tuple[float, str]:
    """The confidence floor at which the challenger answers, on the training tickets out of fold, the
    share of tickets the champion answers there at its own floor: the challenger's temperature changes what its
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
    return floor, (f"answers {share:.0%} of the training tickets out of fold, the share the champion answers "
                   "there at its own floor (the challenger's temperature changes what a confidence means)")


def _rule_summary(probs: np.ndarray, y: np.ndarray, decided: tuple[tuple[float, ...], float]) -> dict[str, Any]:
    from model.decision import DecisionRule

    bias, t = decided
    rule = DecisionRule(URGENCY_LABELS, bias=bias, threshold_label="high" if t < 1.0 else "", threshold=t)
    return metrics.summary(y, rule.decide_indices(probs), URGENCY_LABELS)


# -- the run ---------------------------------------------------------------------------------------------


def _stage(progress: bool, text: str) -> None:
    if progress:
        import sys

        print(text, file=sys.stderr, flush=True)


def learn(cfg: LearnConfig, on_stage: Callable[[str], None] | None = None) -> LearnResult:
    from model.runtime import DEFAULT_MODEL_DIR

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
    counts = check_enough(older, cfg.min_per_class, cfg.max_share)
    extra, leaked = not_held_out(feedback_examples(cfg.feedback_csv, cfg.weights) + cfg.extra, newest)
    replay = replay_examples(cfg.data_root, cfg.replay, cfg.seed, cfg.weights)
    supported = support_replay(older, cfg.prototype_share, cfg.support_share)
    train = older + extra + replay + supported  # the team's tickets first: out_of_fold folds those
    if cfg.shuffle_labels:
        rng = random.Random(cfg.seed)
        ys = [e.y for e in train]
        rng.shuffle(ys)
        train = [Example(e.text, y, e.weight, e.provenance, e.created_at, e.id) for e, y in zip(train, ys)]
    seconds["data"] = time.monotonic() - began
    stage(f"learn: {len(older)} team tickets to fit, {len(newest)} newest held out; "
          f"{len(extra)} Slack corrections and LLM labels"
          + (f" ({leaked} about held-out tickets left out)" if leaked else "")
          + f", {len(replay)} public rows and {len(supported)} support-like ones replayed")

    t0 = time.monotonic()
    from model.ngrams import wrap
    from model.urgency_head import token_ids, vocab_size

    cache = FeatureCache(base, cfg.cache_dir, cfg.threads, cfg.progress)
    texts = [e.text for e in train]
    z = cache.logits(texts)  # the champion's urgency logits, as it serves them
    ids = token_ids(base, texts)
    stack = Stack.fitted(ids, z, vocab_size(base))
    x = stack.inputs(ids, z)
    y = np.array([e.y for e in train])
    w = np.array([e.weight for e in train], float)
    seconds["features"] = time.monotonic() - t0
    t0 = time.monotonic()
    stage(f"learn: fitting the urgency head on {len(stack.ngrams.columns)} wordpiece n-grams and the "
          f"champion's logits ({FOLDS} folds, then all)")
    team_y = y[: len(older)]
    oof = out_of_fold(x, y, w, len(older), cfg.seed)
    champ_rule = DecisionRule.from_dict(base_meta["decision"]["urgency"])
    champ = head_report(champ_rule.probabilities(z[: len(older)]), team_y, champ_rule, "urgency")
    floor = [champ["per_class"][lab]["recall"] for lab in URGENCY_LABELS]
    temperature = metrics.fit_temperature(oof, team_y)
    probs = metrics.softmax(oof, temperature)
    rule = decision(probs, team_y, floor)
    abstain_below, floor_note = coverage_floor(probs, rule, champ["answered"]["share"])
    coef, intercept = fit_stack(x, y, w)
    table, mix, bias = stack.graph_part(coef, intercept)
    kept = _rule_summary(probs, team_y, rule)
    notes = {"c": C, "champion_scale": CHAMPION_SCALE, "ngrams": int(len(stack.ngrams.columns)),
             "temperature": f"NLL on out-of-fold logits of the {len(older)} training tickets ({FOLDS} folds)",
             "bias": f"best out-of-fold macro-F1 keeping every class's recall {RULE_MARGIN:g} above the champion's "
                     "on the same tickets",
             "out_of_fold": {"macro_f1": round(kept["macro_f1"], 4),
                             "recall": {lab: round(kept["per_class"][lab]["recall"], 4) for lab in URGENCY_LABELS}},
             "champion_recall_on_training_tickets": {lab: round(r, 4) for lab, r in zip(URGENCY_LABELS, floor)},
             "abstain_below": floor_note}
    seconds["fit"] = time.monotonic() - t0

    t0 = time.monotonic()
    version = cfg.version or f"{base_meta['version']}+team-{datetime.now(UTC):%Y%m%d%H%M}"

    def write(model: Any) -> None:
        wrap(model, stack.ngrams.idf, table, mix, bias)

    out = export_challenger(base, cfg.out, temperature, rule, abstain_below, version, write, {
        "base": str(base), "base_version": base_meta["version"], "data": [str(p) for p in cfg.data],
        "feedback_csv": [str(p) for p in cfg.feedback_csv], "replay_public_rows": len(replay),
        "corrections_and_llm_labels": len(extra), "left_out_about_held_out_tickets": leaked,
        "replay_support_like": {"prototypes": sum(e.provenance == "prototype" for e in supported),
                                "support_select_half": sum(e.provenance == "support-select" for e in supported),
                                "shares": [cfg.prototype_share, cfg.support_share]},
        "team_train_counts": counts, "train_rows": len(train),
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
                       {"team": counts, "replay": len(replay), "feedback": len(extra)}, C, seconds, routing)


def export_challenger(base: Path, out: Path, temperature: float, decided: tuple[tuple[float, ...], float],
                      abstain_below: float, version: str, write: Callable[[Any], None], learned: dict) -> Path:
    """A copy of the base artifact whose graph `write` changes (in place, an onnx ModelProto), with its
    decision rule."""
    import onnx

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise LearnRefused(f"{out} exists and is not empty: pick another --out (models are never overwritten)")
    out.mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.json",):
        shutil.copy2(base / name, out / name)
    graph = onnx.load(str(base / "model.int8.onnx"))
    write(graph)
    onnx.checker.check_model(graph)
    onnx.save(graph, str(out / "model.int8.onnx"))
    meta = json.loads((base / "triage.json").read_text())
    rule = dict(meta["decision"]["urgency"])
    bias, threshold = decided
    rule.update(temperature=float(temperature), bias=[float(v) for v in bias], abstain_below=abstain_below,
                threshold_label="high" if threshold < 1.0 else "", threshold=round(float(threshold), 4),
                notes=learned["notes"])
    meta["decision"]["urgency"] = rule
    meta.update(version=version, created=learned["created"], learned=learned)
    meta.pop("metrics", None)  # the base's figures do not describe this model: see learn_report/
    (out / "triage.json").write_text(json.dumps(meta, indent=2))
    (out / "MODEL_CARD.md").write_text(
        f"# {version}\n\nA challenger learnt by `triage learn` from {base_meta_name(base)}: the same encoder, "
        "sentiment head and urgency head; its urgency logits mix the champion's with a TF-IDF part over wordpieces "
        "and wordpiece pairs, learnt from the "
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
               "counts": result.counts, "c": result.c, "seconds": {k: round(v, 1) for k, v in result.seconds.items()}}
    report = gate.write_report(result.out / "learn_report", reports, verdict, context, result.routing)
    (result.out / "gate.json").write_text(json.dumps({"champion": reports["champion"]["model_version"],
                                                      **verdict.to_dict()}, indent=2))
    return Outcome(result, verdict, report, reports)
