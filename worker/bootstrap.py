"""The one place that wires settings, Redis, the model, the rules and the connectors together."""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

from redis import Redis

from worker.errors import ConfigError
from worker.jobs import BatchScorer
from worker.ports import Scorer, Writer
from worker.queueing import Enqueuer, make_queue
from worker.rules import RuleSet
from worker.rules_file import RulesReloader
from worker.settings import Settings, load_settings
from worker.store import Store
from worker.triage import TriageService

log = logging.getLogger("triage")


def connect_redis(settings: Settings) -> Redis:
    if not settings.redis_url:
        raise ConfigError("REDIS_URL is not set: point it at your Redis, e.g. redis://127.0.0.1:6379/0 "
                          "(`triage demo` starts its own)")
    return Redis.from_url(settings.redis_url, socket_connect_timeout=1, socket_timeout=5,
                          health_check_interval=30)


class Rules:
    """The current routing rules: reloaded from TRIAGE_RULES when it changes, else defaults."""

    def __init__(self, path: str):
        self.reloader = RulesReloader(path) if path else None

    def __call__(self) -> RuleSet:
        return self.reloader.current() if self.reloader else RuleSet()

    def error(self) -> str | None:
        return self.reloader.error if self.reloader else None


def load_scorer(settings: Settings) -> Scorer:
    from model.runtime import TriageModel
    from worker.scoring import ModelScorer

    return ModelScorer(TriageModel.load(settings.model_dir or None, threads=settings.model_threads,
                                        batch_size=settings.batch_size))


def zendesk_client(settings: Settings):
    from zenpy import Zenpy

    z = settings.zendesk
    return Zenpy(subdomain=z.subdomain, email=z.email, token=z.api_token.reveal(), disable_cache=True, timeout=20)


def zendesk_writer(settings: Settings) -> Writer:
    from connectors.zendesk.writeback import ZendeskWriter

    return ZendeskWriter(zendesk_client(settings))


@dataclass
class Runtime:
    """Everything a worker process or the HTTP ingress needs, built once."""

    settings: Settings
    redis: Redis
    rules: Rules
    store: Store
    enqueuer: Enqueuer

    @functools.cached_property
    def scorer(self) -> Scorer:
        return load_scorer(self.settings)

    @functools.cached_property
    def writers(self) -> dict[str, Writer]:
        writers: dict[str, Writer] = {}
        if self.settings.zendesk.enabled:
            writers["zendesk"] = zendesk_writer(self.settings)
        return writers

    @functools.cached_property
    def zendesk_bot_user_id(self) -> str:
        if self.settings.zendesk.bot_user_id or not self.settings.zendesk.enabled:
            return self.settings.zendesk.bot_user_id
        return self.writers["zendesk"].bot_user_id()  # type: ignore[attr-defined]

    @functools.cached_property
    def service(self) -> TriageService:
        return TriageService(self.rules, self.writers, self.store)

    @functools.cached_property
    def batch_scorer(self) -> BatchScorer:
        return BatchScorer(self.scorer, self.store, self.enqueuer.queue, self.settings.batch_size)


def build(settings: Settings) -> Runtime:
    redis = connect_redis(settings)
    queue = make_queue(redis, settings.queue_name)
    return Runtime(settings, redis, Rules(settings.rules_path), Store(redis, settings.dedupe_ttl_s),
                   Enqueuer(queue, settings.retry_intervals_s, settings.job_timeout_s))


_runtime: Runtime | None = None


def runtime() -> Runtime:
    """The process's Runtime, built from the environment on first use (RQ jobs call this)."""
    global _runtime
    if _runtime is None:
        _runtime = build(load_settings())
    return _runtime


def install(rt: Runtime) -> None:
    """Use this Runtime for the process (the CLI and tests build one explicitly)."""
    global _runtime
    _runtime = rt


def http_app(rt: Runtime):
    from connectors.zendesk.inbound import zendesk_router
    from worker.api import create_app

    routers = []
    z = rt.settings.zendesk
    if z.enabled:
        routers.append(zendesk_router(z.webhook_secret.reveal(), lambda: rt.zendesk_bot_user_id, rt.enqueuer,
                                      rt.settings.max_body_bytes, rt.settings.signature_window_s))
    return create_app(rt.redis, lambda: rt.scorer, rt.rules.error, rt.settings.api_keys, routers)
