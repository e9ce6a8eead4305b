"""A team's history as training data: one JSON line per ticket, each label with its provenance.

Pure core (no I/O beyond the dataset file): the connectors' history pullers build `HistoryRow`s,
`triage learn` reads them back.

A row's `labels` maps a head (urgency, sentiment) to {"label", "provenance", "weight"}. Provenance
says where the label came from, and the weight how much training trusts it:

    agent-corrected-bot   the bot set a value, an agent changed it (a correction: the strongest signal)
    slack-correction      an agent corrected the bot in Slack (`triage feedback export`)
    agent-set             an agent set the value; the bot had not
    csat                  the requester's satisfaction rating (good / bad): a sentiment signal
    llm                   an LLM's label (connectors/llm)
    public                a public data set (the replay sample `triage learn` mixes in)
    bot-unchanged         the bot set it and the agent who solved the ticket left it: a weak
                          confirmation (the model partly learns its own answers back), so it weighs little
    suggestion-rejected   suggest mode: the bot suggested a value in its note and an agent set another
                          one: a correction made with the bot's answer in view, as strong as
                          agent-corrected-bot (the label is the agent's value)
    suggestion-accepted   the agent set the value the bot suggested: a human confirmed it, but with the
                          suggestion in view (agents anchor on it, and the model knows this answer
                          already), so it weighs as an unprompted agent-set, not more

Suggest mode also keeps, per row, what the bot suggested (`suggested`: field -> value) and what became
of it (`suggestion_outcome`: field -> accepted | rejected | open), so `acceptance` can count how often
agents take the bot's suggestions. A group suggestion's outcome labels the `group` head.

Scrubbing (on by default in `triage history pull`): e-mail addresses, phone numbers and payment card
numbers (Luhn-checked) become [email], [phone], [card] before anything is written.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from worker.errors import TriageError

PROVENANCE_WEIGHTS: dict[str, float] = {
    "agent-corrected-bot": 3.0,
    "slack-correction": 3.0,
    "agent-set": 2.0,
    "csat": 1.0,
    "llm": 0.5,
    "public": 0.5,
    "bot-unchanged": 0.5,
    "suggestion-rejected": 3.0,
    "suggestion-accepted": 2.0,
}
HEADS = ("urgency", "sentiment", "group")
# vendor priority -> urgency label (Zendesk low/normal/high/urgent; Jira Lowest..Highest, Blocker...)
URGENCY_OF_PRIORITY = {"urgent": "high", "high": "high", "normal": "medium", "low": "low",
                       "highest": "high", "blocker": "high", "critical": "high", "medium": "medium",
                       "major": "medium", "lowest": "low", "minor": "low", "trivial": "low"}
SENTIMENT_OF_CSAT = {"good": "satisfied", "bad": "frustrated"}


class HistoryError(TriageError):
    """A dataset file is unreadable or a label is unknown; the message says which line and how to fix it."""


@dataclass
class HistoryRow:
    id: str  # vendor:ticket, e.g. zendesk:4201
    source: str  # zendesk | jira
    created_at: str  # ISO 8601 UTC: the time split orders by it
    subject: str
    text: str  # the customer's text (first public comment / description)
    labels: dict[str, dict[str, Any]] = field(default_factory=dict)  # head -> label, provenance, weight
    priority: str = ""  # the vendor's final priority
    bot_priority: str = ""  # the value the bot set, when it did
    group: str = ""
    type: str = ""
    tags: list[str] = field(default_factory=list)
    csat: str = ""  # good | bad | "" (none)
    language: str = ""
    suggested: dict[str, str] = field(default_factory=dict)  # suggest mode: field -> the bot's suggestion
    suggestion_outcome: dict[str, str] = field(default_factory=dict)  # field -> accepted | rejected | open

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HistoryRow:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    def label(self, head: str) -> tuple[str, str, float] | None:
        """(label, provenance, weight) of a head, None when the row carries none."""
        got = self.labels.get(head)
        if not got or not got.get("label"):
            return None
        return str(got["label"]), str(got.get("provenance", "")), float(got.get("weight", 1.0))


def labelled(head: str, label: str, provenance: str, weights: Mapping[str, float] | None = None) -> dict[str, Any]:
    """One head's label entry, weighted by its provenance."""
    table = {**PROVENANCE_WEIGHTS, **(weights or {})}
    if provenance not in table:
        raise HistoryError(f"unknown provenance {provenance!r}; known: {', '.join(table)}")
    return {"label": label, "provenance": provenance, "weight": table[provenance]}


def parse_weights(items: Iterable[str]) -> dict[str, float]:
    """`provenance=weight` pairs from the command line, checked."""
    out: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in PROVENANCE_WEIGHTS:
            raise HistoryError(f"--weight {item!r}: use PROVENANCE=NUMBER, PROVENANCE one of "
                               f"{', '.join(PROVENANCE_WEIGHTS)}")
        try:
            out[name] = float(value)
        except ValueError:
            raise HistoryError(f"--weight {item!r}: {value!r} is not a number") from None
        if out[name] < 0:
            raise HistoryError(f"--weight {item!r}: a weight cannot be negative")
    return out


# -- the dataset file ---------------------------------------------------------------------------------


def read_rows(path: str | Path) -> list[HistoryRow]:
    """Every row of a dataset file; a ticket written twice (a resumed pull) counts once, the last."""
    p = Path(path)
    if not p.is_file():
        raise HistoryError(f"{path}: no such file; make one with `triage history pull zendesk`")
    rows: dict[str, HistoryRow] = {}
    with p.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                row = HistoryRow.from_dict(data)
            except (ValueError, TypeError):
                raise HistoryError(f"{path}:{n}: not a history row (JSON object with id, text, labels); "
                                   "pull it again with `triage history pull`") from None
            rows[row.id] = row
    return list(rows.values())


def row_ids(path: str | Path) -> set[str]:
    """Ids already in a dataset file (a cut last line, from a crash, is ignored)."""
    p = Path(path)
    if not p.is_file():
        return set()
    ids = set()
    with p.open(encoding="utf-8") as f:
        for line in f:
            try:
                ids.add(str(json.loads(line)["id"]))
            except (ValueError, KeyError, TypeError):
                continue
    return ids


class DatasetWriter:
    """Appends rows, durably (flush + fsync per batch), skipping ids already written."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._seen = row_ids(self.path)
        self._repair()
        self._file = self.path.open("a", encoding="utf-8")

    def _repair(self) -> None:
        """A crash can leave a cut last line (its page's cursor was never saved, so the page comes
        again): cut the file back to its last whole line."""
        if not self.path.is_file():
            return
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end != len(data):
            with self.path.open("rb+") as f:
                f.truncate(end)

    def write(self, rows: Iterable[HistoryRow]) -> int:
        """Write the rows not seen before; returns how many were written."""
        n = 0
        for row in rows:
            if row.id in self._seen:
                continue
            self._file.write(row.to_json() + "\n")
            self._seen.add(row.id)
            n += 1
        self._file.flush()
        os.fsync(self._file.fileno())
        return n

    @property
    def count(self) -> int:
        return len(self._seen)

    def close(self) -> None:
        self._file.close()


def save_state(path: str | Path, state: Mapping[str, Any]) -> None:
    """Write the pull's state atomically (a crash leaves the old state or the new, never half)."""
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(dict(state), indent=2, sort_keys=True), encoding="utf-8")
    os.replace(tmp, p)


def load_state(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        return {}
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except ValueError:
        raise HistoryError(f"{path}: the pull's state file is unreadable; delete it (or pass --restart) "
                           "to start the pull over") from None
    return data if isinstance(data, dict) else {}


def summary(rows: Iterable[HistoryRow]) -> dict[str, Any]:
    """Counts per head, label and provenance (what a pull or a learn run reports)."""
    out: dict[str, Any] = {"rows": 0}
    for row in rows:
        out["rows"] += 1
        for head in HEADS:
            got = row.label(head)
            if got:
                label, provenance, _ = got
                per = out.setdefault(head, {"labels": {}, "provenance": {}})
                per["labels"][label] = per["labels"].get(label, 0) + 1
                per["provenance"][provenance] = per["provenance"].get(provenance, 0) + 1
    return out


def suggestion_labels(labels: dict[str, dict[str, Any]], outcomes: Mapping[str, str], chosen: Mapping[str, str],
                      weights: Mapping[str, float] | None = None, group_field: str = "group") -> None:
    """Label the urgency head from a priority suggestion, the group head from a suggestion of
    `group_field` (Jira: request_type, what the routing head learns there), that an agent accepted or
    rejected (the agent's value is the label: a neutral priority, a group name)."""
    for name, head in (("priority", "urgency"), (group_field, "group")):
        verdict, value = outcomes.get(name), chosen.get(name, "")
        label = URGENCY_OF_PRIORITY.get(value.lower()) if head == "urgency" else value
        if verdict in ("accepted", "rejected") and label:
            labels[head] = labelled(head, label, f"suggestion-{verdict}", weights)


def acceptance(rows: Iterable[HistoryRow]) -> dict[str, dict[str, Any]]:
    """Per suggested field: how many suggestions agents accepted, rejected, left open, and the rate
    (accepted / decided; None before any was decided)."""
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        for name, verdict in row.suggestion_outcome.items():
            per = out.setdefault(name, {"accepted": 0, "rejected": 0, "open": 0})
            per[verdict] = per.get(verdict, 0) + 1
    for per in out.values():
        decided = per["accepted"] + per["rejected"]
        per["rate"] = round(per["accepted"] / decided, 3) if decided else None
    return out


def iter_json_lines(rows: Iterable[HistoryRow]) -> Iterator[str]:
    for row in rows:
        yield row.to_json()
