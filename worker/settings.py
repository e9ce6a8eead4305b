"""Configuration from the environment (and an optional .env), validated once at start-up.

Every setting is documented in deploy/env.example. Errors name the variable and how to fix it.
Secrets are `Secret` values: their repr is masked, so they never reach a log by accident.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

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


SLACK_API_URL = "https://slack.com/api/"
# Default tag -> emoji reactions on watched Slack messages (tags written `:name:` react as is).
SLACK_REACTIONS = (("triage_sentiment_frustrated", "warning"), ("triage_urgency_high", "rotating_light"),
                   ("triage_sentiment_satisfied", "slightly_smiling_face"))
_SLACK_CHANNEL_ID = re.compile(r"[CG][A-Z0-9]{6,}")
_EMOJI = re.compile(r"[a-z0-9_+'-]{1,100}")
_SLACK_USER_ID = re.compile(r"[UW][A-Z0-9]{6,}")
_SLACK_GROUP_ID = re.compile(r"S[A-Z0-9]{6,}")


@dataclass(frozen=True)
class SlackSettings:
    bot_token: Secret = Secret("")
    signing_secret: Secret = Secret("")  # HTTP mode (POST /slack/events on `triage serve`)
    app_token: Secret = Secret("")  # Socket Mode (`triage slack --socket`)
    watch_channels: tuple[str, ...] = ()  # channel ids whose new messages are triaged
    alert_channel: str = ""  # id or #name: frustrated + high urgency alerts from watched channels
    api_url: str = SLACK_API_URL  # the Web API base URL (tests point it at connectors/slack/sandbox.py)
    reactions: tuple[tuple[str, str], ...] = SLACK_REACTIONS  # tag -> emoji name
    allowed_users: tuple[str, ...] = ()  # user ids who may look up / apply tickets besides helpdesk agents
    allowed_usergroups: tuple[str, ...] = ()  # user group ids (S0123ABCD) whose members may too

    @property
    def enabled(self) -> bool:
        return bool(self.bot_token)


JIRA_PRIORITY_MAP = "low=Low|Lowest,normal=Medium,high=High,urgent=Highest"
_JIRA_ACCOUNT_ID = re.compile(r"[A-Za-z0-9:_-]{10,128}")


@dataclass(frozen=True)
class JiraSettings:
    url: str = ""  # https://acme.atlassian.net (the site root)
    email: str = ""  # the Atlassian account the API token belongs to (the bot)
    api_token: Secret = Secret("")
    webhook_secret: Secret = Secret("")  # signs admin webhooks; bearer token of Automation requests
    bot_account_id: str = ""  # looked up with GET /rest/api/3/myself when empty
    priority_map: str = JIRA_PRIORITY_MAP  # rules' low/normal/high/urgent -> the site's priority names
    group_field: str = ""  # field (id or name) a rule's `group` is written to; empty: not written
    poll_overlap_s: int = 300  # the poller re-reads this far behind its watermark
    # priority_map parsed, once, when these settings are made (connectors.jira.normalize.PriorityMap)
    priorities: Any = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.priorities is None:  # validates; raises ConfigError naming JIRA_PRIORITY_MAP
            from connectors.jira.normalize import PriorityMap

            object.__setattr__(self, "priorities", PriorityMap.parse(self.priority_map))

    @property
    def enabled(self) -> bool:
        return bool(self.url)


@dataclass(frozen=True)
class LLMSettings:
    """The LLM second opinion (worker/escalation.py, docs/llm.md): off while base_url is empty."""

    base_url: str = ""  # an OpenAI-compatible API root, e.g. https://api.openai.com/v1
    model: str = ""
    api_key: Secret = Secret("")
    response_format: str = "json_schema"  # strict structured outputs; json_object: JSON mode + validation
    timeout_s: float = 10.0  # one request
    deadline_s: float = 30.0  # the longest an escalated ticket waits for the answer; then the model decides
    concurrency: int = 4  # requests in flight per worker process
    daily_calls: int = 1000  # shared by all workers through Redis; 0: no limit
    daily_tokens: int = 0  # prompt + completion tokens a day (UTC); 0: no limit
    escalate: tuple[str, ...] = ("abstained", "language")  # of LLM_ESCALATE
    urgency_band: float = 0.1  # borderline: P(high) within this of the model's high threshold
    high_threshold: float | None = None  # None: the model's own (triage.json)
    audit_rate: float = 0.0  # share of confident decisions also asked (the model's decision stands)
    redact: bool = True  # e-mail addresses, phone and card numbers replaced before the text leaves
    cache_ttl_s: int = 7 * 24 * 3600
    max_tokens: int = 200  # of the answer
    labels_max: int = 100_000  # LLM answers kept as labels for the learning loop

    @property
    def enabled(self) -> bool:
        return bool(self.base_url)


LLM_ESCALATE = ("abstained", "language", "borderline")


@dataclass(frozen=True)
class Settings:
    redis_url: str = ""  # empty: `triage demo` starts its own Redis; serve/worker need one
    rules_path: str = ""  # empty: default tags only
    model_dir: str = ""  # empty: the shipped model
    model_threads: int = 1
    batch_size: int = 1  # tickets per model call; see model/runtime.py on int8 and batching
    queue_name: str = "triage"
    job_timeout_s: int = 120
    retry_intervals_s: tuple[int, ...] = (10, 60, 300, 900)
    max_body_bytes: int = 1_000_000
    signature_window_s: int = 300
    dedupe_ttl_s: int = 30 * 24 * 3600
    api_keys: tuple[Secret, ...] = ()
    log_level: str = "INFO"
    api_docs: bool = True  # serve /docs, /redoc and /openapi.json (TRIAGE_API_DOCS=off hides them)
    zendesk: ZendeskSettings = field(default_factory=lambda: ZendeskSettings("", "", Secret(""), Secret("")))
    slack: SlackSettings = field(default_factory=SlackSettings)
    jira: JiraSettings = field(default_factory=JiraSettings)
    llm: LLMSettings = field(default_factory=LLMSettings)
    observability: ObservabilitySettings = field(default_factory=lambda: ObservabilitySettings())


PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"


@dataclass(frozen=True)
class ObservabilitySettings:
    """The decision log, /metrics, the drift monitor and the admin console (docs/observability.md)."""

    decision_log_max: int = 100_000  # entries kept in the decision log stream (oldest trimmed first)
    decision_log_days: int = 30  # and none older than this
    decision_log_text: bool = False  # keep each ticket's subject and text (customer data): opt-in
    metrics_token: Secret = Secret("")  # Bearer token /metrics asks for; empty: open
    metrics_port: int = 0  # each worker's /metrics port (deploy/ sets 9100); 0: none
    admin_token: Secret = Secret("")  # the console's sign-in token; empty: /admin is off
    console_url: str = ""  # the console's public base URL, for links in alerts
    pagerduty_routing_key: Secret = Secret("")  # Events API v2 integration key; empty: no PagerDuty
    pagerduty_url: str = PAGERDUTY_EVENTS_URL
    monitor_channel: str = ""  # Slack channel of monitor alerts (default SLACK_ALERT_CHANNEL)
    monitor_interval_s: int = 60
    drift_psi: float = 0.2
    surge_min_count: int = 20
    surge_factor: float = 2.0
    baseline_hours: int = 168


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


def _switch(get: Callable[[str], str], name: str, default: bool) -> bool:
    raw = get(name).lower()
    if not raw:
        return default
    if raw not in ("on", "off", "1", "0", "true", "false", "yes", "no"):
        raise ConfigError(f"{name}={raw!r}: use on or off")
    return raw in ("on", "1", "true", "yes")


def model_dir_setting(env: Mapping[str, str] | None = None) -> str:
    """TRIAGE_MODEL_DIR alone, checked as load_settings checks it: for the model commands, which need
    no other setting. Empty: the shipped model."""
    path = (os.environ if env is None else env).get("TRIAGE_MODEL_DIR", "").strip()
    if path and not Path(path).exists():
        raise ConfigError(f"TRIAGE_MODEL_DIR={path!r}: no such file or folder")
    return path


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
        batch_size=_int(env, "TRIAGE_BATCH_SIZE", 1, low=1),
        queue_name=get("TRIAGE_QUEUE") or "triage",
        job_timeout_s=_int(env, "TRIAGE_JOB_TIMEOUT", 120, low=1),
        retry_intervals_s=intervals,
        max_body_bytes=_int(env, "TRIAGE_MAX_BODY_BYTES", 1_000_000, low=1024),
        signature_window_s=_int(env, "TRIAGE_SIGNATURE_WINDOW", 300, low=1),
        dedupe_ttl_s=_int(env, "TRIAGE_DEDUPE_TTL", 30 * 24 * 3600, low=60),
        api_keys=tuple(Secret(k.strip()) for k in get("TRIAGE_API_KEYS").split(",") if k.strip()),
        log_level=level,
        api_docs=_switch(get, "TRIAGE_API_DOCS", True),
        zendesk=ZendeskSettings(subdomain, get("ZENDESK_EMAIL"), Secret(get("ZENDESK_API_TOKEN")),
                                Secret(get("ZENDESK_WEBHOOK_SECRET")), bot),
        slack=_slack_settings(get),
        jira=_jira_settings(get, env),
        llm=_llm_settings(get, env),
        observability=_observability_settings(get, env),
    )


def _float(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}={value:g} must be between {low:g} and {high:g}")
    return value


def _observability_settings(get: Callable[[str], str], env: Mapping[str, str]) -> ObservabilitySettings:
    text = get("TRIAGE_DECISION_LOG_TEXT").lower()
    if text not in ("", "0", "1", "true", "false", "yes", "no"):
        raise ConfigError(f"TRIAGE_DECISION_LOG_TEXT={text!r}: use 1 (keep ticket text) or 0 (the default)")
    admin = get("TRIAGE_ADMIN_TOKEN")
    if admin and len(admin) < 16:
        raise ConfigError("TRIAGE_ADMIN_TOKEN is too short: use at least 16 random characters, e.g. "
                          "`python -c 'import secrets; print(secrets.token_urlsafe(24))'`")
    for name in ("TRIAGE_CONSOLE_URL", "PAGERDUTY_EVENTS_URL"):
        url = get(name)
        if url and not url.startswith(("https://", "http://")):
            raise ConfigError(f"{name}={url!r} must be an http(s) URL")
    port = _int(env, "TRIAGE_METRICS_PORT", 0, low=0)
    if port > 65535:
        raise ConfigError(f"TRIAGE_METRICS_PORT={port} is not a port (1-65535, or 0 for none)")
    return ObservabilitySettings(
        decision_log_max=_int(env, "TRIAGE_DECISION_LOG_MAX", 100_000, low=100),
        decision_log_days=_int(env, "TRIAGE_DECISION_LOG_DAYS", 30, low=1),
        decision_log_text=text in ("1", "true", "yes"),
        metrics_token=Secret(get("TRIAGE_METRICS_TOKEN")),
        metrics_port=port,
        admin_token=Secret(admin),
        console_url=get("TRIAGE_CONSOLE_URL").rstrip("/"),
        pagerduty_routing_key=Secret(get("PAGERDUTY_ROUTING_KEY")),
        pagerduty_url=get("PAGERDUTY_EVENTS_URL") or PAGERDUTY_EVENTS_URL,
        monitor_channel=get("TRIAGE_MONITOR_SLACK_CHANNEL") or get("SLACK_ALERT_CHANNEL"),
        monitor_interval_s=_int(env, "TRIAGE_MONITOR_INTERVAL", 60, low=5),
        drift_psi=_float(env, "TRIAGE_DRIFT_PSI", 0.2, 0.01, 10.0),
        surge_min_count=_int(env, "TRIAGE_SURGE_MIN_COUNT", 20, low=1),
        surge_factor=_float(env, "TRIAGE_SURGE_FACTOR", 2.0, 1.0, 100.0),
        baseline_hours=_int(env, "TRIAGE_BASELINE_HOURS", 168, low=2),
    )


def _slack_settings(get: Callable[[str], str]) -> SlackSettings:
    bot, signing, app = get("SLACK_BOT_TOKEN"), get("SLACK_SIGNING_SECRET"), get("SLACK_APP_TOKEN")
    others = [n for n in ("SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN", "SLACK_WATCH_CHANNELS", "SLACK_ALERT_CHANNEL",
                          "SLACK_ALLOWED_USERS", "SLACK_ALLOWED_USERGROUPS")
              if get(n)]
    if others and not bot:
        raise ConfigError(f"Slack is half configured: {', '.join(others)} set but SLACK_BOT_TOKEN missing "
                          f"(see deploy/env.example)")
    if bot and not bot.startswith("xoxb-"):
        raise ConfigError("SLACK_BOT_TOKEN must be the app's Bot User OAuth Token (xoxb-...), from the app's "
                          "OAuth & Permissions page")
    if app and not app.startswith("xapp-"):
        raise ConfigError("SLACK_APP_TOKEN must be an app-level token (xapp-...) with the connections:write "
                          "scope, from the app's Basic Information page")
    channels = tuple(dict.fromkeys(c.strip() for c in get("SLACK_WATCH_CHANNELS").split(",") if c.strip()))
    for c in channels:
        if not _SLACK_CHANNEL_ID.fullmatch(c):
            raise ConfigError(f"SLACK_WATCH_CHANNELS: {c!r} is not a channel id; give ids like C0123ABCD "
                              f"(channel name > About > Channel ID at the bottom), comma-separated")
    alert = get("SLACK_ALERT_CHANNEL")
    if alert and not (_SLACK_CHANNEL_ID.fullmatch(alert) or alert.startswith("#")):
        raise ConfigError(f"SLACK_ALERT_CHANNEL={alert!r}: give a channel id (C0123ABCD) or a #name")
    url = get("SLACK_API_URL") or SLACK_API_URL
    if not url.startswith(("https://", "http://")):
        raise ConfigError(f"SLACK_API_URL={url!r} must be an http(s) URL like {SLACK_API_URL}")
    raw = get("SLACK_REACTIONS")
    reactions: tuple[tuple[str, str], ...] = SLACK_REACTIONS
    if raw.lower() == "none":
        reactions = ()
    elif raw:
        pairs = []
        for item in raw.split(","):
            tag, sep, emoji = item.strip().partition("=")
            emoji = emoji.strip().strip(":")
            if not sep or not tag.strip() or not _EMOJI.fullmatch(emoji):
                raise ConfigError(f"SLACK_REACTIONS: {item.strip()!r} is not tag=emoji, e.g. "
                                  f"triage_urgency_high=rotating_light")
            pairs.append((tag.strip().lower(), emoji))
        reactions = tuple(pairs)
    return SlackSettings(Secret(bot), Secret(signing), Secret(app), channels, alert,
                         url if url.endswith("/") else url + "/", reactions,
                         _slack_ids(get, "SLACK_ALLOWED_USERS", _SLACK_USER_ID, "user ids like U0123ABCD (profile > "
                                    "⋮ > Copy member ID)"),
                         _slack_ids(get, "SLACK_ALLOWED_USERGROUPS", _SLACK_GROUP_ID, "user group ids like S0123ABCD "
                                    "(the group's page: Copy group ID)"))


def _slack_ids(get: Callable[[str], str], name: str, pattern: re.Pattern[str], what: str) -> tuple[str, ...]:
    ids = tuple(dict.fromkeys(i.strip() for i in get(name).split(",") if i.strip()))
    for i in ids:
        if not pattern.fullmatch(i):
            raise ConfigError(f"{name}: {i!r} is not an id; give {what}, comma-separated")
    return ids


def _jira_settings(get: Callable[[str], str], env: Mapping[str, str]) -> JiraSettings:
    names = ("JIRA_URL", "JIRA_EMAIL", "JIRA_API_TOKEN")
    given = [n for n in names if get(n)]
    if given and len(given) < len(names):
        missing = ", ".join(n for n in names if n not in given)
        raise ConfigError(f"Jira is half configured: {', '.join(given)} set but {missing} missing "
                          f"(see deploy/env.example)")
    optional = [n for n in ("JIRA_WEBHOOK_SECRET", "JIRA_BOT_ACCOUNT_ID", "JIRA_PRIORITY_MAP", "JIRA_GROUP_FIELD",
                            "JIRA_POLL_OVERLAP") if get(n)]
    if optional and not given:
        raise ConfigError(f"Jira is half configured: {', '.join(optional)} set but JIRA_URL, JIRA_EMAIL and "
                          f"JIRA_API_TOKEN missing (see deploy/env.example)")
    url = get("JIRA_URL").rstrip("/")
    if url:
        parts = url.split("://", 1)
        local = len(parts) == 2 and parts[1].split(":")[0] in ("127.0.0.1", "localhost")
        if not (url.startswith("https://") or (url.startswith("http://") and local)) or "/" in parts[-1]:
            raise ConfigError(f"JIRA_URL={url!r}: give the site's root over HTTPS, e.g. https://acme.atlassian.net")
    email = get("JIRA_EMAIL")
    if email and "@" not in email:
        raise ConfigError(f"JIRA_EMAIL={email!r} must be the email of the Atlassian account the API token "
                          f"belongs to")
    bot = get("JIRA_BOT_ACCOUNT_ID")
    if bot and not _JIRA_ACCOUNT_ID.fullmatch(bot):
        raise ConfigError(f"JIRA_BOT_ACCOUNT_ID={bot!r} is not an Atlassian accountId (e.g. "
                          f"5b10ac8d82e05b22cc7d4ef5 or 557058:f58131cb-...; profile URL or GET /rest/api/3/myself)")
    priority_map = get("JIRA_PRIORITY_MAP") or JIRA_PRIORITY_MAP  # parsed (and validated) by JiraSettings
    return JiraSettings(url, email, Secret(get("JIRA_API_TOKEN")), Secret(get("JIRA_WEBHOOK_SECRET")), bot,
                        priority_map, get("JIRA_GROUP_FIELD"), _int(env, "JIRA_POLL_OVERLAP", 300, low=0))


def _llm_settings(get: Callable[[str], str], env: Mapping[str, str]) -> LLMSettings:
    url = get("TRIAGE_LLM_BASE_URL").rstrip("/")
    others = sorted(n for n in env if n.startswith("TRIAGE_LLM_") and n != "TRIAGE_LLM_BASE_URL" and get(n))
    if not url:
        if others:
            raise ConfigError(f"the LLM second opinion is half configured: {', '.join(others)} set but "
                              f"TRIAGE_LLM_BASE_URL missing (see deploy/env.example and docs/llm.md)")
        return LLMSettings()
    if not url.startswith(("https://", "http://")):
        raise ConfigError(f"TRIAGE_LLM_BASE_URL={url!r} must be the http(s) root of an OpenAI-compatible API, "
                          f"e.g. https://api.openai.com/v1 or http://127.0.0.1:11434/v1 (Ollama)")
    model = get("TRIAGE_LLM_MODEL")
    if not model:
        raise ConfigError("TRIAGE_LLM_MODEL is missing: name the model the endpoint serves (e.g. gpt-4o-mini, "
                          "or the name `GET <base URL>/models` lists)")
    fmt = get("TRIAGE_LLM_RESPONSE_FORMAT") or "json_schema"
    if fmt not in ("json_schema", "json_object"):
        raise ConfigError(f"TRIAGE_LLM_RESPONSE_FORMAT={fmt!r}: use json_schema (structured outputs) or "
                          f"json_object (JSON mode, for endpoints without json_schema)")
    escalate = tuple(dict.fromkeys(w.strip().lower() for w in
                                   (get("TRIAGE_LLM_ESCALATE") or "abstained,language").split(",") if w.strip()))
    if escalate == ("none",):
        escalate = ()
    for what in escalate:
        if what not in LLM_ESCALATE:
            raise ConfigError(f"TRIAGE_LLM_ESCALATE: {what!r} is not one of {', '.join(LLM_ESCALATE)} (or none)")
    redact = (get("TRIAGE_LLM_REDACT") or "1").lower()
    if redact not in ("0", "1", "true", "false", "yes", "no"):
        raise ConfigError(f"TRIAGE_LLM_REDACT={redact!r}: use 1 (the default: redact e-mails, phones, cards) or 0")
    threshold = get("TRIAGE_LLM_HIGH_THRESHOLD")
    s = LLMSettings(
        base_url=url, model=model, api_key=Secret(get("TRIAGE_LLM_API_KEY")), response_format=fmt,
        timeout_s=_float(env, "TRIAGE_LLM_TIMEOUT", 10.0, 0.1, 600.0),
        deadline_s=_float(env, "TRIAGE_LLM_DEADLINE", 30.0, 0.5, 3600.0),
        concurrency=_int(env, "TRIAGE_LLM_CONCURRENCY", 4, low=1),
        daily_calls=_int(env, "TRIAGE_LLM_DAILY_CALLS", 1000, low=0),
        daily_tokens=_int(env, "TRIAGE_LLM_DAILY_TOKENS", 0, low=0),
        escalate=escalate,
        urgency_band=_float(env, "TRIAGE_LLM_URGENCY_BAND", 0.1, 0.0, 0.5),
        high_threshold=_float(env, "TRIAGE_LLM_HIGH_THRESHOLD", 0.5, 0.0, 1.0) if threshold else None,
        audit_rate=_float(env, "TRIAGE_LLM_AUDIT_RATE", 0.0, 0.0, 1.0),
        redact=redact in ("1", "true", "yes"),
        cache_ttl_s=_int(env, "TRIAGE_LLM_CACHE_TTL", 7 * 24 * 3600, low=60),
        max_tokens=_int(env, "TRIAGE_LLM_MAX_TOKENS", 200, low=50),
        labels_max=_int(env, "TRIAGE_LLM_LABELS_MAX", 100_000, low=0),
    )
    if s.concurrency > 64:
        raise ConfigError(f"TRIAGE_LLM_CONCURRENCY={s.concurrency}: at most 64 requests in flight per worker")
    return s


def describe(settings: Settings) -> dict[str, object]:
    """Settings for a start-up log line: secrets masked."""
    out: dict[str, object] = {}
    for f in fields(settings):
        value = getattr(settings, f.name)
        out[f.name] = repr(value) if isinstance(value, (ZendeskSettings, SlackSettings, JiraSettings,
                                                        ObservabilitySettings)) else value
    return out
