"""Training and evaluation data: CSV files -> labelled rows for the two heads.

Only the standard library and numpy: `triage model eval` uses this without the `train` extra.
"""

from __future__ import annotations

import csv
import hashlib
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

SENTIMENT_LABELS = ("frustrated", "neutral", "satisfied")
URGENCY_LABELS = ("high", "medium", "low")

# Public sentiment sets say negative/neutral/positive; the product speaks of tickets.
_SENTIMENT_ALIASES = {
    "negative": "frustrated", "neutral": "neutral", "positive": "satisfied",
    "frustrated": "frustrated", "satisfied": "satisfied",
}
_URGENCY_ALIASES = {"high": "high", "medium": "medium", "low": "low",
                    "urgent": "high", "normal": "medium"}

csv.field_size_limit(16 * 1024 * 1024)


@dataclass(frozen=True)
class Row:
    text: str
    sentiment: int = -1  # index into SENTIMENT_LABELS, -1 = no label
    urgency: int = -1  # index into URGENCY_LABELS, -1 = no label
    weight: float = 1.0  # e.g. > 1 for human-confirmed corrections
    source: str = ""


class DataError(ValueError):
    """A data file is missing, lacks a column, or holds a label we do not know."""


def sentiment_index(label: str) -> int:
    key = label.strip().lower()
    if not key:
        return -1
    if key not in _SENTIMENT_ALIASES:
        raise DataError(f"unknown sentiment label {label!r}; expected one of "
                        f"{sorted(_SENTIMENT_ALIASES)}")
    return SENTIMENT_LABELS.index(_SENTIMENT_ALIASES[key])


def urgency_index(label: str) -> int:
    key = label.strip().lower()
    if not key:
        return -1
    if key not in _URGENCY_ALIASES:
        raise DataError(f"unknown urgency label {label!r}; expected one of "
                        f"{sorted(_URGENCY_ALIASES)}")
    return URGENCY_LABELS.index(_URGENCY_ALIASES[key])


def read_csv(
    path: str | Path,
    text_col: str = "text",
    sentiment_col: str | None = None,
    urgency_col: str | None = None,
    weight_col: str | None = None,
    drop_col: str | None = None,
    source: str | None = None,
) -> list[Row]:
    """Read labelled rows; rows whose `drop_col` is truthy (e.g. `in_tweeteval_val`) are skipped."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    rows: list[Row] = []
    with path.open(newline="", encoding="utf-8", errors="replace") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        for col in (text_col, sentiment_col, urgency_col, weight_col, drop_col):
            if col and col not in header:
                raise DataError(f"{path}: no column {col!r}; columns are {header}")
        for n, rec in enumerate(reader, start=2):
            if drop_col and rec.get(drop_col, "").strip() not in ("", "0", "false", "False"):
                continue
            text = rec.get(text_col) or ""
            if not text.strip():
                continue
            try:
                s = sentiment_index(rec.get(sentiment_col) or "") if sentiment_col else -1
                u = urgency_index(rec.get(urgency_col) or "") if urgency_col else -1
            except DataError as e:
                raise DataError(f"{path}:{n}: {e}") from None
            if s < 0 and u < 0:
                continue
            w = float(rec.get(weight_col) or 1.0) if weight_col else 1.0
            rows.append(Row(text, s, u, w, source or path.parent.name))
    return rows


def stratified_split(
    rows: list[Row], fractions: tuple[float, ...], seed: int, key: str = "urgency"
) -> list[list[Row]]:
    """Split rows into len(fractions) parts, keeping each class's share in every part."""
    by_class: dict[int, list[Row]] = defaultdict(list)
    for r in rows:
        by_class[getattr(r, key)].append(r)
    parts: list[list[Row]] = [[] for _ in fractions]
    rng = random.Random(seed)
    for cls in sorted(by_class):
        members = by_class[cls][:]
        rng.shuffle(members)
        start = 0
        for i, frac in enumerate(fractions):
            end = len(members) if i == len(fractions) - 1 else start + round(frac * len(members))
            parts[i].extend(members[start:end])
            start = end
    for p in parts:
        rng.shuffle(p)
    return parts


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class Splits:
    train: list[Row]
    val: dict[str, list[Row]]  # by data set name
    test: dict[str, list[Row]]
    hashes: dict[str, str]  # file -> sha256, recorded in the artifact


def load_splits(datasets: list[dict], data_root: str | Path, seed: int) -> Splits:
    """Build train/val/test from the `datasets` section of a training config."""
    root = Path(data_root)
    splits = Splits([], {}, {}, {})
    for spec in datasets:
        path = root / spec["file"]
        rows = read_csv(path, spec.get("text_col", "text"), spec.get("sentiment_col"),
                        spec.get("urgency_col"), spec.get("weight_col"), spec.get("drop_col"),
                        source=spec["name"])
        splits.hashes[spec["file"]] = file_sha256(path)
        role = spec["role"]
        if role == "split":
            train, val, test = stratified_split(rows, tuple(spec["split"]), seed,
                                                key=spec.get("stratify", "urgency"))
            splits.train.extend(train * int(spec.get("oversample", 1)))
            splits.val[spec["name"]] = val
            splits.test[spec["name"]] = test
        elif role == "train":
            splits.train.extend(rows * int(spec.get("oversample", 1)))
        elif role in ("val", "test"):
            getattr(splits, role)[spec["name"]] = rows
        else:
            raise DataError(f"data set {spec['name']}: unknown role {role!r}")
    return splits


def load_config(path: str | Path) -> dict:
    """A training config (YAML); `extends: other.yaml` (relative to this file) starts from that one's keys.
    Here, not in model/train.py, so that `triage learn` reads it without torch."""
    import yaml

    path = Path(path)
    cfg = yaml.safe_load(path.read_text()) or {}
    base = cfg.pop("extends", None)
    return {**load_config(path.parent / base), **cfg} if base else cfg
