"""Challenger against champion: the same report for both, and the promotion gate.

On the team's newest tickets (held out by `triage learn`'s time split) and on a public sentiment
sample: per class precision / recall / F1, high-urgency precision and recall at each model's own
threshold, calibration (ECE), the confusion matrix, and a precision-vs-coverage plot. Written as
report.md + report.json + coverage.png.

The gate (all must hold):
- urgency macro-F1 on the team's newest tickets >= the champion's;
- no urgency class's recall more than 2 points below the champion's;
- public sentiment macro-recall not more than 0.02 below the champion's (skipped, and said so,
  when the public data is absent);
- on the support-like urgency validation set (model/validation/urgency_support.csv: hand-written
  tickets whose urgency no support lead would dispute), macro-F1 not more than 0.02 below the
  champion's and high-urgency recall not more than 2 points below: a team's head must not unlearn
  that an outage is urgent. (Beyond issue 17's gate: without it, the synthetic team's challenger,
  better on the team's tickets, halves v3's high recall there and would be promoted.)

The routing head (model/routing_head.py), when `triage learn` fitted one, has its own section: not a
gate check (the gate is about urgency and sentiment), but a head that does not beat the majority
group by a clear margin on the validation slice is not shipped, and the section says so.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from model import metrics
from model.data import SENTIMENT_LABELS, URGENCY_LABELS, Row
from model.decision import DecisionRule

SUPPORT_SET = Path(__file__).parent / "validation" / "urgency_support.csv"  # model/validation (issue 16)
RECALL_DROP = 0.02
SENTIMENT_DROP = 0.02
SUPPORT_DROP = 0.02
LABELS = {"sentiment": SENTIMENT_LABELS, "urgency": URGENCY_LABELS}


@dataclass
class Check:
    name: str
    champion: float | None
    challenger: float | None
    passed: bool
    rule: str


@dataclass
class GateResult:
    passed: bool
    checks: list[Check] = field(default_factory=list)

    @property
    def reasons(self) -> list[str]:
        """What failed, in words."""
        return [f"{c.name}: {c.challenger:.4f} against the champion's {c.champion:.4f} ({c.rule})"
                for c in self.checks if not c.passed and c.champion is not None and c.challenger is not None]

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "checks": [asdict(c) for c in self.checks], "reasons": self.reasons}


def probabilities(model: Any, texts: Sequence[str], head: str) -> np.ndarray:
    """Calibrated probabilities of one head, as the model decides (its triage.json rule)."""
    parts = []
    for start in range(0, len(texts), 256):
        s, u = model.logits(list(texts[start : start + 256]))
        parts.append(s if head == "sentiment" else u)
    logits = np.concatenate(parts) if parts else np.zeros((0, 3))
    return np.asarray(model.rules[head].probabilities(logits))


def head_report(probs: np.ndarray, y: np.ndarray, rule: DecisionRule, head: str) -> dict[str, Any]:
    """Metrics of one head on labelled rows, decided by the model's own rule (threshold included)."""
    labels = LABELS[head]
    pred = rule.decide_indices(probs)
    m = metrics.summary(y, pred, labels)
    m["ece"] = metrics.expected_calibration_error(probs, y)
    conf = probs[np.arange(len(pred)), pred]
    answered = (conf >= rule.abstain_below) | ((pred == rule.labels.index(rule.threshold_label))
                                               if rule.threshold_label else False)
    m["answered"] = {"floor": rule.abstain_below, "share": float(answered.mean()) if len(pred) else 0.0,
                     "accuracy": float((pred == y)[answered].mean()) if answered.any() else 0.0}
    order = np.argsort(-conf, kind="stable")
    correct = (pred == y)[order].astype(float)
    n = np.arange(1, len(order) + 1)
    m["coverage_curve"] = {"coverage": (n / max(len(order), 1)).tolist()[:: max(1, len(order) // 100)],
                           "precision": (np.cumsum(correct) / n).tolist()[:: max(1, len(order) // 100)]}
    if head == "urgency":
        pc = m["per_class"]["high"]
        m["high"] = {"precision": pc["precision"], "recall": pc["recall"], "support": int((y == 0).sum()),
                     "threshold": rule.threshold if rule.threshold_label == "high" else None}
    return m


def evaluate(model: Any, rows: Sequence[Row], head: str) -> dict[str, Any]:
    y = np.array([getattr(r, head) for r in rows])
    keep = y >= 0
    texts = [r.text for r, k in zip(rows, keep) if k]
    out = head_report(probabilities(model, texts, head), y[keep], model.rules[head], head)
    out["model_version"] = model.version
    return out


def gate(champion: dict[str, Any], challenger: dict[str, Any], public_champion: dict[str, Any] | None = None,
         public_challenger: dict[str, Any] | None = None, support_champion: dict[str, Any] | None = None,
         support_challenger: dict[str, Any] | None = None) -> GateResult:
    """Compare two urgency reports on the team's slice (and two public sentiment reports, and two
    support-like urgency reports, when given)."""
    checks = [Check("team urgency macro-F1", champion["macro_f1"], challenger["macro_f1"],
                    challenger["macro_f1"] >= champion["macro_f1"], "must be at least the champion's")]
    for label in URGENCY_LABELS:
        a, b = champion["per_class"][label], challenger["per_class"][label]
        if a["support"] == 0:
            continue
        checks.append(Check(f"team urgency recall of {label}", a["recall"], b["recall"],
                            b["recall"] >= a["recall"] - RECALL_DROP - 1e-12,
                            f"may drop at most {RECALL_DROP * 100:g} points"))
    if public_champion and public_challenger:
        a, b = public_champion["macro_recall"], public_challenger["macro_recall"]
        checks.append(Check("public sentiment macro-recall", a, b, b >= a - SENTIMENT_DROP - 1e-12,
                            f"may drop at most {SENTIMENT_DROP:g}"))
    else:
        checks.append(Check("public sentiment macro-recall", None, None, True,
                            "not checked: no public sentiment data (--data-root)"))
    if support_champion and support_challenger:  # obvious urgency: what a team's head must not unlearn
        a, b = support_champion["macro_f1"], support_challenger["macro_f1"]
        checks.append(Check("support-like urgency macro-F1", a, b, b >= a - SUPPORT_DROP - 1e-12,
                            f"may drop at most {SUPPORT_DROP:g}"))
        a, b = support_champion["high"]["recall"], support_challenger["high"]["recall"]
        checks.append(Check("support-like high-urgency recall", a, b, b >= a - RECALL_DROP - 1e-12,
                            f"may drop at most {RECALL_DROP * 100:g} points"))
    return GateResult(all(c.passed for c in checks), checks)


def public_sentiment_rows(data_root: Path | None, n: int = 600, seed: int = 13) -> list[Row]:
    """A fixed sample of TweetEval's validation split (the set the shipped model was selected on)."""
    if data_root is None:
        return []
    path = Path(data_root) / "tweeteval_sentiment" / "val.csv"
    if not path.is_file():
        return []
    import random

    from model.data import read_csv

    rows = read_csv(path, "text", "label", None, source="tweeteval_val")
    random.Random(seed).shuffle(rows)
    return rows[:n]


def support_rows(path: Path = SUPPORT_SET) -> list[Row]:
    """The support-like urgency validation set (hand-written tickets, model/validation/GUIDELINE.md)."""
    if not path.is_file():
        return []
    from model.data import read_csv

    return read_csv(path, "text", None, "urgency", source="support_validation")


# -- the report --------------------------------------------------------------------------------------


def fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}"


def _table(report: dict[str, Any], labels: Sequence[str]) -> list[str]:
    lines = ["| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    for lab in labels:
        pc = report["per_class"][lab]
        lines.append(f"| {lab} | {pc['precision']:.3f} | {pc['recall']:.3f} | {pc['f1']:.3f} | {int(pc['support'])} |")
    return lines


def _confusion(report: dict[str, Any], labels: Sequence[str]) -> list[str]:
    lines = ["| true \\ predicted | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    for lab, row in zip(labels, report["confusion"]):
        lines.append(f"| {lab} | " + " | ".join(str(v) for v in row) + " |")
    return lines


def write_report(out_dir: Path, reports: dict[str, dict[str, Any]], result: GateResult,
                 context: dict[str, Any], routing: dict[str, Any] | None = None) -> Path:
    """report.md, report.json and coverage.png in `out_dir`. `reports`: champion / challenger team
    urgency reports, and public_champion / public_challenger sentiment reports when there are;
    `routing`: the routing head's summary (model/routing_head.py), beside the gate, not a check."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps({"context": context, "gate": result.to_dict(),
                                                     "reports": reports, "routing": routing}, indent=2))
    champ, chall = reports["champion"], reports["challenger"]
    lines = [f"# Challenger {chall['model_version']} against champion {champ['model_version']}", "",
             f"Team slice: the newest {champ['n']} tickets (held out by time). "
             f"Gate: **{'PASSED' if result.passed else 'FAILED'}**.", "",
             "| check | champion | challenger | passed | rule |", "|---|---|---|---|---|"]
    for c in result.checks:
        lines.append(f"| {c.name} | {fmt(c.champion)} | {fmt(c.challenger)} | {'yes' if c.passed else '**no**'} "
                     f"| {c.rule} |")
    for name, rep in (("Champion", champ), ("Challenger", chall)):
        lines += ["", f"## {name} {rep['model_version']}: team urgency", "",
                  f"macro-F1 {rep['macro_f1']:.4f}, accuracy {rep['accuracy']:.4f}, ECE {rep['ece']:.4f}; "
                  f"high urgency precision {rep['high']['precision']:.3f}, recall {rep['high']['recall']:.3f} "
                  + (f"at P(high) >= {rep['high']['threshold']}" if rep["high"]["threshold"] is not None
                     else "by its decision rule (no P(high) threshold)")
                  + f"; answered (not unsure) {rep['answered']['share']:.0%} "
                  f"of tickets at its confidence floor {rep['answered']['floor']:g}, "
                  f"accuracy {rep['answered']['accuracy']:.3f} on those", ""]
        lines += _table(rep, URGENCY_LABELS) + [""] + _confusion(rep, URGENCY_LABELS)
    for key in ("public_champion", "public_challenger"):
        if key in reports:
            rep = reports[key]
            lines += ["", f"## Public sentiment ({rep['n']} TweetEval validation tweets): {rep['model_version']}",
                      "", f"macro-recall {rep['macro_recall']:.4f}, macro-F1 {rep['macro_f1']:.4f}, "
                      f"ECE {rep['ece']:.4f}", ""] + _table(rep, SENTIMENT_LABELS)
    for key in ("support_champion", "support_challenger"):
        if key in reports:
            rep = reports[key]
            lines += ["", f"## Support-like urgency validation ({rep['n']} hand-written tickets): "
                      f"{rep['model_version']}", "",
                      f"macro-F1 {rep['macro_f1']:.4f}; high urgency precision {rep['high']['precision']:.3f}, "
                      f"recall {rep['high']['recall']:.3f}", ""] + _table(rep, URGENCY_LABELS)
    if routing:
        lines += [""] + routing_section(routing)
    lines += ["", "![precision against coverage](coverage.png)", ""]
    (out_dir / "report.md").write_text("\n".join(lines), encoding="utf-8")
    _plot(out_dir / "coverage.png", champ, chall)
    return out_dir / "report.md"


def routing_section(routing: dict[str, Any]) -> list[str]:
    """The routing head's part of the report: shipped or not and why, its figures against the
    majority group on the newest tickets, per group, and the groups left out."""
    name = routing.get("field", "group")
    lines = [f"## Routing head (by {name}): {'shipped' if routing['shipped'] else '**not shipped**'}", "",
             "Not a gate check: it ships only if it beats the majority on the validation slice by a clear margin.",
             "", f"{routing['reason']}.", ""]
    figs = routing.get("figures")
    if figs:
        held, gain = figs["held_out"], figs["held_out"]["accuracy_gain"]
        lines += [f"Newest {held['n']} tickets (held out by time): accuracy {held['accuracy']:.3f} against "
                  f"{held['majority_accuracy']:.3f} for the majority {name} ({figs['majority']}), "
                  f"{gain['difference']:+.3f}, 95% CI [{gain['ci95'][0]:+.3f}, {gain['ci95'][1]:+.3f}]; macro-F1 "
                  f"{held['macro_f1']:.3f} against {held['majority_macro_f1']:.3f}. Answered (confidence >= "
                  f"{routing.get('floor', '-')}) {held['answered_share']:.0%}, accuracy "
                  f"{held['answered_accuracy']:.3f} on those; {held['outside_groups']} tickets of {name}s left out "
                  "or never seen.", "",
                  f"| {name} | precision | recall | F1 | support |", "|---|---|---|---|---|"]
        for g, pc in held["per_group"].items():
            lines.append(f"| {g} | {pc['precision']:.3f} | {pc['recall']:.3f} | {pc['f1']:.3f} "
                         f"| {int(pc['support'])} |")
    left = routing.get("left_out") or {}
    lines += ["", f"Left out (fewer than {routing.get('min_tickets')} training tickets): "
              + (", ".join(f"{g} ({n})" for g, n in left.items()) if left else "none") + "."]
    return lines


def _plot(path: Path, champion: dict[str, Any], challenger: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for rep, style in ((champion, "--"), (challenger, "-")):
        curve = rep["coverage_curve"]
        ax.plot(curve["coverage"], curve["precision"], style, label=rep["model_version"])
    ax.set_xlabel("coverage (share of tickets answered, most confident first)")
    ax.set_ylabel("precision of the urgency label")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    ax.set_title("Team's newest tickets: urgency")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
