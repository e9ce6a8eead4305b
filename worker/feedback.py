"""Agents' verdicts on the model's labels: stored durably, exported for training, summarised.

Every verdict (a correction, a confirmation, an Apply) is one entry of the Redis stream
`triage:feedback`, appended and never trimmed: deploy/compose.yaml runs Redis with AOF, so it
survives restarts (at most ~1 s of writes is lost on a crash). An entry holds the text the model
scored, its labels, the labels the person chose, who and when.

    store = FeedbackStore(redis)
    store.record(Feedback(item="zendesk:4201:28000000101", text="...", model={...}, human={...}, by="U1"))
    rows = export_rows(store.all())          # -> `triage model train --extra-csv` columns
    table = agreement(store.all(), "week")   # per head: how often people agreed with the model
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from redis import Redis
from redis.exceptions import RedisError

from model.data import SENTIMENT_LABELS, URGENCY_LABELS
from worker.errors import FeedbackError
from worker.store import PREFIX

STREAM = f"{PREFIX}:feedback"
HEADS = ("sentiment", "urgency")
LABELS = {"sentiment": SENTIMENT_LABELS, "urgency": URGENCY_LABELS}
VERDICTS = ("confirmed", "corrected", "applied")
DEFAULT_WEIGHT = 2.0  # human-confirmed rows count this many times a public-data row in training
CSV_COLUMNS = ("text", "sentiment", "urgency", "weight", "human_confirmed", "model_sentiment", "model_urgency",
               "model_version", "verdicts", "item", "source", "by", "at")


@dataclass(frozen=True)
class Feedback:
    item: str  # what was judged: an event key (zendesk:4201:...), slack:C0123:169..., or text:<hash>
    text: str  # what the model scored
    model: dict[str, str]  # head -> the model's label ("unsure" when it abstained)
    human: dict[str, str] = field(default_factory=dict)  # head -> the label the person chose (judged heads)
    by: str = ""  # who: a Slack user id
    by_name: str = ""
    via: str = ""  # where: slash | shortcut | alert | ...
    source: str = ""  # zendesk | slack | text
    model_version: str = ""
    confidence: dict[str, float] = field(default_factory=dict)  # head -> the model's confidence
    agent: bool = True  # from a helpdesk agent (connectors.slack.access); others' verdicts are not training data
    verdict: str = ""  # confirmed | corrected | applied (set by record() when empty)
    at: str = ""  # ISO 8601 UTC (set by record())
    id: str = ""  # the stream entry id (set when read back)

    def agreed(self, head: str) -> bool | None:
        """Did the person agree with the model on this head? None: not judged, or the model abstained."""
        human, model = self.human.get(head), self.model.get(head)
        if not human or not model or model == "unsure":
            return None
        return human == model


def _verdict(fb: Feedback) -> str:
    if not fb.human:
        return "applied"
    return "confirmed" if all(fb.human[h] == fb.model.get(h) for h in fb.human) else "corrected"


class FeedbackStore:
    def __init__(self, redis: Redis, stream: str = STREAM):
        self.redis = redis
        self.stream = stream

    def record(self, fb: Feedback, now: datetime | None = None) -> Feedback:
        """Append a verdict; returns it with its id, time and verdict. Raises FeedbackError."""
        for head, label in fb.human.items():
            if head not in LABELS or label not in LABELS[head]:
                raise FeedbackError(f"{head}={label!r} is not a label; use one of "
                                    f"{', '.join(LABELS.get(head, ()))}")
        if not fb.text.strip():
            raise FeedbackError("nothing to learn from: the text is empty")
        fb = replace(fb, verdict=fb.verdict or _verdict(fb),
                     at=fb.at or (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ"))
        data = {k: v for k, v in asdict(fb).items() if k != "id"}
        try:
            entry_id = self.redis.xadd(self.stream, {"v": json.dumps(data, ensure_ascii=False)})
        except RedisError as e:
            raise FeedbackError(f"feedback not saved: Redis unreachable ({type(e).__name__})") from None
        return replace(fb, id=entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id))

    def all(self, since: datetime | None = None, page: int = 1000) -> Iterator[Feedback]:
        """Every verdict, oldest first (since: only those recorded at or after it)."""
        start = f"{int(since.timestamp() * 1000)}-0" if since else "-"
        known = set(Feedback.__dataclass_fields__)
        try:
            while True:
                entries: list[Any] = self.redis.xrange(self.stream, min=start, max="+", count=page) or []
                for entry_id, fields in entries:
                    raw = (fields or {}).get(b"v") or (fields or {}).get("v") or "{}"
                    data: dict[str, Any] = json.loads(raw)
                    yield Feedback(**{k: v for k, v in data.items() if k in known and k != "id"},
                                   id=entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id))
                if len(entries) < page:
                    return
                last = entries[-1][0]
                start = "(" + (last.decode() if isinstance(last, bytes) else str(last))
        except RedisError as e:
            raise FeedbackError(f"feedback unreadable: Redis unreachable ({type(e).__name__})") from None

    def count(self) -> int:
        return int(self.redis.xlen(self.stream))


# -- export: training rows ----------------------------------------------------------------------


def export_rows(feedback: Iterable[Feedback], weight: float = DEFAULT_WEIGHT) -> list[dict[str, str]]:
    """One training row per judged item: for each head the latest label a person chose (a head no one
    judged stays empty, which training reads as 'no label'). Apply verdicts carry no labels; verdicts
    of people who are not helpdesk agents (agent=False) are kept but not exported."""
    latest: dict[str, dict[str, Any]] = {}
    for fb in feedback:
        if not fb.human or not fb.agent:
            continue
        row = latest.setdefault(fb.item, {"labels": {}, "verdicts": 0})
        row["labels"].update(fb.human)
        row["verdicts"] += 1
        row["last"] = fb
    out = []
    for item, row in latest.items():
        last: Feedback = row["last"]
        out.append({
            "text": last.text, "sentiment": row["labels"].get("sentiment", ""),
            "urgency": row["labels"].get("urgency", ""), "weight": f"{weight:g}", "human_confirmed": "1",
            "model_sentiment": last.model.get("sentiment", ""), "model_urgency": last.model.get("urgency", ""),
            "model_version": last.model_version, "verdicts": str(row["verdicts"]), "item": item,
            "source": last.source, "by": last.by, "at": last.at,
        })
    return out


def write_csv(rows: list[dict[str, str]], out: TextIO) -> None:
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)


def to_csv(rows: list[dict[str, str]]) -> str:
    buf = io.StringIO()
    write_csv(rows, buf)
    return buf.getvalue()


# -- stats: agreement per head over time -------------------------------------------------------------


def _period(at: str, by: str) -> str:
    day = datetime.strptime(at[:10], "%Y-%m-%d")
    if by == "day":
        return day.strftime("%Y-%m-%d")
    if by == "month":
        return day.strftime("%Y-%m")
    monday = day - timedelta(days=day.weekday())
    return "week of " + monday.strftime("%Y-%m-%d")


@dataclass
class HeadStats:
    judged: int = 0  # verdicts that name a label for this head
    agreed: int = 0
    abstained: int = 0  # the model had said "unsure"

    @property
    def rate(self) -> float | None:
        decided = self.judged - self.abstained
        return self.agreed / decided if decided else None


@dataclass
class PeriodStats:
    period: str
    verdicts: int = 0
    applied: int = 0
    heads: dict[str, HeadStats] = field(default_factory=lambda: {h: HeadStats() for h in HEADS})


def agreement(feedback: Iterable[Feedback], by: str = "week") -> list[PeriodStats]:
    """Per period (day | week | month), then a last row 'all': how often people agreed with each head."""
    if by not in ("day", "week", "month"):
        raise FeedbackError(f"group by day, week or month, not {by!r}")
    periods: dict[str, PeriodStats] = {}
    total = PeriodStats("all")
    for fb in feedback:
        key = _period(fb.at, by) if fb.at else "unknown"
        for stats in (periods.setdefault(key, PeriodStats(key)), total):
            stats.verdicts += 1
            stats.applied += fb.verdict == "applied"
            for head in HEADS:
                if not fb.human.get(head):
                    continue
                h = stats.heads[head]
                h.judged += 1
                agreed = fb.agreed(head)
                h.abstained += agreed is None
                h.agreed += bool(agreed)
    return [periods[k] for k in sorted(periods)] + ([total] if periods else [])


def format_agreement(rows: list[PeriodStats]) -> str:
    if not rows:
        return "no feedback yet: corrections made in Slack appear here"
    header = f"{'period':<20} {'verdicts':>8} {'applied':>8}   " + "   ".join(
        f"{h + ' agreement':>22}" for h in HEADS)
    lines = [header, "-" * len(header)]

    def cell(h: HeadStats) -> str:
        if not h.judged:
            return f"{'-':>22}"
        rate = "n/a" if h.rate is None else f"{h.rate:.0%}"
        extra = f", {h.abstained} unsure" if h.abstained else ""
        return f"{f'{rate} of {h.judged}{extra}':>22}"

    for r in rows:
        if r.period == "all":
            lines.append("-" * len(header))
        lines.append(f"{r.period:<20} {r.verdicts:>8} {r.applied:>8}   "
                     + "   ".join(cell(r.heads[h]) for h in HEADS))
    return "\n".join(lines)


def agreement_json(rows: list[PeriodStats]) -> list[dict[str, Any]]:
    return [{"period": r.period, "verdicts": r.verdicts, "applied": r.applied,
             **{h: {"judged": s.judged, "agreed": s.agreed, "model_unsure": s.abstained,
                    "agreement": None if s.rate is None else round(s.rate, 4)} for h, s in r.heads.items()}}
            for r in rows]
