"""Shadow mode's record and `triage model compare`.

Each shadowed text adds one entry to the capped Redis stream triage:shadow: a hash of the scrubbed
text (the key a history row of the same ticket gets: no ticket text is kept), when, and the labels and
versions of champion and challenger. Nothing is written back to a helpdesk from here.

`compare` joins the stream with a history file (`triage history pull`, run after agents have handled
the tickets): how often the two models agree, and on tickets whose urgency an agent set or corrected,
how often each was right.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from worker.decision import Scores
from worker.history import HistoryRow
from worker.pii import redact

STREAM = "triage:shadow"
MAX_ENTRIES = 200_000
HUMAN = ("agent-set", "agent-corrected-bot", "slack-correction")


def text_key(text: str) -> str:
    """The join key of a ticket's text: the same for the worker's text and the history row's (scrubbed)."""
    from model.textprep import clean

    return hashlib.sha256(clean(redact(text), 128).encode("utf-8")).hexdigest()[:32]


def _labels(s: Scores) -> dict[str, str]:
    return {"version": s.model_version, "sentiment": s.sentiment.label, "urgency": s.urgency.label}


class ShadowLog:
    def __init__(self, redis: Any, stream: str = STREAM, max_entries: int = MAX_ENTRIES):
        self.redis = redis
        self.stream = stream
        self.max_entries = max_entries

    def record(self, texts: Sequence[str], champion: Sequence[Scores], challenger: Sequence[Scores]) -> None:
        at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        pipe = self.redis.pipeline(transaction=False)
        for text, a, b in zip(texts, champion, challenger):
            entry = {"h": text_key(text), "at": at, "champion": _labels(a), "challenger": _labels(b)}
            pipe.xadd(self.stream, {"v": json.dumps(entry)}, maxlen=self.max_entries, approximate=True)
        pipe.execute()

    def entries(self, page: int = 1000) -> Iterator[dict[str, Any]]:
        start = "-"
        while True:
            got = self.redis.xrange(self.stream, min=start, max="+", count=page) or []
            for _entry_id, fields in got:
                raw = fields.get(b"v") or fields.get("v") or "{}"
                yield json.loads(raw)
            if len(got) < page:
                return
            last = got[-1][0]
            start = "(" + (last.decode() if isinstance(last, bytes) else str(last))


def compare(entries: Iterable[dict[str, Any]], rows: Iterable[HistoryRow]) -> dict[str, Any]:
    """Agreement of champion and challenger, and each one's accuracy where agents decided."""
    truth: dict[str, str] = {}
    for row in rows:
        got = row.label("urgency")
        if got and got[1] in HUMAN:
            from model.textprep import ticket_text

            truth[text_key(ticket_text(row.subject, row.text))] = got[0]
    seen = agree = 0
    judged = {"champion": 0, "challenger": 0}
    matched = 0
    versions: dict[str, set[str]] = {"champion": set(), "challenger": set()}
    latest: dict[str, dict[str, Any]] = {}
    for e in entries:
        latest[e["h"]] = e  # a ticket scored again counts once, its last answers
    for key, e in latest.items():
        seen += 1
        for side in versions:
            versions[side].add(e[side]["version"])
        agree += e["champion"]["urgency"] == e["challenger"]["urgency"]
        if key in truth:
            matched += 1
            for side in judged:
                judged[side] += e[side]["urgency"] == truth[key]
    return {"shadowed": seen, "urgency_agreement": round(agree / seen, 4) if seen else None,
            "handled_by_agents": matched,
            "accuracy": {side: (round(n / matched, 4) if matched else None) for side, n in judged.items()},
            "versions": {k: sorted(v) for k, v in versions.items()}}
