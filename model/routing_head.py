"""The learned routing head: the group agents assigned tickets like this one to, learnt from history only.

A third head on the champion's encoder, fitted as `triage learn` fits urgency: on the pooled vectors
of the int8 graph as served (model/urgency_head.py `pooled_features`, through learn's FeatureCache),
from the history rows' `group` (Zendesk group; Jira request type) or `type`.

1. Groups with fewer than `min_tickets` tickets in the training part are left out, and said so
   (learn's output and report, triage.json `routing.left_out`): a head that saw a group a handful of
   times seldom names it right. With fewer than 2 groups left there is no head (RoutingRefused).
2. Each ticket weighs what its history `group` label's provenance weighs (worker/history.py): who
   routed it, read from the audits / changelog: an agent correcting the bot's routing most, the bot's
   own routing left as it was least (the head must learn agents' routing, not the rules').
3. The time split is learn's: the newest `eval_share` is held out for the figures; the newest
   `val_share` of the rest is the validation slice, where C, the temperature (NLL) and the confidence
   floor are chosen (`abstain_below`: the lowest at which the tickets answered reach
   `TARGET_ACCURACY`); the head is then refitted on all the training part.
4. It ships only if, on the validation slice, its accuracy beats the majority group's by
   `MIN_MARGIN` with a paired bootstrap 95% interval above zero; otherwise it is not written, and the
   report says why.
5. Written into the challenger graph as an extra output `group_logits`: an fp32 MatMul + Add on the
   pooled tensor the urgency head reads (the encoder, sentiment and urgency are left as they were),
   and in triage.json `decision.group` (a DecisionRule over the group names) and `routing`.

Needs the `train` extra (onnx, scikit-learn).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from model import metrics
from model.decision import DecisionRule
from model.runtime import GROUP_OUTPUT
from model.textprep import ticket_text
from worker.errors import TriageError
from worker.history import read_rows

FIELDS = ("group", "type")
MIN_GROUP_TICKETS = 30  # training tickets a group needs to be predicted: measured, docs/learning.md
MIN_MARGIN = 0.05  # validation accuracy over the majority group's needed to ship
TARGET_ACCURACY = 0.8  # the confidence floor: the lowest at which the answered tickets reach it
MIN_ANSWERED = 20  # a floor is judged on at least this many validation tickets
C_GRID = (0.03, 0.1, 0.3, 1.0)
WEIGHT_INIT = "group_head.weight_t"
BIAS_INIT = "group_head.bias"


class RoutingRefused(TriageError):
    """No routing head can be built from this history: the message says what is missing."""


@dataclass(frozen=True)
class GroupExample:
    text: str
    group: str
    created_at: str = ""
    id: str = ""
    weight: float = 1.0  # by who routed it (the history's group label: agent-corrected-bot weighs most)


@dataclass
class RoutingHead:
    field: str
    labels: tuple[str, ...]
    weights: np.ndarray  # (groups, hidden), raw feature space
    bias: np.ndarray  # (groups,)
    rule: DecisionRule
    left_out: dict[str, int]
    min_tickets: int
    figures: dict[str, Any]  # validation and held-out figures against the majority group
    shipped: bool
    reason: str  # why it ships, or why not

    def logits(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x @ self.weights.T + self.bias)

    def routing_meta(self) -> dict[str, Any]:
        """triage.json's `routing` section."""
        return {"field": self.field, "labels": list(self.labels), "left_out": self.left_out,
                "min_tickets": self.min_tickets, "figures": self.figures}

    def summary(self) -> dict[str, Any]:
        """What learn's output and report say of it."""
        return {"shipped": self.shipped, "reason": self.reason, "floor": self.rule.abstain_below,
                **self.routing_meta()}


# -- data -----------------------------------------------------------------------------------------


def group_examples(paths: Sequence[Path], field_name: str = "group") -> list[GroupExample]:
    """Tickets of the history files with a `field_name`, oldest first, each weighing what its group label's
    provenance weighs (who routed it: a correction of the bot's routing most, the bot's own routing left
    as it was least; 1 without a label, e.g. `type`)."""
    if field_name not in FIELDS:
        raise RoutingRefused(f"--route-by {field_name!r}: use one of {', '.join(FIELDS)}")
    out = []
    for path in paths:
        for row in read_rows(path):
            value = str(getattr(row, field_name) or "").strip()
            text = ticket_text(row.subject, row.text)
            got = row.label("group")
            weight = got[2] if got and field_name == "group" and got[0] == value else 1.0
            if value and text and weight > 0:
                out.append(GroupExample(text, value, row.created_at, row.id, weight))
    out.sort(key=lambda e: (e.created_at, e.id))
    return out


def time_split(examples: Sequence[GroupExample], share: float) -> tuple[list[GroupExample], list[GroupExample]]:
    """(older, newest `share`), by created_at: learn's split."""
    ordered = sorted(examples, key=lambda e: (e.created_at, e.id))
    cut = len(ordered) - max(1, round(share * len(ordered)))
    return ordered[:cut], ordered[cut:]


def kept_groups(train: Sequence[GroupExample], min_tickets: int, field_name: str) -> tuple[list[str], dict[str, int]]:
    """(groups kept, left out with their counts); RoutingRefused when fewer than 2 are kept."""
    counts = Counter(e.group for e in train)
    kept = sorted(g for g, n in counts.items() if n >= min_tickets)
    left_out = {g: n for g, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if n < min_tickets}
    if len(kept) < 2:
        have = ", ".join(f"{g} {n}" for g, n in counts.most_common()) or "none"
        raise RoutingRefused(
            f"no routing head: it needs at least 2 {field_name}s with {min_tickets} or more tickets in the training "
            f"part (the older {sum(counts.values())} tickets with a {field_name}), and has {len(kept)} "
            f"({have}). Pull a longer history, or lower --min-group-tickets")
    return kept, left_out


# -- fitting ----------------------------------------------------------------------------------------


def fit_linear(x: np.ndarray, y: np.ndarray, classes: int, c: float, seed: int = 13,
               weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Class-balanced multinomial logistic regression on standardised features (rows weighing `weights`,
    scaled to mean 1 so that C means the same), folded back into raw feature space: W (classes, hidden),
    b (classes,). A class absent from y keeps zero weights."""
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    mu, sd = x.mean(0), x.std(0) + 1e-6
    clf = LogisticRegression(C=c, max_iter=2000, class_weight="balanced", random_state=seed)
    with threadpool_limits(1):  # a small problem: more BLAS threads only contend with the machine's other work
        clf.fit((x - mu) / sd, y, sample_weight=None if weights is None else weights / weights.mean())
    coef, intercept = clf.coef_, clf.intercept_
    if len(clf.classes_) == 2:  # one row for the second class: as two softmax rows, the same probabilities
        coef, intercept = np.vstack([-coef / 2, coef / 2]), np.concatenate([-intercept / 2, intercept / 2])
    w_std, b_std = np.zeros((classes, x.shape[1])), np.zeros(classes)
    for k, cls in enumerate(clf.classes_):
        w_std[int(cls)], b_std[int(cls)] = coef[k], intercept[k]
    w = w_std / sd
    return w, b_std - w @ mu


def accuracy_gain(correct: np.ndarray, baseline: np.ndarray, rounds: int = 2000, seed: int = 7) -> dict[str, Any]:
    """Accuracy minus the baseline's on the same rows, with a paired bootstrap 95% interval."""
    n = len(correct)
    if n == 0:
        return {"difference": 0.0, "ci95": [0.0, 0.0], "rounds": 0}
    idx = np.random.default_rng(seed).integers(0, n, (rounds, n))
    diffs = correct[idx].mean(1) - baseline[idx].mean(1)
    lo, hi = np.quantile(diffs, [0.025, 0.975])
    return {"difference": round(float(correct.mean() - baseline.mean()), 4),
            "ci95": [round(float(lo), 4), round(float(hi), 4)], "rounds": rounds}


def choose_floor(probs: np.ndarray, y: np.ndarray, target: float = TARGET_ACCURACY) -> tuple[float, str]:
    """The lowest confidence floor at which the validation tickets answered (confidence >= floor) are
    right at least `target` of the time, judged on at least MIN_ANSWERED of them; when none reaches it,
    the floor with the best such accuracy (said so)."""
    conf = probs.max(1)
    correct = probs.argmax(1) == y
    order = np.argsort(-conf, kind="stable")
    acc = np.cumsum(correct[order]) / np.arange(1, len(order) + 1)
    judged = np.arange(1, len(order) + 1) >= min(MIN_ANSWERED, len(order))
    reach = np.flatnonzero(judged & (acc >= target))
    if reach.size:
        k = int(reach.max())
        return round(float(conf[order][k]), 4), f"lowest at which the answered reach accuracy {target:g} on validation"
    if not judged.any():
        return 0.0, "validation slice too small to choose a floor: none"
    k = int(np.flatnonzero(judged)[np.argmax(acc[judged])])
    return round(float(conf[order][k]), 4), (f"no floor reaches accuracy {target:g} on validation: the one with the "
                                             f"best ({acc[k]:.3f})")


def figures(logits: np.ndarray, y: np.ndarray, rule: DecisionRule, majority: int) -> dict[str, Any]:
    """Accuracy / macro-F1 of the head (argmax, before abstention) and of the majority group, and the
    share answered at the floor with its accuracy."""
    probs = rule.probabilities(logits)
    pred = rule.decide_indices(probs)
    base = np.full_like(y, majority)
    m, mb = metrics.summary(y, pred, rule.labels), metrics.summary(y, base, rule.labels)
    answered = probs.max(1) >= rule.abstain_below
    return {"n": int(len(y)), "accuracy": round(m["accuracy"], 4), "macro_f1": round(m["macro_f1"], 4),
            "majority_accuracy": round(mb["accuracy"], 4), "majority_macro_f1": round(mb["macro_f1"], 4),
            "accuracy_gain": accuracy_gain(pred == y, base == y),
            "answered_share": round(float(answered.mean()), 4) if len(y) else 0.0,
            "answered_accuracy": round(float((pred == y)[answered].mean()), 4) if answered.any() else 0.0,
            "per_group": {g: {k: round(v, 4) for k, v in pc.items()} for g, pc in m["per_class"].items()}}


def fit_routing(examples: Sequence[GroupExample], features: Callable[[list[str]], np.ndarray],
                field_name: str = "group", min_tickets: int = MIN_GROUP_TICKETS, eval_share: float = 0.2,
                val_share: float = 0.15, seed: int = 13) -> RoutingHead:
    """The routing head of a history (see the module docstring). `features`: texts -> pooled vectors."""
    older, newest = time_split(examples, eval_share)
    fit_part, val_part = time_split(older, val_share)
    labels, left_out = kept_groups(older, min_tickets, field_name)
    index = {g: i for i, g in enumerate(labels)}

    def part(rows: Sequence[GroupExample]) -> tuple[list[GroupExample], np.ndarray]:
        kept = [e for e in rows if e.group in index]
        return kept, np.array([index[e.group] for e in kept], dtype=int)

    def weights(rows: Sequence[GroupExample]) -> np.ndarray:
        return np.array([e.weight for e in rows], dtype=float)

    (fit_rows, y_fit), (val_rows, y_val), (new_rows, y_new) = part(fit_part), part(val_part), part(newest)
    if len(set(y_fit.tolist())) < 2 or not len(y_val):
        raise RoutingRefused(f"no routing head: the training part's fitting and validation slices need tickets of "
                             f"at least 2 {field_name}s each (have {len(fit_rows)} and {len(val_rows)} tickets): "
                             "pull a longer history")
    x = features([e.text for e in fit_rows + val_rows + new_rows])
    x_fit, x_val, x_new = np.split(x, [len(fit_rows), len(fit_rows) + len(val_rows)])
    g = len(labels)
    scores = {}
    for c in C_GRID:
        w, b = fit_linear(x_fit, y_fit, g, c, seed, weights(fit_rows))
        scores[c] = metrics.summary(y_val, (x_val @ w.T + b).argmax(1), tuple(labels))["macro_f1"]
    c = max(C_GRID, key=lambda k: (round(scores[k], 4), -k))  # ties: the stronger regularisation
    w, b = fit_linear(x_fit, y_fit, g, c, seed, weights(fit_rows))
    val_logits = x_val @ w.T + b
    temperature = metrics.fit_temperature(val_logits, y_val)
    floor, floor_how = choose_floor(metrics.softmax(val_logits, temperature), y_val)
    rule = DecisionRule(tuple(labels), temperature=float(temperature), abstain_below=floor,
                        notes={"C": c, "validation_macro_f1_by_C": {str(k): round(v, 4) for k, v in scores.items()},
                               "temperature": "NLL on the validation slice (newest part of the training tickets)",
                               "abstain_below": floor_how})
    majority = int(np.bincount(y_fit, minlength=g).argmax())
    on_val = figures(val_logits, y_val, rule, majority)
    gain = on_val["accuracy_gain"]
    shipped = gain["difference"] >= MIN_MARGIN and gain["ci95"][0] > 0
    reason = (f"validation accuracy {on_val['accuracy']:.3f} against the majority {field_name}'s "
              f"{on_val['majority_accuracy']:.3f} ({gain['difference']:+.3f}, 95% CI [{gain['ci95'][0]:+.3f}, "
              f"{gain['ci95'][1]:+.3f}]): " +
              ("ships" if shipped else f"not shipped (needs at least +{MIN_MARGIN:g} with the interval above zero)"))
    y_all = np.concatenate([y_fit, y_val])
    w, b = fit_linear(np.concatenate([x_fit, x_val]), y_all, g, c, seed, weights(fit_rows + val_rows))
    majority = int(np.bincount(y_all, minlength=g).argmax())
    held_out = figures(x_new @ w.T + b, y_new, rule, majority)
    held_out["outside_groups"] = len(newest) - len(new_rows)  # tickets of groups left out or never seen
    figs = {"held_out": held_out, "validation": on_val, "majority": labels[majority],
            "train_counts": {lab: int((y_all == i).sum()) for i, lab in enumerate(labels)},
            "split": f"by created_at: newest {eval_share:g} held out, newest {val_share:g} of the rest validation"}
    return RoutingHead(field_name, tuple(labels), w, b, rule, left_out, min_tickets, figs, shipped, reason)


# -- the graph and the metadata ---------------------------------------------------------------------


def write_group_head(model_path: Path, weights: np.ndarray, bias: np.ndarray, out_path: Path | None = None) -> None:
    """Add (or replace) the output `group_logits` = pooled @ W.T + b, in fp32, in an int8 graph."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from model.urgency_head import pooled_tensor

    model = onnx.load(str(model_path))
    graph = model.graph
    _remove_group_head(graph)
    pooled = pooled_tensor(model)
    graph.initializer.extend([numpy_helper.from_array(np.asarray(weights, dtype=np.float32).T.copy(), WEIGHT_INIT),
                              numpy_helper.from_array(np.asarray(bias, dtype=np.float32), BIAS_INIT)])
    product = "group_head/matmul"
    graph.node.extend([helper.make_node("MatMul", [pooled, WEIGHT_INIT], [product], name="group_head/MatMul"),
                       helper.make_node("Add", [product, BIAS_INIT], [GROUP_OUTPUT], name="group_head/Add")])
    graph.output.append(helper.make_tensor_value_info(GROUP_OUTPUT, TensorProto.FLOAT, ["batch", len(bias)]))
    onnx.checker.check_model(model)
    onnx.save(model, str(out_path or model_path))


def _remove_group_head(graph: Any) -> None:
    for node in [n for n in graph.node if GROUP_OUTPUT in n.output or n.name.startswith("group_head/")]:
        graph.node.remove(node)
    for init in [i for i in graph.initializer if i.name in (WEIGHT_INIT, BIAS_INIT)]:
        graph.initializer.remove(init)
    for out in [o for o in graph.output if o.name == GROUP_OUTPUT]:
        graph.output.remove(out)


def write_routing(model_dir: Path, head: RoutingHead) -> None:
    """The head into `model_dir`'s graph and its metadata into triage.json (decision.group, routing)."""
    model_dir = Path(model_dir)
    write_group_head(model_dir / "model.int8.onnx", head.weights, head.bias)
    meta_path = model_dir / "triage.json"
    meta = json.loads(meta_path.read_text())
    meta["decision"]["group"] = head.rule.to_dict()
    meta["routing"] = head.routing_meta()
    meta_path.write_text(json.dumps(meta, indent=2))


def drop_routing(model_dir: Path) -> None:
    """Remove a routing head a base model carried (a challenger whose own head did not ship)."""
    import onnx

    model_dir = Path(model_dir)
    meta_path = model_dir / "triage.json"
    meta = json.loads(meta_path.read_text())
    if "routing" not in meta:
        return
    model = onnx.load(str(model_dir / "model.int8.onnx"))
    _remove_group_head(model.graph)
    onnx.save(model, str(model_dir / "model.int8.onnx"))
    meta.pop("routing")
    meta["decision"].pop("group", None)
    meta_path.write_text(json.dumps(meta, indent=2))


def attach(model_dir: Path, data: Sequence[Path], features: Callable[[list[str]], np.ndarray], field_name: str,
           min_tickets: int | None, stage: Callable[[str], None], eval_share: float = 0.2, val_share: float = 0.15,
           seed: int = 13) -> dict[str, Any] | None:
    """`triage learn`'s hook: fit the routing head of the history and write it into the challenger
    when it ships (else the challenger carries none). Returns what the report says of it (None when
    the history carries no `field_name`)."""
    min_tickets = MIN_GROUP_TICKETS if min_tickets is None else min_tickets
    examples = group_examples(data, field_name)
    if not examples:
        drop_routing(model_dir)
        stage(f"learn: the history carries no {field_name}: no routing head")
        return None
    try:
        head = fit_routing(examples, features, field_name, min_tickets, eval_share, val_share, seed)
    except RoutingRefused as e:
        drop_routing(model_dir)
        stage(f"learn: {e}")
        return {"shipped": False, "reason": str(e), "field": field_name, "min_tickets": min_tickets}
    if head.left_out:
        stage(f"learn: routing by {field_name}: left out (fewer than {min_tickets} training tickets): "
              + ", ".join(f"{g} {n}" for g, n in head.left_out.items()))
    if head.shipped:
        write_routing(model_dir, head)
    else:
        drop_routing(model_dir)
    stage(f"learn: routing head over {len(head.labels)} {field_name}s: {head.reason}")
    return head.summary()
