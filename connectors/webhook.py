"""The steps every webhook route shares: bounded body, JSON, enqueue, and the answers they give.

A connector's route reads the body with `read_body` (413 past the limit, before parsing anything),
verifies its vendor's signature on those exact bytes, parses them with `parse_json` (400), turns the
payload into an `Outcome` (422 for a malformed payload, 200 "skipped" for an irrelevant one) and
hands the event to `submit` (202, or 503 with Retry-After when Redis is down so the vendor retries).
Error bodies are `{"error": ...}` and never quote the ticket's text.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from worker.events import TicketEvent
from worker.queueing import Enqueuer, QueueUnavailable

log = logging.getLogger("triage.ingress")

RETRY_AFTER_S = 30  # what a 503 asks the vendor to wait


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


def parse_json(body: bytes) -> Any | JSONResponse:
    """The parsed body, or a 400 answer saying why it is not JSON."""
    try:
        return json.loads(body)
    except json.JSONDecodeError as e:
        return answer(400, error=f"body is not JSON: {e.msg}")
    except UnicodeDecodeError:
        return answer(400, error="body is not JSON: bad encoding")


def submit(enqueuer: Enqueuer, event: TicketEvent, vendor: str) -> JSONResponse:
    """Queue the event: 202 with the enqueuer's status (queued / duplicate / done), or 503."""
    try:
        status = enqueuer.submit(event)
    except QueueUnavailable as e:
        log.error("%s webhook for ticket %s not queued: %s", vendor, event.ticket_id, e)
        return answer(503, error="queue unavailable, retry later")
    return answer(202, status=status, key=event.key)
