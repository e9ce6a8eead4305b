"""Zendesk payloads -> TicketEvent.

Three inputs share this module:
- event-subscribed webhooks (`type` = zen:event-type:ticket.created / ticket.comment_added; others
  are skipped). Their `detail` carries ids only: organization, group and assignee come as ids and
  the requester's email is absent (fetch the ticket when a rule needs them);
- our trigger body (trigger_body.json, placeholders rendered by Zendesk; tags space-separated);
- API JSON (a ticket, its comments and sideloads), used by the poller and fetch_event.

The revision is the latest public comment id, else updated_at. Changes made by the bot itself are
skipped, which breaks the webhook -> write-back -> webhook loop. Error messages never quote ticket text.
An event whose payload carried the ticket's tags and its own updated_at to the second (event
webhooks, the API) is marked `extra["snapshot"] = "yes"`: the writer may then start its update from
it without reading the ticket. Trigger bodies are not: {{ticket.updated_at_with_timestamp}} renders
to the minute, too coarse for Zendesk's safe_update stamp.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from connectors.outcome import Outcome
from connectors.payload import ident as _id
from connectors.payload import integer as _int
from connectors.payload import is_number
from connectors.payload import text as _str
from worker.decision import PRIORITIES
from worker.events import EventError, TicketEvent

TRIGGER_KIND = "helpdesk-triage/zendesk-trigger/v1"
EVENT_PREFIX = "zen:event-type:"
TRIAGED_EVENT_TYPES = ("ticket.created", "ticket.comment_added")

# Provenance tags the writer adds when it sets a field, so a later event can tell the bot's value
# from an agent's: a priority/assignee without its tag is treated as chosen by a person.
PRIORITY_TAG = "triage_set_priority_"
ASSIGNEE_TAG = "triage_set_assignee_"

_CHANNELS = {"mail": "email", "web_form": "web", "web_widget": "web", "web_service": "api"}


def to_event(payload: Mapping[str, Any], bot_user_id: str) -> TicketEvent | None:
    """The ticket event in a webhook payload, or None when it is irrelevant or the bot's own change.
    Raises EventError for malformed payloads. Use parse() to learn why a payload was skipped."""
    return parse(payload, bot_user_id).event


def parse(payload: Mapping[str, Any], bot_user_id: str) -> Outcome:
    if not isinstance(payload, Mapping):
        raise EventError("payload is not a JSON object")
    if payload.get("kind") == TRIGGER_KIND:
        return _from_trigger(payload, str(bot_user_id))
    if isinstance(payload.get("type"), str) and payload["type"].startswith(EVENT_PREFIX):
        return _from_event(payload, str(bot_user_id))
    raise EventError(f"neither a Zendesk event webhook nor the triage trigger body (kind {TRIGGER_KIND})")


def set_by_human(kind: str, value: str, tags: Sequence[str]) -> bool:
    """True when `value` (a priority or assignee id) is set and the bot's provenance tag is absent."""
    return bool(value) and f"{kind}{value}".lower() not in {t.lower() for t in tags}


def latest_public_comment(comments: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    public = [c for c in comments if c.get("public", True)]
    return max(public, key=lambda c: (str(c.get("created_at") or ""), _int(c.get("id")))) if public else None


def by_id(items: Any) -> dict[int, Mapping[str, Any]]:
    """Sideloaded objects (a JSON list) keyed by their integer id."""
    return {_int(i["id"]): i for i in items or [] if isinstance(i, Mapping) and _int(i.get("id"))}


def from_api(ticket: Mapping[str, Any], comments: Sequence[Mapping[str, Any]], *,
             users: Mapping[int, Mapping[str, Any]] | None = None,
             organizations: Mapping[int, Mapping[str, Any]] | None = None,
             groups: Mapping[int, Mapping[str, Any]] | None = None) -> TicketEvent:
    """The event for a ticket as the REST API returns it, with its comments (any order) and the
    sideloaded users/organizations/groups by id (names fall back to ids when not sideloaded)."""
    ticket_id = _ticket_id(ticket.get("id"), "ticket.id")
    latest = latest_public_comment(comments)
    tags = tuple(str(t) for t in ticket.get("tags") or ())
    priority = _priority(ticket.get("priority"))
    assignee = _id(ticket.get("assignee_id"))
    updated_at = _str(ticket.get("updated_at"))
    requester = (users or {}).get(_int(ticket.get("requester_id"))) or {}
    return TicketEvent(
        source="zendesk",
        ticket_id=ticket_id,
        revision=_id(latest.get("id")) if latest else updated_at,
        subject=_str(ticket.get("subject")),
        text=_str(latest.get("plain_body") or latest.get("body")) if latest else "",
        updated_at=updated_at,
        requester_email=_str(requester.get("email")),
        organization=_name(organizations, ticket.get("organization_id")),
        channel=_channel((ticket.get("via") or {}).get("channel")),
        tags=tags,
        priority=priority,
        group=_name(groups, ticket.get("group_id")),
        assignee=assignee,
        changed_by=_id(latest.get("author_id")) if latest else "",
        priority_set_by_human=set_by_human(PRIORITY_TAG, priority, tags),
        assignee_set_by_human=set_by_human(ASSIGNEE_TAG, assignee, tags),
        extra={"delivery": "api", "status": _str(ticket.get("status")).lower(), **_snapshot(ticket)},
    )


def _from_trigger(payload: Mapping[str, Any], bot: str) -> Outcome:
    ticket = _section(payload, "ticket")
    comment = _section(payload, "comment")
    ticket_id = _ticket_id(ticket.get("id"), "ticket.id")
    changed_by = _id(payload.get("current_user_id"))
    author = _id(comment.get("author_id"))
    if bot and bot in (changed_by, author):
        return Outcome(None, "change made by the triage bot")
    text = _str(comment.get("body"))
    if not text:
        return Outcome(None, "no public comment text")
    updated_at = _str(ticket.get("updated_at"))
    comment_id = _id(comment.get("id"))
    tags = _tags(ticket.get("tags"))
    priority = _priority(ticket.get("priority"))
    assignee = _id(ticket.get("assignee_id"))
    return Outcome(TicketEvent(
        source="zendesk",
        ticket_id=ticket_id,
        revision=comment_id if is_number(comment_id) else _required(updated_at, "ticket.updated_at"),
        subject=_str(ticket.get("title")),
        text=text,
        updated_at=updated_at,
        requester_email=_str(ticket.get("requester_email")),
        organization=_str(ticket.get("organization")),
        channel=_channel(ticket.get("via")),
        tags=tags,
        priority=priority,
        group=_str(ticket.get("group")),
        assignee=assignee,
        changed_by=changed_by or author,
        priority_set_by_human=set_by_human(PRIORITY_TAG, priority, tags),
        assignee_set_by_human=set_by_human(ASSIGNEE_TAG, assignee, tags),
        extra={"delivery": "trigger", "status": _str(ticket.get("status")).lower()},
    ))


def _from_event(payload: Mapping[str, Any], bot: str) -> Outcome:
    kind = payload["type"][len(EVENT_PREFIX):]
    if kind not in TRIAGED_EVENT_TYPES:
        return Outcome(None, f"event type {kind} is not triaged")
    detail = _section(payload, "detail")
    ticket_id = _ticket_id(detail.get("id"), "detail.id")
    updated_at = _str(detail.get("updated_at") or detail.get("created_at") or payload.get("time"))
    changed_by = _id(detail.get("actor_id"))
    if kind == "ticket.comment_added":
        comment = _section(_section(payload, "event"), "comment", "event.comment")
        author = _id((comment.get("author") or {}).get("id"))
        if not comment.get("is_public", True):
            return Outcome(None, "internal note, not a public comment")
        text, revision, changed_by = _str(comment.get("body")), _id(comment.get("id")), author or changed_by
    else:
        author = changed_by = changed_by or _id(detail.get("submitter_id"))
        text, revision = _str(detail.get("description")), ""
    if bot and bot in (changed_by, author):
        return Outcome(None, "change made by the triage bot")
    if not text:
        return Outcome(None, "no public comment text")
    tags = _tags(detail.get("tags"))
    priority = _priority(detail.get("priority"))
    assignee = _id(detail.get("assignee_id"))
    return Outcome(TicketEvent(
        source="zendesk",
        ticket_id=ticket_id,
        revision=revision if is_number(revision) else _required(updated_at, "detail.updated_at"),
        subject=_str(detail.get("subject")),
        text=text,
        updated_at=updated_at,
        organization=_id(detail.get("organization_id")),
        channel=_channel((detail.get("via") or {}).get("channel")),
        tags=tags,
        priority=priority,
        group=_id(detail.get("group_id")),
        assignee=assignee,
        changed_by=changed_by,
        priority_set_by_human=set_by_human(PRIORITY_TAG, priority, tags),
        assignee_set_by_human=set_by_human(ASSIGNEE_TAG, assignee, tags),
        extra={"delivery": "event", "event_type": kind, "status": _str(detail.get("status")).lower(),
               **_snapshot(detail)},
    ))


def _snapshot(ticket: Mapping[str, Any]) -> dict[str, str]:
    """{"snapshot": "yes"} when the payload carried the ticket's tags and its own updated_at."""
    return {"snapshot": "yes"} if "tags" in ticket and _str(ticket.get("updated_at")) else {}


def _section(data: Mapping[str, Any], key: str, label: str = "") -> Mapping[str, Any]:
    value = data.get(key)
    if not isinstance(value, Mapping):
        raise EventError(f"{label or key} is missing or not an object")
    return value


def _ticket_id(value: Any, label: str) -> str:
    text = _id(value)
    if not text:
        raise EventError(f"{label} is missing (placeholders not rendered?)")
    if not is_number(text):
        raise EventError(f"{label} is not a number")
    return text


def _required(value: str, label: str) -> str:
    if not value:
        raise EventError(f"{label} is missing and there is no comment id for the revision")
    return value


def _tags(value: Any) -> tuple[str, ...]:
    """Tags from a trigger's space-separated {{ticket.tags}} or a JSON list."""
    if isinstance(value, str):
        items: Sequence[Any] = _str(value).split()
    elif isinstance(value, Sequence):
        items = value
    elif value is None:
        items = ()
    else:
        raise EventError("tags are neither a string nor a list")
    return tuple(dict.fromkeys(str(t).strip() for t in items if str(t).strip()))


def _priority(value: Any) -> str:
    """Zendesk's priority, lower-cased ('High' from placeholders, 'HIGH' from events); '' if unset."""
    text = _str(value).lower()
    return text if text in PRIORITIES else ""


def _channel(value: Any) -> str:
    text = re.sub(r"[^a-z0-9]+", "_", _str(value).lower()).strip("_")
    return _CHANNELS.get(text, text)


def _name(objects: Mapping[int, Mapping[str, Any]] | None, object_id: Any) -> str:
    found = (objects or {}).get(_int(object_id)) or {}
    return _str(found.get("name")) or _id(object_id)
