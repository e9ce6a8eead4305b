"""POST /webhooks/zendesk: verify, normalise, enqueue. Nothing else happens on the request path.

Answers: 202 queued (or already queued/triaged), 200 skipped (not a change to triage, or the bot's
own), 401 bad/stale/missing signature, 400 body is not JSON, 422 JSON but not a ticket event,
413 body over the limit, 503 Redis unreachable (Zendesk retries).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from connectors.webhook import GroupSubmit, answer, parse_json, read_body, submit
from connectors.zendesk import normalize
from connectors.zendesk.signature import SIGNATURE_HEADER, TIMESTAMP_HEADER, SignatureError, verify
from worker.events import EventError

log = logging.getLogger("triage.ingress")


def zendesk_router(secret: str, bot_user_id: Callable[[], str], group: GroupSubmit,
                   max_body_bytes: int, window_s: int = 300) -> APIRouter:
    router = APIRouter()

    @router.post("/webhooks/zendesk", status_code=202, tags=["webhooks"],
                 summary="Zendesk webhook (event-subscribed or the triage trigger body)")
    async def zendesk_webhook(request: Request) -> JSONResponse:
        body = await read_body(request, max_body_bytes)
        if isinstance(body, JSONResponse):
            return body
        try:
            verify(secret, request.headers.get(SIGNATURE_HEADER), request.headers.get(TIMESTAMP_HEADER),
                   body, window_s=window_s)
        except SignatureError as e:
            log.warning("zendesk webhook rejected: %s", e)
            return answer(401, error=str(e))
        payload = parse_json(body)
        if isinstance(payload, JSONResponse):
            return payload
        try:
            outcome = normalize.parse(payload, bot_user_id())
        except EventError as e:
            return answer(422, error=str(e))
        if outcome.event is None:
            return answer(200, status="skipped", reason=outcome.skipped)
        return await submit(group, outcome.event, "zendesk")

    return router
