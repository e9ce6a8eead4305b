"""POST /webhooks/zendesk: verify, normalise, enqueue. Nothing else happens on the request path.

Answers: 202 queued (or already queued/triaged), 200 skipped (not a change to triage, or the bot's
own), 401 bad/stale/missing signature, 400 body is not JSON, 422 JSON but not a ticket event,
413 body over the limit, 503 Redis unreachable (Zendesk retries).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from connectors.zendesk import normalize
from connectors.zendesk.signature import SIGNATURE_HEADER, TIMESTAMP_HEADER, SignatureError, verify
from worker.events import EventError
from worker.queueing import Enqueuer, QueueUnavailable

log = logging.getLogger("triage.ingress")


def _answer(code: int, **body: object) -> JSONResponse:
    headers = {"Retry-After": "30"} if code == 503 else None
    return JSONResponse(body, status_code=code, headers=headers)


def zendesk_router(secret: str, bot_user_id: Callable[[], str], enqueuer: Enqueuer,
                   max_body_bytes: int, window_s: int = 300) -> APIRouter:
    router = APIRouter()

    @router.post("/webhooks/zendesk", status_code=202, tags=["webhooks"],
                 summary="Zendesk webhook (event-subscribed or the triage trigger body)")
    async def zendesk_webhook(request: Request) -> JSONResponse:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_body_bytes:
            return _answer(413, error=f"body over {max_body_bytes} bytes")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_body_bytes:
                return _answer(413, error=f"body over {max_body_bytes} bytes")
        try:
            verify(secret, request.headers.get(SIGNATURE_HEADER), request.headers.get(TIMESTAMP_HEADER),
                   bytes(body), window_s=window_s)
        except SignatureError as e:
            log.warning("zendesk webhook rejected: %s", e)
            return _answer(401, error=str(e))
        try:
            payload = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            return _answer(400, error=f"body is not JSON: {e.msg if hasattr(e, 'msg') else 'bad encoding'}")
        try:
            outcome = normalize.parse(payload, bot_user_id())
        except EventError as e:
            return _answer(422, error=str(e))
        if outcome.event is None:
            return _answer(200, status="skipped", reason=outcome.skipped)
        try:
            status = enqueuer.submit(outcome.event)
        except QueueUnavailable as e:
            log.error("zendesk webhook for ticket %s not queued: %s", outcome.event.ticket_id, e)
            return _answer(503, error="queue unavailable, retry later")
        return _answer(202, status=status, key=outcome.event.key)

    return router
