"""The steps every webhook route shares: bounded body, JSON, enqueue, and the answers they give.

A connector's route reads the body with `read_body` (413 past the limit, before parsing anything),
verifies its vendor's signature on those exact bytes, parses them with `parse_json` (400), turns the
payload into an `Outcome` (422 for a malformed payload, 200 "skipped" for an irrelevant one) and
hands the event to a `GroupSubmit` (202, or 503 with Retry-After when Redis is down so the vendor
retries). Error bodies are `{"error": ...}` and never quote the ticket's text.
"""

from __future__ import annotations

import asyncio
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from worker.events import TicketEvent
from worker.queueing import Enqueuer, QueueUnavailable

log = logging.getLogger("triage.ingress")

RETRY_AFTER_S = 30  # what a 503 asks the vendor to wait
REDIS_TIMEOUT_S = 2.0  # the longest a Redis call on the ingress's event loop may take before it is a 503
MAX_JSON_DEPTH = 100  # nesting levels a webhook body may have (Jira's ADF descriptions are the deepest)


def answer(code: int, **body: object) -> JSONResponse:
    headers = {"Retry-After": str(RETRY_AFTER_S)} if code == 503 else None
    return JSONResponse(body, status_code=code, headers=headers)


async def read_body(request: Request, max_body_bytes: int) -> bytes | JSONResponse:
    """The raw body, or a 413 answer as soon as it is known to be over `max_body_bytes`
    (from Content-Length, else while streaming: a lying or absent length cannot exhaust memory)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_body_bytes:
        return answer(413, error=f"body over {max_body_bytes} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_body_bytes:
            return answer(413, error=f"body over {max_body_bytes} bytes")
    return bytes(body)


def async_redis(redis: Redis, timeout_s: float = REDIS_TIMEOUT_S) -> AsyncRedis:
    """An asyncio client for the same server as `redis`, every call bounded by `timeout_s` (connect
    and each read): for the few Redis calls a route makes on the event loop itself, so that a Redis
    that stops answering holds up those requests (503), never the loop and every other request."""
    from redis import SSLConnection, UnixDomainSocketConnection
    from redis.asyncio import ConnectionPool
    from redis.asyncio import connection as aconn

    sync = redis.connection_pool
    kwargs = {k: v for k, v in sync.connection_kwargs.items()
              if k in ("host", "port", "db", "username", "password", "path", "client_name") or k.startswith("ssl_")}
    cls: type[aconn.AbstractConnection] = aconn.Connection
    if issubclass(sync.connection_class, UnixDomainSocketConnection):
        cls = aconn.UnixDomainSocketConnection
    elif issubclass(sync.connection_class, SSLConnection):
        cls = aconn.SSLConnection
    pool = ConnectionPool(connection_class=cls, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, **kwargs)
    return AsyncRedis(connection_pool=pool)


def parse_json(body: bytes | str, max_depth: int = MAX_JSON_DEPTH) -> Any | JSONResponse:
    """The parsed body, or a 400 answer saying why it is not JSON: malformed, not UTF-8, or nested
    more than `max_depth` levels (no vendor sends that; deeper, the parser itself would overflow)."""
    try:
        value = json.loads(body)
    except json.JSONDecodeError as e:
        return answer(400, error=f"body is not JSON: {e.msg}")
    except UnicodeDecodeError:
        return answer(400, error="body is not JSON: bad encoding")
    except RecursionError:
        return answer(400, error=f"body is not acceptable JSON: nested over {max_depth} levels")
    except ValueError:  # Python's guard against quadratic int parsing: over 4300 digits
        return answer(400, error="body is not acceptable JSON: a number has too many digits")
    if too_deep(value, max_depth):
        return answer(400, error=f"body is not acceptable JSON: nested over {max_depth} levels")
    return value


def too_deep(value: Any, max_depth: int) -> bool:
    """True when objects/arrays nest more than `max_depth` levels (walked without recursion)."""
    stack = [(value, 1)] if isinstance(value, (dict, list)) else []
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node
        if depth > max_depth:
            return True
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return False


class GroupSubmit:
    """Queues events from concurrent requests together: the deliveries that arrive while a group is
    being written to Redis form the next group, one job and two round trips (Enqueuer.submit_many).
    A lone delivery waits for nothing: it is sent at once. Redis calls run on one thread of their
    own, so the event loop keeps reading requests meanwhile."""

    def __init__(self, enqueuer: Enqueuer):
        self.enqueuer = enqueuer
        self._pending: list[tuple[TicketEvent, asyncio.Future[str]]] = []
        self._sending: list[tuple[TicketEvent, asyncio.Future[str]]] = []  # the group in Redis now
        self._sender: asyncio.Task[None] | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="triage-enqueue")

    async def submit(self, event: TicketEvent) -> str:
        """The enqueuer's status for the event (queued / duplicate / done); raises QueueUnavailable."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[str] = loop.create_future()
        self._pending.append((event, done))
        if self._sender is None or self._sender.done() or self._sender.get_loop() is not loop:
            self._sender = loop.create_task(self._send())
            self._sender.add_done_callback(self._stopped)
        return await done

    async def _send(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            self._sending, self._pending = self._pending, []
            try:
                statuses = await loop.run_in_executor(self._thread, self.enqueuer.submit_many,
                                                      [e for e, _ in self._sending])
            except Exception as e:  # noqa: BLE001 - each waiting request answers it (503 or 500)
                _settle(self._sending, e)
            else:
                _settle(self._sending, statuses)
            self._sending = []

    def _stopped(self, sender: asyncio.Task[None]) -> None:
        """A sender cancelled (shutdown) or broken leaves no request waiting forever: 503, the
        vendor retries."""
        if sender.cancelled() or sender.exception() is not None:
            _settle(self._sending + self._pending, QueueUnavailable("the ingress is stopping"))
            self._sending, self._pending = [], []


def _settle(group: list[tuple[TicketEvent, asyncio.Future[str]]], result: list[str] | Exception) -> None:
    """Answer each request of a group still waiting (one whose client went away is not): its
    status, or the error."""
    for i, (_, done) in enumerate(group):
        if not done.done():
            if isinstance(result, Exception):
                done.set_exception(result)
            else:
                done.set_result(result[i])


async def submit(group: GroupSubmit, event: TicketEvent, vendor: str) -> JSONResponse:
    """Queue the event: 202 with the enqueuer's status (queued / duplicate / done), or 503."""
    try:
        status = await group.submit(event)
    except QueueUnavailable as e:
        log.error("%s webhook for ticket %s not queued: %s", vendor, event.ticket_id, e)
        return answer(503, error="queue unavailable, retry later")
    return answer(202, status=status, key=event.key)
