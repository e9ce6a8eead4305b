"""`triage model ...` and `triage score ...`: argument parsing only; the work lives elsewhere."""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from model.textprep import ticket_text

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA_ROOT = os.environ.get("TRIAGE_DATA_ROOT", str(REPO.parent / "shared" / "data"))
DEFAULT_CONFIG = str(REPO / "model" / "configs" / "train.yaml")


def add_commands(sub: argparse._SubParsersAction) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    score = sub.add_parser(
        "score", formatter_class=fmt, help="score texts or a file of tickets with the local model",
        description="Score texts with the triage model (sentiment + urgency), one JSON line each.",
        epilog="examples:\n  triage score \"The app crashes every time I log in, fix it NOW\"\n"
               "  triage score --file tickets.csv --text-col body > scores.jsonl\n"
               "  triage score --explain \"Thanks, that solved it!\"\n\n"
               "CSV/JSONL rows may carry `text`, or `subject` and `body`/`description`.")
    score.add_argument("texts", nargs="*", help="texts to score")
    score.add_argument("--file", help="a .csv or .jsonl file of tickets")
    score.add_argument("--text-col", default="text", help="column/field holding the text (default: text)")
    score.add_argument("--explain", action="store_true", help="add the words that pushed each head")
    score.add_argument("--model-dir", help="artifact folder (default: $TRIAGE_MODEL_DIR or the shipped model)")
    score.add_argument("--threads", type=int, default=2, help="onnxruntime threads (default 2)")
    score.set_defaults(func=_score)

    model = sub.add_parser("model", help="train, export and evaluate the triage model",
                           description="Build and check the triage model. Training and export need "
                                       "the train extra: pip install -e '.[train]'.")
    msub = model.add_subparsers(dest="model_command", required=True)

    train = msub.add_parser("train", formatter_class=fmt, help="fine-tune the encoder and both heads",
                            description="Multi-task fine-tuning on the data sets named in the config.",
                            epilog="example:\n  triage model train --out runs/v2\n"
                                   "  triage model train --extra-csv feedback.csv   # add agents' corrections")
    train.add_argument("--config", default=DEFAULT_CONFIG, help="hyper-parameters and data sets (YAML)")
    train.add_argument("--data-root", default=DEFAULT_DATA_ROOT, help="folder the config's files are in")
    train.add_argument("--out", default="runs/latest", help="checkpoints and log go here")
    train.add_argument("--extra-csv", action="append", default=[],
                       help="more rows: columns text, sentiment, urgency, weight (repeatable)")
    train.add_argument("--limit", type=int, help="train on a random subset of N rows (smoke runs)")
    train.add_argument("--epochs", type=float, help="override the config's epochs")
    train.set_defaults(func=_train)

    export = msub.add_parser("export", help="checkpoint -> ONNX fp32 + int8, calibrated, with metadata")
    export.add_argument("--checkpoint", default="runs/latest/best.pt")
    export.add_argument("--out", default=str(REPO / "model" / "artifacts" / "triage-v2"))
    export.add_argument("--version", default="triage-v2")
    export.add_argument("--data-root", default=DEFAULT_DATA_ROOT)
    rule = export.add_mutually_exclusive_group()
    rule.add_argument("--cost-ratio", type=float, default=3.0,
                      help="urgency=high threshold minimising cost on validation, a missed urgent ticket "
                           "costing N false alarms (default 3)")
    rule.add_argument("--target-recall", type=float,
                      help="instead: the highest threshold reaching this high-urgency recall on validation")
    export.add_argument("--abstain-sentiment", type=float, default=0.5, help="confidence floor (sentiment)")
    export.add_argument("--abstain-urgency", type=float, default=0.45, help="confidence floor (urgency)")
    export.set_defaults(func=_export)

    ev = msub.add_parser("eval", formatter_class=fmt, help="metrics, Markdown report and plots on a CSV",
                         description="Evaluate the ONNX model on any CSV with a text column and one or "
                                     "both label columns (negative/neutral/positive or frustrated/neutral/"
                                     "satisfied; high/medium/low).",
                         epilog="examples:\n  triage model eval --data ../shared/data/tweeteval_sentiment/test.csv "
                                "--sentiment-col label\n  triage model eval --heldout   # every held-out test "
                                "split + the TF-IDF baseline")
    ev.add_argument("--data", help="CSV file")
    ev.add_argument("--text-col", default="text")
    ev.add_argument("--sentiment-col")
    ev.add_argument("--urgency-col")
    ev.add_argument("--heldout", action="store_true",
                    help="evaluate the config's held-out test splits and the TF-IDF baseline")
    ev.add_argument("--config", default=DEFAULT_CONFIG)
    ev.add_argument("--data-root", default=DEFAULT_DATA_ROOT)
    ev.add_argument("--model-dir")
    ev.add_argument("--variant", default="int8", choices=["int8", "fp32"])
    ev.add_argument("--out", default="eval-report", help="report folder (report.md + PNGs)")
    ev.set_defaults(func=_eval)


def _load(args: argparse.Namespace, variant: str = "int8"):
    from model.runtime import TriageModel

    return TriageModel.load(args.model_dir, threads=getattr(args, "threads", 2), variant=variant)


def _read_tickets(path: str, text_col: str) -> Iterator[str]:
    def pick(rec: dict) -> str:
        if rec.get(text_col):
            return str(rec[text_col])
        return ticket_text(rec.get("subject"), rec.get("body") or rec.get("description"))

    p = Path(path)
    if not p.is_file():
        raise SystemExit(f"error: {path}: no such file")
    with p.open(encoding="utf-8", errors="replace", newline="") as f:
        if p.suffix == ".jsonl":
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        yield pick(json.loads(line))
                    except (json.JSONDecodeError, AttributeError):
                        raise SystemExit(f"error: {path}:{n}: not a JSON object") from None
        else:
            csv.field_size_limit(16 * 1024 * 1024)
            reader = csv.DictReader(f)
            if text_col not in (reader.fieldnames or []) and "subject" not in (reader.fieldnames or []):
                raise SystemExit(f"error: {path} has no column {text_col!r} (columns: {reader.fieldnames}); "
                                 f"pick one with --text-col")
            yield from (pick(rec) for rec in reader)


def _score(args: argparse.Namespace) -> int:
    if not args.texts and not args.file:
        raise SystemExit("error: give texts to score, or --file tickets.csv|.jsonl")
    model = _load(args)
    texts = list(args.texts) + (list(_read_tickets(args.file, args.text_col)) if args.file else [])
    batch = 256
    chunks = range(0, len(texts), batch)
    if len(texts) > batch and sys.stderr.isatty():
        from tqdm import tqdm

        chunks = tqdm(chunks, desc="scoring", unit="x256")
    for start in chunks:
        for pred in model.score(texts[start : start + batch], explain=args.explain):
            print(json.dumps(pred.to_dict(), ensure_ascii=False))
    return 0


def _train(args: argparse.Namespace) -> int:
    from model.train import train

    best = train(args.config, args.data_root, args.out, args.extra_csv, args.limit, args.epochs)
    print(f"best checkpoint: {best}\nnext: triage model export --checkpoint {best}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from model.export import export

    export(args.checkpoint, args.out, args.data_root, args.version,
           args.target_recall, None if args.target_recall else args.cost_ratio,
           (args.abstain_sentiment, args.abstain_urgency))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from model.data import read_csv
    from model.evaluate import evaluate_file

    model = _load(args, args.variant)
    out = Path(args.out)
    if args.heldout:
        from model.heldout import evaluate_heldout

        evaluate_heldout(model, args.config, args.data_root, out)
        return 0
    if not args.data or not (args.sentiment_col or args.urgency_col):
        raise SystemExit("error: give --data FILE.csv and --sentiment-col and/or --urgency-col (or --heldout)")
    rows = read_csv(args.data, args.text_col, args.sentiment_col, args.urgency_col)
    result = evaluate_file(model, rows, out, Path(args.data).name)
    brief = {h: {k: round(result[h][k], 4) for k in ("macro_f1", "macro_recall", "ece")}
             for h in ("sentiment", "urgency") if h in result}
    print(json.dumps(brief))
    print(f"report: {out / 'report.md'}")
    return 0
