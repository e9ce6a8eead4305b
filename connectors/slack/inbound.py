"""POST /slack/events on `triage serve`: Slack's events, slash commands, shortcuts and interactivity.

Nothing parses a request before it is known to be Slack's: the body is read with the webhooks'
`read_body` (413 past the limit), its signature checked on those exact bytes (X-Slack-Signature,
with a 5-minute window on X-Slack-Request-Timestamp: older requests are replays, 401), and only
then is it parsed, the way Bolt will parse it, so that a malformed body gets a 400 with a reason
instead of an exception inside Bolt. Bolt's App is synchronous: it runs in the thread pool so one
slow request never holds up the event loop. Bolt checks the signature again (and Socket Mode has
none to check); what it would log about a refused request is cut down to a line without the body
(connectors.slack.app.WithheldBodies).

Answers: 200 (Bolt's), 401 bad/stale/missing signature, 400 body not UTF-8 / not the JSON or
form Slack sends / nested too deep, 413 body over the limit, 503 + Retry-After when Redis is down.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from slack_bolt import App, BoltRequest
from slack_bolt.adapter.starlette.handler import to_starlette_response
from starlette.concurrency import run_in_threadpool

from connectors.slack.signature import SignatureError, verify
from connectors.webhook import answer, parse_json, read_body

PATH = "/slack/events"
MAX_FORM_FIELDS = 100  # a slash command has about 15

log = logging.getLogger("triage.ingress")


def slack_router(app: App, signing_secret: str, max_body_bytes: int = 1_000_000,
                 window_s: int = 300) -> APIRouter:
    router = APIRouter()

    @router.post(PATH, tags=["slack"], summary="Slack: events, /triage, shortcuts, buttons, modals (signed)")
    async def slack_events(request: Request) -> Response:
        body = await read_body(request, max_body_bytes)
        if isinstance(body, JSONResponse):
            return body
        try:
            verify(signing_secret, request.headers, body, window_s=window_s)
        except SignatureError as e:
            log.warning("slack request rejected: %s", e)
            return answer(401, error=str(e))
        text = checked_body(body, request.headers.get("content-type", ""))
        if isinstance(text, JSONResponse):
            return text
        try:
            bolt_request = BoltRequest(body=text, query=str(request.query_params),
                                       headers=request.headers)  # type: ignore[arg-type]
        except (ValueError, TypeError, KeyError, AttributeError) as e:  # a signed body Bolt cannot read
            log.warning("slack request not understood by Bolt (%s)", type(e).__name__)
            return answer(400, error="body is not a Slack request Bolt can read")
        return to_starlette_response(await run_in_threadpool(app.dispatch, bolt_request))

    return router


def checked_body(body: bytes, content_type: str) -> str | JSONResponse:
    """The body as text once it is known to parse the way Bolt parses it (JSON when it says so or
    starts with '{'; else a form, whose `payload` field, if any, is JSON), each JSON part an object
    nested no deeper than the webhooks allow; else a 400 saying why."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return answer(400, error="body is not UTF-8 text")
    if not text:
        return text
    if content_type.split(";", 1)[0].strip().lower() == "application/json" or text.startswith("{"):
        return _object(text, "body") or text
    try:
        form = dict(parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS))
    except ValueError:
        return answer(400, error=f"body is not a form of at most {MAX_FORM_FIELDS} fields")
    if "payload" in text and form.get("payload") is not None:
        return _object(form["payload"], "the payload field") or text
    return text


def _object(raw: str, what: str) -> JSONResponse | None:
    value: Any = parse_json(raw)
    if isinstance(value, JSONResponse):
        return value
    if not isinstance(value, dict):
        return answer(400, error=f"{what} is not a JSON object")
    return None
