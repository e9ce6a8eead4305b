"""Sample tickets for `triage rules test`: a file of tickets as an admin writes them by hand.

Two forms, one ticket an object:
- JSON lines (`.jsonl`): one object a line;
- JSON (`.json`): a list of objects, or an object with a `tickets` list (the sandbox's
  `connectors/zendesk/sample_tickets.json` reads as is).

Fields (all optional but a text): `source` (zendesk, jira, slack; default sandbox), `id`, `subject`,
`text` (or `description` / `body`), `tags`, `priority`, `group`, `assignee`, `channel`,
`organization`, `requester_email` (or `requester: {"email": ...}`), and the Jira fields `project`,
`issue_type`, `request_type`. Samples ship in `deploy/samples/`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from worker.errors import TriageError
from worker.events import EventError, TicketEvent

EVENT_FIELDS = ("subject", "tags", "priority", "group", "assignee", "channel", "organization",
                "requester_email")
JIRA_FIELDS = ("project", "issue_type", "request_type")
TEXT_FIELDS = ("text", "description", "body")
# What the sandbox's sample file carries besides: read, not used by rules.
IGNORED = ("requester", "minutes_ago", "comments", "status", "type")
FIELDS = ("source", "id", *TEXT_FIELDS, *EVENT_FIELDS, *JIRA_FIELDS, *IGNORED)
SOURCES = ("zendesk", "jira", "slack", "sandbox")


def read_sample_tickets(path: str) -> list[TicketEvent]:
    """The file's tickets as events; an error names the file, the ticket and what is wrong."""
    p = Path(path)
    if not p.is_file():
        raise TriageError(f"{path}: no such file (samples: deploy/samples/zendesk.jsonl, jira.jsonl, slack.jsonl)")
    return [_event(where, n, obj) for where, n, obj in _objects(p)]


def _objects(p: Path) -> Iterator[tuple[str, int, Any]]:
    raw = p.read_text(encoding="utf-8", errors="replace")
    if p.suffix == ".json":
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as e:
            raise TriageError(f"{p}:{e.lineno}: not JSON ({e.msg}); a .jsonl file holds one ticket a line") from None
        items = data.get("tickets") if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise TriageError(f"{p}: expected a list of tickets, or an object with a 'tickets' list")
        for n, obj in enumerate(items, 1):
            yield f"{p} ticket {n}", n, obj
        return
    for n, line in enumerate(raw.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("//"):
            continue
        try:
            yield f"{p}:{n}", n, json.loads(line)
        except json.JSONDecodeError as e:
            raise TriageError(f"{p}:{n}: not a JSON object ({e.msg}); one ticket a line, e.g. "
                              '{"subject": "Site down", "text": "Nothing loads since 9am"}') from None


def _event(where: str, n: int, obj: Any) -> TicketEvent:
    if not isinstance(obj, dict):
        raise TriageError(f"{where}: a ticket is a JSON object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - set(FIELDS))
    if unknown:
        valid = ("source", "id", "subject", "text", *EVENT_FIELDS[1:], *JIRA_FIELDS)
        raise TriageError(f"{where}: unknown field(s) {', '.join(unknown)}; valid fields: {', '.join(valid)} "
                          "(the text may also be 'description' or 'body')")
    source = str(obj.get("source") or "sandbox")
    if source not in SOURCES:
        raise TriageError(f"{where}: source {source!r} is not one of {', '.join(SOURCES)}")
    text = next((str(obj[k]) for k in TEXT_FIELDS if obj.get(k)), "")
    if not text and not obj.get("subject"):
        raise TriageError(f"{where}: no text: give 'text' (or 'description' / 'body') and/or 'subject'")
    values: dict[str, Any] = {k: obj[k] for k in EVENT_FIELDS if obj.get(k) is not None}
    if isinstance(obj.get("requester"), dict) and "requester_email" not in values:
        values["requester_email"] = str(obj["requester"].get("email") or "")
    tags = values.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise TriageError(f"{where}: tags must be a list of strings, e.g. [\"vip\", \"billing\"]")
    extra = {k: str(obj[k]) for k in JIRA_FIELDS if obj.get(k)}
    if extra and source not in ("jira", "sandbox"):
        raise TriageError(f"{where}: {', '.join(extra)} are Jira fields; set \"source\": \"jira\"")
    fields = {k: v if k == "tags" else str(v) for k, v in values.items()}
    try:
        return TicketEvent.from_dict({**fields, "source": source, "ticket_id": str(obj.get("id") or n),
                                      "revision": "1", "text": text, "extra": extra})
    except EventError as e:
        raise TriageError(f"{where}: {e}") from None
