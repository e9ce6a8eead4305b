"""The learned routing head on the synthetic team, measured honestly.

1. A sandbox Zendesk is seeded with the team (English rows of ../shared/data/synthetic_tickets_nc, each
   ticket once; groups from the set's type, the queue as a tag: connectors/zendesk/sandbox_history.py)
   and its history pulled through zenpy (or `--data FILE`, a pulled file).
2. The routing head fitted as `triage learn` fits it (model/routing_head.py: older 80% trains, the
   newest 15% of that validates, the newest 20% is held out), by group, by Zendesk type, and by the
   set's queue (from the tag) for comparison: accuracy and macro-F1 against the majority group with
   paired bootstrap 95% intervals, per-group precision / recall, the groups left out, the confidence
   floor and the share answered at it.
3. The same head written into a copy of the shipped graph and served by the runtime: its answers
   on the held-out tickets agree with the fitted head's.
4. How many training tickets a group needs (the default of --min-group-tickets): heads fitted on k
   random tickets of each group of the older 80%, five draws, recall of each group on the newest 20%;
   and one group made rare (k training tickets, the others whole): its precision and recall.

    nice -n 19 python bench/routing_bench.py [--data TEAM.jsonl] [--out bench/out/routing]

Prints a JSON summary and writes OUT/<time>/summary.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from model import metrics  # noqa: E402
from model.routing_head import (  # noqa: E402
    GroupExample,
    RoutingHead,
    fit_linear,
    fit_routing,
    group_examples,
    time_split,
    write_routing,
)


def pull(out: Path) -> dict:
    from zenpy import Zenpy

    from connectors.zendesk.history import ZendeskHistory
    from connectors.zendesk.history import pull as pull_history
    from connectors.zendesk.sandbox import ZendeskSandbox
    from connectors.zendesk.sandbox_history import load_history, team

    members = team()
    with ZendeskSandbox() as zd:
        os.environ.update(zd.env)
        now = time.time()
        load_history(zd, members, now=now)
        history = ZendeskHistory(Zenpy(subdomain="sandbox", email="bench@example.com", token="t",
                                       disable_cache=True), zd.bot_user_id)
        result = pull_history(history, out, since=datetime.fromtimestamp(now - 400 * 86400, UTC), progress=False)
    return {"team_tickets": len(members), "rows": result.total, "seconds": round(result.seconds, 1)}


def queue_examples(path: Path) -> list[GroupExample]:
    """The set's queue, which the sandbox keeps as a tag (queue_...), as if it were the group."""
    from model.textprep import ticket_text
    from worker.history import read_rows

    out = []
    for row in read_rows(path):
        tag = next((t for t in row.tags if t.startswith("queue_")), "")
        text = ticket_text(row.subject, row.text)
        if tag and text:
            out.append(GroupExample(text, tag.removeprefix("queue_").replace("_", " "), row.created_at, row.id))
    return sorted(out, key=lambda e: (e.created_at, e.id))


def macro_f1_gain(y: np.ndarray, a: np.ndarray, b: np.ndarray, labels: tuple[str, ...], rounds: int = 2000,
                  seed: int = 7) -> dict:
    """Paired bootstrap of macro-F1(a) - macro-F1(b) over the same rows."""
    rng = np.random.default_rng(seed)

    def f1(idx: np.ndarray, pred: np.ndarray) -> float:
        return float(metrics.summary(y[idx], pred[idx], labels)["macro_f1"])

    diffs = [f1(idx, a) - f1(idx, b) for idx in (rng.integers(0, len(y), len(y)) for _ in range(rounds))]
    lo, hi = np.quantile(diffs, [0.025, 0.975])
    whole = np.arange(len(y))
    return {"difference": round(f1(whole, a) - f1(whole, b), 4), "ci95": [round(float(lo), 4), round(float(hi), 4)],
            "rounds": rounds}


def held_out(examples: list[GroupExample], head: RoutingHead) -> tuple[list[GroupExample], np.ndarray]:
    """The newest 20% of the tickets whose group the head knows, and their label indices."""
    _, newest = time_split(examples, 0.2)
    index = {g: i for i, g in enumerate(head.labels)}
    kept = [e for e in newest if e.group in index]
    return kept, np.array([index[e.group] for e in kept], dtype=int)


def measure(examples: list[GroupExample], features, name: str, min_tickets: int) -> tuple[RoutingHead, dict]:
    t0 = time.monotonic()
    head = fit_routing(examples, features, name, min_tickets)
    rows, y = held_out(examples, head)
    pred = head.rule.decide_indices(head.rule.probabilities(head.logits(features([e.text for e in rows]))))
    majority = np.full_like(y, head.labels.index(head.figures["majority"]))
    held = head.figures["held_out"]
    return head, {
        "groups": list(head.labels), "left_out": head.left_out, "shipped": head.shipped, "reason": head.reason,
        "n_held_out": held["n"], "outside_groups": held["outside_groups"],
        "accuracy": held["accuracy"], "majority_accuracy": held["majority_accuracy"],
        "accuracy_gain": held["accuracy_gain"],
        "macro_f1": held["macro_f1"], "majority_macro_f1": held["majority_macro_f1"],
        "macro_f1_gain": macro_f1_gain(y, pred, majority, head.labels),
        "floor": head.rule.abstain_below, "answered_share": held["answered_share"],
        "answered_accuracy": held["answered_accuracy"], "temperature": round(head.rule.temperature, 4),
        "C": head.rule.notes["C"], "validation": {k: head.figures["validation"][k] for k in
                                                 ("n", "accuracy", "majority_accuracy", "accuracy_gain")},
        "per_group": {g: {k: pc[k] for k in ("precision", "recall", "support")} for g, pc in held["per_group"].items()},
        "seconds": round(time.monotonic() - t0, 1)}


def served(head: RoutingHead, examples: list[GroupExample], features) -> dict:
    """The head written into a copy of the shipped graph: the runtime's decisions on the held-out tickets
    against the fitted head's."""
    from model.runtime import DEFAULT_MODEL_DIR, TriageModel

    rows, _ = held_out(examples, head)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "routed"
        shutil.copytree(DEFAULT_MODEL_DIR, model_dir)
        write_routing(model_dir, head)
        model = TriageModel(model_dir)
        t0 = time.monotonic()
        graph = model.group_logits([e.text for e in rows])
        seconds = time.monotonic() - t0
    fitted = head.logits(features([e.text for e in rows]))
    return {"n": len(rows), "same_best_guess": round(float((graph.argmax(1) == fitted.argmax(1)).mean()), 4),
            "max_logit_difference": round(float(np.abs(graph - fitted).max()), 6),
            "texts_per_s": round(len(rows) / seconds, 1)}


def split_features(examples: list[GroupExample], features, head: RoutingHead) -> tuple:
    """(x, y) of the older 80% and of the newest 20%, the head's groups only."""
    older, _ = time_split(examples, 0.2)
    index = {g: i for i, g in enumerate(head.labels)}
    older = [e for e in older if e.group in index]
    rows, y_new = held_out(examples, head)
    return (features([e.text for e in older]), np.array([index[e.group] for e in older]),
            features([e.text for e in rows]), y_new)


def needs(examples: list[GroupExample], features, head: RoutingHead, draws: int = 5) -> dict:
    """Recall of each group on the newest 20% when every group had k training tickets (older 80%)."""
    x_old, y_old, x_new, y_new = split_features(examples, features, head)
    g = len(head.labels)
    out = {}
    for k in (5, 10, 20, 30, 60, 120, 250):
        recalls, f1s = [], []
        for seed in range(draws):
            rng = np.random.default_rng(seed)
            idx = np.concatenate([rng.choice(np.flatnonzero(y_old == c), min(k, int((y_old == c).sum())),
                                             replace=False) for c in range(g)])
            w, b = fit_linear(x_old[idx], y_old[idx], g, head.rule.notes["C"], seed)
            m = metrics.summary(y_new, (x_new @ w.T + b).argmax(1), head.labels)
            recalls.append([m["per_class"][lab]["recall"] for lab in head.labels])
            f1s.append(m["macro_f1"])
        r = np.array(recalls)
        out[k] = {"macro_f1_mean": round(float(np.mean(f1s)), 4),
                  "recall_mean_by_group": {lab: round(float(v), 4) for lab, v in zip(head.labels, r.mean(0))},
                  "worst_group_recall_mean": round(float(r.mean(0).min()), 4),
                  "chance_recall": round(1 / g, 4)}
    return out


def rare(examples: list[GroupExample], features, head: RoutingHead, draws: int = 3) -> dict:
    """One group made rare: its training tickets (older 80%) cut to k, the others kept whole; that group's
    precision / recall on the newest 20%, mean over the groups and `draws` draws."""
    x_old, y_old, x_new, y_new = split_features(examples, features, head)
    g = len(head.labels)
    full = metrics.summary(y_new, (x_new @ head.weights.T + head.bias).argmax(1), head.labels)["per_class"]
    out = {"all": {"precision": round(float(np.mean([full[lab]["precision"] for lab in head.labels])), 4),
                   "recall": round(float(np.mean([full[lab]["recall"] for lab in head.labels])), 4)}}
    for k in (5, 10, 20, 30, 60):
        p, r = [], []
        for c in range(g):
            for seed in range(draws):
                rng = np.random.default_rng(seed)
                mine = rng.choice(np.flatnonzero(y_old == c), min(k, int((y_old == c).sum())), replace=False)
                idx = np.concatenate([np.flatnonzero(y_old != c), mine])
                w, b = fit_linear(x_old[idx], y_old[idx], g, head.rule.notes["C"], seed)
                pc = metrics.summary(y_new, (x_new @ w.T + b).argmax(1), head.labels)["per_class"][head.labels[c]]
                p.append(pc["precision"])
                r.append(pc["recall"])
        out[k] = {"precision": round(float(np.mean(p)), 4), "recall": round(float(np.mean(r)), 4)}
    return out


def main(argv: list[str] | None = None) -> int:
    from model.learn import FeatureCache
    from model.runtime import DEFAULT_MODEL_DIR

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, help="a pulled history file (default: seed a sandbox and pull it)")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "routing")
    p.add_argument("--min-group-tickets", type=int, default=30)
    args = p.parse_args(argv)
    out = args.out / datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    summary: dict = {"started": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    data = args.data
    if data is None:
        data = out / "team.jsonl"
        summary["pull"] = pull(data)
    summary["data"] = str(data)
    cache = FeatureCache(Path(DEFAULT_MODEL_DIR), None, progress=sys.stderr.isatty())
    sets = {"group": group_examples([data], "group"), "type": group_examples([data], "type"),
            "queue (tag)": queue_examples(data)}
    heads = {}
    for name, examples in sets.items():
        heads[name], summary[name] = measure(examples, cache.features, name, args.min_group_tickets)
        print(name, json.dumps({k: summary[name][k] for k in ("accuracy", "majority_accuracy", "macro_f1",
                                                              "majority_macro_f1")}), file=sys.stderr, flush=True)
    summary["served"] = served(heads["group"], sets["group"], cache.features)
    summary["needs"] = needs(sets["group"], cache.features, heads["group"])
    summary["queue_needs"] = needs(sets["queue (tag)"], cache.features, heads["queue (tag)"])
    summary["rare"] = rare(sets["group"], cache.features, heads["group"])
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    print(f"wrote {out / 'summary.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
