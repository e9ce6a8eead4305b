"""The console's routes. Every page and action needs a session (else: pages redirect to the sign-in,
actions answer 401); every POST needs the session's CSRF token (form field `csrf`, or the
X-CSRF-Token header htmx sends). Pages render whole without JavaScript; an htmx request
(HX-Request) gets only the part it swaps."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, select_autoescape
from redis.exceptions import RedisError

from worker.admin import views
from worker.admin.auth import COOKIE, SESSION_S, Auth, Session
from worker.errors import TriageError

log = logging.getLogger("triage.admin")

HERE = Path(__file__).parent
STATIC = {"htmx.min.js": "text/javascript", "console.css": "text/css"}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
PAGES = (("overview", "/admin/", "Overview"), ("feed", "/admin/feed", "Feed"), ("rules", "/admin/rules", "Rules"),
         ("feedback", "/admin/feedback", "Feedback"), ("dlq", "/admin/dlq", "Dead letters"))

templates = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]),
                        trim_blocks=True, lstrip_blocks=True)
templates.filters["when"] = views.when
templates.filters["pct"] = lambda x: "-" if x is None else f"{x:.0%}"


def _secure_headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"
    return response


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _https(request: Request) -> bool:
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto", "") == "https"


class _AdminRoute(APIRoute):
    """A console route whose Redis outage is a plain 503 that says so, not a server error."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except RedisError as e:
                log.warning("admin console: Redis unreachable (%s)", type(e).__name__)
                return _secure_headers(PlainTextResponse(f"Redis unreachable ({type(e).__name__}): the console reads "
                                                         "everything from it; check REDIS_URL and Redis\n",
                                                         status_code=503))
        return answer


def admin_router(rt: Any) -> APIRouter:
    """/admin for a Runtime. With no TRIAGE_ADMIN_TOKEN every /admin path says how to turn it on."""
    router = APIRouter(prefix="/admin", include_in_schema=False, route_class=_AdminRoute)
    token = rt.settings.observability.admin_token.reveal()
    if not token:
        @router.api_route("/{rest:path}", methods=["GET", "POST"])
        def off(rest: str = "") -> Response:
            return PlainTextResponse("the admin console is off: set TRIAGE_ADMIN_TOKEN (16+ random characters) "
                                     "on `triage serve`\n", status_code=404)
        return router

    auth = Auth(token, rt.redis)
    log_ = rt.decision_log
    keep_text = rt.settings.observability.decision_log_text

    def render(request: Request, name: str, session: Session | None, status: int = 200, **ctx: Any) -> Response:
        page = templates.get_template(name).render(
            pages=PAGES, csrf=session.csrf if session else "", partial=bool(request.headers.get("hx-request")),
            now=datetime.now(UTC), **ctx)
        return _secure_headers(HTMLResponse(page, status_code=status))

    def session_of(request: Request) -> Session | None:
        return auth.session(request.cookies.get(COOKIE))

    def denied(request: Request) -> Response:
        if request.method == "GET" and not request.headers.get("hx-request"):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/admin/login?next={quote(target)}", status_code=303)
        return _secure_headers(PlainTextResponse("sign in first: /admin/login\n", status_code=401))

    async def guarded(request: Request) -> tuple[Session | None, Response | None]:
        session = session_of(request)
        if session is None:
            return None, denied(request)
        if request.method == "POST":
            form = await request.form()
            given = request.headers.get("x-csrf-token") or str(form.get("csrf") or "")
            if not auth.csrf_ok(session, given):
                return None, _secure_headers(PlainTextResponse("the form's CSRF token is missing or stale: reload "
                                                               "the page and try again\n", status_code=403))
        return session, None

    # -- static and sign-in -------------------------------------------------------------------------------

    @router.get("/static/{name}")
    def static(name: str) -> Response:
        if name not in STATIC:
            return PlainTextResponse("not found\n", status_code=404)
        return FileResponse(HERE / "static" / name, media_type=STATIC[name],
                            headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"})

    @router.get("/login")
    def login_page(request: Request, next: str = "/admin/") -> Response:
        return render(request, "login.html", None, next=_safe_next(next), error="")

    @router.post("/login")
    async def login(request: Request) -> Response:
        form = await request.form()
        nxt = _safe_next(str(form.get("next") or "/admin/"))
        client = _client(request)
        if not await run_in_threadpool(auth.attempt, client):
            return render(request, "login.html", None, status=429, next=nxt,
                          error="Too many sign-in attempts from this address: wait five minutes.")
        if not auth.token_ok(str(form.get("token") or "")):
            return render(request, "login.html", None, status=401, next=nxt, error="That is not the admin token.")
        await run_in_threadpool(auth.clear_attempts, client)
        response = RedirectResponse(nxt, status_code=303)
        response.set_cookie(COOKIE, auth.new_cookie(), max_age=SESSION_S, path="/admin", httponly=True,
                            samesite="strict", secure=_https(request))
        log.info("admin signed in from %s", client)
        return response

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        session, refused = await guarded(request)
        if refused:
            return refused
        response = RedirectResponse("/admin/login", status_code=303)
        response.delete_cookie(COOKIE, path="/admin")
        return response

    # -- pages ----------------------------------------------------------------------------------------------

    @router.get("/")
    async def overview(request: Request) -> Response:
        session, refused = await guarded(request)
        if refused:
            return refused
        scorer = rt.__dict__.get("scorer")
        data = await run_in_threadpool(views.overview, log_, rt.redis, rt.enqueuer.queue,
                                       scorer.version if scorer is not None else "", datetime.now(UTC))
        return render(request, "overview.html", session, page="overview", o=data)

    @router.get("/feed")
    async def feed(request: Request, source: str = "", label: str = "", rule: str = "", abstained: str = "",
                   before: str = "") -> Response:
        session, refused = await guarded(request)
        if refused:
            return refused
        data = await run_in_threadpool(views.feed, log_, source, label, rule, abstained, before)
        rules = [r.name for r in rt.rules().rules]
        return render(request, "feed.html", session, page="feed", f=data, rules=rules,
                      q={"source": source, "label": label, "rule": rule, "abstained": abstained})

    def rules_page(request: Request, session: Session, text: str | None = None, **ctx: Any) -> Response:
        path = rt.settings.rules_path
        if text is None:
            text = views.rules_text(path)
        status = ctx.pop("status", 200)
        if request.headers.get("hx-request"):  # the swapped part carries the error: no failed request in the console
            status = 200
        return render(request, "rules.html", session, page="rules", path=path, text=text, n=ctx.pop("n", 200),
                      status=status, **ctx)

    @router.get("/rules")
    async def rules(request: Request) -> Response:
        session, refused = await guarded(request)
        if refused:
            return refused
        assert session is not None
        return rules_page(request, session, error=rt.rules.error())

    @router.post("/rules/{action}")
    async def rules_action(request: Request, action: str) -> Response:
        session, refused = await guarded(request)
        if refused:
            return refused
        assert session is not None
        form = await request.form()
        text = str(form.get("text") or "").replace("\r\n", "\n")
        path = rt.settings.rules_path
        try:
            n = max(1, min(int(str(form.get("n") or 200)), views.DRY_RUN_MAX))
        except ValueError:
            n = 200
        parsed, error = views.check_rules(text, path)
        ctx: dict[str, Any] = {"n": n, "checked": True}
        if error is not None:
            return rules_page(request, session, text, status=422, invalid=error, lines=views.numbered(text, error.line),
                              **ctx)
        assert parsed is not None
        if action == "check":
            return rules_page(request, session, text, message=f"Valid: {len(parsed.rules)} rules.", **ctx)
        if action == "dryrun":
            decisions = await run_in_threadpool(log_.recent, n)
            result = views.dry_run(parsed, rt.rules(), rt.rules.builtin, decisions, keep_text)
            return rules_page(request, session, text, dry=result, uses_text=views.uses_text(text), **ctx)
        if action == "save":
            if not path:
                return rules_page(request, session, text, status=409, failure="No rules file is configured: set "
                                  "TRIAGE_RULES to a file's path on serve and the workers.", **ctx)
            try:
                backup = views.save_rules(path, text, datetime.now(UTC))
            except TriageError as e:
                return rules_page(request, session, text, status=409, failure=str(e), **ctx)
            log.info("rules saved from the console (%d rules); backup %s", len(parsed.rules), backup)
            return rules_page(request, session, text, message=f"Saved {len(parsed.rules)} rules. The workers load "
                              f"them within seconds; the previous file is kept as {backup}.", **ctx)
        return PlainTextResponse("unknown action: check, dryrun or save\n", status_code=404)

    @router.get("/feedback")
    async def feedback(request: Request) -> Response:
        session, refused = await guarded(request)
        if refused:
            return refused
        from worker.feedback import agreement

        def load() -> dict[str, Any]:
            verdicts = list(rt.feedback.all())
            return {"verdicts": verdicts[-100:][::-1], "agreement": agreement(verdicts, "week"),
                    "overrides": log_.overrides(100)}

        return render(request, "feedback.html", session, page="feedback", fb=await run_in_threadpool(load))

    @router.get("/feedback/export.csv")
    async def feedback_export(request: Request) -> Response:
        session, refused = await guarded(request)
        if refused:
            return refused
        from worker.feedback import export_rows, to_csv

        body = await run_in_threadpool(lambda: to_csv(export_rows(rt.feedback.all())))
        return Response(body, media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": 'attachment; filename="feedback.csv"',
                                 "Cache-Control": "no-store"})

    @router.get("/dlq")
    async def dlq(request: Request, message: str = "") -> Response:
        session, refused = await guarded(request)
        if refused:
            return refused
        from worker.dlq import list_failed

        rows = await run_in_threadpool(list_failed, rt.enqueuer.queue)
        return render(request, "dlq.html", session, page="dlq", rows=rows, job=None, message=message)

    @router.get("/dlq/{job_id}")
    async def dlq_job(request: Request, job_id: str) -> Response:
        session, refused = await guarded(request)
        if refused:
            return refused
        job = await run_in_threadpool(views.dead_letter, rt.enqueuer.queue, job_id, keep_text)
        if job is None:
            return render(request, "dlq.html", session, status=404, page="dlq", rows=None, job=None,
                          message=f"No job {job_id} in the dead-letter queue (requeued already?).")
        return render(request, "dlq.html", session, page="dlq", rows=None, job=job, message="", keep_text=keep_text)

    @router.post("/dlq/{job_id}/requeue")
    async def dlq_requeue(request: Request, job_id: str) -> Response:
        session, refused = await guarded(request)
        if refused:
            return refused
        from rq.exceptions import InvalidJobOperation, NoSuchJobError

        from worker.dlq import requeue

        try:
            await run_in_threadpool(requeue, rt.enqueuer.queue, [job_id])
        except (InvalidJobOperation, NoSuchJobError, TriageError):
            return RedirectResponse(f"/admin/dlq?message={quote(f'{job_id} is not in the dead-letter queue')}",
                                    status_code=303)
        log.info("dead letter %s requeued from the console", job_id)
        return RedirectResponse(f"/admin/dlq?message={quote(f'Requeued {job_id}.')}", status_code=303)

    return router


def _safe_next(target: str) -> str:
    """Only a path of this console: never another site (an open redirect)."""
    return target if target.startswith("/admin") and not target.startswith("//") and "\\" not in target else "/admin/"
