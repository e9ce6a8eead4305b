"""POST /webhooks/jira: authenticate, de-duplicate, normalise, enqueue. No Jira call on the request path.

Takes Jira Cloud admin webhooks (signed: X-Hub-Signature: sha256=<hex HMAC of the raw body>) and the
JSM Automation "Send web request" body of automation_body.json (Authorization: Bearer <secret>).

Answers, as for Zendesk: 202 queued (or already queued / triaged / delivered), 200 skipped (not a
change to triage, or the bot's own), 401 bad/missing signature or token, 400 body is not JSON,
422 JSON but not an issue event, 413 body over the limit, 503 Redis unreachable (Jira retries).

Jira retries a failed delivery with the same X-Atlassian-Webhook-Identifier: a delivery answered
once (queued or skipped) is remembered for a day and its retries get 202 "duplicate" without being
parsed again. A delivery that failed (503) is not remembered, so its retry is processed.
The bot's account id is known once `triage serve` has started; if Jira was down then, it is looked
up off the event loop, so a Jira that does not answer holds up its own deliveries, not the ingress.
The delivery check and its record stay on the loop without blocking it: they go through an asyncio
Redis client whose every call is bounded (connectors.webhook.async_redis), so a Redis that stops
answering costs those deliveries a 503 after REDIS_TIMEOUT_S, and nothing else waits (a thread hop
for each cost the ingress a quarter of its rate: bench/pipeline_bench.py --helpdesk jira --skip-e2e).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import suppress

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError

from connectors.jira import normalize
from connectors.jira.normalize import DEFAULT_PRIORITIES, PriorityMap
from connectors.jira.signature import IDENTIFIER_HEADER, SignatureError, authenticate
from connectors.webhook import GroupSubmit, answer, async_redis, parse_json, read_body, submit
from worker.errors import VendorError
from worker.events import EventError
from worker.store import PREFIX

log = logging.getLogger("triage.ingress")

DELIVERY_TTL_S = 24 * 3600


def delivery_key(identifier: str) -> str:
    return f"{PREFIX}:jira:delivery:{identifier}"


def jira_router(secret: str, bot_account_id: Callable[[], str], group: GroupSubmit, max_body_bytes: int,
                priorities: PriorityMap = DEFAULT_PRIORITIES) -> APIRouter:
    router = APIRouter()
    redis = async_redis(group.enqueuer.queue.connection)
    known: list[str] = []  # the bot's account id, once looked up (it does not change)

    @router.post("/webhooks/jira", status_code=202, tags=["webhooks"],
                 summary="Jira Cloud webhook (signed) or the JSM Automation web request body (bearer token)")
    async def jira_webhook(request: Request) -> JSONResponse:
        body = await read_body(request, max_body_bytes)
        if isinstance(body, JSONResponse):
            return body
        try:
            authenticate(secret, request.headers, body)
        except SignatureError as e:
            log.warning("jira webhook rejected: %s", e)
            return answer(401, error=str(e))
        identifier = (request.headers.get(IDENTIFIER_HEADER) or "").strip()[:200]
        if identifier:
            try:
                if await redis.exists(delivery_key(identifier)):
                    return answer(202, status="duplicate", delivery=identifier)
            except (RedisError, OSError) as e:
                log.error("jira webhook delivery %s not checked: Redis unreachable (%s)", identifier, type(e).__name__)
                return answer(503, error="queue unavailable, retry later")
        payload = parse_json(body)
        if isinstance(payload, JSONResponse):
            return payload
        try:
            if not known:  # one thread hop, for the first delivery only
                known.append(await asyncio.to_thread(bot_account_id))
        except VendorError as e:
            log.error("jira webhook not processed: the bot's account id is unknown (%s)", e)
            return answer(503, error="Jira unreachable to identify the bot account, retry later")
        try:
            outcome = normalize.parse(payload, known[0], priorities)
        except EventError as e:
            return answer(422, error=str(e))
        if outcome.event is None:
            reply = answer(200, status="skipped", reason=outcome.skipped)
        else:
            reply = await submit(group, outcome.event, "jira")
        if identifier and reply.status_code < 300:
            with suppress(RedisError, OSError):  # if lost, the event key still stops a retry writing twice
                await redis.set(delivery_key(identifier), "1", ex=DELIVERY_TTL_S)
        return reply

    return router
