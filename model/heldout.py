"""The closing figures: every held-out test split, beside a TF-IDF baseline on the same rows."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from model.data import load_splits
from model.evaluate import evaluate_file
from model.runtime import TriageModel


def evaluate_heldout(model: TriageModel, config: str, data_root: str, out: Path) -> dict:
    cfg = yaml.safe_load(Path(config).read_text())
    splits = load_splits(cfg["datasets"], data_root, int(cfg["seed"]))
    results = {name: evaluate_file(model, rows, out / name, name) for name, rows in splits.test.items()}
    try:
        from model.baseline import baseline

        recall = {name: r["urgency"]["high"]["recall"] for name, r in results.items() if "urgency" in r}
        base = baseline(splits, int(cfg["seed"]), high_recall=recall)
    except ImportError:
        base = {}
        print("scikit-learn not installed: no baseline (pip install -e '.[train]')")
    figures: dict = {}
    for name, result in results.items():
        for head in ("sentiment", "urgency"):
            if head not in result:
                continue
            m = result[head]
            entry = {"n": m["n"], "macro_f1": round(m["macro_f1"], 4), "macro_recall": round(m["macro_recall"], 4),
                     "argmax_macro_f1": round(m["argmax_macro_f1"], 4), "ece": round(m["ece"], 4)}
            if head == "urgency":
                entry.update(high_precision=round(m["high"]["precision"], 4),
                             high_recall=round(m["high"]["recall"], 4))
            if f"{name}/{head}" in base:
                entry["baseline"] = {k: round(v, 4) for k, v in base[f"{name}/{head}"].items()}
            figures[f"{name}/{head}"] = entry
    (out / "heldout.json").write_text(json.dumps(figures, indent=2))
    lines = ["| test set / head | n | macro-F1 | macro-recall | macro-F1 (argmax) | high P / R | TF-IDF+LR macro-F1 "
             "| TF-IDF+LR high P / R | TF-IDF+LR high P at the model's R |",
             "|---|---|---|---|---|---|---|---|---|"]
    for key, e in figures.items():
        b = e.get("baseline", {})
        hp = f"{e['high_precision']:.3f} / {e['high_recall']:.3f}" if "high_precision" in e else ""
        bhp = f"{b['high_precision']:.3f} / {b['high_recall']:.3f}" if "high_precision" in b else ""
        matched = f"{b['high_precision_at_model_recall']:.3f}" if "high_precision_at_model_recall" in b else ""
        lines.append(f"| {key} | {e['n']} | {e['macro_f1']:.3f} | {e['macro_recall']:.3f} | {e['argmax_macro_f1']:.3f} "
                     f"| {hp} | "
                     f"{b.get('macro_f1', float('nan')):.3f} | {bhp} | {matched} |")
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    meta_path = model.dir / "triage.json"
    meta = json.loads(meta_path.read_text())
    meta["metrics"] = {"variant": model.variant, "heldout": figures}
    meta_path.write_text(json.dumps(meta, indent=2))
    return figures
