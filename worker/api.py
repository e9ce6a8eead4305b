"""The HTTP ingress (`triage serve`): webhooks, health, and a scoring API for other systems."""

from __future__ import annotations

import hmac
from collections.abc import Callable

from fastapi import Depends, FastAPI, Header, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from redis import Redis
from redis.exceptions import RedisError

from worker.ports import Scorer
from worker.settings import Secret

MAX_TEXTS = 256
MAX_TEXT_CHARS = 100_000


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


def create_app(redis: Redis, scorer: Callable[[], Scorer], rules_error: Callable[[], str | None],
               api_keys: tuple[Secret, ...], routers: list) -> FastAPI:
    app = FastAPI(title="helpdesk-triage", version="0.1.0",
                  description="Sentiment and urgency triage for helpdesk tickets. Webhooks enqueue; "
                              "workers score and write back.")
    for router in routers:
        app.include_router(router)

    def require_key(authorization: str = Header(default=""), x_api_key: str = Header(default="")) -> None:
        given = x_api_key or authorization.removeprefix("Bearer ").strip()
        if not api_keys:
            raise HTTPException(401, "scoring API disabled: set TRIAGE_API_KEYS on the server")
        if not given or not any(hmac.compare_digest(given, k.reveal()) for k in api_keys):
            raise HTTPException(401, "missing or wrong API key (Authorization: Bearer <key> or X-API-Key)")

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

    @app.post("/v1/score", tags=["scoring"], response_model=ScoreResponse, dependencies=[Depends(require_key)],
              summary="score texts (API key required)")
    def score(req: ScoreRequest) -> ScoreResponse:
        if any(len(t) > MAX_TEXT_CHARS for t in req.texts):
            raise HTTPException(413, f"a text is over {MAX_TEXT_CHARS} characters")
        s = scorer()
        results = s.score(req.texts)
        return ScoreResponse(model_version=s.version,
                             results=[ScoreOut(sentiment=HeadOut(**vars(r.sentiment)),
                                               urgency=HeadOut(**vars(r.urgency)), top_words=r.top_words)
                                      for r in results])

    return app
