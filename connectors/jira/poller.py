"""Poll Jira Cloud with JQL (for sites that cannot reach a webhook endpoint, or as a safety net).

Each pass runs, through the `jira` client, GET /rest/api/3/search/jql (the current search; the old
/search is gone on Cloud) with nextPageToken pages of

    (<your JQL>) AND updated >= "-<N>m" ORDER BY updated ASC, key ASC

where N minutes reach back from now to the watermark (the newest `updated` seen, kept in Redis under
triage:watermark:jira) plus an overlap (5 minutes by default). The overlap catches issues that Jira's
search index returns late: an issue updated before the watermark but indexed after the previous pass
is still inside the next window. A relative date keeps the query independent of the bot user's time
zone, in which JQL reads absolute dates.

The overlap brings issues back; each (issue key, updated) is handled once: it is remembered in Redis
(triage:jira:seen:<key>:<updated, epoch ms>) after its event is enqueued. An issue whose `updated` moved
(someone commented, or our own write-back) is turned into an event again, but its revision only
changes with a new public comment, so the enqueuer's event-key check keeps a revision from being
triaged twice. The watermark moves after each page's events are enqueued: a crash replays at most the
overlap window.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import redis

from connectors.jira.normalize import DEFAULT_PRIORITIES, PriorityMap, from_api, parse_time
from connectors.jira.transport import JiraApi
from connectors.polling import poll_forever
from worker.errors import ConfigError
from worker.events import TicketEvent

WATERMARK_KEY = "triage:watermark:jira"
SEEN_PREFIX = "triage:jira:seen:"
log = logging.getLogger(__name__)
_ORDER_BY = re.compile(r"\border\s+by\b", re.IGNORECASE)


@dataclass(frozen=True)
class Page:
    events: list[TicketEvent]
    skipped: dict[str, str] = field(default_factory=dict)  # issue key -> why
    next_page_token: str | None = None
    newest: float | None = None  # the newest `updated` on the page, unix seconds
    handled: list[str] = field(default_factory=list)  # seen keys to remember once enqueued

    @property
    def is_last(self) -> bool:
        return not self.next_page_token


@dataclass(frozen=True)
class Pass:
    events: list[TicketEvent]
    skipped: dict[str, str]
    pages: int


def check_jql(jql: str) -> str:
    """The admin's JQL, validated: the poller adds its own window and ORDER BY."""
    text = jql.strip()
    if not text:
        raise ConfigError("give a JQL filter, e.g. --jql 'project = SUP'")
    if _ORDER_BY.search(text):
        raise ConfigError("leave ORDER BY out of the JQL: the poller orders by updated itself")
    return text


class JiraPoller:
    def __init__(self, api: JiraApi, redis_client: redis.Redis, bot_account_id: str, jql: str, *,
                 priorities: PriorityMap = DEFAULT_PRIORITIES, overlap_s: int = 300,
                 initial_lookback_s: int = 3600, per_page: int = 50, key: str = WATERMARK_KEY,
                 seen_ttl_s: int = 7 * 24 * 3600, clock: Callable[[], float] = time.time):
        self.api = api
        self.redis = redis_client
        self.bot_account_id = str(bot_account_id)
        self.jql = check_jql(jql)
        self.priorities = priorities
        self.overlap_s = overlap_s
        self.initial_lookback_s = initial_lookback_s
        self.per_page = per_page
        self.key = key
        self.seen_ttl_s = max(seen_ttl_s, 2 * overlap_s)
        self.clock = clock

    def watermark(self) -> float | None:
        raw = self.redis.get(self.key)
        return float(raw) if raw else None

    def query(self) -> str:
        """This pass's JQL: the admin's filter within the window back to the watermark (+ overlap)."""
        mark = self.watermark()
        reach = self.initial_lookback_s if mark is None else self.clock() - mark + self.overlap_s
        minutes = max(1, math.ceil(reach / 60))
        return f'({self.jql}) AND updated >= "-{minutes}m" ORDER BY updated ASC, key ASC'

    def fetch_page(self, jql: str, token: str | None = None) -> Page:
        """One page of matching issues as events; nothing is remembered or moved."""
        data = self.api.call("GET search/jql", lambda c: c.enhanced_search_issues(
            jql, nextPageToken=token, maxResults=self.per_page, fields=["*all"], json_result=True))
        events, skipped, handled, newest = [], {}, [], None
        for issue in data.get("issues") or []:
            key = str(issue.get("key"))
            updated = parse_time((issue.get("fields") or {}).get("updated"))
            if updated is not None:
                newest = max(newest or 0.0, updated.timestamp())
            seen = self._seen(issue)
            if self.redis.exists(seen):
                skipped[key] = "already handled at this update"
                continue
            handled.append(seen)
            event, reason = self._event(issue)
            if event is None:
                skipped[key] = reason
            else:
                events.append(event)
        next_token = data.get("nextPageToken") if not data.get("isLast", True) else None
        return Page(events, skipped, next_token or None, newest, handled)

    def poll_once(self, enqueue: Callable[[list[TicketEvent]], object]) -> Pass:
        """One pass over every page of the window: enqueue each page's events, then remember their issue
        revisions and move the watermark page by page. If enqueueing raises, nothing of that page is
        remembered and the next pass sees it again."""
        jql, token = self.query(), None
        events: list[TicketEvent] = []
        skipped: dict[str, str] = {}
        pages = 0
        while True:
            page = self.fetch_page(jql, token)
            pages += 1
            enqueue(page.events)
            self._remember(page)
            events += page.events
            skipped.update(page.skipped)
            if page.is_last:
                return Pass(events, skipped, pages)
            token = page.next_page_token

    def run(self, enqueue: Callable[[list[TicketEvent]], object], *, interval_s: float = 60,
            stop: threading.Event | None = None, max_backoff_s: float = 300) -> None:
        """Poll until `stop` is set, every `interval_s`. 429 waits Retry-After; other vendor
        errors back off exponentially."""
        def one_pass() -> float:
            done = self.poll_once(enqueue)
            log.info("jira poll: %d issues queued, %d skipped", len(done.events), len(done.skipped))
            return interval_s

        poll_forever(one_pass, "jira", stop, max_backoff_s)

    # -- internals --------------------------------------------------------------------------------

    def _seen(self, issue: Mapping[str, Any]) -> str:
        """The (issue key, updated) memory key, to Jira's millisecond: two changes within a second differ."""
        updated = parse_time((issue.get("fields") or {}).get("updated"))
        stamp = f"{round(updated.timestamp() * 1000)}" if updated else "?"
        return f"{SEEN_PREFIX}{issue.get('key')}:{stamp}"

    def _remember(self, page: Page) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for key in page.handled:
            pipe.set(key, "1", ex=self.seen_ttl_s)
        if page.newest is not None:
            mark = self.watermark()
            if mark is None or page.newest > mark:
                pipe.set(self.key, f"{page.newest:.3f}")
        pipe.execute()

    def _event(self, issue: Mapping[str, Any]) -> tuple[TicketEvent | None, str]:
        key = str(issue.get("key"))
        fields = issue.get("fields") or {}
        block = fields.get("comment")
        comments = None
        if isinstance(block, Mapping) and int(block.get("total") or 0) > len(block.get("comments") or []):
            page = self.api.request("GET", f"/rest/api/3/issue/{key}/comment", op=f"GET comments of issue {key}",
                                    params={"orderBy": "-created", "maxResults": 100})
            comments = list((page or {}).get("comments") or [])
        try:
            event = from_api(issue, comments, bot_account_id=self.bot_account_id, priorities=self.priorities,
                             delivery="poll")
        except ValueError as e:  # EventError: a malformed issue is skipped, not fatal to the pass
            return None, str(e)
        if not event.text and not event.subject:
            return None, "no text"
        return event, ""
