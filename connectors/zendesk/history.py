"""Pull a team's solved tickets from Zendesk as training data (`triage history pull zendesk`).

Through the zenpy client: the cursor-based incremental ticket export
(GET /api/v2/incremental/tickets/cursor.json, one page per call) and each solved ticket's audits
(GET /api/v2/tickets/{id}/audits.json). From the audits: who set the priority and the group, and whether
the bot set one first and an agent changed it (a correction); in suggest mode, the bot's notes carrying
suggestions (their "Suggestion code:" lines, worker/suggestions.py) and the values agents set afterwards:
accepted or rejected suggestions. From the ticket: subject and description (the
customer's first comment), group, type, tags, satisfaction rating.

Resumable: after each page, its rows are appended (fsync) to the dataset file, then the export's
cursor is saved in a state file (atomic rename). A crash between the two replays the page; rows
already in the file are skipped, so nothing is written twice. A 429 waits Retry-After (shown on the
progress bar) and asks again; a 5xx backs off and retries a few times, then stops with the state
saved, and the next run resumes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from zenpy.lib.exception import RecordNotFoundException

from connectors.zendesk.transport import install_rate_limit_hook, vendor_errors
from worker import suggestions
from worker.errors import RateLimited, VendorUnavailable
from worker.history import (
    SENTIMENT_OF_CSAT,
    URGENCY_OF_PRIORITY,
    DatasetWriter,
    HistoryRow,
    labelled,
    load_state,
    save_state,
    suggestion_labels,
)
from worker.pii import redact

log = logging.getLogger(__name__)
DONE_STATUSES = ("solved", "closed")
T = TypeVar("T")


@dataclass
class PullResult:
    written: int = 0  # rows appended this run
    total: int = 0  # rows in the file now
    pages: int = 0
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> tickets
    rate_limited: int = 0  # 429 answers met
    waited_s: float = 0.0  # seconds spent waiting on them
    resumed: bool = False
    seconds: float = 0.0


def who_set(audits: Sequence[Mapping[str, Any]], bot_user_id: str, field_name: str = "priority"
                    ) -> tuple[str, str, str]:
    """(final value, who set it: agent-set | agent-corrected-bot | bot-unchanged | "", the bot's value)
    of a ticket field (its priority, or its group_id: the routing head's label) from its audits."""
    final, setter, bot_value = "", "", ""
    for audit in sorted(audits, key=lambda a: (str(a.get("created_at", "")), int(a.get("id") or 0))):
        by_bot = str(audit.get("author_id")) == bot_user_id
        for event in audit.get("events") or []:
            if event.get("field_name") != field_name or event.get("type") not in ("Create", "Change"):
                continue
            value = str(event.get("value") or "")
            if by_bot:
                bot_value = bot_value or value
                final, setter = value, "bot"
            else:
                final, setter = value, "agent"
    if not final:
        return "", "", bot_value
    if setter == "bot":
        return final, "bot-unchanged", bot_value
    if bot_value and bot_value != final:
        return final, "agent-corrected-bot", bot_value
    return final, "agent-set", bot_value


_AUDIT_FIELDS = {"priority": "priority", "group_id": "group", "assignee_id": "assignee"}


def _ordered(audits: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return sorted(audits, key=lambda a: (str(a.get("created_at", "")), int(a.get("id") or 0)))


def _words(value: Any) -> set[str]:
    """An audit's tag list: an array (Zendesk) or space-separated words."""
    return {str(t) for t in value} if isinstance(value, list) else set(str(value or "").split())


def suggestion_outcomes(audits: Sequence[Mapping[str, Any]], bot_user_id: str, groups: Mapping[int, str],
                        user_email: Callable[[str], str] | None = None
                        ) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """(suggested: field -> value, the latest the bot's notes suggested; outcome: field -> accepted |
    rejected | open; chosen: field -> the value agents set after that note, a group as its name). A group
    compares by name or id; an assignee by user id, or by e-mail when the rule named the agent by e-mail
    (`user_email` looks the chosen id up; without it such a suggestion is rejected)."""
    ordered = _ordered(audits)
    suggested: dict[str, str] = {}
    at: dict[str, int] = {}  # field -> the audit of its latest suggestion
    for i, audit in enumerate(ordered):
        if str(audit.get("author_id")) == bot_user_id:
            found: dict[str, str] = {}
            for event in audit.get("events") or []:
                if event.get("type") == "Comment":
                    found.update(suggestions.parse(str(event.get("body") or "")))
                elif event.get("field_name") == "tags":  # the suggestion's tag, when its note is gone
                    found = {**suggestions.from_tags(_words(event.get("value")) - _words(event.get("previous_value"))),
                             **found}
            suggested.update(found)
            at.update(dict.fromkeys(found, i))
    chosen: dict[str, str] = {}
    for i, audit in enumerate(ordered):
        if str(audit.get("author_id")) == bot_user_id:
            continue
        for event in audit.get("events") or []:
            name = _AUDIT_FIELDS.get(str(event.get("field_name")))
            if name in at and i > at[name] and event.get("type") in ("Create", "Change"):
                chosen[name] = str(event.get("value") or "")
    names = {str(k): v for k, v in groups.items()}
    if chosen.get("group"):
        chosen["group"] = names.get(chosen["group"], chosen["group"])
    same: dict[str, Mapping[str, str]] = {"group": names}
    agent = chosen.get("assignee", "")
    if "@" in suggested.get("assignee", "") and agent.isdigit() and user_email is not None:
        same["assignee"] = {agent: user_email(agent)}
    outcomes = {name: suggestions.outcome(value, chosen.get(name, ""), same.get(name))
                for name, value in suggested.items()}
    return suggested, outcomes, chosen


class ZendeskHistory:
    """Reads solved tickets page by page; `rows` turns one page into dataset rows."""

    def __init__(self, client: Any, bot_user_id: str | int, *, per_page: int = 100, scrub_text: bool = True,
                 weights: Mapping[str, float] | None = None, max_retries: int = 5, max_wait_s: float = 600.0,
                 sleep: Callable[[float], None] = time.sleep,
                 on_wait: Callable[[float, str], None] | None = None):
        self.client = client
        self.bot_user_id = str(bot_user_id)
        self.per_page = per_page
        self.scrub_text = scrub_text
        self.weights = dict(weights or {})
        self.max_retries = max_retries
        self.max_wait_s = max_wait_s
        self.sleep = sleep
        self.on_wait = on_wait
        self.rate_limited = 0
        self.waited_s = 0.0
        self._groups: dict[int, str] | None = None
        self._emails: dict[str, str] = {}
        install_rate_limit_hook(client.tickets.session)

    def _call(self, op: str, fn: Callable[[], T]) -> T:
        """fn() with 429 honoured (Retry-After, never counted as a failure) and 5xx retried with backoff."""
        failures = 0
        while True:
            try:
                with vendor_errors(op):
                    return fn()
            except RateLimited as e:
                self.rate_limited += 1
                wait = min(max(e.retry_after, 0.0), self.max_wait_s)
                self.waited_s += wait
                if self.on_wait:
                    self.on_wait(wait, op)
                self.sleep(wait)
            except VendorUnavailable:
                failures += 1
                if failures > self.max_retries:
                    raise
                wait = min(2.0 ** failures, 60.0)
                if self.on_wait:
                    self.on_wait(wait, op)
                self.sleep(wait)

    def groups(self) -> dict[int, str]:
        if self._groups is None:
            found = self._call("GET groups", lambda: [g.to_dict() for g in self.client.groups()])
            self._groups = {int(g["id"]): str(g.get("name") or "") for g in found}
        return self._groups

    def user_email(self, user_id: str) -> str:
        """An agent's e-mail by user id ("" for a user since deleted), looked up once."""
        if user_id not in self._emails:
            def fetch() -> str:
                try:
                    return str(self.client.users(id=int(user_id)).email or "")
                except RecordNotFoundException:
                    return ""

            self._emails[user_id] = self._call(f"GET user {user_id}", fetch)
        return self._emails[user_id]

    def page(self, cursor: str | None, start_time: int) -> tuple[list[dict[str, Any]], str | None, bool]:
        """One page of the export: (tickets as dicts, the cursor after it, end of stream)."""
        def fetch() -> tuple[list[dict[str, Any]], str | None, bool]:
            if cursor:
                gen = self.client.tickets.incremental(cursor=cursor, per_page=self.per_page)
            else:
                gen = self.client.tickets.incremental(start_time=start_time, per_page=self.per_page)
            tickets = [t.to_dict() for t in (gen.values or [])]
            return tickets, getattr(gen, "after_cursor", None) or cursor, bool(getattr(gen, "end_of_stream", True))

        return self._call("GET incremental ticket export", fetch)

    def audits(self, ticket_id: int) -> list[dict[str, Any]]:
        return self._call(f"GET audits of ticket {ticket_id}",
                          lambda: [a.to_dict() for a in self.client.tickets.audits(ticket=ticket_id)])

    def row(self, ticket: Mapping[str, Any]) -> tuple[HistoryRow | None, str]:
        """A dataset row for one exported ticket, or (None, why it was left out)."""
        status = str(ticket.get("status") or "")
        if status not in DONE_STATUSES:
            return None, f"not solved ({status or 'no status'})"
        subject = str(ticket.get("subject") or ticket.get("raw_subject") or "")
        text = str(ticket.get("description") or "")
        if not (subject or text).strip():
            return None, "no text"
        tid = int(ticket["id"])
        audits = self.audits(tid)
        final, provenance, bot_value = who_set(audits, self.bot_user_id)
        labels: dict[str, dict[str, Any]] = {}
        urgency = URGENCY_OF_PRIORITY.get(final.lower()) if final else None
        if urgency and provenance:
            labels["urgency"] = labelled("urgency", urgency, provenance, self.weights)
        group_id = ticket.get("group_id")
        group = self.groups().get(int(group_id), "") if group_id else ""
        group_provenance = who_set(audits, self.bot_user_id, "group_id")[1]
        if group and group_provenance:  # who routed it: what the routing head learns, and how much it weighs
            labels["group"] = labelled("group", group, group_provenance, self.weights)
        suggested, outcomes, chosen = suggestion_outcomes(audits, self.bot_user_id, self.groups(), self.user_email)
        suggestion_labels(labels, outcomes, chosen, self.weights)
        rating = ticket.get("satisfaction_rating")
        score = str(rating.get("score") or "") if isinstance(rating, Mapping) else ""
        csat = score if score in SENTIMENT_OF_CSAT else ""
        if csat:
            labels["sentiment"] = labelled("sentiment", SENTIMENT_OF_CSAT[csat], "csat", self.weights)
        if self.scrub_text:
            subject, text = redact(subject), redact(text)
        return HistoryRow(
            id=f"zendesk:{tid}", source="zendesk", created_at=str(ticket.get("created_at") or ""),
            subject=subject, text=text, labels=labels, priority=final, bot_priority=bot_value,
            group=group,
            type=str(ticket.get("type") or ""), tags=[str(t) for t in ticket.get("tags") or []], csat=csat,
            language=_language(f"{subject}\n{text}"), suggested=suggested, suggestion_outcome=outcomes), ""


def _language(text: str) -> str:
    """The text's language when the model's language check is installed, else ""."""
    try:
        from model.language import LanguageGate
    except ImportError:
        return ""
    try:
        return str(LanguageGate.from_meta(None).detect(text).code)
    except Exception:  # the check is a nicety here: a failing detector must not stop a pull
        return ""


def pull(history: ZendeskHistory, out: str | Path, *, since: datetime, state_path: str | Path | None = None,
         restart: bool = False, progress: bool = True, max_pages: int | None = None,
         total_hint: int | None = None) -> PullResult:
    """Pull solved tickets created or changed since `since` into `out` (JSON lines), resuming from
    the state file when one is there (`restart`: start over, the file kept and deduplicated)."""
    out = Path(out)
    state_file = Path(state_path) if state_path else out.with_name(out.name + ".state.json")
    state = {} if restart else load_state(state_file)
    start_time = int(since.timestamp())
    if state and (state.get("out") != str(out) or state.get("start_time") != start_time):
        state = {}  # another pull's state: start this one afresh
    result = PullResult(resumed=bool(state.get("cursor")) and not state.get("done"))
    if state.get("done"):
        state = {**state, "done": False}  # a finished pull continues from where it ended: new tickets only
    writer = DatasetWriter(out)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total_hint, desc="history zendesk", unit="ticket", initial=0, dynamic_ncols=True)
        history.on_wait = lambda wait, op: bar.set_postfix_str(f"{op}: waiting {wait:g}s") if bar else None
    began = time.monotonic()
    cursor = state.get("cursor")
    try:
        while True:
            tickets, after, end = history.page(cursor, start_time)
            rows = []
            for ticket in tickets:
                row, why = history.row(ticket)
                if row is None:
                    key = why.split(" (")[0]
                    result.skipped[key] = result.skipped.get(key, 0) + 1
                else:
                    rows.append(row)
                if bar is not None:
                    bar.update(1)
            result.written += writer.write(rows)
            result.pages += 1
            cursor = after
            save_state(state_file, {"vendor": "zendesk", "out": str(out), "start_time": start_time,
                                    "cursor": cursor, "rows": writer.count, "done": end,
                                    "updated": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")})
            if bar is not None:
                bar.set_postfix_str(f"{writer.count} rows")
            if end or (max_pages is not None and result.pages >= max_pages):
                break
    finally:
        writer.close()
        if bar is not None:
            bar.close()
    result.total = writer.count
    result.rate_limited, result.waited_s = history.rate_limited, history.waited_s
    result.seconds = time.monotonic() - began
    return result
