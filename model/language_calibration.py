"""Measure which languages the model reads, and calibrate the language gate (model/language.py).

    python -m model.language_calibration --model-dir model/artifacts/triage-v3 [--write]

Data: XLM-T sentiment train and val (8 languages; its test split stays held out), TweetEval val
(English tweets) and the support validation set (model/validation/urgency_support.csv, English).

1. Per language, the model's sentiment on XLM-T train, without a gate: macro-recall, the share of
   texts it answers with confidence, and the share it answers with confidence and wrongly. A
   language joins English (the reference) when its macro-recall is within `--recall-gap` of
   English's and its confidently-wrong share at most `--max-confident-wrong` above English's.
2. The gate's two numbers, on XLM-T train plus the English sets: for each minimum number of letters
   and each minimum probability of the supported languages, the share of English texts it would
   withhold and the share of other-language texts it would catch. The setting kept catches the most
   while withholding at most `--max-english-loss` of English texts. XLM-T val then checks it.

`--write` stores the result in the artifact's triage.json (`language`).
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np

from model.data import SENTIMENT_LABELS, read_csv, sentiment_index
from model.language import LanguageGate, letters
from model.metrics import summary
from model.runtime import TriageModel

REPO = Path(__file__).resolve().parent.parent
XLMT = "multilingual_sentiment"


def _xlmt(root: Path, split: str) -> list[tuple[str, int, str]]:
    with (root / XLMT / f"{split}.csv").open(newline="", encoding="utf-8") as f:
        return [(r["text"], sentiment_index(r["label"]), r["language"]) for r in csv.DictReader(f)]


def per_language(model: TriageModel, rows: list[tuple[str, int, str]]) -> dict[str, dict]:
    """The model's sentiment per language, no gate: as v2 answered every text."""
    preds = model.score([t for t, _, _ in rows], top_words=0)
    out: dict[str, dict] = {}
    for lang in sorted({lang for _, _, lang in rows}):
        idx = [i for i, r in enumerate(rows) if r[2] == lang]
        y = np.array([rows[i][1] for i in idx])
        guess = np.array([SENTIMENT_LABELS.index(preds[i].sentiment.best_guess) for i in idx])
        confident = np.array([not preds[i].sentiment.abstained for i in idx])
        out[lang] = {"n": len(idx), "macro_recall": round(summary(y, guess, SENTIMENT_LABELS)["macro_recall"], 4),
                     "coverage": round(float(confident.mean()), 4),
                     "confident_wrong": round(float((confident & (guess != y)).mean()), 4)}
    return out


def calibrate(english: list[str], other: list[str], supported: tuple[str, ...], max_english_loss: float) -> dict:
    gate = LanguageGate(supported, 1.0)
    def p_supported(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        p = np.array([sum(gate.probabilities(t).get(k, 0.0) for k in supported) for t in texts])
        return p, np.array([letters(t) for t in texts])

    pe, le = p_supported(english)
    po, lo = p_supported(other)
    feasible = []
    for min_letters in (0, 6, 8, 10, 12, 16, 20, 24):
        for threshold in sorted({*np.round(np.geomspace(1e-4, 0.9, 60), 5)}):
            withheld = float(((le >= min_letters) & (pe < threshold)).mean())
            caught = float(((lo >= min_letters) & (po < threshold)).mean())
            if withheld <= max_english_loss:
                feasible.append({"min_letters": min_letters, "min_supported_probability": float(threshold),
                                 "english_withheld": round(withheld, 4), "other_caught": round(caught, 4)})
    # Within half a point of the best catch, the largest letter floor: a detector guessing at "ok" or
    # "404" withholds short English replies that the calibration sets hardly contain.
    top = max(f["other_caught"] for f in feasible)
    near = [f for f in feasible if f["other_caught"] >= top - 0.005]
    return max(near, key=lambda f: (f["min_letters"], f["other_caught"]))


def gate_figures(gate: LanguageGate, texts: list[str]) -> float:
    return float(np.mean([not gate.detect(t).supported for t in texts])) if texts else 0.0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-dir", default=str(REPO / "model" / "artifacts" / "triage-v3"))
    p.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"))
    p.add_argument("--recall-gap", type=float, default=0.05)
    p.add_argument("--max-confident-wrong", type=float, default=0.05,
                   help="how much more often than on English a supported language may be confidently wrong")
    p.add_argument("--max-english-loss", type=float, default=0.005)
    p.add_argument("--write", action="store_true", help="store the result in the artifact's triage.json")
    args = p.parse_args(argv)
    root = Path(args.data_root)
    model = TriageModel(args.model_dir, threads=1)
    train, val = _xlmt(root, "train"), _xlmt(root, "val")
    started = time.time()
    langs = per_language(model, train)
    en = langs["en"]
    # English is the reference (the encoder was trained on it); another language joins when the model
    # reads it about as well
    supported = ("en",) + tuple(k for k, v in langs.items() if k != "en"
                                and v["macro_recall"] >= en["macro_recall"] - args.recall_gap
                                and v["confident_wrong"] <= en["confident_wrong"] + args.max_confident_wrong)
    support_set = [r.text for r in read_csv(REPO / "model" / "validation" / "urgency_support.csv",
                                            urgency_col="urgency")]
    tweeteval_val = [r.text for r in read_csv(root / "tweeteval_sentiment" / "val.csv", sentiment_col="label")]
    english = [t for t, _, lang in train if lang in supported] + tweeteval_val + support_set
    other = [t for t, _, lang in train if lang not in supported]
    best = calibrate(english, other, supported, args.max_english_loss)
    gate = LanguageGate(supported, best["min_supported_probability"], best["min_letters"])
    check = {lang: round(gate_figures(gate, [t for t, _, x in val if x == lang]), 4)
             for lang in sorted({x for _, _, x in val})}
    result = {
        "supported": list(supported), "min_supported_probability": best["min_supported_probability"],
        "min_letters": best["min_letters"], "detector": "py3langid (wheel model), normalised probabilities",
        "chosen_by": (f"most other-language XLM-T train texts caught while withholding at most "
                      f"{args.max_english_loss} of English texts (XLM-T en train, TweetEval val, support set)"),
        "calibration": best,
        "supported_rule": (f"English, and each language whose XLM-T train sentiment macro-recall is within "
                           f"{args.recall_gap} of English's and whose confidently-wrong share is at most "
                           f"{args.max_confident_wrong} above English's"),
        "per_language_xlmt_train_no_gate": langs,
        "withheld_share_xlmt_val": check,
        "withheld_share_support_set": round(gate_figures(gate, support_set), 4),
        "withheld_share_tweeteval_val": round(gate_figures(gate, tweeteval_val), 4),
    }
    print(json.dumps(result, indent=2))
    print(f"({time.time() - started:.0f} s)")
    if args.write:
        meta_path = Path(args.model_dir) / "triage.json"
        meta = json.loads(meta_path.read_text())
        meta["language"] = result
        meta_path.write_text(json.dumps(meta, indent=2))
        print(f"wrote {meta_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
