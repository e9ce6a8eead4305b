"""Pull a team's resolved Jira issues as training data (`triage history pull jira --jql ...`).

Through the `jira` client: GET /rest/api/3/search/jql with expand=changelog, nextPageToken pages. From
the changelog: who set the priority and the request type, and whether the bot set one and an agent
changed it afterwards (a correction). In suggest mode, the bot's comments carrying suggestions (its "Suggestion code:"
line, worker/suggestions.py) and the values agents set after it in the changelog: accepted or rejected
suggestions. From the issue: summary and description, request type (or issue type), labels, created.

Resumable as the Zendesk pull is (connectors/zendesk/history.py): rows appended per page with fsync,
then the page token saved in the state file; rows already in the file are skipped. A 429 waits
Retry-After; a 5xx backs off and retries, then stops with the state saved.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from connectors.jira.normalize import DEFAULT_PRIORITIES, PriorityMap, parse_time, request_type_name, text_of
from connectors.zendesk.history import PullResult
from worker import suggestions
from worker.errors import RateLimited, VendorUnavailable
from worker.history import (
    URGENCY_OF_PRIORITY,
    DatasetWriter,
    HistoryRow,
    labelled,
    load_state,
    save_state,
    suggestion_labels,
)
from worker.pii import redact

T = TypeVar("T")
DEFAULT_JQL = "statusCategory = Done"


def who_set(histories: Sequence[Mapping[str, Any]], bot_account_id: str,
                    current: str, field: str = "priority") -> tuple[str, str, str]:
    """(final value, agent-set | agent-corrected-bot | bot-unchanged, the bot's value) of an issue's
    priority (or `field` request_type: the routing head's label) from the changelog; an issue whose
    value nobody changed keeps the one it was created with, agent-set (a customer's or agent's)."""
    setter, bot_value = "", ""
    for history in sorted(histories, key=lambda h: (str(h.get("created", "")), str(h.get("id", "")))):
        by_bot = str((history.get("author") or {}).get("accountId")) == bot_account_id
        for item in history.get("items") or []:
            if not _matches(field, item, ""):
                continue
            if by_bot:
                bot_value = bot_value or str(item.get("toString") or "")
                setter = "bot"
            else:
                setter = "agent"
    if not current:
        return "", "", bot_value
    if setter == "bot":
        return current, "bot-unchanged", bot_value
    if bot_value and bot_value.lower() != current.lower():
        return current, "agent-corrected-bot", bot_value
    return current, "agent-set", bot_value


def _matches(name: str, item: Mapping[str, Any], group_field: str) -> bool:
    """Whether a changelog item changes a suggestion's field."""
    field, field_id = str(item.get("field") or "").lower(), str(item.get("fieldId") or "").lower()
    if name in ("priority", "assignee"):
        return field_id == name or field == name
    if name == "request_type":
        return field in ("request type", "customer request type")
    wanted = (name[6:] if name.startswith("field:") else group_field if name == "group" else "").lower()
    return bool(wanted) and wanted in (field, field_id)


def suggestion_outcomes(histories: Sequence[Mapping[str, Any]], comments: Sequence[Mapping[str, Any]],
                        bot_account_id: str, priorities: PriorityMap = DEFAULT_PRIORITIES, group_field: str = ""
                        ) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """(suggested: field -> value, the latest the bot's comments suggested; outcome: field -> accepted |
    rejected | open; chosen: field -> the value agents set after that comment, a priority as its neutral
    level). An assignee compares by accountId; `group` only with the field it is written to
    (JIRA_GROUP_FIELD)."""
    made: list[tuple[datetime, int, dict[str, str]]] = []  # (when, comment after label, suggestions)
    for history in histories:  # a priority suggestion's label: read when its comment is gone
        created = parse_time(history.get("created"))
        if str((history.get("author") or {}).get("accountId")) == bot_account_id and created is not None:
            for item in history.get("items") or []:
                if str(item.get("field") or "").lower() == "labels":
                    made.append((created, 0, suggestions.from_tags(set(str(item.get("toString") or "").split())
                                                                   - set(str(item.get("fromString") or "").split()))))
    for comment in comments:
        created = parse_time(comment.get("created"))
        if str((comment.get("author") or {}).get("accountId")) == bot_account_id and created is not None:
            made.append((created, 1, suggestions.parse(text_of(comment.get("body")))))
    suggested: dict[str, str] = {}
    at: dict[str, datetime] = {}  # field -> the time of its latest suggestion
    for created, _, found in sorted(made, key=lambda m: (m[0], m[1])):
        suggested.update(found)
        at.update(dict.fromkeys(found, created))
    chosen: dict[str, str] = {}
    for history in sorted(histories, key=lambda h: (str(h.get("created", "")), str(h.get("id", "")))):
        created = parse_time(history.get("created"))
        if str((history.get("author") or {}).get("accountId")) == bot_account_id or created is None:
            continue
        for item in history.get("items") or []:
            for name in suggested:
                if created >= at[name] and _matches(name, item, group_field):
                    value = str(item.get("to") if name == "assignee" else item.get("toString") or "")
                    chosen[name] = (priorities.level_of(value) or value) if name == "priority" else value
    return suggested, {n: suggestions.outcome(v, chosen.get(n, "")) for n, v in suggested.items()}, chosen


class JiraHistory:
    def __init__(self, api: Any, bot_account_id: str, jql: str = DEFAULT_JQL, *, per_page: int = 100,
                 scrub_text: bool = True, weights: Mapping[str, float] | None = None, max_retries: int = 5,
                 max_wait_s: float = 600.0, sleep: Callable[[float], None] = time.sleep,
                 priorities: PriorityMap = DEFAULT_PRIORITIES, group_field: str = ""):
        self.api = api
        self.priorities = priorities  # JIRA_PRIORITY_MAP: a suggested priority is a neutral level
        self.group_field = group_field  # JIRA_GROUP_FIELD: where a suggested group would have gone
        self.bot_account_id = str(bot_account_id)
        self.jql = jql
        self.per_page = per_page
        self.scrub_text = scrub_text
        self.weights = dict(weights or {})
        self.max_retries = max_retries
        self.max_wait_s = max_wait_s
        self.sleep = sleep
        self.rate_limited = 0
        self.waited_s = 0.0

    def _call(self, op: str, fn: Callable[[], T]) -> T:
        failures = 0
        while True:
            try:
                return fn()
            except RateLimited as e:
                self.rate_limited += 1
                wait = min(max(e.retry_after, 0.0), self.max_wait_s)
                self.waited_s += wait
                self.sleep(wait)
            except VendorUnavailable:
                failures += 1
                if failures > self.max_retries:
                    raise
                self.sleep(min(2.0 ** failures, 60.0))

    def page(self, token: str | None) -> tuple[list[dict[str, Any]], str | None, bool]:
        jql = f"({self.jql}) ORDER BY created ASC, key ASC"
        data = self._call("GET search/jql", lambda: self.api.call("GET search/jql", lambda c: c.enhanced_search_issues(
            jql, nextPageToken=token, maxResults=self.per_page, fields=["*all"], expand="changelog",
            json_result=True)))
        last = bool(data.get("isLast", True))
        return list(data.get("issues") or []), (None if last else data.get("nextPageToken")), last

    def row(self, issue: Mapping[str, Any]) -> tuple[HistoryRow | None, str]:
        fields = issue.get("fields") or {}
        subject = str(fields.get("summary") or "")
        text = text_of(fields.get("description"))
        if not (subject or text).strip():
            return None, "no text"
        current = str((fields.get("priority") or {}).get("name") or "")
        histories = (issue.get("changelog") or {}).get("histories") or []
        final, provenance, bot_value = who_set(histories, self.bot_account_id, current)
        labels: dict[str, dict[str, Any]] = {}
        urgency = URGENCY_OF_PRIORITY.get(final.lower()) if final else None
        if urgency and provenance:
            labels["urgency"] = labelled("urgency", urgency, provenance, self.weights)
        comments = (fields.get("comment") or {}).get("comments") or [] if isinstance(fields.get("comment"), Mapping) \
            else []
        request_type = request_type_name(fields)
        routed = who_set(histories, self.bot_account_id, request_type, "request_type")[1]
        if request_type and routed:  # who chose the request type: the routing head's label and its weight
            labels["group"] = labelled("group", request_type, routed, self.weights)
        suggested, outcomes, chosen = suggestion_outcomes(histories, comments, self.bot_account_id, self.priorities,
                                                          self.group_field)
        suggestion_labels(labels, outcomes, chosen, self.weights, group_field="request_type")
        if self.scrub_text:
            subject, text = redact(subject), redact(text)
        created = parse_time(fields.get("created"))
        return HistoryRow(
            id=f"jira:{issue.get('key')}", source="jira",
            created_at=created.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if created else "",
            subject=subject, text=text, labels=labels, priority=final, bot_priority=bot_value,
            group=request_type, type=str((fields.get("issuetype") or {}).get("name") or ""),
            tags=[str(t) for t in fields.get("labels") or []], suggested=suggested,
            suggestion_outcome=outcomes), ""


def pull(history: JiraHistory, out: str | Path, *, state_path: str | Path | None = None, restart: bool = False,
         progress: bool = True) -> PullResult:
    """Pull every issue the JQL matches into `out`, resuming from the state file (same JQL only)."""
    out = Path(out)
    state_file = Path(state_path) if state_path else out.with_name(out.name + ".state.json")
    state = {} if restart else load_state(state_file)
    if state and (state.get("out") != str(out) or state.get("jql") != history.jql or state.get("done")):
        state = {}  # another pull's, or a finished one: read the JQL's issues again (written ones are skipped)
    result = PullResult(resumed=bool(state.get("token")))
    writer = DatasetWriter(out)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(desc="history jira", unit="issue", dynamic_ncols=True)
    began = time.monotonic()
    token = state.get("token")
    try:
        while True:
            issues, after, last = history.page(token)
            rows = []
            for issue in issues:
                row, why = history.row(issue)
                if row is None:
                    result.skipped[why] = result.skipped.get(why, 0) + 1
                else:
                    rows.append(row)
            result.written += writer.write(rows)
            result.pages += 1
            if bar is not None:
                bar.update(len(issues))
            token = after
            save_state(state_file, {"vendor": "jira", "out": str(out), "jql": history.jql, "token": token,
                                    "rows": writer.count, "done": last,
                                    "updated": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")})
            if last:
                break
    finally:
        writer.close()
        if bar is not None:
            bar.close()
    result.total = writer.count
    result.rate_limited, result.waited_s = history.rate_limited, history.waited_s
    result.seconds = time.monotonic() - began
    return result
