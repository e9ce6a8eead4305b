"""Configuration from the environment (and an optional .env), validated once at start-up.

Every setting is documented in deploy/env.example. Errors name the variable and how to fix it.
Secrets are `Secret` values: their repr is masked, so they never reach a log by accident.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from worker.errors import ConfigError


class Secret(str):
    """A str whose repr is masked (logs of settings objects show ***); `.reveal()` gives the value."""

    def __repr__(self) -> str:
        return "Secret('***')" if self else "Secret('')"

    def reveal(self) -> str:
        return str.__str__(self)


@dataclass(frozen=True)
class ZendeskSettings:
    subdomain: str
    email: str
    api_token: Secret
    webhook_secret: Secret
    bot_user_id: str = ""  # looked up with GET /users/me when empty

    @property
    def enabled(self) -> bool:
        return bool(self.subdomain)


@dataclass(frozen=True)
class Settings:
    redis_url: str = ""  # empty: `triage demo` starts its own Redis; serve/worker need one
    rules_path: str = ""  # empty: default tags only
    model_dir: str = ""  # empty: the shipped model
    model_threads: int = 1
    batch_size: int = 32
    queue_name: str = "triage"
    job_timeout_s: int = 120
    retry_intervals_s: tuple[int, ...] = (10, 60, 300, 900)
    max_body_bytes: int = 1_000_000
    signature_window_s: int = 300
    dedupe_ttl_s: int = 30 * 24 * 3600
    api_keys: tuple[Secret, ...] = ()
    log_level: str = "INFO"
    zendesk: ZendeskSettings = field(default_factory=lambda: ZendeskSettings("", "", Secret(""), Secret("")))


def _int(env: Mapping[str, str], name: str, default: int, low: int = 0) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None
    if value < low:
        raise ConfigError(f"{name}={value} must be at least {low}")
    return value


def load_settings(env: Mapping[str, str] | None = None, dotenv: str | None = ".env") -> Settings:
    """Read and validate every setting. `dotenv` values fill in what the environment lacks."""
    if env is None:
        if dotenv and Path(dotenv).is_file():
            from dotenv import dotenv_values

            env = {**{k: v or "" for k, v in dotenv_values(dotenv).items()}, **os.environ}
        else:
            env = os.environ
    get = lambda name: env.get(name, "").strip()  # noqa: E731

    redis_url = get("REDIS_URL")
    if redis_url and not redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"REDIS_URL={redis_url!r} must start with redis://, rediss:// or unix://")
    for name in ("TRIAGE_RULES", "TRIAGE_MODEL_DIR"):
        path = get(name)
        if path and not Path(path).exists():
            raise ConfigError(f"{name}={path!r}: no such file or folder")
    intervals_raw = get("TRIAGE_RETRY_INTERVALS")
    intervals = Settings.retry_intervals_s
    if intervals_raw:
        try:
            intervals = tuple(int(x) for x in intervals_raw.split(","))
        except ValueError:
            raise ConfigError(f"TRIAGE_RETRY_INTERVALS={intervals_raw!r}: give seconds like 10,60,300") from None
        if any(i < 0 for i in intervals):
            raise ConfigError("TRIAGE_RETRY_INTERVALS: seconds cannot be negative")
    level = (get("TRIAGE_LOG_LEVEL") or "INFO").upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(f"TRIAGE_LOG_LEVEL={level!r}: use DEBUG, INFO, WARNING or ERROR")

    zd_names = ("ZENDESK_SUBDOMAIN", "ZENDESK_EMAIL", "ZENDESK_API_TOKEN", "ZENDESK_WEBHOOK_SECRET")
    given = [n for n in zd_names if get(n)]
    if given and len(given) < len(zd_names):
        missing = ", ".join(n for n in zd_names if n not in given)
        raise ConfigError(f"Zendesk is half configured: {', '.join(given)} set but {missing} missing "
                          f"(see deploy/env.example)")
    subdomain = get("ZENDESK_SUBDOMAIN")
    if subdomain and ("." in subdomain or "/" in subdomain):
        raise ConfigError(f"ZENDESK_SUBDOMAIN={subdomain!r}: give only the subdomain, e.g. 'acme' for "
                          f"acme.zendesk.com")
    bot = get("ZENDESK_BOT_USER_ID")
    if bot and not bot.isdigit():
        raise ConfigError(f"ZENDESK_BOT_USER_ID={bot!r} must be a numeric Zendesk user id")

    return Settings(
        redis_url=redis_url,
        rules_path=get("TRIAGE_RULES"),
        model_dir=get("TRIAGE_MODEL_DIR"),
        model_threads=_int(env, "TRIAGE_MODEL_THREADS", 1, low=1),
        batch_size=_int(env, "TRIAGE_BATCH_SIZE", 32, low=1),
        queue_name=get("TRIAGE_QUEUE") or "triage",
        job_timeout_s=_int(env, "TRIAGE_JOB_TIMEOUT", 120, low=1),
        retry_intervals_s=intervals,
        max_body_bytes=_int(env, "TRIAGE_MAX_BODY_BYTES", 1_000_000, low=1024),
        signature_window_s=_int(env, "TRIAGE_SIGNATURE_WINDOW", 300, low=1),
        dedupe_ttl_s=_int(env, "TRIAGE_DEDUPE_TTL", 30 * 24 * 3600, low=60),
        api_keys=tuple(Secret(k.strip()) for k in get("TRIAGE_API_KEYS").split(",") if k.strip()),
        log_level=level,
        zendesk=ZendeskSettings(subdomain, get("ZENDESK_EMAIL"), Secret(get("ZENDESK_API_TOKEN")),
                                Secret(get("ZENDESK_WEBHOOK_SECRET")), bot),
    )


def describe(settings: Settings) -> dict[str, object]:
    """Settings for a start-up log line: secrets masked."""
    out: dict[str, object] = {}
    for f in fields(settings):
        value = getattr(settings, f.name)
        out[f.name] = repr(value) if isinstance(value, ZendeskSettings) else value
    return out
