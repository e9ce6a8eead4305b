"""The Slack app (Bolt): /triage, the "Triage this message" shortcut, channel watch, feedback.

Every request is acknowledged at once (Slack's 3-second limit): the ack functions only parse and
validate. Slow work (scoring, a helpdesk lookup, a write-back) runs in Bolt's lazy listeners after
the ack and answers through the request's response_url; every failure becomes a clear ephemeral
message, never a timeout.

    /triage <text> | <ticket id or URL> | help
    message shortcut "Triage this message"        (callback_id triage_message)
    message events in SLACK_WATCH_CHANNELS         -> the RQ pipeline (source "slack"), once each
    buttons Apply / Wrong sentiment / Wrong urgency / Correct?  -> write-back, feedback modal
    modal submission                               -> worker.feedback (durable), message updated

The same App serves HTTP (POST /slack/events on `triage serve`: connectors/slack/inbound.py checks
each signature, with a 5-minute replay window, before anything parses the body; Bolt checks it
again) and Socket Mode (`triage slack --socket`). Ticket lookups and Apply are for helpdesk agents
only (connectors/slack/access.py); a text or a message anyone may triage.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from redis import Redis
from redis.exceptions import RedisError
from slack_bolt import App, BoltResponse
from slack_bolt.error import BoltError

from connectors.slack import blocks as ui
from connectors.slack.access import Access
from connectors.slack.api import SlackApi
from connectors.slack.context import ContextStore, ContextUnavailable, Triaged
from connectors.slack.text import (
    MAX_TEXT_CHARS,
    Request,
    escape,
    is_new_message,
    message_event,
    parse_command,
    text_item,
)
from model.textprep import ticket_text
from worker.decision import Scores
from worker.errors import (
    ConfigError,
    RateLimited,
    TriageError,
    VendorAuthError,
    VendorError,
    VendorRejected,
)
from worker.events import TicketEvent
from worker.feedback import HEADS, Feedback, FeedbackError, FeedbackStore
from worker.ports import Scorer
from worker.queueing import Enqueuer, QueueUnavailable
from worker.rules import RuleSet
from worker.store import PREFIX
from worker.triage import TriageResult, decide

log = logging.getLogger("triage.slack")

HELPDESK_NAMES = {"zendesk": "Zendesk", "jira": "Jira"}


@dataclass
class SlackBackend:
    """What the Slack app needs from the rest of the system (bootstrap builds it)."""

    api: SlackApi
    scorer: Callable[[], Scorer]
    rules: Callable[[], RuleSet]
    enqueuer: Enqueuer
    redis: Redis
    feedback: FeedbackStore
    contexts: ContextStore
    watch_channels: frozenset[str] = frozenset()
    alert_channel: str = ""
    reactions: Mapping[str, str] = field(default_factory=dict)
    # helpdesk -> fetch a ticket by id as an event (ZendeskWriter.fetch_event)
    fetchers: Mapping[str, Callable[[str], TicketEvent]] = field(default_factory=dict)
    hosts: Mapping[str, str] = field(default_factory=dict)  # helpdesk -> its subdomain (URL checks)
    links: Mapping[str, Callable[[TicketEvent], str]] = field(default_factory=dict)  # helpdesk -> ticket URL
    # Apply: the worker's use case (TriageService.process); None: no write-back from Slack
    process: Callable[[TicketEvent, Callable[[TicketEvent], Scores]], TriageResult] | None = None
    # who may look up and apply tickets, and whose corrections are training data; None: nobody may
    access: Access | None = None
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    event_dedupe_s: int = 24 * 3600  # Slack retries an event for about an hour; remember it a day
    # the LLM second opinion's cached answer, as the worker would use it (Escalation.known); never asks
    second_opinion: Callable[[TicketEvent, Scores], Scores] | None = None


BOLT_LOGGER = "triage.slack.bolt"
RETRY_AFTER_S = 30  # what a 503 asks Slack to wait (as the webhooks do)


class WithheldBodies(logging.Filter):
    """Bolt logs a refused request with its whole body ("Invalid request signature detected (...,
    body: ...)"), and a few other messages with parts of one: message texts are customer data. Such a
    record keeps its first words and loses the rest."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "body" in message or "({" in message:
            head = message.split("(", 1)[0].strip()
            record.msg, record.args = f"{head} (details withheld: they may quote a message)", None
        return True


def quiet_bolt_logs() -> logging.Logger:
    """The base logger Bolt's loggers copy their filters from, and Bolt's own loggers that already
    exist, all with WithheldBodies."""
    base = logging.getLogger(BOLT_LOGGER)
    loggers = [base, *(logging.getLogger(name) for name in list(logging.root.manager.loggerDict)
                       if name.startswith("slack_bolt"))]
    for logger in loggers:
        if not any(isinstance(f, WithheldBodies) for f in logger.filters):
            logger.addFilter(WithheldBodies())
    return base


def create_slack_app(backend: SlackBackend, *, signing_secret: str = "", socket_mode: bool = False,
                     token_verification: bool = True, executor: ThreadPoolExecutor | None = None) -> App:
    """The Bolt app. Raises ConfigError when Slack refuses the bot token (auth.test at start-up)."""
    client = backend.api.client
    try:
        app = App(client=client, signing_secret=signing_secret or None,
                  request_verification_enabled=not socket_mode, token_verification_enabled=token_verification,
                  process_before_response=True, raise_error_for_unhandled_request=False,
                  listener_executor=executor or ThreadPoolExecutor(8, thread_name_prefix="slack-lazy"),
                  logger=quiet_bolt_logs())
    except BoltError as e:
        raise ConfigError(f"Slack refused SLACK_BOT_TOKEN at start-up (auth.test): {e}") from None
    quiet_bolt_logs()  # the loggers Bolt made meanwhile
    _Handlers(backend).register(app)
    app.error(_listener_failed)
    return app


def _listener_failed(error: Exception, logger: logging.Logger) -> BoltResponse | None:
    """A listener that ran before the answer failed. Redis down: 503 with Retry-After, as the
    webhooks answer, so Slack delivers the event again later; anything else: Bolt's 500."""
    if isinstance(error, (QueueUnavailable, RedisError, ContextUnavailable)):
        log.error("slack request not handled: Redis unreachable (%s)", type(error).__name__)
        return BoltResponse(status=503, body=json.dumps({"error": "queue unavailable, retry later"}),
                            headers={"Content-Type": "application/json", "Retry-After": str(RETRY_AFTER_S)})
    ref = secrets.token_hex(3)
    log.error("slack listener failed (ref %s): %s", ref, type(error).__name__, exc_info=error)
    return BoltResponse(status=500, body=json.dumps({"error": f"internal error (ref {ref})"}),
                        headers={"Content-Type": "application/json"})


class _Handlers:
    def __init__(self, b: SlackBackend):
        self.b = b

    def register(self, app: App) -> None:
        app.command(ui.COMMAND)(ack=self.command_ack, lazy=[self.command_work])
        app.shortcut(ui.SHORTCUT)(ack=_ack, lazy=[self.shortcut_work])
        app.event("message")(self.on_message)
        app.action(ui.ACTION_OPEN)(_ack)
        app.action(ui.ACTION_APPLY)(ack=_ack, lazy=[self.apply_work])
        app.action(re.compile(r"^triage_(wrong_sentiment|wrong_urgency|correct)$"))(
            ack=_ack, lazy=[self.open_feedback])
        app.view(ui.FEEDBACK_VIEW)(ack=self.feedback_ack, lazy=[self.feedback_update])

    # -- /triage ------------------------------------------------------------------------------------

    def _check(self, req: Request) -> str | None:
        """Why a /triage request cannot be served, or None."""
        if req.kind == "error":
            return req.text
        if req.kind == "ticket":
            name = HELPDESK_NAMES.get(req.source, req.source)
            if req.source not in self.b.fetchers:
                return f"{name} is not connected to this bot, so /triage cannot look up ticket {req.ticket_id}. " \
                       f"Paste the ticket's text instead."
            host = self.b.hosts.get(req.source, "")
            if req.host and host and req.host != host:
                shown = (lambda h: f"{h}.zendesk.com") if req.source == "zendesk" else (lambda h: h)
                return f"That ticket is in {shown(req.host)}; this bot is connected to {shown(host)}."
        return None

    def command_ack(self, ack: Callable[..., Any], command: dict[str, Any]) -> None:
        req = parse_command(command.get("text", ""))
        problem = self._check(req)
        if req.kind == "help":
            ack(ui.help_message(sorted(self.b.watch_channels), self.b.alert_channel, list(self.b.fetchers)))
        elif problem:
            ack(response_type="ephemeral", text=f":warning: {problem}")
        elif req.kind == "ticket":
            name = HELPDESK_NAMES.get(req.source, req.source)
            ack(response_type="ephemeral", text=f":hourglass_flowing_sand: Looking up {name} ticket "
                                                f"{req.ticket_id}…")
        else:
            ack()

    def command_work(self, command: dict[str, Any]) -> None:
        req = parse_command(command.get("text", ""))
        if req.kind not in ("text", "ticket") or self._check(req):
            return  # answered by the ack
        url = command.get("response_url", "")
        with self.answering(url, req):
            if req.kind == "text":
                event = TicketEvent(source="slack", ticket_id="text", revision=text_item(req.text)[5:],
                                    text=req.text, channel=command.get("channel_id", ""),
                                    changed_by=command.get("user_id", ""))
                t, ctx = self.triage(event, "text", text_item(req.text), "text", "*Triage of your text*")
                self.respond(url, ui.result_message(t, ctx, self.b.reactions, can_apply=False))
            else:
                refusal = self._refusal(command.get("user_id", ""), req.source, req.ticket_id)
                if refusal:
                    self.respond(url, ui.error_message(refusal))
                    return
                event = self.b.fetchers[req.source](req.ticket_id)
                link = self._link(event)
                name = HELPDESK_NAMES.get(event.source, event.source)
                ref = f"<{link}|{name} ticket #{escape(event.ticket_id)}>" if link else \
                    f"{name} ticket #{escape(event.ticket_id)}"
                title = f"*{ref}*" + (f" · {escape(event.subject)}" if event.subject else "")
                t, ctx = self.triage(event, "ticket", event.key, event.source, title, link)
                self.respond(url, ui.result_message(t, ctx, self.b.reactions, can_apply=self.b.process is not None))

    # -- the message shortcut -------------------------------------------------------------------

    def shortcut_work(self, body: dict[str, Any]) -> None:
        url = body.get("response_url", "")
        with self.answering(url, None):
            message = dict(body.get("message") or {})
            channel = (body.get("channel") or {}).get("id", "")
            message["channel"] = channel
            event = message_event(message, (body.get("team") or {}).get("id", ""))
            if not event.text:
                self.respond(url, ui.error_message("That message has no text to triage (files and attachments "
                                                   "are not read)."))
                return
            author = f" from <@{event.changed_by}>" if event.changed_by else ""
            note = "long message: the model reads its first ~4,000 characters" \
                if len(event.text) > MAX_TEXT_CHARS else ""
            t, ctx = self.triage(event, "message", event.key, "slack",
                                 f"*Message* in {ui.channel_ref(channel)}{author}")
            self.respond(url, ui.result_message(t, ctx, self.b.reactions, can_apply=False, note=note))

    # -- channel watch ----------------------------------------------------------------------------

    def on_message(self, event: dict[str, Any], body: dict[str, Any], request: Any) -> None:
        """Runs before the HTTP answer: if queueing fails, Slack gets a 500 and delivers it again."""
        channel = event.get("channel", "")
        if channel not in self.b.watch_channels or not is_new_message(event):
            return
        event_id = str(body.get("event_id") or "")
        retry = (request.headers.get("x-slack-retry-num") or [""])[0] if request is not None else ""
        key = f"{PREFIX}:slack:event:{event_id}"
        if event_id and not self.b.redis.set(key, "1", nx=True, ex=self.b.event_dedupe_s):
            log.info("slack event %s delivered again (retry %s): already taken", event_id, retry or "?")
            return
        try:
            status = self.b.enqueuer.submit(message_event(event, str(body.get("team_id") or "")))
        except Exception:
            if event_id:
                self._forget(key)
            raise
        log.info("slack message %s in %s: %s%s", event.get("ts"), channel, status,
                 f" (retry {retry})" if retry else "")

    def _forget(self, key: str) -> None:
        with suppress(RedisError):
            self.b.redis.delete(key)

    # -- buttons ------------------------------------------------------------------------------------

    def _context(self, url: str, action: dict[str, Any]) -> tuple[str, Triaged] | None:
        ctx_id = str(action.get("value") or "")
        t = self.b.contexts.get(ctx_id) if ctx_id else None
        if t is None:
            self.respond(url, _ephemeral_note("This triage is too old to act on (kept 30 days): run /triage "
                                              "again."))
            return None
        return ctx_id, t

    def apply_work(self, body: dict[str, Any], action: dict[str, Any]) -> None:
        url = body.get("response_url", "")
        with self.answering(url, None):
            found = self._context(url, action)
            if found is None:
                return
            ctx_id, t = found
            shown = t.ticket_event
            if shown is None or self.b.process is None:
                self.respond(url, _ephemeral_note("Nothing to apply here: Apply writes a helpdesk ticket back."))
                return
            refusal = self._refusal((body.get("user") or {}).get("id", ""), shown.source, shown.ticket_id)
            if refusal:
                self.respond(url, _ephemeral_note(refusal))
                return
            fetch = self.b.fetchers.get(shown.source)
            current = fetch(shown.ticket_id) if fetch else shown
            if current.revision != shown.revision:
                self.respond(url, _ephemeral_note(
                    f"Ticket {shown.ticket_id} changed since this triage (a new comment): run "
                    f"/triage {shown.ticket_id} again to see its new scores."))
                return
            scores = t.score
            outcome = self.b.process(current, lambda _e: scores)
            user = body.get("user") or {}
            try:
                self.b.feedback.record(Feedback(item=t.item, text=t.text, model=_labels(scores), by=user.get("id", ""),
                                                by_name=user.get("username", "") or user.get("name", ""),
                                                via="apply", source=t.source, model_version=scores.model_version,
                                                confidence=_confidences(scores), agent=True))
            except FeedbackError as e:
                log.warning("apply of %s not recorded as feedback: %s", t.item, e)
            note = _outcome_note(outcome, user.get("id", ""))
            self.respond(url, ui.result_message(t, ctx_id, self.b.reactions, can_apply=False, note=note))

    def open_feedback(self, body: dict[str, Any], action: dict[str, Any]) -> None:
        url = body.get("response_url", "")
        with self.answering(url, None):
            found = self._context(url, action)
            if found is None:
                return
            ctx_id, t = found
            agent = self._is_agent((body.get("user") or {}).get("id", ""))  # now: the modal's ack has 3 s
            action_id = action.get("action_id", "")
            asked = [h for h in HEADS if action_id == ui.ACTION_WRONG[h]] or list(HEADS)
            via = "alert" if action_id == ui.ACTION_CORRECT else t.kind
            try:
                self.b.api.open_view(body.get("trigger_id", ""),
                                     ui.feedback_modal(t, ctx_id, asked=asked, response_url=url, via=via,
                                                       agent=agent))
            except VendorRejected as e:
                if "trigger" not in str(e):
                    raise
                self.respond(url, _ephemeral_note("Slack took too long to open the form: press the button again."))

    # -- the feedback modal -------------------------------------------------------------------------

    def feedback_ack(self, ack: Callable[..., Any], body: dict[str, Any], view: dict[str, Any]) -> None:
        """Stores the verdict before closing the modal: if it cannot be stored, the person sees why."""
        meta, human = _submission(view)
        first_block = f"head_{(meta.get('asked') or list(HEADS))[0]}"
        if not human:
            ack(response_action="errors", errors={first_block: "Pick the right label"})
            return
        try:
            t = self.b.contexts.get(str(meta.get("ctx", "")))
        except ContextUnavailable:
            t = None
        if t is None:
            ack(response_action="errors", errors={first_block: "This triage is too old or storage is down: "
                                                               "run /triage again"})
            return
        user = body.get("user") or {}
        scores = t.score
        try:
            self.b.feedback.record(Feedback(item=t.item, text=t.text, model=_labels(scores), human=human,
                                            by=user.get("id", ""), by_name=user.get("username", "") or
                                            user.get("name", ""), via=str(meta.get("via", "")), source=t.source,
                                            model_version=scores.model_version, confidence=_confidences(scores),
                                            agent=meta.get("agent") is True),
                                   now=self.b.clock())
        except FeedbackError as e:
            log.error("feedback on %s not saved: %s", t.item, e)
            ack(response_action="errors", errors={first_block: "Could not save (storage unreachable): try "
                                                               "again in a moment"})
            return
        log.info("feedback on %s by %s: %s", t.item, user.get("id", ""), human)
        ack()

    def feedback_update(self, body: dict[str, Any], view: dict[str, Any]) -> None:
        """After the modal closed: show on the original message what was recorded."""
        meta, human = _submission(view)
        url = str(meta.get("url") or "")
        ctx_id = str(meta.get("ctx") or "")
        if not url or not human:
            return
        try:
            t = self.b.contexts.get(ctx_id)
            if t is None:
                return
            user_id = (body.get("user") or {}).get("id", "")
            note = ui.feedback_note(user_id, human, _labels(t.score), counted=meta.get("agent") is True)
            if meta.get("via") == "alert":
                text, blocks = ui.alert_message(t, ctx_id, note=note)
                self.b.api.respond(url, {"replace_original": True, "text": text, "blocks": blocks})
            else:
                self.b.api.respond(url, ui.result_message(t, ctx_id, self.b.reactions,
                                                          can_apply=t.kind == "ticket" and self.b.process is not None,
                                                          note=note))
        except (TriageError, RedisError) as e:  # the verdict is saved; only the message update failed
            log.warning("feedback saved but the message was not updated: %s", e)

    # -- shared -------------------------------------------------------------------------------------

    def _refusal(self, user_id: str, source: str, ticket_id: str) -> str | None:
        """Why this Slack user may not see or write this ticket (connectors.slack.access), or None."""
        if self.b.access is None:
            return "This bot is not set up to check who is a helpdesk agent, so it looks up no tickets."
        refusal = self.b.access.refusal(user_id, source, ticket_id)
        if refusal:
            log.info("slack user %s refused ticket %s:%s (not an agent)", user_id, source, ticket_id)
        return refusal

    def _is_agent(self, user_id: str) -> bool:
        return self.b.access is not None and bool(user_id) and self.b.access.is_agent(user_id)

    def triage(self, event: TicketEvent, kind: str, item: str, source: str, title: str,
               link: str = "") -> tuple[Triaged, str]:
        text = ticket_text(event.subject, event.text)
        [scores] = self.b.scorer().score([text])
        if self.b.second_opinion is not None:
            scores = self.b.second_opinion(event, scores)
        decision = decide(event, scores, self.b.rules(), self.b.clock())
        t = Triaged.of(kind, item, source, text, decision, title=title, link=link,
                       event=event if kind != "text" else None)
        return t, self.b.contexts.put(t)

    def _link(self, event: TicketEvent) -> str:
        make = self.b.links.get(event.source)
        return make(event) if make else ""

    def respond(self, url: str, message: dict[str, Any]) -> None:
        if not url:
            log.warning("no response_url to answer on")
            return
        self.b.api.respond(url, message)

    @contextmanager
    def answering(self, url: str, req: Request | None) -> Iterator[None]:
        """Turn any failure into an ephemeral message that says what happened."""
        try:
            yield
        except Exception as e:  # every path ends in a message to the person who asked
            text = _explain(e, req)
            if not isinstance(e, (TriageError, RedisError)):
                ref = secrets.token_hex(3)
                log.exception("slack request failed (ref %s)", ref)
                text += f" (ref {ref})"
            else:
                log.warning("slack request failed: %s", e)
            try:
                self.respond(url, ui.error_message(text))
            except Exception as e2:  # noqa: BLE001 - the response_url itself failed: nothing left but the log
                log.error("could not tell the user either: %s", e2)


def _ack(ack: Callable[..., Any]) -> None:
    ack()


def _ephemeral_note(text: str) -> dict[str, Any]:
    return ui.error_message(text) | {"replace_original": False}


def _labels(s: Scores) -> dict[str, str]:
    return {h: getattr(s, h).label for h in HEADS}


def _confidences(s: Scores) -> dict[str, float]:
    return {h: round(getattr(s, h).confidence, 4) for h in HEADS}


def _submission(view: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    try:
        meta = json.loads(view.get("private_metadata") or "{}")
    except ValueError:
        meta = {}
    values = (view.get("state") or {}).get("values") or {}
    human = {}
    for head in HEADS:
        chosen = ((values.get(f"head_{head}") or {}).get("label") or {}).get("selected_option") or {}
        if chosen.get("value"):
            human[head] = str(chosen["value"])
    return meta, human


def _explain(e: Exception, req: Request | None) -> str:
    ticket = req is not None and req.kind == "ticket"
    name = HELPDESK_NAMES.get(req.source, req.source) if req is not None and ticket else "the helpdesk"
    if isinstance(e, VendorError) and "Slack" in str(e):
        name = "Slack"
    subject = name[0].upper() + name[1:]
    if isinstance(e, RateLimited):
        return f"{subject} is rate limiting us: try again in {max(1, round(e.retry_after))}s."
    if isinstance(e, VendorAuthError):
        return f"{subject} refused the bot's credentials: ask your admin to check them ({e})."
    if isinstance(e, VendorRejected):
        if e.status == 404 and req is not None and ticket:
            return f"{name} ticket {req.ticket_id} was not found (or the bot's agent cannot see it)."
        return f"{subject} refused the request: {e}"
    if isinstance(e, VendorError):
        return f"{subject} is not answering right now ({e}); try again in a minute."
    if isinstance(e, (ContextUnavailable, FeedbackError, RedisError)):
        return "Triage storage (Redis) is unreachable right now; try again in a minute."
    if isinstance(e, TriageError):
        return str(e)
    if type(e).__name__ == "ModelError":
        return f"The triage model is not available on this server: {e}"
    return "Something went wrong while triaging; it is logged."


def _outcome_note(outcome: TriageResult, user: str) -> str:
    who = f"<@{user}>" if user else "you"
    if outcome.status == "written":
        return f":white_check_mark: Applied by {who}: written to the ticket as the worker would."
    if outcome.status == "recovered":
        return f":white_check_mark: Already written to the ticket (confirmed by {who})."
    if outcome.status == "nothing_to_write":
        return f":white_check_mark: Nothing to write: the ticket already has it all (checked by {who})."
    if outcome.status == "busy":
        return ":hourglass_flowing_sand: A worker is writing this ticket revision back right now: its note will " \
               "show on the ticket in a moment."
    return ":information_source: This ticket revision was already triaged and written back (by the worker or " \
           "an earlier Apply)."
