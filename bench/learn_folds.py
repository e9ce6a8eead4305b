"""How the challenger's form is chosen: folds of the team's OLDER tickets only.

`learn` holds out the newest 20% of the team's tickets for the challenger-vs-champion report; choosing
the form on that part would make its figures say nothing. This bench never reads it: it splits the
older 80% into K random folds, fits each variant on K-1 of them (with the replay `learn` adds, and the
temperature and decision rule fitted out of fold inside the fit part, as `learn` does) and scores the
fold left out, against the champion and word TF-IDF + logistic regression fitted on the same tickets.
The gate's checks are applied per fold: the team's recalls (2 points) and the support-like report half.

    python bench/learn_folds.py --team T.jsonl                       # the shipped form
    python bench/learn_folds.py --team T.jsonl --variant '{}' --variant '{"pooled": 1}'

T.jsonl: a pulled history (`triage history pull zendesk --sandbox 3084 --out T.jsonl`). A variant is
a JSON object; its keys, all optional:
    pooled   scale of the champion's pooled vector added as inputs (standardised, times pooled/sqrt(dim)); 0: none
    C        the regression's inverse L2 strength (default model/learn.py's C)
    margin   the decision rule's recall margin above the champion (default RULE_MARGIN)
    public   replay the public rows (default true)
    words    scale of a word 1-2 gram TF-IDF vector (scikit-learn's, as the reference's) added as inputs;
             0: none. The graph cannot compute it: a probe of whether a word view would pay

Prints one line a variant (means over the folds) and writes OUT/summary.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from learn_bench import tfidf  # noqa: E402  (the same TF-IDF + LR reference as the official split's)

from model.gate import RECALL_DROP, SUPPORT_DROP  # noqa: E402
from model.learn import C as SHIPPED_C  # noqa: E402  (the default a variant without "C" gets)

KEYS = {"pooled", "C", "margin", "public", "words"}


class Features:
    """The champion's logits, pooled vectors and token ids of every text the folds need."""

    def __init__(self, base: Path, texts: list[str]):
        from model.learn import FeatureCache
        from model.urgency_head import token_ids, vocab_size

        cache = FeatureCache(base, None)
        self.z = dict(zip(texts, cache.logits(texts)))
        self.pooled = dict(zip(texts, cache.features(texts).astype(np.float64)))
        self.ids = dict(zip(texts, token_ids(base, texts)))
        self.vocab = vocab_size(base)


def inputs_for(feats: Features, train_texts: list[str], pooled_scale: float, words_scale: float):
    """The variant's input matrix builder, fitted on the training texts (as model/learn.py Stack)."""
    import scipy.sparse as sp

    from model.learn import Stack

    stack = Stack.fitted([feats.ids[t] for t in train_texts], np.stack([feats.z[t] for t in train_texts]),
                         feats.vocab)
    p = np.stack([feats.pooled[t] for t in train_texts])
    mean, scale = p.mean(axis=0), pooled_scale / np.sqrt(p.shape[1]) / (p.std(axis=0) + 1e-9)
    if words_scale:
        from sklearn.feature_extraction.text import TfidfVectorizer

        words = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True).fit(train_texts)

    def inputs(texts: list[str]):
        x = stack.inputs([feats.ids[t] for t in texts], np.stack([feats.z[t] for t in texts]))
        if pooled_scale:
            x = sp.hstack([x, sp.csr_matrix((np.stack([feats.pooled[t] for t in texts]) - mean) * scale)]).tocsr()
        if words_scale:
            x = sp.hstack([x, words.transform(texts) * words_scale]).tocsr()
        return x

    return inputs


def run_variant(variant: dict, older: list, replay: list, support: list, feats: Features, champ_rule,
                folds: int, seed: int) -> dict:
    from sklearn.model_selection import KFold

    from model import learn, metrics
    from model.data import URGENCY_LABELS
    from model.decision import DecisionRule

    def summary(y, pred):
        return metrics.summary(y, pred, URGENCY_LABELS)

    def champion(texts):
        return champ_rule.decide_indices(champ_rule.probabilities(np.stack([feats.z[t] for t in texts])))

    learn.C = float(variant.get("C", SHIPPED_C))  # fit_stack reads the module's C
    sy = np.array([r.urgency for r in support])
    stexts = [r.text for r in support]
    per_fold = []
    for k, (fit_idx, held_idx) in enumerate(KFold(folds, shuffle=True, random_state=seed).split(older), 1):
        fit = [older[i] for i in fit_idx]
        held = [older[i] for i in held_idx]
        train = (fit + (replay if variant.get("public", True) else [])
                 + learn.support_replay(fit, learn.PROTOTYPE_SHARE, learn.SUPPORT_SHARE))
        texts = [e.text for e in train]
        inputs = inputs_for(feats, texts, float(variant.get("pooled", 0.0)), float(variant.get("words", 0.0)))
        x = inputs(texts)
        y = np.array([e.y for e in train])
        w = np.array([e.weight for e in train], float)
        fit_y = y[: len(fit)]
        floor = [summary(fit_y, champion(texts[: len(fit)]))["per_class"][lab]["recall"] for lab in URGENCY_LABELS]
        oof = learn.out_of_fold(x, y, w, len(fit), seed)
        temperature = metrics.fit_temperature(oof, fit_y)
        bias, _ = learn.decision(metrics.softmax(oof, temperature), fit_y, floor,
                                 float(variant.get("margin", learn.RULE_MARGIN)))
        rule = DecisionRule(URGENCY_LABELS, bias=bias, threshold_label="", threshold=1.0)
        coef, intercept = learn.fit_stack(x, y, w)

        def challenger(texts_, rule=rule, inputs=inputs, coef=coef, intercept=intercept, t=temperature):
            return rule.decide_indices(metrics.softmax(inputs(texts_) @ coef.T + intercept, t))

        hy, htexts = np.array([e.y for e in held]), [e.text for e in held]
        ch, ca = summary(hy, challenger(htexts)), summary(hy, champion(htexts))
        tf = summary(hy, tfidf([(e.text, e.y, e.weight) for e in fit], held))
        sc, sa = summary(sy, challenger(stexts)), summary(sy, champion(stexts))
        recalls_kept = all(ch["per_class"][lab]["recall"] >= ca["per_class"][lab]["recall"] - RECALL_DROP
                           for lab in URGENCY_LABELS)
        support_kept = (sc["macro_f1"] >= sa["macro_f1"] - SUPPORT_DROP
                        and sc["per_class"]["high"]["recall"] >= sa["per_class"]["high"]["recall"] - RECALL_DROP)
        per_fold.append({"challenger": round(ch["macro_f1"], 4), "champion": round(ca["macro_f1"], 4),
                         "tfidf_lr": round(tf["macro_f1"], 4), "recalls_kept": recalls_kept,
                         "support_kept": support_kept, "support_like": [round(sc["macro_f1"], 4),
                                                                       round(sc["per_class"]["high"]["recall"], 4)],
                         "gate_checks_pass": bool(recalls_kept and support_kept and ch["macro_f1"] >= ca["macro_f1"])})
        print(f"  fold {k}/{folds}: challenger {ch['macro_f1']:.3f}, champion {ca['macro_f1']:.3f}, "
              f"TF-IDF {tf['macro_f1']:.3f}", file=sys.stderr, flush=True)

    def mean(key: str) -> float:
        return round(float(np.mean([f[key] for f in per_fold])), 4)

    return {"variant": variant, "challenger": mean("challenger"),
            "minus_champion": round(mean("challenger") - mean("champion"), 4),
            "minus_tfidf": round(mean("challenger") - mean("tfidf_lr"), 4),
            "gate_checks_pass": f"{sum(f['gate_checks_pass'] for f in per_fold)}/{folds}", "folds": per_fold}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--team", type=Path, required=True, metavar="T.jsonl", help="a pulled history")
    ap.add_argument("--variant", action="append", metavar="JSON", help="a form to score (default: the shipped one, {})")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "learn")
    args = ap.parse_args()
    try:
        variants = [json.loads(v) for v in (args.variant or ["{}"])]
    except json.JSONDecodeError as e:
        ap.error(f"--variant must be a JSON object such as '{{\"pooled\": 1}}': {e}")
    for v in variants:
        unknown = set(v) - KEYS if isinstance(v, dict) else {"(not an object)"}
        if unknown:
            ap.error(f"--variant {json.dumps(v)}: unknown {', '.join(sorted(unknown))}; "
                     f"the keys are {', '.join(sorted(KEYS))}")
    if not args.team.is_file():
        ap.error(f"{args.team}: no such file; make it with "
                 f"`triage history pull zendesk --sandbox 3084 --out {args.team}`")

    from model import learn
    from model.decision import DecisionRule
    from model.runtime import DEFAULT_MODEL_DIR

    base = Path(DEFAULT_MODEL_DIR)
    champ_rule = DecisionRule.from_dict(json.loads((base / "triage.json").read_text())["decision"]["urgency"])
    older, _ = learn.time_split(learn.team_examples([args.team]), 0.2)  # the newest 20% is dropped unread
    replay = learn.replay_examples(args.data_root, 1000, args.seed)
    support = learn.support_report_rows()
    texts = ([e.text for e in older + replay + learn.support_replay(older, 1.0, 1.0)]
             + [r.text for r in support])
    feats = Features(base, texts)
    out = args.out / f"folds-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for variant in variants:
        t0 = time.monotonic()
        got = run_variant(variant, older, replay, support, feats, champ_rule, args.folds, args.seed)
        got["seconds"] = round(time.monotonic() - t0, 1)
        results.append(got)
        print(f"{json.dumps(variant)}: challenger {got['challenger']:.4f}, "
              f"minus champion {got['minus_champion']:+.4f}, minus TF-IDF {got['minus_tfidf']:+.4f}, "
              f"gate's checks pass {got['gate_checks_pass']} "
              f"({got['seconds']:.0f} s)", flush=True)
    (out / "summary.json").write_text(json.dumps({"team": str(args.team), "older_tickets": len(older),
                                                  "folds": args.folds, "results": results}, indent=2))
    print(f"summary: {out / 'summary.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
