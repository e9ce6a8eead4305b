"""Write triage decisions back to Zendesk: reads and lookups through zenpy, the update as JSON.

apply() sends ONE update (PUT /api/v2/tickets/{id}.json) carrying the tags, priority, group,
assignee and the internal note. It goes through zenpy's session (its credentials, host and
timeout) as plain JSON: zenpy's own update would turn Zendesk's answer, the whole ticket and the
audit, into objects we never read, which doubled the CPU a write-back costs
(bench/job_overhead_bench.py). Zendesk's Update Ticket replaces the tag list (`additional_tags` only
works on update_many), so the update sends the merged list with `safe_update` + `updated_stamp`.
The first attempt starts from the ticket as an event webhook or the poller delivered it (its tags,
priority, group, assignee and updated_at to the second; normalize marks such events `snapshot`; not
trigger bodies, whose updated_at is to the minute): no read. If anyone changed
the ticket since, Zendesk answers 409 and we read the ticket and retry. The limit: updated_at has
one-second resolution, so a change made within the same second as the update that fired the webhook
is invisible to safe_update (reading first narrows that window to the second of the last change).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, TypeVar

from connectors.zendesk.normalize import ASSIGNEE_TAG, PRIORITY_TAG, by_id, from_api
from connectors.zendesk.transport import ZendeskHttp, vendor_errors
from worker.decision import PRIORITIES, TriageDecision, note_body
from worker.errors import VendorRejected, VendorUnavailable
from worker.events import TicketEvent
from worker.ports import marker

T = TypeVar("T")
log = logging.getLogger("triage.zendesk")


@dataclass
class _Snapshot:
    """The fields of a ticket that _changes() reads, as a delivered event saw them."""
    tags: list[str]
    priority: str | None
    assignee_id: int | None
    updated_at: str
    group: str  # an id, or the name the trigger body carries
    resolve_group: Callable[[str], int]

    @property
    def group_id(self) -> int | None:
        """Resolved only when a rule sets a group; a group renamed since resolves to None."""
        if self.group:
            with suppress(VendorRejected):
                return self.resolve_group(self.group)
        return None


class ZendeskWriter:
    """The Writer port for Zendesk. `client` is a zenpy.Zenpy authenticated as the bot user.
    A response hook is added to its session so a 429 raises RateLimited instead of sleeping."""

    def __init__(self, client: Any, *, groups: Mapping[str, int] | None = None,
                 bot_user_id: str | None = None, attempts: int = 3):
        self.client = client
        self.http = ZendeskHttp.from_zenpy(client)
        self._groups = {k.lower(): int(v) for k, v in (groups or {}).items()}
        self._bot_user_id = bot_user_id
        self._attempts = attempts

    # -- Writer port -----------------------------------------------------------------------------

    def apply(self, event: TicketEvent, decision: TriageDecision) -> None:
        ticket_id = _ticket_id(event)
        current: Any = self._snapshot(event)
        for _ in range(self._attempts + (current is not None)):
            if current is None:
                current = self._call(f"GET ticket {ticket_id}", lambda: self.client.tickets(id=ticket_id))
            changes = self._changes(current, event, decision)
            if not changes:
                return
            update = {"safe_update": True, "updated_stamp": current.updated_at, **changes}
            try:
                self.http.put(f"tickets/{ticket_id}.json", {"ticket": update}, op=f"PUT ticket {ticket_id}")
                return
            except VendorUnavailable as e:
                if e.status != 409:  # 409: someone updated the ticket since we read it
                    raise
                log.info("ticket %s changed since it was read or delivered (409): reading it again", ticket_id)
                current = None
        raise VendorUnavailable(f"ticket {ticket_id} kept changing during the update (409); retry later", 409)

    def already_applied(self, event: TicketEvent) -> bool:
        ticket_id, token = _ticket_id(event), marker(event)
        comments = self._call(f"GET comments of ticket {ticket_id}",
                              lambda: list(self.client.tickets.comments(ticket=ticket_id)))
        return any(token in (getattr(c, "body", None) or getattr(c, "plain_body", None) or "")
                   for c in comments)

    # -- reads -------------------------------------------------------------------------------------

    def fetch_event(self, ticket_id: str | int) -> TicketEvent:
        """The current state of a ticket as an event (its latest public comment as the text)."""
        shown = self.http.get(f"tickets/{int(ticket_id)}.json", {"include": "users,groups,organizations"},
                              op=f"GET ticket {int(ticket_id)}")
        comments = self.http.get(f"tickets/{int(ticket_id)}/comments.json",
                                 {"sort": "-created_at", "page[size]": 100},
                                 op=f"GET comments of ticket {int(ticket_id)}")
        return from_api(shown.get("ticket") or {}, comments.get("comments") or [],
                        **{k: by_id(shown.get(k)) for k in ("users", "groups", "organizations")})

    def bot_user_id(self) -> str:
        """The id of the user the credentials belong to (GET users/me); cached."""
        if self._bot_user_id is None:
            me = self._call("GET users/me", self.client.users.me)
            if not getattr(me, "id", None):
                raise VendorUnavailable("Zendesk answered users/me without a user id")
            self._bot_user_id = str(me.id)
        return self._bot_user_id

    def group_id(self, group: str) -> int:
        """A numeric id as is; a name looked up (case-insensitive) in GET groups, cached."""
        if group.strip().isdigit():
            return int(group)
        key = group.strip().lower()
        if key not in self._groups:
            listed = self._call("GET groups", lambda: list(self.client.groups()))
            self._groups.update({str(g.name).lower(): int(g.id) for g in listed})
        if key not in self._groups:
            raise VendorRejected(f"Zendesk has no group named {group!r}")
        return self._groups[key]

    # -- internals ---------------------------------------------------------------------------------

    def _snapshot(self, event: TicketEvent) -> _Snapshot | None:
        """The ticket as the event delivered it, or None when the event does not carry it all."""
        if event.extra.get("snapshot") != "yes" or not event.updated_at:
            return None
        return _Snapshot(tags=list(event.tags), priority=event.priority or None,
                         assignee_id=int(event.assignee) if event.assignee.isdigit() else None,
                         updated_at=event.updated_at, group=event.group, resolve_group=self.group_id)

    def _changes(self, current: Any, event: TicketEvent, decision: TriageDecision) -> dict[str, Any]:
        """The ticket fields to send, given the ticket as it is now; {} when nothing changes."""
        actions = decision.actions
        tags = [str(t) for t in (current.tags or [])]
        drop = {t.lower() for t in actions.remove_tags}
        wanted = [t for t in tags if t.lower() not in drop]
        wanted += [t for t in actions.add_tags if t.lower() not in {x.lower() for x in wanted}]
        changes: dict[str, Any] = {}
        if actions.sets(actions.priority, event.priority_set_by_human):
            if actions.priority not in PRIORITIES:
                raise VendorRejected(f"priority {actions.priority!r} is not one of {', '.join(PRIORITIES)}")
            if current.priority != actions.priority:
                changes["priority"] = actions.priority
                wanted = _retag(wanted, PRIORITY_TAG, actions.priority)
        problems = []
        if actions.group:
            try:
                group_id = self.group_id(actions.group)
            except VendorRejected as e:  # a rule names a group Zendesk lacks: write the rest, say so
                log.warning("ticket %s: %s; the group is left as is", event.ticket_id, e)
                problems.append(f"Routing skipped: {e} (fix the rules file).")
            else:
                if current.group_id != group_id:
                    changes["group_id"] = group_id
        if actions.sets(actions.assignee, event.assignee_set_by_human):
            if actions.assignee.isdigit():
                if current.assignee_id != int(actions.assignee):
                    changes["assignee_id"] = int(actions.assignee)
                    wanted = _retag(wanted, ASSIGNEE_TAG, actions.assignee)
            else:
                changes["assignee_email"] = actions.assignee  # Zendesk resolves the agent
        if actions.note or problems:
            body = note_body(decision.scores, decision.matched_rules, "\n".join([actions.note_text, *problems]).strip(),
                             actions.suggested)
            changes["comment"] = {"body": f"{body}\n{marker(event)}", "public": False}
        if wanted != tags:
            changes["tags"] = wanted
        return changes

    def _call(self, op: str, fn: Callable[[], T]) -> T:
        with vendor_errors(op):
            return fn()


def _retag(tags: list[str], prefix: str, value: str) -> list[str]:
    """Replace the bot's provenance tag for a field (see normalize.set_by_human)."""
    return [t for t in tags if not t.lower().startswith(prefix)] + [f"{prefix}{value}".lower()]


def _ticket_id(event: TicketEvent) -> int:
    if event.source != "zendesk" or not event.ticket_id.isdigit():
        raise VendorRejected(f"not a Zendesk ticket event: {event.source}:{event.ticket_id}")
    return int(event.ticket_id)
