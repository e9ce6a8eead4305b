"""The HTTP ingress (`triage serve`): webhooks, health, and a scoring API for other systems.

`create_app` takes the routers to mount (the webhooks; others may add their own, e.g. /metrics),
so the app factory stays one place. /v1/score checks the API key from the headers before it reads
a byte of the body, reads at most `max_body_bytes` (413), and validates what it read (400/422);
its texts are cleaned (worker.events.clean_text) before the model sees them. /docs, /redoc and
/openapi.json can be switched off (TRIAGE_API_DOCS=off) for an internet-facing deployment.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError
from redis import Redis
from redis.exceptions import RedisError

from connectors.webhook import answer, parse_json, read_body
from worker.events import clean_text
from worker.ports import Scorer
from worker.settings import Secret

MAX_TEXTS = 256
MAX_TEXT_CHARS = 100_000
DEFAULT_MAX_BODY_BYTES = 1_000_000


class ScoreRequest(BaseModel):
    texts: list[str] = Field(..., min_length=1, max_length=MAX_TEXTS,
                             description=f"1 to {MAX_TEXTS} texts (subject and body joined by a newline)")


class HeadOut(BaseModel):
    label: str = Field(description="decided label, or 'unsure' when the model abstained")
    probabilities: dict[str, float]
    confidence: float
    abstained: bool


class ScoreOut(BaseModel):
    sentiment: HeadOut
    urgency: HeadOut
    top_words: dict[str, list[tuple[str, float]]] = Field(description="per head, the words behind the label")


class ScoreResponse(BaseModel):
    model_version: str
    results: list[ScoreOut]


def key_problem(headers: Mapping[str, str], api_keys: Sequence[Secret]) -> str | None:
    """Why a request's API key (X-API-Key, or Authorization: Bearer) is refused, or None."""
    if not api_keys:
        return "scoring API disabled: set TRIAGE_API_KEYS on the server"
    given = (headers.get("x-api-key") or "").strip() or \
        (headers.get("authorization") or "").removeprefix("Bearer ").strip()
    encoded = given.encode("utf-8", "replace")
    if not given or not any(hmac.compare_digest(encoded, k.reveal().encode()) for k in api_keys):
        return "missing or wrong API key (Authorization: Bearer <key> or X-API-Key)"
    return None


def create_app(redis: Redis, scorer: Callable[[], Scorer], rules_error: Callable[[], str | None],
               api_keys: tuple[Secret, ...], routers: Sequence[APIRouter], *,
               max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, docs: bool = True) -> FastAPI:
    """The ingress app. `rules_error` gives the rules file's state now (None: valid), re-reading it
    as a worker does; `docs`: serve /docs, /redoc and /openapi.json."""
    app = FastAPI(title="helpdesk-triage", version="0.1.0",
                  description="Sentiment and urgency triage for helpdesk tickets. Webhooks enqueue; "
                              "workers score and write back.",
                  docs_url="/docs" if docs else None, redoc_url="/redoc" if docs else None,
                  openapi_url="/openapi.json" if docs else None)
    for router in routers:
        app.include_router(router)

    @app.get("/healthz", tags=["health"], summary="the process is up")
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], summary="Redis reachable, model loaded, rules valid")
    def readyz() -> JSONResponse:
        checks: dict[str, str] = {}
        try:
            redis.ping()
            checks["redis"] = "ok"
        except RedisError as e:
            checks["redis"] = f"unreachable ({type(e).__name__})"
        try:
            checks["model"] = f"ok ({scorer().version})"
        except Exception as e:  # a model that cannot load is exactly what readiness reports
            checks["model"] = f"not loaded ({e})"
        error = rules_error()
        checks["rules"] = "ok" if error is None else f"invalid: {error}"
        ready = all(v.startswith("ok") for v in checks.values())
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    @app.post("/v1/score", tags=["scoring"], response_model=ScoreResponse, summary="score texts (API key required)",
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                  "schema": ScoreRequest.model_json_schema()}}}},
              responses={401: {"description": "missing or wrong API key"}, 413: {"description": "body too large"},
                         400: {"description": "body is not JSON"}, 422: {"description": "not a score request"}})
    async def score(request: Request) -> Any:
        problem = key_problem(request.headers, api_keys)
        if problem:
            return answer(401, error=problem)
        body = await read_body(request, max_body_bytes)
        if isinstance(body, JSONResponse):
            return body
        payload = parse_json(body)
        if isinstance(payload, JSONResponse):
            return payload
        try:
            req = ScoreRequest.model_validate(payload)
        except ValidationError as e:
            where = ", ".join(".".join(str(p) for p in err["loc"]) or "body" for err in e.errors()[:3])
            return answer(422, error=f"expected {{\"texts\": [1 to {MAX_TEXTS} strings]}}; wrong: {where}")
        if any(len(t) > MAX_TEXT_CHARS for t in req.texts):
            return answer(413, error=f"a text is over {MAX_TEXT_CHARS} characters")
        texts = [clean_text(t) for t in req.texts]
        return await run_in_threadpool(_score, scorer, texts)

    return app


def _score(scorer: Callable[[], Scorer], texts: list[str]) -> ScoreResponse:
    s = scorer()
    results = s.score(texts)
    return ScoreResponse(model_version=s.version,
                         results=[ScoreOut(sentiment=HeadOut(**vars(r.sentiment)), urgency=HeadOut(**vars(r.urgency)),
                                           top_words=r.top_words) for r in results])
