"""The learning loop on the synthetic team, end to end, with honest figures.

1. A sandbox Zendesk is seeded with the team (English rows of ../shared/data/synthetic_tickets_nc, each
   ticket once; a generated team when the folder is absent) and its history is pulled through zenpy,
   with 429s injected (rate, waits).
2. `learn` on the pulled file: the challenger against the shipped model on the newest 20% of the
   team's tickets, with a paired bootstrap 95% interval of the macro-F1 difference.
3. The in-domain reference: TF-IDF + logistic regression trained on the same older part.
4. A deliberately bad challenger (labels shuffled): the gate must refuse it.

    nice -n 19 python bench/learn_bench.py [--limit N] [--replay 1000] [--out bench/out/learn]
        [--prototype-share S] [--support-share S]   # the ablations of docs/learning.md
    nice -n 10 python bench/learn_bench.py --needs OUT/team.jsonl --champion-f1 F   # steps 5-6 alone
    nice -n 19 python bench/learn_bench.py --splits 5 --team OUT/team.jsonl          # step 9 alone
    nice -n 19 python bench/learn_bench.py --needs-learn --team OUT/team.jsonl       # step 5, whole learn runs

5. How many labelled tickets a class needs: heads fitted on k per class, scored on the newest 20%.
6. Routing: group and type predicted from the same features, against the majority class.
7. `--shadow`: the worker scorer's texts/s without and with a challenger to shadow.
8. `--prior-sweep TEAM.jsonl`: a head pulled toward the champion's (L2 to its weights), by strength.
9. `--splits K --team TEAM.jsonl`: how much one split says. The synthetic team's creation order is a
   seeded draw, so its "newest 20%" is one random fifth: the same tickets are re-dated in K other
   random orders and `learn` (as shipped) runs on each, with the gate, TF-IDF and the intervals.

Writes a JSON summary to stdout (and OUT/summary.json); the reports land in OUT/.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from model.data import URGENCY_LABELS, Row  # noqa: E402


def macro_f1(y: np.ndarray, pred: np.ndarray) -> float:
    from model.metrics import summary

    return float(summary(y, pred, URGENCY_LABELS)["macro_f1"])


def bootstrap(y: np.ndarray, a: np.ndarray, b: np.ndarray, rounds: int = 2000, seed: int = 7) -> dict:
    """Paired bootstrap of macro-F1(a) - macro-F1(b) over the same rows."""
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(rounds):
        idx = rng.integers(0, len(y), len(y))
        diffs.append(macro_f1(y[idx], a[idx]) - macro_f1(y[idx], b[idx]))
    lo, hi = np.quantile(diffs, [0.025, 0.975])
    return {"difference": round(macro_f1(y, a) - macro_f1(y, b), 4), "ci95": [round(float(lo), 4), round(float(hi), 4)],
            "rounds": rounds}


def predictions(model_dir: Path, rows: list[Row]) -> np.ndarray:
    from model.gate import probabilities
    from model.runtime import TriageModel

    model = TriageModel(model_dir)
    return model.rules["urgency"].decide_indices(probabilities(model, [r.text for r in rows], "urgency"))


def pull(limit: int | None, out: Path) -> dict:
    from zenpy import Zenpy

    from connectors.zendesk.history import ZendeskHistory
    from connectors.zendesk.history import pull as pull_history
    from connectors.zendesk.sandbox import ZendeskSandbox
    from connectors.zendesk.sandbox_history import load_history, team

    members = team(limit)
    with ZendeskSandbox() as zd:
        os.environ.update(zd.env)
        now = time.time()
        load_history(zd, members, now=now)
        zd.fail_next(429, times=2, retry_after=1, path="incremental")
        zd.fail_next(429, times=3, retry_after=1, path="/audits")
        history = ZendeskHistory(Zenpy(subdomain="sandbox", email="bench@example.com", token="t",
                                       disable_cache=True), zd.bot_user_id)
        result = pull_history(history, out, since=datetime.fromtimestamp(now - 400 * 86400, UTC), progress=False)
    return {"team_tickets": len(members), "rows": result.total, "seconds": round(result.seconds, 1),
            "tickets_per_s": round(len(members) / result.seconds, 1), "rate_limited": result.rate_limited,
            "waited_s": result.waited_s}


def tfidf(train_rows: list[tuple[str, int, float]], eval_rows: list[Row]) -> np.ndarray:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    x = vec.fit_transform([t for t, _, _ in train_rows])
    clf = LogisticRegression(C=1.0, max_iter=2000, class_weight="balanced")
    clf.fit(x, [y for _, y, _ in train_rows], sample_weight=[w for _, _, w in train_rows])
    return np.asarray(clf.predict(vec.transform([r.text for r in eval_rows])))


def curve_and_routing(data: Path, champion_f1: float, seeds: int = 5) -> dict:
    """How many labelled tickets per class `learn` needs: heads fitted on k tickets of each class of the
    older part (pooled features, the same fit as learn; argmax, no threshold), macro-F1 on the newest
    20%; and a routing measurement (group and type from the same features) against the majority class."""
    from model.learn import FeatureCache, team_examples, time_split
    from model.metrics import summary as msummary
    from model.runtime import DEFAULT_MODEL_DIR
    from model.urgency_head import fit_head
    from worker.history import read_rows

    older, newest = time_split(team_examples([data]), 0.2)
    cache = FeatureCache(Path(DEFAULT_MODEL_DIR), None, progress=False)
    x_old, x_new = cache.features([e.text for e in older]), cache.features([e.text for e in newest])
    y_old, y_new = np.array([e.y for e in older]), np.array([e.y for e in newest])
    w_old = np.array([e.weight for e in older])
    curve = {}
    for k in (15, 30, 60, 120, 250, 500):
        scores = []
        for seed in range(seeds):
            rng = np.random.default_rng(seed)
            idx = np.concatenate([rng.choice(np.flatnonzero(y_old == c), min(k, int((y_old == c).sum())), replace=False)
                                  for c in range(3)])
            w, b = fit_head(x_old[idx], y_old[idx], w_old[idx], c=0.3, class_weighting="balanced")
            scores.append(macro_f1(y_new, (x_new @ w.T + b).argmax(1)))
        curve[k] = {"macro_f1_mean": round(float(np.mean(scores)), 4), "min": round(float(np.min(scores)), 4),
                    "beats_champion": f"{sum(s > champion_f1 for s in scores)}/{seeds}"}
    rows = {r.id: r for r in read_rows(data)}
    routing = {}
    for field in ("group", "type"):
        lab_old = [getattr(rows[e.id], field) for e in older]
        lab_new = [getattr(rows[e.id], field) for e in newest]
        names = sorted({v for v in lab_old if v})
        counts = {n: lab_old.count(n) for n in names}
        kept = [n for n in names if counts[n] >= 30]  # groups with too few tickets are left out
        keep_old = np.array([v in kept for v in lab_old])
        keep_new = np.array([v in kept for v in lab_new])
        yo = np.array([kept.index(v) for v in np.array(lab_old)[keep_old]])
        yn = np.array([kept.index(v) for v in np.array(lab_new)[keep_new]])
        from sklearn.linear_model import LogisticRegression

        clf = LogisticRegression(C=0.3, max_iter=2000, class_weight="balanced").fit(x_old[keep_old], yo)
        pred = clf.predict(x_new[keep_new])
        majority = np.full_like(yn, np.bincount(yo).argmax())
        labels = tuple(kept)
        routing[field] = {"classes": len(kept), "left_out": [n for n in names if n not in kept],
                          "accuracy": round(float((pred == yn).mean()), 4),
                          "majority_accuracy": round(float((majority == yn).mean()), 4),
                          "macro_f1": round(float(msummary(yn, pred, labels)["macro_f1"]), 4),
                          "majority_macro_f1": round(float(msummary(yn, majority, labels)["macro_f1"]), 4)}
    return {"per_class_curve": curve, "routing": routing}


def shadow_cost(texts: list[str], rounds: int = 3) -> dict:
    """Texts/s of the worker's scorer following a models folder, without and with a challenger to shadow
    (same run, alternating, median of `rounds`), one text per call as the worker scores."""
    import shutil
    import tempfile

    from redis import Redis

    from model.registry import Registry
    from model.runtime import DEFAULT_MODEL_DIR
    from worker.champion import ChampionScorer, publish
    from worker.local_redis import LocalRedis

    tmp = Path(tempfile.mkdtemp())
    server = LocalRedis().start()
    try:
        redis = Redis.from_url(server.url)
        reg = Registry(tmp / "models")
        shutil.copytree(DEFAULT_MODEL_DIR, tmp / "copy")
        alone = ChampionScorer(reg.root, redis, shadow=False)  # the shipped model, version 0
        reg.add(tmp / "copy", gate={"passed": True})
        publish(redis, reg)
        shadowed = ChampionScorer(reg.root, redis)
        shadowed.wait_loaded()
        rates: dict[str, list[float]] = {"alone": [], "shadow": []}
        for _ in range(rounds):
            for name, scorer in (("alone", alone), ("shadow", shadowed)):
                t0 = time.perf_counter()
                for text in texts:
                    scorer.score([text])
                rates[name].append(len(texts) / (time.perf_counter() - t0))
        med = {k: round(float(np.median(v)), 1) for k, v in rates.items()}
        return {"texts": len(texts), "rounds": rounds, "texts_per_s": med,
                "ratio": round(med["shadow"] / med["alone"], 3)}
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def champion_head(model_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(W, b) of the urgency head in a graph written by model/urgency_head.py's write_head (fp32)."""
    from model.urgency_head import read_head

    return read_head(model_dir)


def prior_sweep(data: Path) -> dict:
    """A head pulled toward the champion's (L2 on W - W0, class-balanced weighted cross-entropy, L-BFGS):
    team and support-like macro-F1 for each strength (argmax, features from the cache)."""
    from scipy.optimize import minimize

    from model.gate import support_rows
    from model.learn import FeatureCache, team_examples, time_split
    from model.runtime import DEFAULT_MODEL_DIR

    base = Path(DEFAULT_MODEL_DIR)
    w0, b0 = champion_head(base)
    older, newest = time_split(team_examples([data]), 0.2)
    cache = FeatureCache(base, None, progress=False)
    support = support_rows()
    def feats(texts: list[str]) -> np.ndarray:
        return cache.features(texts).astype(float)

    x, xn, xs = feats([e.text for e in older]), feats([e.text for e in newest]), feats([r.text for r in support])
    y, yn, ys = np.array([e.y for e in older]), np.array([e.y for e in newest]), np.array([r.urgency for r in support])
    w = np.array([e.weight for e in older])
    counts = np.bincount(y, weights=w, minlength=3)
    sw = w * (counts.sum() / (3 * counts))[y]
    sw /= sw.sum()
    onehot = np.eye(3)[y]
    hidden = x.shape[1]

    def fit(lam: float) -> tuple[np.ndarray, np.ndarray]:
        def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
            wt, b = theta[: 3 * hidden].reshape(3, hidden), theta[3 * hidden:]
            z = x @ wt.T + b
            z -= z.max(1, keepdims=True)
            p = np.exp(z)
            p /= p.sum(1, keepdims=True)
            value = -(sw * np.log(p[np.arange(len(y)), y] + 1e-12)).sum() + lam / 2 * ((wt - w0) ** 2).sum()
            g = (p - onehot) * sw[:, None]
            return value, np.concatenate([(g.T @ x + lam * (wt - w0)).ravel(), g.sum(0)])

        r = minimize(loss, np.concatenate([w0.ravel(), b0]), jac=True, method="L-BFGS-B", options={"maxiter": 500})
        return r.x[: 3 * hidden].reshape(3, hidden), r.x[3 * hidden:]

    def figures(wt: np.ndarray, b: np.ndarray) -> dict:
        ps = (xs @ wt.T + b).argmax(1)
        return {"team_macro_f1": round(macro_f1(yn, (xn @ wt.T + b).argmax(1)), 4),
                "support_macro_f1": round(macro_f1(ys, ps), 4),
                "support_high_recall": round(float((ps[ys == 0] == 0).mean()), 3)}

    out = {"champion": figures(w0, b0)}
    for lam in (30, 10, 3, 1, 0.3, 0.1, 0.03, 0.01, 0.001):
        out[str(lam)] = figures(*fit(lam))
    return out


def needs_of_learn(data: Path, out: Path, root: Path | None, replay: int, sizes: tuple[int, ...] = (60, 120, 250, 500),
                   draws: int = 3) -> dict:
    """How many labelled tickets a class `learn` itself needs: the whole of `learn` (replay, the rule and
    temperature out of fold, the final fit) on k random tickets of each class of the older 80%, scored on the
    same newest 20% as the full run, against the champion there."""
    from model.learn import LearnConfig, learn
    from model.runtime import DEFAULT_MODEL_DIR
    from model.textprep import ticket_text
    from worker.history import read_rows

    rows = sorted(read_rows(data), key=lambda r: (r.created_at, r.id))
    labelled_rows = [r for r in rows if r.label("urgency")]
    cut = len(labelled_rows) - round(0.2 * len(labelled_rows))
    older, newest = labelled_rows[:cut], labelled_rows[cut:]
    by_class: dict[str, list] = {}
    for r in older:
        by_class.setdefault(r.label("urgency")[0], []).append(r)  # type: ignore[index]
    eval_rows = [Row(ticket_text(r.subject, r.text), -1, URGENCY_LABELS.index(r.label("urgency")[0]))  # type: ignore[index]
                 for r in newest]
    y = np.array([e.urgency for e in eval_rows])
    champion = macro_f1(y, predictions(Path(DEFAULT_MODEL_DIR), eval_rows))
    curve = {}
    for k in sizes:
        scores = []
        for draw in range(draws):
            rng = np.random.default_rng(draw)
            picked = [rs[i] for rs in by_class.values() for i in rng.choice(len(rs), min(k, len(rs)), replace=False)]
            part = out / f"k{k}-draw{draw}.jsonl"
            part.write_text("".join(r.to_json() + "\n" for r in sorted(picked, key=lambda r: (r.created_at, r.id))
                                    + newest))
            got = learn(LearnConfig(data=[part], out=out / f"k{k}-draw{draw}", data_root=root, replay=replay,
                                    eval_share=len(newest) / (len(picked) + len(newest)), min_per_class=0,
                                    max_share=1.0, route_by="", progress=False))
            assert [r.text for r in got.eval_rows] == [r.text for r in eval_rows]  # the same newest 20%
            scores.append(macro_f1(y, predictions(got.out, eval_rows)))
            shutil.rmtree(got.out)  # a model folder is tens of MB: keep the figures only
            print(json.dumps({"k": k, "draw": draw, "macro_f1": round(scores[-1], 4)}), file=sys.stderr, flush=True)
        curve[k] = {"macro_f1_mean": round(float(np.mean(scores)), 4), "min": round(float(np.min(scores)), 4),
                    "beats_champion": f"{sum(s > champion for s in scores)}/{draws}"}
    return {"champion": round(champion, 4), "per_class_curve": curve, "draws": draws, "newest": len(newest)}


def redated(data: Path, seed: int, out: Path) -> Path:
    """The same history with its creation times dealt to the tickets in another random order."""
    from dataclasses import replace

    from worker.history import read_rows

    rows = read_rows(data)
    times = sorted(r.created_at for r in rows)
    order = np.random.default_rng(seed).permutation(len(rows))
    out.write_text("".join(replace(rows[i], created_at=t).to_json() + "\n" for i, t in zip(order, times)))
    return out


def one_split(data: Path, out: Path, root: Path | None, replay: int) -> dict:
    """learn_and_compare on one history: the issue's three targets and the gate's checks."""
    from model.learn import LearnConfig, learn_and_compare, team_examples, time_split
    from model.runtime import DEFAULT_MODEL_DIR

    got = learn_and_compare(LearnConfig(data=[data], out=out, data_root=root, replay=replay, progress=False,
                                        route_by=""))
    y = np.array([r.urgency for r in got.result.eval_rows])
    champ = predictions(Path(DEFAULT_MODEL_DIR), got.result.eval_rows)
    chall = predictions(got.result.out, got.result.eval_rows)
    (got.result.out / "model.int8.onnx").unlink()  # tens of MB: the report and triage.json stay
    older, _ = time_split(team_examples([data]), 0.2)
    base = tfidf([(e.text, e.y, e.weight) for e in older], got.result.eval_rows)
    vs_champion, vs_tfidf = bootstrap(y, chall, champ), bootstrap(y, chall, base)
    from model.metrics import summary as msummary

    recalls = {name: [round(msummary(y, p, URGENCY_LABELS)["per_class"][lab]["recall"], 3) for lab in URGENCY_LABELS]
               for name, p in (("champion", champ), ("challenger", chall), ("tfidf_lr", base))}
    return {"macro_f1": {"champion": round(macro_f1(y, champ), 4), "challenger": round(macro_f1(y, chall), 4),
                         "tfidf_lr": round(macro_f1(y, base), 4)},
            "team_recall_high_medium_low": recalls,
            # would the gate's per-class rule let TF-IDF itself in? (its other checks need a graph)
            "tfidf_keeps_champion_recalls": all(t >= c - 0.02 for t, c in zip(recalls["tfidf_lr"],
                                                                              recalls["champion"])),
            "challenger_minus_champion": vs_champion, "challenger_minus_tfidf": vs_tfidf,
            "targets": {"interval_above_zero": vs_champion["ci95"][0] > 0,
                        "matches_tfidf": vs_tfidf["difference"] >= 0, "gate_promotes": got.gate.passed},
            "gate_failed": got.gate.reasons}


def splits(data: Path, k: int, out: Path, root: Path | None, replay: int) -> dict:
    runs = {}
    for seed in range(1, k + 1):
        runs[seed] = one_split(redated(data, seed, out / f"team-order{seed}.jsonl"), out / f"challenger-order{seed}",
                               root, replay)
        print(json.dumps({"order": seed, **runs[seed]}), file=sys.stderr, flush=True)
    held = {t: sum(r["targets"][t] for r in runs.values()) for t in ("interval_above_zero", "matches_tfidf",
                                                                       "gate_promotes")}
    return {"orders": runs, "targets_held": {t: f"{n}/{k}" for t, n in held.items()},
            "tfidf_keeps_champion_recalls": f"{sum(r['tfidf_keeps_champion_recalls'] for r in runs.values())}/{k}",
            "all_three": f"{sum(all(r['targets'].values()) for r in runs.values())}/{k}",
            "challenger_minus_champion_mean": round(float(np.mean(
                [r["challenger_minus_champion"]["difference"] for r in runs.values()])), 4),
            "challenger_minus_tfidf_mean": round(float(np.mean(
                [r["challenger_minus_tfidf"]["difference"] for r in runs.values()])), 4)}


def main() -> int:
    from model.learn import LearnConfig, learn_and_compare, team_examples, time_split
    from model.runtime import DEFAULT_MODEL_DIR

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, help="team size (default: every English synthetic row)")
    ap.add_argument("--replay", type=int, default=1000)
    ap.add_argument("--prototype-share", type=float, default=None, help="default: model/learn.py's")
    ap.add_argument("--support-share", type=float, default=None, help="default: model/learn.py's")
    ap.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "learn")
    ap.add_argument("--needs", type=Path, metavar="TEAM.jsonl",
                    help="only the per-class curve and the routing measurement, on a pulled file")
    ap.add_argument("--champion-f1", type=float, default=0.0, help="with --needs: the champion's macro-F1")
    ap.add_argument("--shadow", action="store_true", help="only the cost of shadow scoring (texts/s)")
    ap.add_argument("--prior-sweep", type=Path, metavar="TEAM.jsonl",
                    help="only: a head pulled toward the champion's, team against support-like macro-F1")
    ap.add_argument("--splits", type=int, metavar="K", help="with --team: learn on K re-drawn creation orders")
    ap.add_argument("--team", type=Path, metavar="TEAM.jsonl", help="a pulled history (bench/out/learn/*/team.jsonl)")
    ap.add_argument("--needs-learn", action="store_true",
                    help="with --team: the per-class curve of learn itself (k tickets a class, whole learn runs)")
    args = ap.parse_args()
    if args.needs_learn or args.splits:  # on a history already pulled
        if not args.team:
            ap.error("--splits and --needs-learn need --team TEAM.jsonl (a history this bench pulled: OUT/team.jsonl)")
        name = "needs" if args.needs_learn else "splits"
        out = args.out / f"{name}-{datetime.now(UTC):%Y%m%d-%H%M%S}"
        out.mkdir(parents=True, exist_ok=True)
        root = args.data_root if args.data_root.is_dir() else None
        result = (needs_of_learn(args.team, out, root, args.replay) if args.needs_learn
                  else splits(args.team, args.splits, out, root, args.replay))
        (out / "summary.json").write_text(json.dumps(result, indent=2))
        print(json.dumps(result, indent=2))
        return 0
    if args.prior_sweep:
        print(json.dumps(prior_sweep(args.prior_sweep), indent=2))
        return 0
    if args.shadow:
        from connectors.zendesk.sandbox_history import team
        from model.textprep import ticket_text

        print(json.dumps(shadow_cost([ticket_text(t.subject, t.body) for t in team(300)]), indent=2))
        return 0
    if args.needs:
        print(json.dumps(curve_and_routing(args.needs, args.champion_f1), indent=2))
        return 0
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    out = args.out / stamp
    out.mkdir(parents=True, exist_ok=True)
    data = out / "team.jsonl"
    summary: dict = {"pull": pull(args.limit, data)}
    root = args.data_root if args.data_root.is_dir() else None

    knobs: dict = {}
    if args.prototype_share is not None:
        knobs["prototype_share"] = args.prototype_share
    if args.support_share is not None:
        knobs["support_share"] = args.support_share
    summary["knobs"] = knobs
    t0 = time.monotonic()
    good = learn_and_compare(LearnConfig(data=[data], out=out / "challenger", data_root=root, replay=args.replay,
                                         progress=False, **knobs))
    learn_s = time.monotonic() - t0
    y = np.array([r.urgency for r in good.result.eval_rows])
    champ = predictions(Path(DEFAULT_MODEL_DIR), good.result.eval_rows)
    chall = predictions(good.result.out, good.result.eval_rows)
    older, _ = time_split(team_examples([data]), 0.2)
    base = tfidf([(e.text, e.y, e.weight) for e in older], good.result.eval_rows)
    stages = {k: round(v, 1) for k, v in good.result.seconds.items()}
    summary["learn"] = {"seconds": round(learn_s, 1), "stages": stages,
                        "train_rows": good.result.train, "eval_rows": len(y), "c": good.result.c,
                        "champion": good.reports["champion"]["model_version"]}
    summary["macro_f1"] = {"champion": round(macro_f1(y, champ), 4), "challenger": round(macro_f1(y, chall), 4),
                           "tfidf_lr": round(macro_f1(y, base), 4)}
    summary["challenger_minus_champion"] = bootstrap(y, chall, champ)
    summary["challenger_minus_tfidf"] = bootstrap(y, chall, base)
    summary["gate"] = good.gate.to_dict()
    summary["team_recall"] = {name: {lab: round(good.reports[name]["per_class"][lab]["recall"], 3)
                                     for lab in URGENCY_LABELS} for name in ("champion", "challenger")}
    summary["support_report_half"] = {name: {"n": good.reports[f"support_{name}"]["n"],
                                             "macro_f1": round(good.reports[f"support_{name}"]["macro_f1"], 4),
                                             "high_recall": round(good.reports[f"support_{name}"]["high"]["recall"], 3)}
                                      for name in ("champion", "challenger") if f"support_{name}" in good.reports}

    bad = learn_and_compare(LearnConfig(data=[data], out=out / "shuffled", data_root=root, replay=args.replay,
                                        shuffle_labels=True, progress=False, **knobs))
    summary["shuffled"] = {"macro_f1": round(bad.reports["challenger"]["macro_f1"], 4), "gate": bad.gate.passed,
                           "reasons": bad.gate.reasons}
    summary["needs"] = curve_and_routing(data, summary["macro_f1"]["champion"])
    summary["out"] = str(out)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
