"""Figures of a model artifact on the support validation set and on other-language text, as the product
says them ("unsure" is not high), for the model card:

    python -m model.support_eval --model-dir model/artifacts/triage-v3 [--misses]

- the support set (model/validation/urgency_support.csv): the issue's measures on each half
  (`select` picks thresholds; `report` is held back), both confusions (calm but urgent tickets found,
  angry but not urgent ones called high), and with --misses a Markdown table of the report half's misses;
- XLM-T val (other languages; its test split stays held out): the share of texts given a confident
  sentiment, and a confident wrong one, per language;
- TweetEval val (English tweets): the share the language gate withholds.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from model.data import SENTIMENT_LABELS, sentiment_index
from model.runtime import TriageModel
from model.urgency_head import read_support, support_figures

REPO = Path(__file__).resolve().parent.parent


def xlmt_confidence(model: TriageModel, data_root: Path) -> dict:
    with (data_root / "multilingual_sentiment" / "val.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    preds = model.score([r["text"] for r in rows], top_words=0)
    out: dict = {}
    for lang in sorted({r["language"] for r in rows}):
        idx = [i for i, r in enumerate(rows) if r["language"] == lang]
        confident = [not preds[i].sentiment.abstained for i in idx]
        wrong = [preds[i].sentiment.best_guess != SENTIMENT_LABELS[sentiment_index(rows[i]["label"])] for i in idx]
        out[lang] = {"n": len(idx), "confident": round(sum(confident) / len(idx), 3),
                     "confident_wrong": round(sum(c and w for c, w in zip(confident, wrong)) / len(idx), 3)}
    others = [v for k, v in out.items() if k != "en"]
    out["other_languages"] = {k: round(sum(v[k] for v in others) / len(others), 3)
                              for k in ("confident", "confident_wrong")}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-dir", default=str(REPO / "model" / "artifacts" / "triage-v3"))
    p.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"))
    p.add_argument("--misses", action="store_true", help="print the report half's misses as a Markdown table")
    args = p.parse_args(argv)
    model = TriageModel(args.model_dir, threads=1)
    support = read_support()
    preds = model.score([r["text"] for r in support], top_words=0)
    labels = [pr.urgency.label for pr in preds]
    result: dict = {"version": model.version}
    for part in ("select", "report"):
        idx = [i for i, r in enumerate(support) if r["split"] == part]
        result[part] = support_figures([labels[i] for i in idx], [support[i] for i in idx])
    result["xlmt_val"] = xlmt_confidence(model, Path(args.data_root))
    with (Path(args.data_root) / "tweeteval_sentiment" / "val.csv").open(newline="", encoding="utf-8") as f:
        english = [r["text"] for r in csv.DictReader(f)]
    result["tweeteval_val_withheld_by_language"] = round(
        sum(not model.gate.detect(t).supported for t in english) / len(english), 4)
    print(json.dumps(result, indent=2))
    if args.misses:
        print("\n| truth | said | P(high) | sentiment | kind | domain | text |\n|---|---|---|---|---|---|---|")
        for r, pr, lab in zip(support, preds, labels):
            if r["split"] != "report" or (lab == "high") == (r["urgency"] == "high"):
                continue
            text = r["text"].replace("\n", " / ").replace("|", "/")
            print(f"| {r['urgency']} | {lab} | {pr.urgency.probabilities['high']:.2f} | {r['sentiment']} | "
                  f"{r['kind']} | {r['domain']} | {text[:110]} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
