"""The one place that wires settings, Redis, the model, the rules and the connectors together.

Dependencies are parameters, never process-wide state: build(settings) makes a Runtime, and each
entry point hands on what it needs (the worker gets rt.job_context, the ingress http_app(rt))."""

from __future__ import annotations

import functools
import gc
import logging
from dataclasses import dataclass, replace

from redis import Redis

from worker.errors import ConfigError
from worker.jobs import JobContext, ModelThread
from worker.ports import Scorer, Writer
from worker.queueing import MAX_EVENTS_PER_JOB, Enqueuer, make_queue
from worker.rules import RuleSet
from worker.rules_file import RulesReloader
from worker.settings import Settings, load_settings
from worker.store import AccountPause, RedisStore
from worker.triage import TriageService

log = logging.getLogger("triage")


def freeze_startup_objects() -> None:
    """What a process loaded at start (libraries, the model, the app) lives as long as it does:
    moved out of the garbage collector's reach, full collections stop walking it again and again."""
    gc.collect()
    gc.freeze()


WORKER_REDIS_TIMEOUT_S = 5.0  # a worker's Redis call: a slow moment is waited out, the job is not failed
# The ingress answers a vendor within its retry window (Slack's 3 s): a Redis that stops answering costs
# a delivery a 503 + Retry-After after this long (connect, and each read), and the vendor delivers again.
INGRESS_REDIS_TIMEOUT_S = 1.5


def connect_redis(settings: Settings, timeout_s: float = WORKER_REDIS_TIMEOUT_S) -> Redis:
    if not settings.redis_url:
        raise ConfigError("REDIS_URL is not set: point it at your Redis, e.g. redis://127.0.0.1:6379/0 "
                          "(`triage demo` starts its own)")
    return Redis.from_url(settings.redis_url, socket_connect_timeout=min(1.0, timeout_s), socket_timeout=timeout_s,
                          health_check_interval=30)


class Rules:
    """The current routing rules: reloaded from TRIAGE_RULES when it changes, else defaults."""

    def __init__(self, path: str, builtin: RuleSet | None = None):
        self.reloader = RulesReloader(path) if path else None
        self.builtin = builtin  # rules the configuration adds after the file's (SLACK_ALERT_CHANNEL)

    def __call__(self) -> RuleSet:
        current = self.reloader.current() if self.reloader else RuleSet()
        if self.builtin is None or not self.builtin.rules:
            return current
        return replace(current, rules=current.rules + self.builtin.rules)

    def error(self) -> str | None:
        return self.reloader.error if self.reloader else None

    def check(self) -> str | None:
        """The rules file's state now, re-read if it changed (as a worker does): None when valid."""
        self()
        return self.error()


def load_scorer(settings: Settings) -> Scorer:
    from model.runtime import TriageModel
    from worker.champion import champion_scorer
    from worker.scoring import ModelScorer

    follow = champion_scorer(settings)  # TRIAGE_MODEL_DIR is a models folder: follow its champion
    if follow is not None:
        return follow
    return ModelScorer(TriageModel.load(settings.model_dir or None, threads=settings.model_threads,
                                        batch_size=settings.batch_size))


def zendesk_client(settings: Settings):
    from zenpy import Zenpy

    z = settings.zendesk
    return Zenpy(subdomain=z.subdomain, email=z.email, token=z.api_token.reveal(), disable_cache=True, timeout=20)


def zendesk_writer(settings: Settings) -> Writer:
    from connectors.zendesk.writeback import ZendeskWriter

    return ZendeskWriter(zendesk_client(settings))


def zendesk_link(settings: Settings):
    """The agent-interface URL of a Zendesk ticket event (links in Slack alerts and /triage)."""
    subdomain = settings.zendesk.subdomain
    return lambda event: f"https://{subdomain}.zendesk.com/agent/tickets/{event.ticket_id}"


def jira_api(settings: Settings):
    from connectors.jira.transport import JiraApi

    j = settings.jira
    return JiraApi.connect(j.url, j.email, j.api_token.reveal())


def jira_priorities(settings: Settings):
    """JIRA_PRIORITY_MAP as settings parsed it (once, when they were loaded)."""
    return settings.jira.priorities


def jira_writer(settings: Settings) -> Writer:
    from connectors.jira.writeback import JiraWriter

    j = settings.jira
    return JiraWriter(jira_api(settings), bot_account_id=j.bot_account_id or None,
                      priorities=jira_priorities(settings), group_field=j.group_field)


def jira_link(settings: Settings):
    """The browse URL of a Jira issue event."""
    url = settings.jira.url
    return lambda event: f"{url}/browse/{event.ticket_id}"


def slack_api(settings: Settings, redis: Redis):
    from connectors.slack.api import ChannelPacer, SlackApi, make_client

    s = settings.slack
    return SlackApi(make_client(s.bot_token.reveal(), s.api_url), ChannelPacer(redis))


@dataclass
class Runtime:
    """Everything a worker process or the HTTP ingress needs, built once."""

    settings: Settings
    redis: Redis
    rules: Rules
    store: RedisStore
    enqueuer: Enqueuer

    @functools.cached_property
    def scorer(self) -> Scorer:
        from worker.metrics import TimedScorer, set_model_version

        scorer = TimedScorer(load_scorer(self.settings))  # triage_model_call_duration_seconds
        set_model_version(scorer.version)
        return scorer

    @functools.cached_property
    def writers(self) -> dict[str, Writer]:
        writers: dict[str, Writer] = {}
        if self.settings.zendesk.enabled:
            writers["zendesk"] = zendesk_writer(self.settings)
        if self.settings.jira.enabled:
            writers["jira"] = jira_writer(self.settings)
        if self.settings.slack.enabled:
            from connectors.slack.writer import SlackWriter

            writers["slack"] = SlackWriter(self.slack_api, self.redis, dict(self.settings.slack.reactions),
                                           self.settings.dedupe_ttl_s)
        return writers

    @functools.cached_property
    def zendesk_bot_user_id(self) -> str:
        if self.settings.zendesk.bot_user_id or not self.settings.zendesk.enabled:
            return self.settings.zendesk.bot_user_id
        return self.writers["zendesk"].bot_user_id()  # type: ignore[attr-defined]

    @functools.cached_property
    def jira_bot_account_id(self) -> str:
        if self.settings.jira.bot_account_id or not self.settings.jira.enabled:
            return self.settings.jira.bot_account_id
        return self.writers["jira"].bot_account_id()  # type: ignore[attr-defined]

    @functools.cached_property
    def service(self) -> TriageService:
        return TriageService(self.rules, self.writers, self.store, notifier=self.notifier, decisions=self.decision_log)

    @functools.cached_property
    def decision_log(self):
        """Every decision, in a capped Redis stream (worker/decision_log.py); the metrics observe it."""
        from worker.decision_log import DecisionLog
        from worker.metrics import observe_decision, observe_failure

        o = self.settings.observability
        return DecisionLog(self.redis, o.decision_log_max, o.decision_log_days, o.decision_log_text,
                           links=self.ticket_links, observer=observe_decision, failure_observer=observe_failure)

    # -- Slack ----------------------------------------------------------------------------------------

    @functools.cached_property
    def slack_api(self):
        if not self.settings.slack.enabled:
            raise ConfigError("Slack is not configured: set SLACK_BOT_TOKEN (see deploy/env.example)")
        return slack_api(self.settings, self.redis)

    @functools.cached_property
    def slack_contexts(self):
        from connectors.slack.context import ContextStore

        return ContextStore(self.redis, self.settings.dedupe_ttl_s)

    @functools.cached_property
    def notifier(self):
        """Posts notify_slack alerts (any source) when Slack is configured, else None."""
        if not self.settings.slack.enabled:
            return None
        from connectors.slack.writer import SlackNotifier

        return SlackNotifier(self.slack_api, self.slack_contexts, self.redis, self.ticket_links,
                             self.settings.dedupe_ttl_s)

    @functools.cached_property
    def ticket_links(self) -> dict:
        links = {"zendesk": zendesk_link(self.settings)} if self.settings.zendesk.enabled else {}
        if self.settings.jira.enabled:
            links["jira"] = jira_link(self.settings)
        return links

    @functools.cached_property
    def feedback(self):
        from worker.feedback import FeedbackStore

        return FeedbackStore(self.redis)

    def slack_app(self, socket_mode: bool = False):
        """The Bolt app (HTTP: signing secret; socket mode: app token). Calls auth.test."""
        from connectors.slack.app import SlackBackend, create_slack_app

        s = self.settings.slack
        fetchers, hosts, directories = {}, {}, {}
        if self.settings.zendesk.enabled:
            from connectors.zendesk.transport import is_agent

            fetchers["zendesk"] = self.writers["zendesk"].fetch_event  # type: ignore[attr-defined]
            hosts["zendesk"] = self.settings.zendesk.subdomain
            zendesk_http = self.writers["zendesk"].http  # type: ignore[attr-defined]
            directories["zendesk"] = lambda email, scope: is_agent(zendesk_http, email, every_ticket=bool(scope))
        if self.settings.jira.enabled:
            from urllib.parse import urlsplit

            fetchers["jira"] = self.writers["jira"].fetch_event  # type: ignore[attr-defined]
            hosts["jira"] = (urlsplit(self.settings.jira.url).hostname or "").lower()
            directories["jira"] = self.writers["jira"].api.can_browse  # type: ignore[attr-defined]
        backend = SlackBackend(
            api=self.slack_api, scorer=lambda: self.scorer, rules=self.rules, enqueuer=self.enqueuer,
            redis=self.redis, feedback=self.feedback, contexts=self.slack_contexts,
            watch_channels=frozenset(s.watch_channels), alert_channel=s.alert_channel,
            reactions=dict(s.reactions), fetchers=fetchers, hosts=hosts, links=self.ticket_links,
            process=self.service.process, access=self.slack_access(directories),
            second_opinion=self.second_opinion.known if self.second_opinion is not None else None)
        return create_slack_app(backend, signing_secret=s.signing_secret.reveal(), socket_mode=socket_mode)

    def slack_access(self, directories: dict):
        """Who may look up and apply tickets from Slack (connectors/slack/access.py)."""
        from connectors.slack.access import Access

        s = self.settings.slack
        return Access(self.slack_api, directories, frozenset(s.allowed_users), s.allowed_usergroups)

    @functools.cached_property
    def second_opinion(self):
        """The LLM second opinion (worker/escalation.py) when TRIAGE_LLM_BASE_URL is set, else None."""
        from worker.escalation import build_escalation

        return build_escalation(self.settings.llm, self.redis, self.enqueuer, self.scorer)

    @functools.cached_property
    def model_thread(self) -> ModelThread:
        return ModelThread(self.scorer, self.settings.batch_size)

    @functools.cached_property
    def job_context(self) -> JobContext:
        """What the worker hands each triage job (worker.jobs.TriageWorker(context=...))."""
        return JobContext(self.service, self.model_thread, self.enqueuer, AccountPause(self.redis),
                          self.settings.retry_intervals_s, rate_limit_budget_s=self.settings.job_timeout_s / 2,
                          second_opinion=self.second_opinion)


def build(settings: Settings, ingress: bool = False) -> Runtime:
    """The runtime of a worker, or (`ingress`) of an HTTP / Socket Mode ingress: its Redis client gives
    up sooner (INGRESS_REDIS_TIMEOUT_S), so a vendor gets its 503 inside its retry window."""
    redis = connect_redis(settings, INGRESS_REDIS_TIMEOUT_S if ingress else WORKER_REDIS_TIMEOUT_S)
    queue = make_queue(redis, settings.queue_name)
    builtin = None
    if settings.slack.enabled and settings.slack.alert_channel:
        from connectors.slack.rules import alert_rules

        builtin = alert_rules(settings.slack.alert_channel)
    # A revision's lease outlives the longest job that can hold it (and RQ's grace before a dead
    # worker's job runs again).
    store = RedisStore(redis, settings.dedupe_ttl_s, lease_ttl_s=settings.job_timeout_s * MAX_EVENTS_PER_JOB + 300)
    return Runtime(settings, redis, Rules(settings.rules_path, builtin), store,
                   Enqueuer(queue, settings.retry_intervals_s, settings.job_timeout_s))


def configure_logging(settings: Settings) -> None:
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def prepare_ingress(rt: Runtime) -> None:
    """What `triage serve` needs before its first request: the model loaded (readiness and the first
    /v1/score should not wait) and the bots' own ids known (to recognise the bot's own changes)."""
    rt.scorer  # noqa: B018
    if rt.settings.zendesk.enabled:
        log.info("zendesk bot user id: %s", rt.zendesk_bot_user_id)
    if rt.settings.jira.enabled:  # resolved now: webhooks must not wait for Jira
        from worker.errors import VendorAuthError, VendorError

        try:
            log.info("jira bot account id: %s", rt.jira_bot_account_id)
        except VendorAuthError:
            raise
        except VendorError as e:  # Jira down: webhooks answer 503 (Jira retries) until it is back
            log.warning("jira bot account id not known yet: %s", e)


def serve_app():
    """The ingress app of one of the `triage serve --processes N` processes (worker/serve.py). The
    parent process checked the same settings, model and credentials first."""
    settings = load_settings()
    configure_logging(settings)
    rt = build(settings, ingress=True)
    prepare_ingress(rt)
    return http_app(rt)


def http_app(rt: Runtime):
    from connectors.webhook import GroupSubmit
    from connectors.zendesk.inbound import zendesk_router
    from worker.api import create_app

    routers = []
    group = GroupSubmit(rt.enqueuer)  # webhooks of every helpdesk that arrive together share a job
    z = rt.settings.zendesk
    if z.enabled:
        routers.append(zendesk_router(z.webhook_secret.reveal(), lambda: rt.zendesk_bot_user_id, group,
                                      rt.settings.max_body_bytes, rt.settings.signature_window_s))
    j = rt.settings.jira
    if j.enabled:
        from connectors.jira.inbound import jira_router

        routers.append(jira_router(j.webhook_secret.reveal(), lambda: rt.jira_bot_account_id, group,
                                   rt.settings.max_body_bytes, jira_priorities(rt.settings)))
    s = rt.settings.slack
    if s.enabled and s.signing_secret:
        from connectors.slack.inbound import slack_router

        routers.append(slack_router(rt.slack_app(), s.signing_secret.reveal(), rt.settings.max_body_bytes,
                                    rt.settings.signature_window_s))
        log.info("slack: POST /slack/events (watching %d channel(s))", len(s.watch_channels))
    elif s.enabled:
        log.info("slack: no SLACK_SIGNING_SECRET, so no /slack/events (alerts are still posted; "
                 "Socket Mode: `triage slack --socket`)")
    from worker.metrics import DeliveryMetrics, metrics_router

    o = rt.settings.observability
    routers.append(metrics_router(rt.redis, rt.settings.queue_name, o.metrics_token.reveal()))  # GET /metrics
    from worker.admin import admin_router

    routers.append(admin_router(rt))  # /admin: the console (TRIAGE_ADMIN_TOKEN)
    app = create_app(rt.redis, lambda: rt.scorer, rt.rules.check, rt.settings.api_keys, routers,
                     max_body_bytes=rt.settings.max_body_bytes, docs=rt.settings.api_docs)
    app.add_middleware(DeliveryMetrics)  # triage_deliveries_total, triage_ingress_request_duration_seconds
    return app
