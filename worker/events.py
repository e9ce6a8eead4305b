"""The normalised ticket event: what every connector turns its vendor payload into.

Pure data, JSON-safe: RQ jobs carry `event.to_json()`, never pickles. Every text an event holds is
clean (`clean_text`): whatever a vendor sent, the model, the rules and the write-back only ever see
text that encodes.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from worker.errors import TriageError

SOURCES = ("zendesk", "jira", "slack", "sandbox")
MAX_ID_CHARS = 255  # a ticket id or revision longer than this is not one

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")  # C0/C1 controls but tab, newline, CR
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def clean_text(value: str) -> str:
    """Text any encoder and tokenizer accept: surrogate pairs joined and lone surrogates (legal in
    JSON, not in UTF-8) replaced by U+FFFD, NUL and other control characters (tab, newline and CR
    kept) turned into spaces, and the result in Unicode normal form C."""
    if value.isascii():
        return _CONTROL.sub(" ", value) if _CONTROL.search(value) else value
    if _SURROGATE.search(value):
        value = value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    value = _CONTROL.sub(" ", value)
    return value if unicodedata.is_normalized("NFC", value) else unicodedata.normalize("NFC", value)


class EventError(TriageError, ValueError):
    """A payload could not be turned into a ticket event; the message says why (never the text)."""


@dataclass(frozen=True)
class TicketEvent:
    source: str  # zendesk | jira | slack | sandbox
    ticket_id: str
    revision: str  # what changed: the latest public comment id, else updated_at
    subject: str = ""
    text: str = ""  # the latest public comment (the description for a new ticket)
    updated_at: str = ""  # ISO 8601
    requester_email: str = ""
    organization: str = ""
    channel: str = ""  # web, email, api, chat, slack channel id, ...
    tags: tuple[str, ...] = ()
    priority: str = ""  # the helpdesk's own value, "" when unset
    group: str = ""
    assignee: str = ""
    changed_by: str = ""  # user id of whoever made this change
    priority_set_by_human: bool = False  # an agent chose the current priority
    assignee_set_by_human: bool = False
    extra: dict[str, str] = field(default_factory=dict)  # connector-specific (project key, ...)
    language: str = ""  # ISO 639-1 code of the text's language: the model's detection, once scored

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise EventError(f"unknown source {self.source!r}")
        for f in fields(self):  # the edge: every text is made clean once, here
            value = getattr(self, f.name)
            if isinstance(value, str):
                cleaned: Any = clean_text(value)
            elif f.name == "tags":
                cleaned = tuple(clean_text(str(t)) for t in value)
            elif f.name == "extra":
                cleaned = {clean_text(str(k)): clean_text(str(v)) for k, v in value.items()}
            else:
                continue
            if cleaned is not value:
                object.__setattr__(self, f.name, cleaned)
        if not self.ticket_id:
            raise EventError("ticket id is missing")
        if not self.revision:
            raise EventError("revision is missing")
        for name in ("ticket_id", "revision"):
            if len(getattr(self, name)) > MAX_ID_CHARS:
                raise EventError(f"{name} is over {MAX_ID_CHARS} characters")

    @property
    def key(self) -> str:
        """Identity of this ticket revision: duplicate deliveries share it."""
        return f"{self.source}:{self.ticket_id}:{self.revision}"

    @property
    def requester_domain(self) -> str:
        return self.requester_email.rpartition("@")[2].lower()

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TicketEvent:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise EventError(f"unknown event fields: {sorted(unknown)}")
        values = dict(data)
        values["tags"] = tuple(values.get("tags") or ())
        for name in ("ticket_id", "revision"):
            if name in values:
                values[name] = str(values[name])
        try:
            return cls(**values)
        except TypeError as e:
            raise EventError(str(e)) from None

    @classmethod
    def from_json(cls, raw: str) -> TicketEvent:
        return cls.from_dict(json.loads(raw))
