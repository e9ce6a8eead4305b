"""POST /slack/events on `triage serve`: Slack's events, slash commands, shortcuts and interactivity.

Bolt verifies each request's signature (X-Slack-Signature, with a 5-minute window on
X-Slack-Request-Timestamp: older requests are refused as replays, 401) and answers. Bolt's App is
synchronous: it runs in the thread pool so one slow request never holds up the event loop.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from slack_bolt import App
from slack_bolt.adapter.starlette.handler import to_bolt_request, to_starlette_response
from starlette.concurrency import run_in_threadpool

PATH = "/slack/events"


def slack_router(app: App, max_body_bytes: int = 1_000_000) -> APIRouter:
    router = APIRouter()

    @router.post(PATH, tags=["slack"], summary="Slack: events, /triage, shortcuts, buttons, modals (signed)")
    async def slack_events(request: Request) -> Response:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_body_bytes:
            return JSONResponse({"error": f"body over {max_body_bytes} bytes"}, status_code=413)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_body_bytes:
                return JSONResponse({"error": f"body over {max_body_bytes} bytes"}, status_code=413)
        bolt_request = to_bolt_request(request, bytes(body))
        return to_starlette_response(await run_in_threadpool(app.dispatch, bolt_request))

    return router
