"""Suggest mode: what the rules would set, written into the internal note instead of set.

A suggestion is a (field, value) pair: `priority`, `group`, `assignee`, `request_type`, or
`field:<Jira field id or name>` (a rule's jira_fields). The note carries two lines:

    Suggested (not applied): priority urgent, group Tier 2
    Suggestion code: priority=urgent group=Tier%202

The first is for the agent; the second for `triage history pull`, which reads it back from the
bot's comment to tell whether the agent later accepted or rejected the suggestion. Its values are
percent-encoded down to letters and digits, so that no helpdesk markup (JSM reads comment bodies as
wiki markup: _x_, *x*, [x], {x} ...) can change it. Each suggestion also gets a tag,
`{prefix}suggested_{field}_{value}` (e.g. triage_suggested_priority_urgent): Zendesk views and Jira
filters can be built on it; names become lowercase words joined by "_", so the exact value is the
note's (a priority is also read back from its tag, when the note is gone).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from urllib.parse import unquote

FIELDS = ("priority", "group", "assignee", "request_type")  # and "field:<name>" for Jira fields
CODE = "Suggestion code:"
HUMAN = "Suggested (not applied):"
ACCEPTED, REJECTED, OPEN = "accepted", "rejected", "open"
Suggested = tuple[tuple[str, str], ...]

_CODE_LINE = re.compile(rf"^\W*{re.escape(CODE)}\s*(.*)$", re.MULTILINE)


def _encode(text: str) -> str:
    return "".join(c if c.isascii() and c.isalnum() else "".join(f"%{b:02X}" for b in c.encode()) for c in text)


def label(name: str) -> str:
    """How a suggested field is named to agents."""
    return f"field {name[6:]}" if name.startswith("field:") else name.replace("_", " ")


def note_lines(suggested: Suggested) -> list[str]:
    """The note's two lines for these suggestions ([] when there are none)."""
    if not suggested:
        return []
    return [f"{HUMAN} " + ", ".join(f"{label(n)} {v}" for n, v in suggested),
            f"{CODE} " + " ".join(f"{_encode(n)}={_encode(v)}" for n, v in suggested)]


def parse(text: str) -> dict[str, str]:
    """The suggestions in a note (the last code line), {} when it carries none."""
    found = _CODE_LINE.findall(text or "")
    out: dict[str, str] = {}
    for item in (found[-1].split() if found else ()):
        name, sep, value = item.partition("=")
        if sep and name:
            out[unquote(name)] = unquote(value)
    return out


def slug(text: str) -> str:
    """A value as tag words: lowercase, runs of anything else than letters and digits become "_"."""
    return re.sub(r"[\W_]+", "_", text.lower()).strip("_")[:60]


def tags(prefix: str, suggested: Iterable[tuple[str, str]]) -> tuple[str, ...]:
    """One tag per suggestion: {prefix}suggested_{field}_{value}."""
    out = []
    for name, value in suggested:
        field = f"field_{slug(name[6:])}" if name.startswith("field:") else name
        tag = "_".join(f"{prefix}suggested_{field}_{slug(value)}".lower().split())  # as normalize_tag
        out.append(tag[:80].rstrip("_"))
    return tuple(dict.fromkeys(out))


_PRIORITY_TAG = re.compile(r"(?:^|_)suggested_priority_(low|normal|high|urgent)$")


def from_tags(tags: Iterable[str]) -> dict[str, str]:
    """The priority a suggestion tag names (any tag prefix), for a ticket whose note is gone: the tags
    of other fields are lossy (names become words), so only the priority is read back from them."""
    found = [m[1] for m in map(_PRIORITY_TAG.search, (t.lower() for t in tags)) if m]
    return {"priority": found[-1]} if found else {}


def outcome(suggested: str, chosen: str, same: Mapping[str, str] | None = None) -> str:
    """accepted when the agent's value is the suggestion (case-insensitive; `same` maps other spellings
    of a value to one, e.g. a group id to its name), rejected when it is another value, open when none."""
    if not chosen:
        return OPEN
    def norm(v: str) -> str:
        return (same or {}).get(v, v).strip().lower()
    return ACCEPTED if norm(suggested) == norm(chosen) else REJECTED
