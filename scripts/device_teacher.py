"""Train the distillation teacher (all-mpnet-base-v2, model/configs/teacher.yaml) on a lent GPU machine.

That machine reaches no network, and each call of the device tool carries at most 64 MiB, this
repository's own ~25 MB included. So the teacher's encoder (fp16, ~220 MB) and the training data
travel in bundles of --bundle-mb, one call each, while the machine stays warm between calls; the
teacher's scores on every text come back (~2 MB), and the student is distilled here on the CPU.

  here     scripts/fetch-mpnet                                   # runs/encoders/all-mpnet-base-v2
           python scripts/device_teacher.py pack                 # .device/b1 .. .device/bN
  device   one call per bundle, back to back (an idle machine goes back after ~30 s):
             carry [".device/bK"], command "ls .device"
           then:  python3 scripts/device_teacher.py run --out $OUT    (carry the last bundle)
  here     mkdir -p runs/teacher && cp <files_at>/teacher_scores.npz runs/teacher/
           triage model train --config model/configs/distill.yaml --out runs/distilled
           triage model export --checkpoint runs/distilled/best.pt --out model/artifacts/triage-v3 ...

`run --limit 64 --epochs 0.02` is a dry run of the same steps on a CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

STAGE = REPO / ".device"  # git-ignored
TEACHER_CONFIG = REPO / "model" / "configs" / "teacher.yaml"
SPLIT = "@@"  # a tensor split across shards: name@@0, name@@1, ...
CALL_LIMIT = 64 * 2**20  # what one device call may carry, the working tree included
MANIFEST = "manifest.json"  # in every bundle: all the files of all bundles, with their sizes
ENCODER_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def pack_bundles(encoder: Path, data: dict[str, Path], stage: Path, bundle_bytes: int) -> int:
    """Write `data` (relative path -> file) and the encoder, its weights as fp16 shards, into
    stage/b1 .. stage/bN of at most `bundle_bytes` each, plus a manifest in each; returns N."""
    import torch
    from safetensors.torch import load_file, save_file

    shutil.rmtree(stage, ignore_errors=True)
    full = stage / "full"
    for rel, src in data.items():
        (full / "data" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, full / "data" / rel)
    (full / "encoder").mkdir(parents=True)
    for name in ENCODER_FILES:
        if (encoder / name).is_file():
            shutil.copy(encoder / name, full / "encoder" / name)
    shard: dict[str, torch.Tensor] = {}
    size, n, cap = 0, 0, int(bundle_bytes * 0.9)
    for key, tensor in load_file(encoder / "model.safetensors").items():
        t = (tensor.half() if tensor.is_floating_point() else tensor).contiguous()
        rows = max(1, cap // max(1, t[0].numel() * t.element_size())) if t.dim() else 1
        # a tensor larger than a bundle (the word embeddings) travels in row blocks: key@@0, key@@1, ...
        parts = {key: t} if t.numel() * t.element_size() <= cap else {
            f"{key}{SPLIT}{i}": block.clone() for i, block in enumerate(torch.split(t, rows))}
        for name, part in parts.items():
            nbytes = part.numel() * part.element_size()
            if shard and size + nbytes > cap:
                save_file(shard, full / "encoder" / f"fp16-{n:02d}.safetensors")
                shard, size, n = {}, 0, n + 1
            shard[name] = part
            size += nbytes
    save_file(shard, full / "encoder" / f"fp16-{n:02d}.safetensors")
    # the files, largest first, each into the first bundle with room
    files = sorted((p for p in full.rglob("*") if p.is_file()), key=lambda p: -p.stat().st_size)
    manifest = {str(f.relative_to(full)): f.stat().st_size for f in files}
    bundles: list[list[Path]] = []
    room: list[int] = []
    for f in files:
        k = next((i for i, r in enumerate(room) if r >= f.stat().st_size), None)
        if k is None:
            bundles.append([])
            room.append(bundle_bytes - 4096)  # the manifest's share
            k = len(bundles) - 1
        bundles[k].append(f)
        room[k] -= f.stat().st_size
    for k, group in enumerate(bundles, 1):
        for f in group:
            dest = stage / f"b{k}" / f.relative_to(full)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.link(f, dest)
        (stage / f"b{k}" / MANIFEST).write_text(json.dumps({"bundles": len(bundles), "files": manifest}))
    shutil.rmtree(full)
    return len(bundles)


def merge_bundles(stage: Path, root: Path) -> Path:
    """Put the carried bundles back together under `root` and rebuild the encoder's fp32 weights;
    returns the encoder folder. Stops if any file `pack_bundles` wrote did not arrive."""
    import torch
    from safetensors.torch import load_file, save_file

    manifests = sorted(stage.glob(f"b*/{MANIFEST}"))
    if not manifests:
        raise SystemExit(f"no bundle in {stage}: carry every .device/bK that `pack` wrote")
    expected = json.loads(manifests[0].read_text())
    shutil.rmtree(root, ignore_errors=True)
    for bundle in (m.parent for m in manifests):
        for f in (p for p in bundle.rglob("*") if p.is_file() and p.name != MANIFEST):
            dest = root / f.relative_to(bundle)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(f, dest)
    missing = [rel for rel, size in expected["files"].items()
               if not (root / rel).is_file() or (root / rel).stat().st_size != size]
    if missing:
        raise SystemExit(f"{len(missing)} file(s) missing or cut short, e.g. {missing[0]}: "
                         f"{len(manifests)} of {expected['bundles']} bundles arrived")
    encoder = root / "encoder"
    weights: dict[str, torch.Tensor] = {}
    blocks: dict[str, dict[int, torch.Tensor]] = {}
    for shard in sorted(encoder.glob("fp16-*.safetensors")):
        for k, v in load_file(shard).items():
            v = v.float() if v.is_floating_point() else v
            if SPLIT in k:
                name, i = k.split(SPLIT)
                blocks.setdefault(name, {})[int(i)] = v
            else:
                weights[k] = v
        shard.unlink()
    weights.update({name: torch.cat([parts[i] for i in sorted(parts)]) for name, parts in blocks.items()})
    save_file(weights, encoder / "model.safetensors")
    return encoder


def pack(args: argparse.Namespace) -> int:
    from model.train import load_config

    encoder = Path(args.encoder)
    if not (encoder / "model.safetensors").is_file():
        raise SystemExit(f"no encoder at {encoder}: run scripts/fetch-mpnet first")
    # every call sends the working tree (tracked and untracked files git does not ignore) beside a bundle
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True,
                            capture_output=True).stdout.decode().split("\0")
    tree = sum((REPO / f).stat().st_size for f in listed if f and (REPO / f).is_file())
    if tree + args.bundle_mb * 1e6 > CALL_LIMIT:
        raise SystemExit(f"the working tree is {tree / 1e6:.1f} MB: with {args.bundle_mb:g} MB bundles a call "
                         f"would pass the device tool's {CALL_LIMIT / 2**20:.0f} MiB; lower --bundle-mb")
    data = {spec["file"]: Path(args.data_root) / spec["file"] for spec in load_config(TEACHER_CONFIG)["datasets"]}
    n = pack_bundles(encoder, data, STAGE, int(args.bundle_mb * 1e6))
    for k in range(1, n + 1):
        mb = sum(p.stat().st_size for p in (STAGE / f"b{k}").rglob("*") if p.is_file()) / 1e6
        print(f".device/b{k}: {mb:.1f} MB (+ the {tree / 1e6:.1f} MB working tree)")
    print(f"{n} bundles: carry each in its own device call, back to back, the last with "
          "`python3 scripts/device_teacher.py run --out $OUT`")
    return 0


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    import yaml

    from model import metrics
    from model.data import SENTIMENT_LABELS, load_splits
    from model.train import load_config, pick_device, save_teacher_scores, teacher_logits, train

    root = Path(args.work)
    encoder = merge_bundles(STAGE, root)
    cfg = load_config(TEACHER_CONFIG)
    cfg.update(encoder=str(encoder), teacher=None)
    if args.device:
        cfg["device"] = args.device
    config = root / "teacher.yaml"
    config.write_text(yaml.safe_dump(cfg))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    best = train(str(config), str(root / "data"), str(root / "teacher"), limit=args.limit, epochs=args.epochs)
    shutil.copy(root / "teacher" / "train_log.jsonl", out / "teacher_train_log.jsonl")

    # the teacher's logits on every text of every data set: training rows for distillation, the
    # held-out ones to report the teacher itself
    splits = load_splits(cfg["datasets"], root / "data", int(cfg["seed"]))
    held = {**{f"val/{k}": v for k, v in splits.val.items()}, **{f"test/{k}": v for k, v in splits.test.items()}}
    if args.limit:  # a dry run scores a few texts of each set
        held = {k: v[:args.limit] for k, v in held.items()}
    train_texts = [r.text for r in splits.train][:args.limit or None]
    texts = list(dict.fromkeys(train_texts + [r.text for rows in held.values() for r in rows]))
    s, u = teacher_logits(best, texts, pick_device(cfg["device"]))
    save_teacher_scores(out / "teacher_scores.npz", texts, s, u)
    at = {t: i for i, t in enumerate(texts)}
    report = {"checkpoint_report": torch.load(best, map_location="cpu", weights_only=False)["report"]}
    for name, rows in held.items():
        y = np.array([r.sentiment for r in rows])
        if (y >= 0).any():
            pred = s[[at[r.text] for r in rows]].argmax(1)
            report[f"{name}/sentiment_macro_recall_argmax"] = round(
                metrics.summary(y[y >= 0], pred[y >= 0], SENTIMENT_LABELS)["macro_recall"], 4)
    (out / "teacher_report.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(required=True)
    a = sub.add_parser("pack", help="here: data + fp16 encoder shards into .device/b1..bN")
    a.add_argument("--encoder", default=str(REPO / "runs" / "encoders" / "all-mpnet-base-v2"))
    a.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"))
    a.add_argument("--bundle-mb", type=float, default=36.0,
                   help="payload per device call (default 36: 64 MiB less this repository)")
    a.set_defaults(func=pack)
    a = sub.add_parser("run", help="on the GPU machine: merge the bundles, train the teacher, score every text")
    a.add_argument("--out", default=os.environ.get("OUT", "runs/teacher"),
                   help="where teacher_scores.npz and the reports go (default $OUT)")
    a.add_argument("--work", default="/tmp/triage-teacher", help="scratch folder")
    a.add_argument("--limit", type=int, help="train on N rows and score N texts of each set (a dry run)")
    a.add_argument("--epochs", type=float, help="override teacher.yaml's epochs (a dry run)")
    a.add_argument("--device", choices=["auto", "cpu", "cuda"], help="override teacher.yaml's device")
    a.set_defaults(func=run)
    args = p.parse_args()
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
