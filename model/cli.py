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
        description="Score texts with the triage model (sentiment + urgency). JSON lines by default (for "
                    "machines); --format table for people. Each result carries `top_words`: per head, the "
                    "words with the largest share of the decided label's score (what the internal note shows).",
        epilog="examples:\n  triage score \"The app crashes every time I log in, fix it NOW\"\n"
               "  triage score --file tickets.csv --text-col body > scores.jsonl\n"
               "  triage score --file tickets.csv --format table\n\n"
               "CSV/JSONL rows carry the text in --text-col (default `text`), or `subject` and "
               "`body`/`description`;\nan `id` column (or --id-col) is carried into each result.")
    score.add_argument("texts", nargs="*", help="texts to score")
    score.add_argument("--file", help="a .csv or .jsonl file of tickets")
    score.add_argument("--text-col", help="column/field holding the text (default: text, else subject + body)")
    score.add_argument("--id-col", help="column/field carried into each result as `id` (default: id, when present)")
    score.add_argument("--format", choices=["jsonl", "table"], default="jsonl",
                       help="jsonl: one JSON object a text (default); table: one line a text")
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
    export.add_argument("--out", default="runs/export", help="artifact folder to write (default runs/export)")
    export.add_argument("--version", default="triage-custom", help="version name written into triage.json")
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
    ev.add_argument("--with-llm", action="store_true",
                    help="also the model + LLM second opinion (the endpoint of TRIAGE_LLM_*, docs/llm.md): "
                         "hybrid figures against the model alone, escalation rate, calls, tokens (llm.md)")
    ev.set_defaults(func=_eval)

    from model.registry import add_commands as registry_commands  # list, promote, rollback

    registry_commands(msub, fmt)


def _load(args: argparse.Namespace, variant: str = "int8"):
    from model.runtime import TriageModel
    from worker.settings import model_dir_setting

    return TriageModel.load(args.model_dir or model_dir_setting() or None, threads=getattr(args, "threads", 2),
                            variant=variant)


def _read_tickets(path: str, text_col: str | None, id_col: str | None) -> Iterator[tuple[str | None, str]]:
    """(id, text) of each row. A column named on the command line must exist: no silent fallback."""
    p = Path(path)
    if not p.is_file():
        raise SystemExit(f"error: {path}: no such file")

    def pick(rec: dict, where: str) -> tuple[str | None, str]:
        if text_col:
            if text_col not in rec:
                raise SystemExit(f"error: {where}: no field {text_col!r} (fields: {sorted(rec)}); "
                                 "pick one with --text-col")
            text = str(rec[text_col] or "")
        elif rec.get("text"):
            text = str(rec["text"])
        else:
            text = ticket_text(rec.get("subject"), rec.get("body") or rec.get("description"))
        if id_col and id_col not in rec:
            raise SystemExit(f"error: {where}: no field {id_col!r} (fields: {sorted(rec)}); pick one with --id-col")
        key = id_col or ("id" if "id" in rec else None)
        return (str(rec[key]) if key else None), text

    with p.open(encoding="utf-8", errors="replace", newline="") as f:
        if p.suffix == ".jsonl":
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError:
                        rec = None
                    if not isinstance(rec, dict):
                        raise SystemExit(f"error: {path}:{n}: not a JSON object")
                    yield pick(rec, f"{path}:{n}")
        else:
            csv.field_size_limit(16 * 1024 * 1024)
            reader = csv.DictReader(f)
            columns = reader.fieldnames or []
            for wanted, flag in ((text_col, "--text-col"), (id_col, "--id-col")):
                if wanted and wanted not in columns:
                    raise SystemExit(f"error: {path} has no column {wanted!r} (columns: {columns}); "
                                     f"pick one with {flag}")
            if not text_col and not {"text", "subject", "body", "description"} & set(columns):
                raise SystemExit(f"error: {path} has no text, subject or body column (columns: {columns}); "
                                 "name yours with --text-col")
            for n, rec in enumerate(reader, 2):
                yield pick(rec, f"{path}:{n}")


def _table_line(ident: str | None, text: str, result: dict) -> str:
    def head(h: str) -> str:
        r = result[h]
        return f"{r['label']:<10} {r['confidence']:4.0%}"

    words = ", ".join(dict.fromkeys(w for h in ("urgency", "sentiment") for w, _ in result["top_words"].get(h, [])[:3]))
    snippet = " ".join(text.split())[:40]
    return f"{(ident or '')[:12]:<12} {head('sentiment')}  {head('urgency')}  {words[:40]:<40}  {snippet}"


def _score(args: argparse.Namespace) -> int:
    if not args.texts and not args.file:
        raise SystemExit("error: give texts to score, or --file tickets.csv|.jsonl")
    rows: list[tuple[str | None, str]] = [(None, t) for t in args.texts]
    if args.file:
        rows += list(_read_tickets(args.file, args.text_col, args.id_col))
    elif args.text_col or args.id_col:
        raise SystemExit("error: --text-col and --id-col are for --file")
    model = _load(args)
    batch = 256
    chunks = range(0, len(rows), batch)
    if len(rows) > batch and sys.stderr.isatty():
        from tqdm import tqdm

        chunks = tqdm(chunks, desc="scoring", unit="x256")
    table = args.format == "table"
    if table:
        print(f"{'id':<12} {'sentiment':<15}  {'urgency':<15}  {'top words':<40}  text")
    for start in chunks:
        part = rows[start : start + batch]
        for (ident, text), pred in zip(part, model.score([t for _, t in part])):
            result = pred.to_dict()
            if table:
                print(_table_line(ident, text, result))
            else:
                print(json.dumps({"id": ident, **result} if ident is not None else result, ensure_ascii=False))
    return 0


def _data_root(path: str) -> str:
    """The public data folder, or an error that says what it is and how to point at it."""
    if not Path(path).is_dir():
        raise SystemExit(
            f"error: no data folder at {path}. Training, export and --heldout read the public data sets the "
            "model card lists (each with its source repository and licence, in a folder per set, e.g. "
            "semeval2017_4a/train.csv); put them in one folder and pass --data-root DIR or set "
            "TRIAGE_DATA_ROOT. To evaluate on your own labelled CSV instead: triage model eval --data FILE.csv "
            "--urgency-col COL")
    return path


def _train(args: argparse.Namespace) -> int:
    from model.train import train

    best = train(args.config, _data_root(args.data_root), args.out, args.extra_csv, args.limit, args.epochs)
    print(f"best checkpoint: {best}\nnext: triage model export --checkpoint {best}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from model.export import export

    export(args.checkpoint, args.out, _data_root(args.data_root), args.version,
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

        evaluate_heldout(model, args.config, _data_root(args.data_root), out)
        return 0
    if not args.data or not (args.sentiment_col or args.urgency_col):
        raise SystemExit("error: give --data FILE.csv and --sentiment-col and/or --urgency-col (or --heldout)")
    rows = read_csv(args.data, args.text_col, args.sentiment_col, args.urgency_col)
    result = evaluate_file(model, rows, out, Path(args.data).name)
    if args.with_llm:
        from worker.escalation import eval_cli

        eval_cli(model, rows, out, Path(args.data).name)
    brief = {h: {k: round(result[h][k], 4) for k in ("macro_f1", "macro_recall", "ece")}
             for h in ("sentiment", "urgency") if h in result}
    print(json.dumps(brief))
    print(f"report: {out / 'report.md'}")
    return 0
