"""Jira payloads -> TicketEvent.

Three inputs share this module:
- admin webhooks (Settings > System > WebHooks): `jira:issue_created`, `comment_created`, and
  `jira:issue_updated` when it carries a comment (Jira sends one with every comment). Other updates
  (status, fields, labels) are skipped: triage reads the customer's words, and re-triaging every
  field change would add a note per edit;
- our JSM Automation "Send web request" body (automation_body.json, smart values rendered by Jira);
- REST API v3 JSON (an issue with its comments and changelog), used by the poller and the writer.

Text fields may be plain/wiki-markup strings (webhooks, Automation) or Atlassian Document Format
(REST v3): `text_of` reads both.

The revision is the id of the latest public comment not written by the bot, else the issue's
creation time (UTC, to the second). Not `updated`: every write-back, status change or label edit
moves `updated`, and a revision that moved with it would re-triage the issue (and add a note) each
time; the creation time and comment ids name exactly the texts triage reads, identically on every
path (webhook, Automation, poller), so duplicates share an event key.

Changes made by the bot are skipped (webhook user or comment author = the bot's account id), which
breaks the webhook -> write-back -> webhook loop. Error messages never quote ticket text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from connectors.outcome import Outcome
from connectors.payload import ident as _id
from connectors.payload import integer as _int
from connectors.payload import is_number
from connectors.payload import text as _str
from worker.decision import PRIORITIES
from worker.errors import ConfigError
from worker.events import EventError, TicketEvent

AUTOMATION_KIND = "helpdesk-triage/jira-automation/v1"
ISSUE_CREATED, ISSUE_UPDATED, COMMENT_CREATED = "jira:issue_created", "jira:issue_updated", "comment_created"
TRIAGED_EVENTS = (ISSUE_CREATED, ISSUE_UPDATED, COMMENT_CREATED)
REQUEST_TYPE_SCHEMA = "com.atlassian.servicedesk:vp-origin"  # the "Customer Request Type" field

_KEY = re.compile(r"[A-Z][A-Z0-9_]*-[1-9][0-9]*")
_MENTION = re.compile(r"\[~accountid:[^\]]+\]")
_LINK = re.compile(r"\[([^|\]]+)\|[^\]]+\]")
_MACRO = re.compile(r"\{(?:code|noformat|quote|panel|color)(?::[^}]*)?\}")


# -- priorities ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class PriorityMap:
    """The rules' neutral priorities (low, normal, high, urgent) <-> a site's priority names.

    Written JIRA_PRIORITY_MAP-style: "low=Low|Lowest,normal=Medium,high=High,urgent=Highest".
    The first name of a level is the one set; all names of a level are read back as that level.
    The first name of `normal` is the site's default priority: an issue created with another one
    had it chosen by a person."""

    names: tuple[tuple[str, tuple[str, ...]], ...]

    @classmethod
    def parse(cls, text: str, setting: str = "JIRA_PRIORITY_MAP") -> PriorityMap:
        levels: dict[str, tuple[str, ...]] = {}
        for item in text.split(","):
            level, sep, names = item.strip().partition("=")
            level = level.strip().lower()
            given = tuple(n.strip() for n in names.split("|") if n.strip())
            if not sep or level not in PRIORITIES or not given:
                raise ConfigError(f"{setting}: {item.strip()!r} is not level=Name, with a level from "
                                  f"{', '.join(PRIORITIES)}; e.g. high=High or low=Low|Lowest")
            if level in levels:
                raise ConfigError(f"{setting}: {level} is mapped twice")
            levels[level] = given
        missing = [p for p in PRIORITIES if p not in levels]
        if missing:
            raise ConfigError(f"{setting}: map every level; {', '.join(missing)} missing")
        seen: dict[str, str] = {}
        for level, given in levels.items():
            for name in given:
                if name.lower() in seen:
                    raise ConfigError(f"{setting}: priority {name!r} is given for both {seen[name.lower()]} "
                                      f"and {level}")
                seen[name.lower()] = level
        return cls(tuple((p, levels[p]) for p in PRIORITIES))

    def name_for(self, level: str) -> str:
        """The Jira priority name to set for a neutral level."""
        return dict(self.names)[level][0]

    def level_of(self, name: str) -> str:
        """The neutral level of a Jira priority name ("" when the name is not mapped)."""
        for level, given in self.names:
            if name.lower() in (n.lower() for n in given):
                return level
        return ""

    @property
    def default_name(self) -> str:
        return self.name_for("normal")


DEFAULT_PRIORITY_MAP = "low=Low|Lowest,normal=Medium,high=High,urgent=Highest"
DEFAULT_PRIORITIES = PriorityMap.parse(DEFAULT_PRIORITY_MAP)


# -- text -----------------------------------------------------------------------------------------

_BLOCKS = {"paragraph", "heading", "blockquote", "codeBlock", "listItem", "tableRow", "panel",
           "bulletList", "orderedList", "table", "mediaSingle", "rule", "expand", "taskItem", "decisionItem"}


MAX_ADF_DEPTH = 120  # nodes and lists nested deeper than this (no editor makes them) are not read


def adf_text(node: Any, depth: int = 0) -> str:
    """Plain text of an Atlassian Document Format node: text, mentions, emoji, links; one line per block.
    Content nested over MAX_ADF_DEPTH levels deep is left out (a hostile body cannot exhaust the stack)."""
    if depth > MAX_ADF_DEPTH:
        return ""
    if isinstance(node, list):
        return "".join(adf_text(n, depth + 1) for n in node)
    if not isinstance(node, Mapping):
        return ""
    kind = node.get("type")
    attrs = _obj(node.get("attrs"))
    if kind == "text":
        return str(node.get("text") or "")
    if kind == "hardBreak":
        return "\n"
    if kind in ("mention", "emoji", "status", "date"):
        return str(attrs.get("text") or attrs.get("shortName") or attrs.get("timestamp") or "")
    if kind in ("inlineCard", "blockCard", "embedCard"):
        return str(attrs.get("url") or "")
    inner = adf_text(node.get("content") or [], depth + 1)
    if kind in _BLOCKS and inner and not inner.endswith("\n"):
        inner += "\n"
    return inner


def text_of(value: Any) -> str:
    """The plain text of a description or comment body: ADF (REST v3) or a wiki-markup string."""
    if isinstance(value, Mapping):
        text = adf_text(value)
    elif isinstance(value, str):
        text = _str(value)
        text = _MENTION.sub("@user", text)
        text = _LINK.sub(r"\1", text)
        text = _MACRO.sub("", text)
    else:
        return ""
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def adf_document(text: str) -> dict[str, Any]:
    """Plain text as an ADF document (REST v3 comment bodies): a paragraph per line."""
    return {"type": "doc", "version": 1,
            "content": [{"type": "paragraph", "content": [{"type": "text", "text": line}] if line else []}
                        for line in text.split("\n")]}


def canonical_time(value: Any) -> str:
    """A Jira timestamp ("2024-05-14T09:12:30.123+0000", ISO 8601, epoch millis) as UTC
    "2024-05-14T09:12:30Z"; "" when absent or unparseable."""
    parsed = parse_time(value)
    return parsed.strftime("%Y-%m-%dT%H:%M:%SZ") if parsed else ""


def parse_time(value: Any) -> datetime | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return _from_millis(value)
    text = _str(value)
    if not text:
        return None
    if text.isdigit():
        return _from_millis(int(text)) if is_number(text) else None
    text = re.sub(r"([+-]\d{2})(\d{2})$", r"\1:\2", text.replace("Z", "+00:00").replace("z", "+00:00"))
    m = re.match(r"^(.*T\d{2}:\d{2}:\d{2})\.(\d+)(.*)$", text)  # Python wants 3 or 6 fraction digits
    if m:
        text = f"{m[1]}.{m[2][:6].ljust(6, '0')}{m[3]}"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


def _from_millis(value: float) -> datetime | None:
    """Epoch milliseconds as a UTC time; None for NaN, infinities and years past 9999."""
    try:
        return datetime.fromtimestamp(value / 1000, UTC)
    except (ValueError, OverflowError, OSError):
        return None


# -- entry points -------------------------------------------------------------------------------

def to_event(payload: Mapping[str, Any], bot_account_id: str,
             priorities: PriorityMap = DEFAULT_PRIORITIES) -> TicketEvent | None:
    """The ticket event in a webhook payload, or None when it is irrelevant or the bot's own change.
    Raises EventError for malformed payloads. Use parse() to learn why a payload was skipped."""
    return parse(payload, bot_account_id, priorities).event


def parse(payload: Mapping[str, Any], bot_account_id: str,
          priorities: PriorityMap = DEFAULT_PRIORITIES) -> Outcome:
    if not isinstance(payload, Mapping):
        raise EventError("payload is not a JSON object")
    if payload.get("kind") == AUTOMATION_KIND:
        return _from_automation(payload, str(bot_account_id or ""))
    if isinstance(payload.get("webhookEvent"), str):
        return _from_webhook(payload, str(bot_account_id or ""), priorities)
    raise EventError(f"neither a Jira webhook (webhookEvent) nor the triage Automation body (kind {AUTOMATION_KIND})")


def is_public(comment: Mapping[str, Any]) -> bool:
    """Visible to the customer: not a JSM internal comment, not restricted to a group or role."""
    if comment.get("jsdPublic") is False or comment.get("public") is False:
        return False
    if comment.get("visibility"):
        return False
    for prop in comment.get("properties") or ():
        if isinstance(prop, Mapping) and prop.get("key") == "sd.public.comment" \
                and isinstance(prop.get("value"), Mapping) and prop["value"].get("internal"):
            return False
    return True


def latest_public_comment(comments: Iterable[Mapping[str, Any]], bot: str = "") -> Mapping[str, Any] | None:
    """The newest comment a customer can see and the bot did not write."""
    candidates = [c for c in comments if isinstance(c, Mapping) and is_public(c)
                  and not (bot and _account(c.get("author")) == bot)]
    if not candidates:
        return None
    return max(candidates, key=lambda c: (canonical_time(c.get("created")), _int(c.get("id"))))


def from_api(issue: Mapping[str, Any], comments: Sequence[Mapping[str, Any]] | None = None, *,
             bot_account_id: str = "", priorities: PriorityMap = DEFAULT_PRIORITIES,
             histories: Sequence[Mapping[str, Any]] | None = None, delivery: str = "api") -> TicketEvent:
    """The event for an issue as REST v3 returns it. `comments` default to the issue's `comment`
    field; `histories` (oldest first) to its expanded changelog. The changelog tells who set the
    priority and the assignee: a value the bot did not set counts as chosen by a person."""
    key = _issue_key(issue.get("key"), "issue.key")
    fields = _obj(issue.get("fields"))
    if comments is None:
        block = fields.get("comment")
        comments = block.get("comments") or [] if isinstance(block, Mapping) else []
    if histories is None:
        log = issue.get("changelog")
        histories = log.get("histories") or [] if isinstance(log, Mapping) else []
    bot = str(bot_account_id or "")
    latest = latest_public_comment(comments, bot)
    created = canonical_time(fields.get("created"))
    common = _fields(fields, priorities)
    reporter = _account(fields.get("reporter")) or _account(fields.get("creator"))
    if latest is not None:
        revision, text, changed_by = _id(latest.get("id")), text_of(latest.get("body")), _account(latest.get("author"))
    else:
        revision = _required(created, f"{key}: fields.created")
        text, changed_by = text_of(fields.get("description")), reporter
    priority_name = common["extra"]["priority_name"]
    set_by = last_setter(histories, "priority")
    assignee_by = last_setter(histories, "assignee")
    return TicketEvent(
        source="jira", ticket_id=key, revision=revision, subject=_str(fields.get("summary")), text=text,
        updated_at=canonical_time(fields.get("updated")), requester_email=common["requester_email"],
        organization=common["organization"], tags=common["tags"], priority=common["priority"],
        assignee=common["assignee"], changed_by=changed_by,
        priority_set_by_human=bool(priority_name) and (
            set_by != bot if set_by is not None else priority_name.lower() != priorities.default_name.lower()),
        assignee_set_by_human=bool(common["assignee"]) and (assignee_by != bot if assignee_by is not None
                                                            else True),
        extra={**common["extra"], "delivery": delivery},
    )


# -- webhooks -----------------------------------------------------------------------------------

def _from_webhook(payload: Mapping[str, Any], bot: str, priorities: PriorityMap) -> Outcome:
    kind = str(payload["webhookEvent"])
    if kind not in TRIAGED_EVENTS:
        return Outcome(None, f"event {kind} is not triaged")
    issue = _section(payload, "issue")
    key = _issue_key(issue.get("key"), "issue.key")
    fields = _obj(issue.get("fields"))
    actor = _account(payload.get("user"))
    comment = payload.get("comment")
    if kind == COMMENT_CREATED and not isinstance(comment, Mapping):
        raise EventError("comment is missing or not an object")
    if payload.get("issue_event_type_name") == "issue_comment_deleted":
        return Outcome(None, "comment deleted")
    common = _fields(fields, priorities)
    if isinstance(comment, Mapping):
        author = _account(comment.get("author"))
        if bot and bot in (actor, author):
            return Outcome(None, "change made by the triage bot")
        if not is_public(comment):
            return Outcome(None, "internal comment, not a public one")
        revision, text, changed_by = _id(comment.get("id")), text_of(comment.get("body")), author or actor
        if not is_number(revision):
            raise EventError("comment.id is missing or not a number")
        if not text:
            return Outcome(None, "no comment text")
    elif kind == ISSUE_CREATED:
        if bot and actor == bot:
            return Outcome(None, "change made by the triage bot")
        revision = _required(canonical_time(fields.get("created")), "issue.fields.created")
        text = text_of(fields.get("description"))
        changed_by = actor or _account(fields.get("reporter"))
        if not text and not _str(fields.get("summary")):
            return Outcome(None, "no summary or description text")
    else:
        if bot and actor == bot:
            return Outcome(None, "change made by the triage bot")
        return Outcome(None, "issue updated without a new comment (only creation and comments are triaged)")
    priority_name = common["extra"]["priority_name"]
    changed = {str(i.get("fieldId") or i.get("field") or "").lower()
               for i in ((payload.get("changelog") or {}).get("items") or []) if isinstance(i, Mapping)}
    return Outcome(TicketEvent(
        source="jira", ticket_id=key, revision=revision, subject=_str(fields.get("summary")), text=text,
        updated_at=canonical_time(fields.get("updated")), requester_email=common["requester_email"],
        organization=common["organization"], tags=common["tags"], priority=common["priority"],
        assignee=common["assignee"], changed_by=changed_by,
        priority_set_by_human=bool(priority_name) and (
            "priority" in changed or priority_name.lower() != priorities.default_name.lower()),
        assignee_set_by_human=bool(common["assignee"]),
        extra={**common["extra"], "delivery": "webhook", "event_type": kind},
    ))


def _from_automation(payload: Mapping[str, Any], bot: str) -> Outcome:
    issue = _section(payload, "issue")
    key = _issue_key(issue.get("key"), "issue.key")
    comment = _obj(payload.get("comment"))
    initiator = _str(payload.get("initiator_account_id"))
    author = _str(comment.get("author_account_id"))
    if bot and bot in (initiator, author):
        return Outcome(None, "change made by the triage bot")
    comment_id = _id(comment.get("id"))
    if comment_id:
        if _str(comment.get("internal")).lower() == "true":
            return Outcome(None, "internal comment, not a public one")
        if not is_number(comment_id):
            raise EventError("comment.id is not a number")
        revision, text, changed_by = comment_id, text_of(comment.get("body")), author or initiator
        if not text:
            return Outcome(None, "no comment text")
    else:
        revision = _required(canonical_time(issue.get("created")), "issue.created")
        text, changed_by = text_of(issue.get("description")), initiator
        if not text and not _str(issue.get("summary")):
            return Outcome(None, "no summary or description text")
    return Outcome(TicketEvent(
        source="jira", ticket_id=key, revision=revision, subject=_str(issue.get("summary")), text=text,
        changed_by=changed_by, extra={"delivery": "automation"},
    ))


# -- helpers ------------------------------------------------------------------------------------

def request_type_name(fields: Mapping[str, Any]) -> str:
    """The JSM request type's name, found by shape (the field's id differs per site)."""
    for name, value in fields.items():
        if name.startswith("customfield_") and isinstance(value, Mapping) \
                and isinstance(value.get("requestType"), Mapping):
            return _str(value["requestType"].get("name"))
    return ""


def _organizations(fields: Mapping[str, Any]) -> str:
    """JSM organizations (a list of {id, name, _links: {self: .../servicedeskapi/organization/..}})."""
    for name, value in fields.items():
        if not name.startswith("customfield_") or not isinstance(value, list) or not value:
            continue
        if all(isinstance(v, Mapping) and "/servicedeskapi/organization/" in
               str((v.get("_links") or {}).get("self") or "") for v in value):
            return ", ".join(_str(v.get("name")) for v in value if _str(v.get("name")))
    return ""


def _fields(fields: Mapping[str, Any], priorities: PriorityMap) -> dict[str, Any]:
    priority_name = _name(fields.get("priority"))
    project = _obj(fields.get("project"))
    reporter = _obj(fields.get("reporter"))
    labels = fields.get("labels")
    if labels is not None and not isinstance(labels, list):
        raise EventError("issue.fields.labels is not a list")
    extra = {"project": _str(project.get("key")), "project_type": _str(project.get("projectTypeKey")),
             "issue_type": _name(fields.get("issuetype")), "request_type": request_type_name(fields),
             "status": _name(fields.get("status")).lower(),
             "priority_name": priority_name}
    return {"tags": tuple(dict.fromkeys(str(t) for t in labels or () if str(t).strip())),
            "priority": priorities.level_of(priority_name) if priority_name else "",
            "assignee": _account(fields.get("assignee")),
            "requester_email": _str(reporter.get("emailAddress")),
            "organization": _organizations(fields),
            "extra": {k: v for k, v in extra.items() if v or k == "priority_name"}}


def last_setter(histories: Sequence[Mapping[str, Any]], field: str) -> str | None:
    """Account id of whoever last changed `field` (its id, e.g. priority or customfield_10050;
    None: never changed since creation)."""
    found: tuple[str, int, str] | None = None
    for h in histories:
        if not isinstance(h, Mapping):
            continue
        items = h.get("items") or []
        if any(isinstance(i, Mapping) and str(i.get("fieldId") or i.get("field") or "").lower() == field
               for i in items):
            stamp = (canonical_time(h.get("created")), _int(h.get("id")))
            if found is None or stamp >= found[:2]:
                found = (*stamp, _account(h.get("author")))
    return found[2] if found else None


def _obj(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _name(value: Any) -> str:
    return _str(value.get("name")) if isinstance(value, Mapping) else ""


def _account(user: Any) -> str:
    return _str(user.get("accountId")) if isinstance(user, Mapping) else ""


def _section(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key)
    if not isinstance(value, Mapping):
        raise EventError(f"{key} is missing or not an object")
    return value


def _issue_key(value: Any, label: str) -> str:
    text = _str(value)
    if not text:
        raise EventError(f"{label} is missing (smart values not rendered?)")
    if not _KEY.fullmatch(text):
        raise EventError(f"{label} is not an issue key like SUP-42")
    return text


def _required(value: str, label: str) -> str:
    if not value:
        raise EventError(f"{label} is missing or not a date, and there is no comment id for the revision")
    return value
