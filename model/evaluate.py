"""Evaluation of the ONNX runtime on any labelled CSV: metrics, a Markdown report, PNG plots.

Needs numpy and the runtime; matplotlib for the plots (in the `eval` extra).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from model import metrics
from model.data import SENTIMENT_LABELS, URGENCY_LABELS, Row
from model.runtime import TriageModel

HEAD_LABELS = {"sentiment": SENTIMENT_LABELS, "urgency": URGENCY_LABELS}


def evaluate_rows(model: TriageModel, rows: list[Row], progress: bool = True) -> dict:
    """Metrics per head over the rows that carry that head's label."""
    texts = [r.text for r in rows]
    chunks = range(0, len(texts), 256)
    s_parts, u_parts = [], []
    iterator = chunks
    if progress and len(texts) > 512:
        from tqdm import tqdm

        iterator = tqdm(chunks, desc="scoring", unit="x256")
    for start in iterator:
        s, u = model.logits(texts[start : start + 256])
        s_parts.append(s)
        u_parts.append(u)
    logits = {"sentiment": np.concatenate(s_parts), "urgency": np.concatenate(u_parts)}
    result: dict = {"model_version": model.version, "rows": len(rows)}
    for head, labels in HEAD_LABELS.items():
        y = np.array([getattr(r, head) for r in rows])
        keep = y >= 0
        if not keep.any():
            continue
        rule = model.rules[head]
        probs = rule.probabilities(logits[head][keep])
        pred = rule.decide_indices(probs)
        m = metrics.summary(y[keep], pred, labels)
        plain = metrics.summary(y[keep], probs.argmax(1), labels)  # without the decision rule
        m["argmax_macro_recall"], m["argmax_macro_f1"] = plain["macro_recall"], plain["macro_f1"]
        m["ece"] = metrics.expected_calibration_error(probs, y[keep])
        m["reliability"] = metrics.reliability(probs, y[keep])
        conf = probs[np.arange(len(pred)), pred]
        answered = conf >= rule.abstain_below
        m["abstain"] = {"floor": rule.abstain_below, "coverage": float(answered.mean()),
                        "accuracy_when_answered": float((pred == y[keep])[answered].mean()) if answered.any() else 0.0}
        if head == "urgency":
            is_high = y[keep] == 0
            pc = m["per_class"]["high"]
            m["high"] = {"precision": pc["precision"], "recall": pc["recall"], "support": int(is_high.sum())}
            p, r, _ = metrics.precision_recall_curve(probs[:, 0], is_high)
            m["high_pr_curve"] = {"precision": p.tolist(), "recall": r.tolist()}
        result[head] = m
    return result


def plot(result: dict, out_dir: Path, title: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    heads = [h for h in HEAD_LABELS if h in result]
    fig, axes = plt.subplots(1, len(heads), figsize=(5 * len(heads), 4.2), squeeze=False)
    for ax, head in zip(axes[0], heads):
        cm = np.array(result[head]["confusion"])
        norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        labels = HEAD_LABELS[head]
        ax.set_xticks(range(3), labels)
        ax.set_yticks(range(3), labels)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        for i in range(3):
            for j in range(3):
                ax.text(j, i, f"{cm[i, j]}\n{norm[i, j]:.0%}", ha="center", va="center",
                        color="white" if norm[i, j] > 0.5 else "black", fontsize=9)
        ax.set_title(f"{head}: macro-F1 {result[head]['macro_f1']:.3f}")
    fig.suptitle(f"Confusion matrices - {title}")
    fig.tight_layout()
    paths.append(out_dir / "confusion.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    for head in heads:
        rel = result[head]["reliability"]
        ax.plot([c for c, _, _ in rel], [a for _, a, _ in rel], "o-",
                label=f"{head} (ECE {result[head]['ece']:.3f})")
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(f"Reliability - {title}")
    ax.legend()
    fig.tight_layout()
    paths.append(out_dir / "reliability.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    if "urgency" in result and result["urgency"]["high"]["support"]:
        curve = result["urgency"]["high_pr_curve"]
        fig, ax = plt.subplots(figsize=(5, 5))
        ax.plot(curve["recall"], curve["precision"])
        h = result["urgency"]["high"]
        ax.plot([h["recall"]], [h["precision"]], "ro", label="decision threshold")
        ax.set_xlabel("recall (urgency = high)")
        ax.set_ylabel("precision")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_title(f"High urgency precision-recall - {title}")
        ax.legend()
        fig.tight_layout()
        paths.append(out_dir / "high_urgency_pr.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths


def markdown(result: dict, title: str, images: list[Path]) -> str:
    lines = [f"# Evaluation: {title}", "", f"Model `{result['model_version']}`, {result['rows']} rows.", ""]
    for head in HEAD_LABELS:
        if head not in result:
            continue
        m = result[head]
        lines += [f"## {head} ({m['n']} labelled rows)", "",
                  f"macro-F1 **{m['macro_f1']:.3f}**, macro-recall **{m['macro_recall']:.3f}** "
                  f"(plain argmax, without the decision rule: macro-F1 {m['argmax_macro_f1']:.3f}, "
                  f"macro-recall {m['argmax_macro_recall']:.3f}), "
                  f"accuracy {m['accuracy']:.3f}, ECE {m['ece']:.3f}", "",
                  "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
        for lab, pc in m["per_class"].items():
            lines.append(f"| {lab} | {pc['precision']:.3f} | {pc['recall']:.3f} | {pc['f1']:.3f} "
                         f"| {int(pc['support'])} |")
        a = m["abstain"]
        lines += ["", f"Abstaining below confidence {a['floor']}: answers {a['coverage']:.1%} of rows, "
                      f"{a['accuracy_when_answered']:.1%} of them right.", ""]
        if head == "urgency":
            lines += [f"High urgency: precision {m['high']['precision']:.3f}, recall {m['high']['recall']:.3f} "
                      f"({m['high']['support']} high rows).", ""]
    lines += [f"![{p.stem}]({p.name})" for p in images]
    return "\n".join(lines) + "\n"


def evaluate_file(model: TriageModel, rows: list[Row], out_dir: str | Path, title: str) -> dict:
    out = Path(out_dir)
    result = evaluate_rows(model, rows)
    images = plot(result, out, title)
    (out / "report.md").write_text(markdown(result, title, images))
    return result
