"""Poll Zendesk's cursor-based incremental ticket export (for accounts without webhooks).

Each page: GET /api/v2/incremental/tickets/cursor.json (start_time the first time, then cursor),
with requester/group/organization sideloads, then the newest comments of each changed ticket
(one request per ticket) to find the latest public comment: its id is the revision, the same one
the trigger body and comment webhooks give, so every path names a ticket revision alike.

The cursor lives in Redis (triage:cursor:zendesk) and only moves once the page's events are
enqueued: a crash in between replays the page, and the core's event-key dedup absorbs the replay.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import redis

from connectors.polling import poll_forever
from connectors.zendesk.normalize import by_id, from_api
from connectors.zendesk.transport import ZendeskHttp
from worker.events import TicketEvent

CURSOR_KEY = "triage:cursor:zendesk"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Page:
    events: list[TicketEvent]
    skipped: dict[str, str] = field(default_factory=dict)  # ticket id -> why
    after_cursor: str | None = None
    end_of_stream: bool = True


class ZendeskPoller:
    def __init__(self, http: ZendeskHttp | Any, redis_client: redis.Redis, bot_user_id: str, *,
                 initial_lookback_s: int = 3600, per_page: int = 50, key: str = CURSOR_KEY,
                 clock: Callable[[], float] = time.time):
        """`http`: a ZendeskHttp, or a zenpy client whose session and host it borrows."""
        self.http = http if isinstance(http, ZendeskHttp) else ZendeskHttp.from_zenpy(http)
        self.redis = redis_client
        self.bot_user_id = str(bot_user_id)
        self.initial_lookback_s = initial_lookback_s
        self.per_page = per_page
        self.key = key
        self.clock = clock

    def cursor(self) -> str | None:
        raw = self.redis.get(self.key)
        return raw.decode() if isinstance(raw, bytes) else (str(raw) if raw else None)

    def fetch_page(self) -> Page:
        """The next page of changed tickets as events; the cursor is not moved."""
        params: dict[str, str | int] = {"per_page": self.per_page, "include": "users,groups,organizations"}
        cursor = self.cursor()
        if cursor:
            params["cursor"] = cursor
        else:  # Zendesk wants start_time at least a minute in the past
            params["start_time"] = int(self.clock()) - max(self.initial_lookback_s, 60)
        data = self.http.get("incremental/tickets/cursor.json", params, op="GET incremental ticket export")
        sideloads = {k: by_id(data.get(k)) for k in ("users", "groups", "organizations")}
        events, skipped = [], {}
        for ticket in data.get("tickets") or []:
            event, reason = self._event(ticket, sideloads)
            if event is None:
                skipped[str(ticket.get("id"))] = reason
            else:
                events.append(event)
        return Page(events, skipped, data.get("after_cursor") or cursor, bool(data.get("end_of_stream", True)))

    def commit(self, page: Page) -> None:
        """Move the stored cursor past `page` (call once its events are safely enqueued)."""
        if page.after_cursor:
            self.redis.set(self.key, page.after_cursor)

    def poll_once(self, enqueue: Callable[[list[TicketEvent]], object]) -> list[TicketEvent]:
        """Fetch one page, enqueue its events (one call), then advance the cursor; returns the events.
        If fetching or enqueueing raises, the cursor stays put and the page comes again."""
        return self.poll_page(enqueue).events

    def run(self, enqueue: Callable[[list[TicketEvent]], object], *, interval_s: float = 60,
            stop: threading.Event | None = None, max_backoff_s: float = 300) -> None:
        """Poll until `stop` is set: pages back to back while behind, then every `interval_s`.
        429 waits Retry-After; other vendor errors back off exponentially."""
        def one_pass() -> float:
            page = self.poll_page(enqueue)
            return interval_s if page.end_of_stream else 0.0  # behind: the next page at once

        poll_forever(one_pass, "zendesk", stop, max_backoff_s)

    def poll_page(self, enqueue: Callable[[list[TicketEvent]], object]) -> Page:
        """poll_once, returning the whole page (events, skipped, end_of_stream)."""
        page = self.fetch_page()
        enqueue(page.events)
        self.commit(page)
        return page

    def _event(self, ticket: Mapping[str, Any], sideloads: Mapping[str, Any]) -> tuple[TicketEvent | None, str]:
        if ticket.get("status") == "deleted":
            return None, "deleted"
        ticket_id = int(ticket["id"])
        comments = self.http.get(f"tickets/{ticket_id}/comments.json", {"sort": "-created_at", "page[size]": 100},
                                 op=f"GET comments of ticket {ticket_id}").get("comments") or []
        event = from_api(ticket, comments, **sideloads)
        if not event.text:
            return None, "no public comment"
        if event.changed_by == self.bot_user_id:
            return None, "latest public comment is the bot's"
        return event, ""
