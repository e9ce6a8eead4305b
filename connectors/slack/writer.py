"""What the worker writes to Slack.

SlackWriter is the Writer port for messages from watched channels (source "slack"), so they go
through the same RQ pipeline and rules as tickets. A decision maps to Slack as:

    add_tags         -> emoji reactions: a tag written `:name:` reacts with that emoji; other tags
                        through SLACK_REACTIONS (default triage_sentiment_frustrated -> :warning:,
                        triage_urgency_high -> :rotating_light:, triage_sentiment_satisfied ->
                        :slightly_smiling_face:); unmapped tags are ignored
    note / note_text -> a threaded reply with the scores, the words behind them and the rules
    notify_slack     -> an alert in each channel named, linking the message (SlackNotifier)
    priority, group, assignee, remove_tags: no meaning on a Slack message, ignored

SlackNotifier posts the alerts for every source (a Zendesk ticket matching a notify_slack rule too),
after the write-back. Each step (one reaction, the reply, one alert per channel) is remembered in
Redis once done, so a retried job (429, crash) never posts twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from functools import partial

from redis import Redis

from connectors.slack.api import SlackApi
from connectors.slack.blocks import alert_message, channel_ref
from connectors.slack.context import ContextStore, Triaged
from connectors.slack.text import escape, reactions_for, split_item
from model.textprep import ticket_text
from worker.decision import TriageDecision, note_body
from worker.errors import VendorError, VendorRejected
from worker.events import TicketEvent
from worker.store import PREFIX

log = logging.getLogger("triage.slack")

NOTE_EVENT_TYPE = "triage_note"  # message metadata on the bot's threaded reply: finds it after a crash


class Steps:
    """Which parts of a write-back are done, per ticket revision (Redis hash, expires with dedupe)."""

    def __init__(self, redis: Redis, ttl_s: int):
        self.redis = redis
        self.ttl_s = ttl_s

    def done(self, key: str, step: str) -> bool:
        return bool(self.redis.hexists(f"{PREFIX}:slack:steps:{key}", step))

    def mark(self, key: str, step: str) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(f"{PREFIX}:slack:steps:{key}", step, "1")
        pipe.expire(f"{PREFIX}:slack:steps:{key}", self.ttl_s)
        pipe.execute()

    def run(self, key: str, step: str, fn: Callable[[], object]) -> None:
        if self.done(key, step):
            return
        fn()
        self.mark(key, step)


def _message(event: TicketEvent) -> tuple[str, str, str]:
    if event.source != "slack":
        raise VendorRejected(f"not a Slack message event: {event.source}:{event.ticket_id}")
    channel, ts = split_item(event.ticket_id)
    if not channel or not ts:
        raise VendorRejected(f"not a Slack message id (channel:ts): {event.ticket_id}")
    return channel, ts, event.extra.get("thread_ts") or ts


class SlackWriter:
    def __init__(self, api: SlackApi, redis: Redis, reactions: Mapping[str, str], ttl_s: int = 30 * 24 * 3600):
        self.api = api
        self.reactions = dict(reactions)
        self.steps = Steps(redis, ttl_s)

    def apply(self, event: TicketEvent, decision: TriageDecision) -> None:
        channel, ts, thread = _message(event)
        a = decision.actions
        for name in reactions_for(a.add_tags, self.reactions):
            self.steps.run(event.key, f"react:{name}", partial(self.api.add_reaction, channel, ts, name))
        if a.note:
            body = note_body(decision.scores, decision.matched_rules, a.note_text, a.suggested)
            meta = {"event_type": NOTE_EVENT_TYPE, "event_payload": {"key": event.key}}
            self.steps.run(event.key, "reply", lambda: self.api.post_message(channel, body, thread_ts=thread,
                                                                              metadata=meta))

    def already_applied(self, event: TicketEvent) -> bool:
        """The threaded reply carries the revision's key in its metadata."""
        channel, _, thread = _message(event)
        if self.steps.done(event.key, "reply"):
            return True
        return any(p.get("key") == event.key for p in self.api.thread_metadata(channel, thread, NOTE_EVENT_TYPE))


class SlackNotifier:
    """The Notifier port: one alert per notify_slack channel, linking the ticket or message."""

    def __init__(self, api: SlackApi, contexts: ContextStore, redis: Redis,
                 links: Mapping[str, Callable[[TicketEvent], str]] | None = None, ttl_s: int = 30 * 24 * 3600):
        self.api = api
        self.contexts = contexts
        self.links = dict(links or {})
        self.steps = Steps(redis, ttl_s)

    def link(self, event: TicketEvent) -> str:
        if event.source == "slack":
            channel, ts = split_item(event.ticket_id)
            try:
                return self.api.permalink(channel, ts)
            except VendorError as e:  # an alert without a link beats no alert
                log.warning("no permalink for the alert on %s: %s", event.ticket_id, e)
                return ""
        make = self.links.get(event.source)
        return make(event) if make else ""

    def notify(self, event: TicketEvent, decision: TriageDecision) -> None:
        channels = [c for c in decision.actions.notify_slack if not self.steps.done(event.key, f"alert:{c}")]
        if not channels:
            return
        t = Triaged.of("alert", event.key, event.source, _scored_text(event), decision, title=_title(event),
                       link=self.link(event), event=event)
        ctx_id = self.contexts.put(t)
        text, blocks = alert_message(t, ctx_id)
        for channel in channels:
            self.steps.run(event.key, f"alert:{channel}", partial(self.api.post_message, channel, text, blocks))
            log.info("alert for %s ticket %s posted to %s", event.source, event.ticket_id, channel)


def _scored_text(event: TicketEvent) -> str:
    return ticket_text(event.subject, event.text)


def _title(event: TicketEvent) -> str:
    if event.source == "slack":
        channel, _ = split_item(event.ticket_id)
        who = f" from <@{event.changed_by}>" if event.changed_by else ""
        return f"message in {channel_ref(channel)}{who}"
    subject = f": {escape(event.subject)}" if event.subject else ""
    return f"{event.source.capitalize()} ticket #{escape(event.ticket_id)}{subject}"
