"""The normalised ticket event: what every connector turns its vendor payload into.

Pure data, JSON-safe: RQ jobs carry `event.to_json()`, never pickles.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from worker.errors import TriageError

SOURCES = ("zendesk", "jira", "slack", "sandbox")


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

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise EventError(f"unknown source {self.source!r}")
        if not self.ticket_id:
            raise EventError("ticket id is missing")
        if not self.revision:
            raise EventError("revision is missing")

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
