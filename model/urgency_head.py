"""An urgency head on the shipped encoder: features from the int8 graph, a refit linear head, and
the head written back into a copy of the graph (sentiment and the encoder untouched).

Needs the `train` extra (onnx, scikit-learn). The steps, as `python -m model.urgency_head` runs them:

1. `pooled_features`: the mean-pooled encoder output of the int8 graph (the tensor both heads read),
   one text per call as the product scores, for every urgency row of the configured data sets.
2. `fit_head`: a multinomial logistic regression on those features, each source weighted.
3. `write_head`: the int8 graph with the urgency head replaced by an fp32 one (weights and bias),
   for the pooled logits and the per-token shares alike, so `top_words` stays exact. The encoder and
   the sentiment head are byte for byte those of the base model.

`triage learn` adds an n-gram part after this head (model/ngrams.py).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

URGENCY_MATMUL = "/urgency/Gemm_MatMul_quant"  # MatMulInteger of the pooled vector and the head
URGENCY_TOKEN_OUTPUT = "urgency_token_logits"
FP32_HEAD = "urgency_head_v3.weight_t"  # (hidden, classes): the refit head's weights, in an fp32 MatMul


def _graph(model_dir: Path):
    import onnx

    return onnx.load(str(model_dir / "model.int8.onnx"))


def _head_nodes(model) -> tuple:
    """(pooled MatMulInteger, token MatMulInteger, bias Add) of the urgency head in the int8 graph."""
    nodes = {n.name: n for n in model.graph.node}
    pooled = nodes.get(URGENCY_MATMUL)
    if pooled is None:
        raise SystemExit(f"no {URGENCY_MATMUL} node: not a graph exported by model/export.py")
    producer = {o: n for n in model.graph.node for o in n.output}
    # urgency_token_logits <- Mul <- Cast <- MatMulInteger
    node = producer[URGENCY_TOKEN_OUTPUT]
    while node.op_type != "MatMulInteger":
        node = producer[node.input[0]]
    adds = [n for n in model.graph.node if n.op_type == "Add" and "urgency_logits" in n.output]
    if not adds:
        raise SystemExit("no Add producing urgency_logits in the graph")
    return pooled, node, adds[0]


def _fp32_heads(model) -> list:
    """The MatMuls of a head written by write_head (pooled first), or [] in an exported graph."""
    return sorted((n for n in model.graph.node if n.op_type == "MatMul" and FP32_HEAD in n.input),
                  key=lambda n: n.output[0].startswith(URGENCY_TOKEN_OUTPUT))


def pooled_tensor(model) -> str:
    """Name of the fp32 pooled vector the urgency head reads (input of its DynamicQuantizeLinear)."""
    if heads := _fp32_heads(model):
        return heads[0].input[0]
    pooled, _, _ = _head_nodes(model)
    producer = {o: n for n in model.graph.node for o in n.output}
    return producer[pooled.input[0]].input[0]


def pooled_features(model_dir: str | Path, texts: Sequence[str], threads: int = 1,
                    progress: bool = False) -> np.ndarray:
    """(n, hidden) pooled vectors from the int8 graph, one text per call (as served)."""
    return served_features(model_dir, texts, threads, progress)[0]


def served_features(model_dir: str | Path, texts: Sequence[str], threads: int = 1,
                    progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(pooled vectors (n, hidden), urgency logits (n, 3)) from the int8 graph, one text per call."""
    import onnx
    import onnxruntime as ort

    from model.runtime import TriageModel

    model_dir = Path(model_dir)
    graph = _graph(model_dir)
    name = pooled_tensor(graph)
    graph.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(graph.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    tm = TriageModel(model_dir, threads=1)
    from model.textprep import clean

    encs = tm.tokenizer.encode_batch([clean(t, tm.max_tokens) or "." for t in texts])
    pooled, logits = [], []
    it = enumerate(encs)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, total=len(encs), desc="features", unit="text", mininterval=10)
    for _, enc in it:
        ids = np.array([enc.ids], dtype=np.int64)
        x, z = session.run([name, "urgency_logits"], {"input_ids": ids, "attention_mask": np.ones_like(ids)})
        pooled.append(x[0])
        logits.append(z[0])
    if not pooled:
        return np.zeros((0, 0), np.float32), np.zeros((0, 3), np.float32)
    return np.stack(pooled).astype(np.float32), np.stack(logits).astype(np.float32)


def token_ids(model_dir: str | Path, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text as the product feeds them to the graph (cleaned, truncated)."""
    from tokenizers import Tokenizer

    from model.textprep import clean

    max_tokens = int(json.loads((Path(model_dir) / "triage.json").read_text())["max_tokens"])
    tok = Tokenizer.from_file(str(Path(model_dir) / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=max_tokens)
    return [e.ids for e in tok.encode_batch([clean(t, max_tokens) or "." for t in texts])]


def fit_head(x: np.ndarray, y: np.ndarray, w: np.ndarray, c: float = 1.0, seed: int = 13,
             class_weighting: str = "sqrt") -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression; returns W (classes, hidden) and b (classes,).
    Row weights `w` (per source), times the class weights (sqrt of balanced, as in train.py)."""
    from sklearn.linear_model import LogisticRegression

    counts = np.bincount(y, weights=w, minlength=3).astype(float)
    balanced = counts.sum() / (3 * np.maximum(counts, 1e-9))
    cw = np.sqrt(balanced) if class_weighting == "sqrt" else balanced if class_weighting == "balanced" \
        else np.ones(3)
    clf = LogisticRegression(C=c, max_iter=2000, random_state=seed)
    clf.fit(x, y, sample_weight=w * cw[y])
    weights = np.zeros((3, x.shape[1]))
    bias = np.zeros(3)
    for k, cls in enumerate(clf.classes_):  # classes absent from y keep zero weights
        weights[int(cls)] = clf.coef_[k]
        bias[int(cls)] = clf.intercept_[k]
    return weights, bias


def read_head(model_dir: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(W (classes, hidden), b) of a head written by write_head (fp32)."""
    from onnx import numpy_helper

    model = _graph(Path(model_dir))
    inits = {i.name: i for i in model.graph.initializer}
    if FP32_HEAD not in inits:
        raise ValueError(f"{model_dir}: the urgency head is not one written by model/urgency_head.py (fp32)")
    b = numpy_helper.to_array(inits[next(i for i in bias_add(model.graph, inits).input if i in inits)])
    return numpy_helper.to_array(inits[FP32_HEAD]).astype(np.float64).T, b.astype(np.float64)


def bias_add(graph, inits: dict):
    """The Add of the urgency head's bias (its output is urgency_logits, renamed once an n-gram part is
    added after it)."""
    return next(n for n in graph.node if n.op_type == "Add" and any(i in inits for i in n.input)
                and any(o == "urgency_logits" or o.startswith("urgency_logits_before") for o in n.output))


def write_head(model_dir: str | Path, out_path: str | Path, weights: np.ndarray, bias: np.ndarray) -> None:
    """Copy of the int8 graph with the urgency head replaced, pooled logits and token shares alike.

    The new head is an fp32 MatMul on the fp32 tensors the old int8 one quantised: a refit head's
    weights have a few large entries (features of small spread), and one int8 scale per class would
    zero most of the rest. A 384x3 product in fp32 costs nothing next to the encoder; the encoder
    and the sentiment head are left exactly as they were."""
    import onnx
    from onnx import numpy_helper

    model = _graph(Path(model_dir))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    if _fp32_heads(model):  # a graph this function wrote before: new values, same nodes
        inits[FP32_HEAD].CopyFrom(numpy_helper.from_array(np.asarray(weights, dtype=np.float32).T.copy(), FP32_HEAD))
    else:
        _replace_int8_head(model, weights, inits)
    add = bias_add(graph, inits)
    b_name = next(i for i in add.input if i in inits)
    inits[b_name].CopyFrom(numpy_helper.from_array(np.asarray(bias, dtype=np.float32), b_name))
    onnx.checker.check_model(model)
    onnx.save(model, str(out_path))


def vocab_size(model_dir: str | Path) -> int:
    from tokenizers import Tokenizer

    return int(Tokenizer.from_file(str(Path(model_dir) / "tokenizer.json")).get_vocab_size())


def _replace_int8_head(model, weights: np.ndarray, inits: dict) -> None:
    """The exported graph's int8 urgency MatMulIntegers (pooled and per token) become fp32 MatMuls."""
    from onnx import helper, numpy_helper

    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    w_t = numpy_helper.from_array(np.asarray(weights, dtype=np.float32).T.copy(), FP32_HEAD)
    graph.initializer.append(w_t)
    inits[FP32_HEAD] = w_t
    pooled_node, token_node, add = _head_nodes(model)
    drop_nodes, drop_inits = [], set()
    for node in (pooled_node, token_node):
        # MatMulInteger -> Cast -> Mul(output scale) : the chain's last output is what the rest reads
        cast = next(c for c in consumers[node.output[0]] if c.op_type == "Cast")
        out_mul = next(c for c in consumers[cast.output[0]] if c.op_type == "Mul")
        scales_mul = producer[out_mul.input[1]]
        quantize = producer[node.input[0]]  # DynamicQuantizeLinear of the fp32 input (shared with sentiment)
        fp32_input = quantize.input[0]
        drop_nodes += [node, cast, out_mul, scales_mul]
        drop_inits |= {i for i in (*node.input, *scales_mul.input) if i in inits}
        matmul = helper.make_node("MatMul", [fp32_input, w_t.name], [out_mul.output[0]],
                                  name=f"{node.name}/fp32_v3")
        graph.node.insert(list(graph.node).index(node), matmul)
    for n in drop_nodes:
        graph.node.remove(n)
    still_used = {i for n in graph.node for i in n.input}
    for name in drop_inits - still_used:
        graph.initializer.remove(inits.pop(name))


# -- the refit, end to end -----------------------------------------------------------------------

REPO = Path(__file__).resolve().parent.parent
SUPPORT_SET = REPO / "model" / "validation" / "urgency_support.csv"


def load_sources(cfg: dict, data_root: str | Path) -> dict[str, tuple[list, list, float]]:
    """name -> (training rows, validation rows, weight). Split files are carved exactly as
    train.yaml carves them (same seed, stratified), so the v2 test parts stay unseen."""
    from model.data import read_csv, stratified_split

    out = {}
    for spec in cfg["sources"]:
        if "repo" in spec:
            rows = read_csv(REPO / spec["repo"], urgency_col=spec["urgency_col"], source=spec["name"])
            train, val = rows, []
        else:
            rows = read_csv(Path(data_root) / spec["file"], urgency_col=spec["urgency_col"], source=spec["name"])
            train, val, _test = stratified_split(rows, tuple(spec["split"]), int(cfg["seed"]), key="urgency")
        out[spec["name"]] = (train, val, float(spec["weight"]))
    return out


def cached_features(model_dir: Path, rows: list, cache: Path, key: str) -> np.ndarray:
    import hashlib

    digest = hashlib.sha1("\x00".join(r.text for r in rows).encode("utf-8", "surrogatepass")).hexdigest()[:12]
    path = cache / f"features_{key}_{digest}.npy"
    if path.is_file():
        return np.load(path)
    x = pooled_features(model_dir, [r.text for r in rows], progress=True)
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, x)
    return x


def read_support(path: str | Path = SUPPORT_SET) -> list[dict]:
    import csv

    with Path(path).open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def product_labels(rule, logits: np.ndarray) -> list[str]:
    """The urgency label as the product says it ("unsure" is not high)."""
    return [rule.decide(row).label for row in logits]


def support_figures(labels: list[str], rows: list[dict]) -> dict:
    """Figures on (part of) the support set: the issue's measures and both confusions."""
    y = np.array([r["urgency"] for r in rows])
    pred = np.array(labels)
    obvious = np.array([r["obvious"] == "1" for r in rows])
    kind = np.array([r["kind"] for r in rows])

    def pr(mask: np.ndarray) -> tuple[float, float]:
        hi, pos = (pred == "high") & mask, (y == "high") & mask
        tp = float((hi & pos).sum())
        return round(tp / max(hi.sum(), 1), 3), round(tp / max(pos.sum(), 1), 3)

    f1s = []
    for lab in ("high", "medium", "low"):
        tp = float(((pred == lab) & (y == lab)).sum())
        p, r = tp / max((pred == lab).sum(), 1), tp / max((y == lab).sum(), 1)
        f1s.append(2 * p * r / (p + r) if p + r else 0.0)
    calm = kind == "calm_urgent"
    angry = kind == "angry_not_urgent"
    return {
        "n": len(rows), "obvious_n": int(obvious.sum()),
        "obvious_high_precision": pr(obvious)[0], "obvious_high_recall": pr(obvious)[1],
        "high_precision": pr(np.ones(len(y), bool))[0], "high_recall": pr(np.ones(len(y), bool))[1],
        "macro_f1": round(float(np.mean(f1s)), 3),
        "unsure_share": round(float((pred == "unsure").mean()), 3),
        "calm_urgent_recall": round(float((pred[calm] == "high").mean()), 3) if calm.any() else None,
        "angry_not_urgent_called_high": round(float((pred[angry] == "high").mean()), 3) if angry.any() else None,
    }


def choose_threshold(base_rule, logits: np.ndarray, rows: list[dict], min_recall: float,
                     min_precision: float, max_threshold: float = 0.95) -> tuple[float, dict]:
    """On the `select` rows: the threshold on P(high) with the best macro-F1 among those whose
    obvious-case recall reaches `min_recall` at precision >= `min_precision`; else the one with the
    best obvious recall at that precision. Thresholds above `max_threshold` are not tried (at most
    0.5, the threshold only ever adds high: it never turns a most-likely high into something else)."""
    from dataclasses import replace

    best: tuple = (-1.0, -1.0, 0.5, {})
    fallback: tuple = (-1.0, 0.5, {})
    for t in np.round(np.arange(0.05, max_threshold + 0.005, 0.01), 2):
        fig = support_figures(product_labels(replace(base_rule, threshold=float(t)), logits), rows)
        ok_p = fig["obvious_high_precision"] >= min_precision
        if ok_p and fig["obvious_high_recall"] >= min_recall and fig["macro_f1"] > best[0]:
            best = (fig["macro_f1"], fig["obvious_high_recall"], float(t), fig)
        if ok_p and fig["obvious_high_recall"] > fallback[0]:
            fallback = (fig["obvious_high_recall"], float(t), fig)
    if best[0] >= 0:
        how = (f"best macro-F1 on the select half of the support set among thresholds <= {max_threshold} reaching "
               f"obvious-case high recall >= {min_recall} at precision >= {min_precision}")
        return best[2], {"chosen_by": how, "select": best[3]}
    how = f"best obvious-case high recall at precision >= {min_precision} on the select half of the support set"
    if fallback[0] < 0:  # no threshold reaches that precision: the plain 0.5
        how = f"no threshold reaches obvious-case precision {min_precision}: 0.5"
        fallback = (0.0, 0.5, support_figures(product_labels(replace(base_rule, threshold=0.5), logits), rows))
    return fallback[1], {"chosen_by": how, "select": fallback[2]}


def fit_sources(sources: dict, feats: dict, weights: dict[str, float], c: float, class_weighting: str,
                seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The head in raw feature space: standardised for the fit, folded back into W and b."""
    xs, ys, ws = [], [], []
    for name, (train, _val, _w) in sources.items():
        share = weights.get(name, 0.0)
        if share <= 0 or not train:
            continue
        xs.append(feats[name])
        ys.append(np.array([r.urgency for r in train]))
        ws.append(np.full(len(train), share * 1000.0 / len(train)))
    x, y, w = np.concatenate(xs), np.concatenate(ys), np.concatenate(ws)
    mu, sd = x.mean(0), x.std(0) + 1e-6
    weights_std, bias_std = fit_head((x - mu) / sd, y, w, c=c, seed=seed, class_weighting=class_weighting)
    weights_raw = weights_std / sd
    return weights_raw, bias_std - weights_raw @ mu


def refit(config_path: str | Path, data_root: str | Path, out_dir: str | Path, cache: str | Path,
          ablations: bool = True) -> Path:
    import shutil
    import time
    from dataclasses import replace

    import yaml

    from model import metrics
    from model.data import URGENCY_LABELS, file_sha256
    from model.decision import DecisionRule
    from model.runtime import TriageModel

    cfg = yaml.safe_load(Path(config_path).read_text())
    base = REPO / cfg["base_model"]
    out, cache = Path(out_dir), Path(cache)
    out.mkdir(parents=True, exist_ok=True)
    sources = load_sources(cfg, data_root)
    feats = {n: cached_features(base, tr, cache, f"{n}_train") for n, (tr, _v, w) in sources.items()}
    support = read_support()
    select = [r for r in support if r["split"] == "select"]
    report = [r for r in support if r["split"] == "report"]
    weights = {n: w for n, (_t, _v, w) in sources.items()}
    c, cw, seed = float(cfg["C"]), str(cfg["class_weighting"]), int(cfg["seed"])
    w_raw, b_raw = fit_sources(sources, feats, weights, c, cw, seed)

    if (base / "tokenizer.json").resolve() != (out / "tokenizer.json").resolve():
        shutil.copy(base / "tokenizer.json", out / "tokenizer.json")
    write_head(base, out / "model.int8.onnx", w_raw, b_raw)
    meta = json.loads((base / "triage.json").read_text())
    meta["version"] = cfg["version"]
    (out / "triage.json").write_text(json.dumps(meta))
    model = TriageModel(out, threads=1)
    model.gate = type(model.gate)()  # figures of the urgency head alone: no language gate here

    def logits(rows: list) -> np.ndarray:
        return model.logits([r["text"] if isinstance(r, dict) else r.text for r in rows])[1]

    sel_logits, rep_logits = logits(select), logits(report)
    y_sel = np.array([URGENCY_LABELS.index(r["urgency"]) for r in select])
    temperature = metrics.fit_temperature(sel_logits, y_sel)
    old = DecisionRule.from_dict(meta["decision"]["urgency"])
    rule = DecisionRule(URGENCY_LABELS, temperature, (), "high", 0.5, old.abstain_below)
    limits = (float(cfg["min_obvious_recall"]), float(cfg["min_obvious_precision"]),
              float(cfg.get("max_threshold", 0.95)))
    threshold, notes = choose_threshold(rule, sel_logits, select, *limits)
    rule = replace(rule, threshold=threshold)
    notes["report"] = support_figures(product_labels(rule, rep_logits), report)
    notes["temperature"] = "NLL on the select half of the support set (int8 logits)"
    # the proxies' own validation parts, as the product decides
    proxy = {}
    for name, (_t, val, _w) in sources.items():
        if val:
            yv = np.array([r.urgency for r in val])
            pred = np.array([URGENCY_LABELS.index(lab) if lab in URGENCY_LABELS else -1
                             for lab in product_labels(rule, logits(val))])
            proxy[name] = round(metrics.summary(yv, np.where(pred < 0, (yv + 1) % 3, pred), URGENCY_LABELS)
                                ["macro_f1"], 4)
    notes["proxy_validation_macro_f1"] = proxy
    meta["decision"]["urgency"] = {**rule.to_dict(), "notes": {"threshold": notes}}
    meta["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    head = {"method": "multinomial logistic regression on the int8 encoder's pooled output (v2 encoder and "
                      "sentiment head unchanged), weights written into the int8 graph (per-class symmetric int8)",
            "config": cfg, "sources": {n: {"train_rows": len(t), "weight": w} for n, (t, _v, w) in sources.items()},
            "support_set_sha256": file_sha256(SUPPORT_SET)}
    for spec in cfg["sources"]:
        if "file" in spec:
            meta["data_hashes"][spec["file"]] = file_sha256(Path(data_root) / spec["file"])
        else:
            meta["data_hashes"][spec["repo"]] = file_sha256(REPO / spec["repo"])
    if ablations:
        head["ablations"] = ablate(sources, feats, weights, c, cw, seed, base, support, rule, limits)
    meta["urgency_head"] = head
    (out / "triage.json").write_text(json.dumps(meta, indent=2))
    print(json.dumps(notes, indent=2))
    return out


def ablate(sources: dict, feats: dict, weights: dict, c: float, cw: str, seed: int, base: Path,
           support: list[dict], rule, limits: tuple[float, float, float]) -> dict:
    """Per-source ablations on the fp32 head (before int8): each source alone, each left out, and the
    shipped mix; the threshold re-chosen on `select` each time, figures on `report`."""
    from dataclasses import replace

    xs = pooled_features(base, [r["text"] for r in support])
    sel = [i for i, r in enumerate(support) if r["split"] == "select"]
    rep = [i for i, r in enumerate(support) if r["split"] == "report"]
    used = [n for n, w in weights.items() if w > 0]
    trials = {"shipped mix": weights}
    trials.update({f"only {n}": {n: weights[n] or 1.0} for n in sources})
    trials.update({f"without {n}": {**weights, n: 0.0} for n in used})
    trials.update({f"with {n} (weight 1)": {**weights, n: 1.0} for n in sources if weights[n] == 0})
    out = {}
    for name, ws in trials.items():
        w_raw, b_raw = fit_sources(sources, feats, ws, c, cw, seed)
        lg = xs @ w_raw.T + b_raw
        t, notes = choose_threshold(rule, lg[sel], [support[i] for i in sel], *limits)
        fig = support_figures(product_labels(replace(rule, threshold=t), lg[rep]), [support[i] for i in rep])
        out[name] = {"threshold": t, "select": {k: notes["select"][k] for k in
                                                ("obvious_high_precision", "obvious_high_recall", "macro_f1")},
                     "report": fig}
        print(name, json.dumps(out[name]["report"]), flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(description="Refit the urgency head on the shipped encoder and write a new "
                                            "artifact (see the module docstring).")
    p.add_argument("--config", default=str(REPO / "model" / "configs" / "urgency_v3.yaml"))
    p.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"))
    p.add_argument("--out", default=str(REPO / "model" / "artifacts" / "triage-v3"))
    p.add_argument("--cache", default=str(REPO / "runs" / "urgency-features"), help="pooled features cache")
    p.add_argument("--no-ablations", action="store_true")
    args = p.parse_args(argv)
    refit(args.config, args.data_root, args.out, args.cache, ablations=not args.no_ablations)
    print(f"wrote {args.out}; next: python -m model.language_calibration --model-dir {args.out} --write")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
