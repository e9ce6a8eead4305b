"""Slack text in and out: message events -> ticket events, /triage arguments, mrkdwn escaping. Pure."""

from __future__ import annotations

import hashlib
import html
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from worker.events import TicketEvent, clean_text

MAX_TEXT_CHARS = 4000  # /triage <text> longer than this is refused; the model reads ~4000 chars at most
# Message subtypes that are a person's new message; every other subtype (edits, deletions, joins,
# bot messages, ...) is not triaged.
NEW_MESSAGE_SUBTYPES = (None, "", "thread_broadcast", "file_share")

_USER = re.compile(r"<@([UW][A-Z0-9]+)(?:\|([^>]*))?>")
_CHANNEL = re.compile(r"<#([CG][A-Z0-9]+)(?:\|([^>]*))?>")
_SPECIAL = re.compile(r"<!(here|channel|everyone)(?:\|[^>]*)?>")
_SUBTEAM = re.compile(r"<!subteam\^[A-Z0-9]+(?:\|([^>]*))?>")
_LINK = re.compile(r"<((?:https?|mailto):[^|>]+)(?:\|([^>]*))?>")
_OTHER = re.compile(r"<![^>]*>")

_ZENDESK_URL = re.compile(
    r"https?://([a-z0-9][a-z0-9-]*)\.zendesk\.com/(?:agent/tickets|tickets|hc/(?:[a-z-]+/)?requests)/(\d+)\b",
    re.IGNORECASE)
_TICKET_ID = re.compile(r"#?(\d{1,15})")
_JIRA_URL = re.compile(r"https?://([a-z0-9.-]+)(?::\d+)?/(?:browse|projects/[^/]+/issues)/([A-Z][A-Z0-9_]+-\d+)\b",
                       re.IGNORECASE)
_JIRA_KEY = re.compile(r"[A-Z][A-Z0-9_]+-\d{1,12}")  # upper case only: "covid-19" stays a text


def plain(text: str) -> str:
    """Slack's message markup as a person reads it: <@U1|ann> -> @ann, <url|label> -> label, &amp; -> &."""
    text = _USER.sub(lambda m: "@" + (m[2] or m[1]), text or "")
    text = _CHANNEL.sub(lambda m: "#" + (m[2] or m[1]), text)
    text = _SPECIAL.sub(lambda m: "@" + m[1], text)
    text = _SUBTEAM.sub(lambda m: m[1] or "@team", text)
    text = _LINK.sub(lambda m: m[2] or m[1], text)
    text = _OTHER.sub("", text)
    return html.unescape(text).strip()


def escape(text: str) -> str:
    """Text safe to put into mrkdwn: Slack's three control characters escaped."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def ts_iso(ts: str) -> str:
    try:
        return datetime.fromtimestamp(float(ts), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (TypeError, ValueError, OverflowError):
        return ""


def message_item(channel: str, ts: str) -> str:
    """The ticket id of a Slack message: channel:ts (unique in a workspace)."""
    return f"{channel}:{ts}"


def split_item(ticket_id: str) -> tuple[str, str]:
    channel, _, ts = ticket_id.partition(":")
    return channel, ts


def text_item(text: str) -> str:
    """The identity of a free text given to /triage (feedback on the same text is one item)."""
    return "text:" + hashlib.sha256(text.strip().encode()).hexdigest()[:16]


def is_new_message(event: dict[str, Any]) -> bool:
    """A person's new message: not an edit, deletion, join or any bot's message."""
    return (event.get("type") == "message" and event.get("subtype") in NEW_MESSAGE_SUBTYPES
            and not event.get("bot_id") and not event.get("bot_profile") and bool(event.get("user"))
            and bool(event.get("ts")) and bool(event.get("channel")))


def message_event(event: dict[str, Any], team_id: str = "") -> TicketEvent:
    """A Slack message (from the Events API or a shortcut payload) as a ticket event.
    ticket_id is channel:ts and the revision is ts: a message is triaged once."""
    channel = str(event.get("channel") or "")
    ts = str(event.get("ts") or "")
    extra = {"thread_ts": str(event.get("thread_ts") or ""), "user": str(event.get("user") or "")}
    if team_id or event.get("team"):
        extra["team"] = str(team_id or event.get("team"))
    return TicketEvent(source="slack", ticket_id=message_item(channel, ts), revision=ts,
                       text=plain(str(event.get("text") or "")), updated_at=ts_iso(ts), channel=channel,
                       changed_by=str(event.get("user") or ""), extra=extra)


@dataclass(frozen=True)
class Request:
    """What `/triage <args>` asks for."""

    kind: str  # help | text | ticket | error
    text: str = ""  # the text to score (kind text), or the error message (kind error)
    source: str = ""  # kind ticket: the helpdesk ("zendesk")
    ticket_id: str = ""
    host: str = ""  # the subdomain named in a ticket URL


def parse_command(raw: str, max_chars: int = MAX_TEXT_CHARS) -> Request:
    """`/triage help` | `/triage 4201` | `/triage #4201` | `/triage <Zendesk ticket URL>` | `/triage SUP-12` |
    `/triage <Jira issue URL>` | `/triage <text>`. `host`: the Zendesk subdomain or Jira host in a URL."""
    text = clean_text(raw or "").strip()  # as a ticket event's text: what the model and hashes can take
    if not text or text.lower() in ("help", "-h", "--help", "?"):
        return Request("help")
    candidate = (text[1:-1].split("|", 1)[0] if text.startswith("<") and text.endswith(">") else text).strip()
    m = _ZENDESK_URL.match(candidate) if " " not in candidate else None
    if m is not None:
        return Request("ticket", source="zendesk", ticket_id=m[2], host=m[1].lower())
    m2 = _JIRA_URL.match(candidate) if " " not in candidate else None
    if m2 is not None:
        return Request("ticket", source="jira", ticket_id=m2[2].upper(), host=m2[1].lower())
    m3 = _TICKET_ID.fullmatch(text)
    if m3 is not None:
        return Request("ticket", source="zendesk", ticket_id=m3[1])
    if _JIRA_KEY.fullmatch(text):
        return Request("ticket", source="jira", ticket_id=text)
    body = plain(text)
    if len(body) > max_chars:
        return Request("error", f"That text is {len(body):,} characters; /triage takes up to {max_chars:,}. "
                                f"Paste the part that matters, or give a ticket id: /triage 4201")
    return Request("text", body)


def reactions_for(tags: tuple[str, ...] | list[str], mapping: dict[str, str]) -> list[str]:
    """Emoji names for a decision's tags: `:name:` tags as is, others through the mapping (SLACK_REACTIONS)."""
    out: list[str] = []
    for tag in tags:
        emoji = len(tag) > 2 and tag.startswith(":") and tag.endswith(":")
        name = tag[1:-1] if emoji else mapping.get(tag.lower(), "")
        if name and name not in out:
            out.append(name)
    return out


def snippet(text: str, limit: int) -> str:
    text = " ".join(text.split()) if len(text) > limit else text.strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
