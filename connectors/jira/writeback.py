"""Write triage decisions back to Jira Cloud / Jira Service Management through the `jira` client.

refresh() reads the issue (all fields, changelog expanded) so the rules decide on its current
state, and who set its priority and assignee; apply() then sends, in this order:

1. one edit (PUT /rest/api/3/issue/{key}): labels as `update.labels: [{add}, {remove}]` operations
   (never the whole list: an agent's label added meanwhile stays), the priority by name through the
   configured map, the JSM request type, the rule's fields (`jira_fields`, `group` into
   JIRA_GROUP_FIELD), each formatted for its field type;
2. the assignee (PUT /rest/api/3/issue/{key}/assignee, by accountId; an email is looked up once);
3. the note, last, carrying `marker(event)`: on a JSM project an INTERNAL request comment
   (POST /rest/servicedeskapi/request/{key}/comment, public: false), which customers never see;
   elsewhere an ordinary comment (REST v3, ADF body).

A priority or assignee that a person set (the changelog names someone other than the bot, or an
issue created with another priority than the default), and a request type or field someone changed
after creation, are left alone unless the rule says `override_human`. Every step is idempotent,
so a retry after a crash between steps is harmless, and already_applied() finds the marker when
only the bookkeeping was lost.

A rule naming something the site lacks (a request type, a field, an option, a priority name in
JIRA_PRIORITY_MAP) does not fail the job: the rest is written and the note says what was skipped,
like the Zendesk writer does for groups.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from jira.resources import Issue

from connectors.jira.normalize import (
    DEFAULT_PRIORITIES,
    REQUEST_TYPE_SCHEMA,
    PriorityMap,
    adf_document,
    from_api,
    last_setter,
    text_of,
)
from connectors.jira.transport import JiraApi
from worker.decision import PRIORITIES, TriageDecision, note_body
from worker.errors import VendorRejected, VendorUnavailable
from worker.events import TicketEvent
from worker.ports import marker

log = logging.getLogger("triage.jira")

_KEY = re.compile(r"[A-Z][A-Z0-9_]*-[1-9][0-9]*")
FRESH_S = 10.0  # an issue read by refresh() is reused by apply() for this long
COMMENT_PAGE = 100


class SkipField(Exception):
    """A rule asked for something this site does not have; the message says what (no ticket text)."""


class JiraWriter:
    """The Writer (and Refresher) port for Jira. `api` is a JiraApi authenticated as the bot.

    `group_field`: the field (id or name) a rule's `group` is written to, e.g. a JSM "Team" select
    list your queues filter on; empty = `group` is not written on Jira (the note says so)."""

    def __init__(self, api: JiraApi, *, bot_account_id: str | None = None,
                 priorities: PriorityMap = DEFAULT_PRIORITIES, group_field: str = "",
                 notify_users: bool = True, clock: Callable[[], float] = time.monotonic):
        self.api = api
        self.priorities = priorities
        self.group_field = group_field
        self.notify_users = notify_users
        self._bot = bot_account_id or None
        self._clock = clock
        self._recent: tuple[str, float, dict[str, Any]] | None = None
        self._fields: list[dict[str, Any]] | None = None
        self._desks: dict[str, str] | None = None  # project key -> service desk id
        self._request_types: dict[str, dict[str, str]] = {}  # desk id -> lower name -> id
        self._users: dict[str, str] = {}  # email -> accountId

    # -- Writer / Refresher ports --------------------------------------------------------------

    def refresh(self, event: TicketEvent) -> TicketEvent:
        """The event with the issue's current labels, priority, assignee (and who set them), project,
        type and request type; its revision, text and author stay (same key)."""
        key = _issue_key(event)
        current = self._event(self._issue(key, reuse=False))
        return replace(current, revision=event.revision, text=event.text,
                       changed_by=event.changed_by or current.changed_by,
                       extra={**current.extra, "delivery": event.extra.get("delivery", "api")})

    def apply(self, event: TicketEvent, decision: TriageDecision) -> None:
        key = _issue_key(event)
        issue = self._issue(key, reuse=True)
        self._recent = None
        histories = self._histories(issue)
        current = self._event(issue, histories)
        fields_now = issue.get("fields") or {}
        a = decision.actions
        problems: list[str] = []
        fields: dict[str, Any] = {}
        labels = list(current.tags)
        ops = [{"add": t} for t in dict.fromkeys(a.add_tags) if t not in labels]
        ops += [{"remove": t} for t in dict.fromkeys(a.remove_tags) if t in labels]
        for t in a.add_tags:
            if not t or any(ch.isspace() for ch in t):
                raise VendorRejected(f"label {t!r} is not a valid Jira label (no spaces)")
        if a.sets(a.priority, current.priority_set_by_human):
            if a.priority not in PRIORITIES:
                raise VendorRejected(f"priority {a.priority!r} is not one of {', '.join(PRIORITIES)}")
            name = self.priorities.name_for(a.priority)
            if current.extra.get("priority_name", "").lower() != name.lower():
                fields["priority"] = {"name": name}
        wanted: list[tuple[str, str, str]] = [(f, v, f"field {f!r}") for f, v in a.jira_fields]
        if a.group:
            if self.group_field:
                wanted.append((self.group_field, a.group, f"group (JIRA_GROUP_FIELD {self.group_field!r})"))
            else:
                problems.append(f"Routing to group {a.group!r} skipped: set JIRA_GROUP_FIELD to the field "
                                "that holds the team or queue.")
        for field, value, label in wanted:
            try:
                field_id, formatted = self._field_value(field, value)
            except SkipField as e:
                log.warning("issue %s: %s", key, e)
                problems.append(f"{label[0].upper()}{label[1:]} skipped: {e} (fix the rules file).")
                continue
            if not _same(fields_now.get(field_id), formatted) and self._may_set(field_id, histories, a):
                fields[field_id] = formatted
        if a.request_type and current.extra.get("request_type", "").lower() != a.request_type.lower():
            try:
                field_id, type_id = self._request_type(current, a.request_type)
                if self._may_set(field_id, histories, a):
                    fields[field_id] = type_id
            except SkipField as e:
                log.warning("issue %s: %s", key, e)
                problems.append(f"Request type skipped: {e} (fix the rules file).")
        if ops or fields:
            self._edit(key, issue, fields, {"labels": ops} if ops else {}, problems)
        if a.sets(a.assignee, current.assignee_set_by_human):
            account = self._account_id(a.assignee)
            if account != current.assignee:
                self.api.request("PUT", f"/rest/api/3/issue/{key}/assignee", body={"accountId": account},
                                 op=f"PUT assignee of issue {key}")
        if a.note or problems:
            extra = "\n".join([a.note_text, *problems]).strip()
            body = f"{note_body(decision.scores, decision.matched_rules, extra, a.suggested)}\n{marker(event)}"
            self._internal_comment(key, current, body)

    def already_applied(self, event: TicketEvent) -> bool:
        # The brackets are left out of the search: JSM reads comment bodies as wiki markup, where
        # "[...]" is a link, and REST v3 gives the link's text back without them.
        key, token = _issue_key(event), marker(event).strip("[]")
        page = self.api.request("GET", f"/rest/api/3/issue/{key}/comment", op=f"GET comments of issue {key}",
                                params={"orderBy": "-created", "maxResults": COMMENT_PAGE})
        return any(token in text_of(c.get("body")) for c in (page or {}).get("comments") or [])

    # -- reads ---------------------------------------------------------------------------------

    def fetch_event(self, key: str) -> TicketEvent:
        """The current state of an issue as an event (its latest public comment as the text)."""
        if not _KEY.fullmatch(key):
            raise VendorRejected(f"{key!r} is not a Jira issue key")
        return self._event(self._issue(key, reuse=False))

    def bot_account_id(self) -> str:
        """The accountId of the user the credentials belong to (GET myself); cached."""
        if self._bot is None:
            me = self.api.call("GET myself", lambda c: c.myself())
            if not isinstance(me, Mapping) or not me.get("accountId"):
                raise VendorUnavailable("Jira answered GET myself without an accountId")
            self._bot = str(me["accountId"])
        return self._bot

    def fields(self) -> list[dict[str, Any]]:
        """The site's fields (GET field), cached."""
        if self._fields is None:
            self._fields = list(self.api.call("GET field", lambda c: c.fields()))
        return self._fields

    # -- internals -------------------------------------------------------------------------------

    def _event(self, issue: Mapping[str, Any], histories: list[Mapping[str, Any]] | None = None) -> TicketEvent:
        return from_api(issue, bot_account_id=self.bot_account_id(), priorities=self.priorities,
                        histories=self._histories(issue) if histories is None else histories)

    def _may_set(self, field_id: str, histories: list[Mapping[str, Any]], actions: Any) -> bool:
        """A field a person changed after creation keeps their value unless the rule says override_human
        (a value from creation, e.g. the request type the customer picked, is the rules' to change)."""
        setter = last_setter(histories, field_id)
        return actions.override_human or setter is None or setter == self.bot_account_id()

    def _issue(self, key: str, reuse: bool) -> dict[str, Any]:
        """GET the issue with all fields, its changelog and its comments (newest 100 when more)."""
        if reuse and self._recent and self._recent[0] == key and self._clock() - self._recent[1] < FRESH_S:
            return self._recent[2]
        issue = self.api.call(f"GET issue {key}", lambda c: c.issue(key, expand="changelog").raw)
        block = (issue.get("fields") or {}).get("comment")
        if isinstance(block, Mapping) and int(block.get("total") or 0) > len(block.get("comments") or []):
            page = self.api.request("GET", f"/rest/api/3/issue/{key}/comment", op=f"GET comments of issue {key}",
                                    params={"orderBy": "-created", "maxResults": COMMENT_PAGE})
            issue["fields"]["comment"] = {**block, "comments": list((page or {}).get("comments") or [])}
        self._recent = (key, self._clock(), issue)
        return issue

    def _histories(self, issue: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        """The changelog, oldest first; the newest page is fetched when the expansion was cut short."""
        log_ = issue.get("changelog")
        log_ = log_ if isinstance(log_, Mapping) else {}
        histories = list(log_.get("histories") or [])
        total = int(log_.get("total") or 0)
        if total > len(histories):
            key = str(issue.get("key"))
            page = self.api.request("GET", f"/rest/api/3/issue/{key}/changelog", op=f"GET changelog of issue {key}",
                                    params={"startAt": max(total - 100, 0), "maxResults": 100})
            seen = {str(h.get("id")) for h in histories}
            histories += [h for h in (page or {}).get("values") or [] if str(h.get("id")) not in seen]
        return histories

    def _edit(self, key: str, issue: dict[str, Any], fields: dict[str, Any], update: dict[str, Any],
              problems: list[str]) -> None:
        """One PUT. If Jira refuses only field values (an option the field lacks, a priority name
        JIRA_PRIORITY_MAP has wrong, ...), those are dropped, noted, and the rest is sent again:
        the labels and the note still reach the issue."""
        resource = Issue(self.api.client._options, self.api.client._session, raw=issue)
        try:
            self.api.call(f"PUT issue {key}", lambda _c: resource.update(
                fields=fields, update=update, notify=self.notify_users))
            return
        except VendorRejected as e:
            refused = set(getattr(e, "fields", ()))
            if e.status != 400 or not refused or not refused <= set(fields):
                raise
        log.warning("issue %s: Jira refused the value for %s", key, ", ".join(sorted(refused)))
        problems += [f"Priority skipped: Jira has no priority {fields['priority'].get('name')!r} (fix "
                     "JIRA_PRIORITY_MAP)." if f == "priority" else
                     f"Field {f} skipped: Jira refused the rule's value (fix the rules file)." for f in sorted(refused)]
        rest = {k: v for k, v in fields.items() if k not in refused}
        if rest or update:
            self.api.call(f"PUT issue {key}", lambda _c: resource.update(
                fields=rest, update=update, notify=self.notify_users))

    def _internal_comment(self, key: str, current: TicketEvent, body: str) -> None:
        if current.extra.get("project_type") == "service_desk":
            self.api.request("POST", f"/rest/servicedeskapi/request/{key}/comment",
                             op=f"POST internal comment on {key}", body={"body": body, "public": False})
        else:  # no customers outside JSM: an ordinary comment
            self.api.request("POST", f"/rest/api/3/issue/{key}/comment", op=f"POST comment on issue {key}",
                             body={"body": adf_document(body)})

    def _account_id(self, assignee: str) -> str:
        """An accountId as is; an email looked up (exact, unique) with GET user/search, cached."""
        if "@" not in assignee:
            return assignee
        email = assignee.strip().lower()
        if email not in self._users:
            found = self.api.call("GET user/search", lambda c: [u.raw for u in c.search_users(query=email)])
            exact = [u for u in found if str(u.get("emailAddress") or "").lower() == email and u.get("accountId")]
            if len(exact) != 1:
                raise VendorRejected(f"no single Jira user with the email in the rule's assignee "
                                     f"({len(exact)} found; Jira hides emails unless the profile shows them: "
                                     "use the accountId)")
            self._users[email] = str(exact[0]["accountId"])
        return self._users[email]

    def _field(self, name: str) -> dict[str, Any]:
        wanted = name.strip().lower()
        for f in self.fields():
            if str(f.get("id", "")).lower() == wanted or str(f.get("key", "")).lower() == wanted:
                return f
        named = [f for f in self.fields() if str(f.get("name", "")).lower() == wanted]
        if len(named) == 1:
            return named[0]
        raise SkipField(f"Jira has {'several fields' if named else 'no field'} named {name!r}"
                        + ("; use its id (customfield_...)" if named else ""))

    def _field_value(self, name: str, value: str) -> tuple[str, Any]:
        """The field's id and `value` shaped for its type (select option, user, number, text, ...)."""
        field = self._field(name)
        schema = field.get("schema") or {}
        kind, items, custom = schema.get("type"), schema.get("items"), str(schema.get("custom") or "")
        if kind == "option":
            return field["id"], {"value": value}
        if kind == "array" and items == "option":
            return field["id"], [{"value": value}]
        if kind == "array" and items == "string":
            if any(ch.isspace() for ch in value):
                raise SkipField(f"{value!r} contains spaces, which a labels field refuses")
            return field["id"], [value]
        if kind == "user":
            return field["id"], {"accountId": self._account_id(value)}
        if kind == "group":
            return field["id"], {"name": value}
        if kind == "number":
            try:
                return field["id"], float(value)
            except ValueError:
                raise SkipField(f"{value!r} is not a number, which field {name!r} needs") from None
        if kind == "string":
            return field["id"], adf_document(value) if custom.endswith(":textarea") else value
        raise SkipField(f"field {name!r} has type {kind!r}, which triage cannot set")

    def _request_type(self, current: TicketEvent, wanted: str) -> tuple[str, str]:
        """The request type field's id and the id of request type `wanted` (a name or an id)."""
        field_id = next((f["id"] for f in self.fields()
                         if str((f.get("schema") or {}).get("custom")) == REQUEST_TYPE_SCHEMA), "")
        if not field_id:
            raise SkipField("the site has no Customer Request Type field (not Jira Service Management?)")
        project = current.extra.get("project", "")
        if current.extra.get("project_type") != "service_desk":
            raise SkipField(f"project {project} is not a Jira Service Management project")
        if self._desks is None:
            desks = self.api.call("GET servicedesk", lambda c: [d.raw for d in c.service_desks()])
            self._desks = {str(d.get("projectKey")): str(d.get("id")) for d in desks}
        desk = self._desks.get(project)
        if desk is None:
            raise SkipField(f"no service desk for project {project}")
        if desk not in self._request_types:
            types = self.api.call(f"GET request types of service desk {desk}",
                                  lambda c: [t.raw for t in c.request_types(desk)])  # type: ignore[arg-type]
            self._request_types[desk] = {str(t.get("name", "")).lower(): str(t.get("id")) for t in types}
        by_name = self._request_types[desk]
        if wanted.strip().lower() in by_name:
            return field_id, by_name[wanted.strip().lower()]
        if wanted.strip() in by_name.values():
            return field_id, wanted.strip()
        raise SkipField(f"service desk {project} has no request type {wanted!r}")


def _same(now: Any, wanted: Any) -> bool:
    """Whether a field already holds the value we would send (option/user/scalar shapes)."""
    if isinstance(wanted, dict) and isinstance(now, Mapping):
        return all(str(now.get(k, "")).lower() == str(v).lower() for k, v in wanted.items())
    if isinstance(wanted, list) and isinstance(now, list):
        return all(any(_same(n, w) or n == w for n in now) for w in wanted)
    if isinstance(wanted, float) and isinstance(now, (int, float)):
        return float(now) == wanted
    return isinstance(now, str) and isinstance(wanted, str) and now == wanted


def _issue_key(event: TicketEvent) -> str:
    if event.source != "jira" or not _KEY.fullmatch(event.ticket_id):
        raise VendorRejected(f"not a Jira issue event: {event.source}:{event.ticket_id}")
    return event.ticket_id
