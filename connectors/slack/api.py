"""The Slack Web API calls the bot makes, with Slack's rate limits respected and errors mapped.

- chat.postMessage is paced to one message a second per channel (Slack's limit), across every
  process sharing the Redis: each post reserves the channel's next free second (a Lua script on
  Redis's clock), then waits for it.
- A 429 answer is retried in place after its Retry-After when that is short (<= `max_wait_s`);
  a longer wait leaves as worker.errors.RateLimited, so the RQ job is rescheduled for then.
- Every failure leaves as a worker.errors.VendorError naming the method and Slack's error code,
  never a message text or a token.
"""

from __future__ import annotations

import logging
import random
import socket
import time
import urllib.error
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from redis import Redis
from redis.exceptions import RedisError
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry import ConnectionErrorRetryHandler, RetryHandler
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.webhook import WebhookClient

from worker.errors import RateLimited, VendorAuthError, VendorError, VendorRejected, VendorUnavailable
from worker.store import PREFIX

log = logging.getLogger("triage.slack")

POST_INTERVAL_S = 1.0  # chat.postMessage: about one message per second per channel
MAX_INLINE_WAIT_S = 20.0  # longer waits go back to the queue (RateLimited) instead of blocking a worker
DEFAULT_RETRY_AFTER_S = 30.0

_AUTH_ERRORS = {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired",
                "missing_scope", "not_allowed_token_type", "no_permission", "ekm_access_denied",
                "team_access_not_granted", "access_denied"}
_RETRYABLE_ERRORS = {"internal_error", "fatal_error", "service_unavailable", "request_timeout",
                     "ratelimited"}

# KEYS[1] the channel's pacing key; ARGV[1] interval in ms. Returns how many ms to wait for the slot.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
local slot = math.max(now, last + tonumber(ARGV[1]))
redis.call('SET', KEYS[1], slot, 'PX', slot - now + tonumber(ARGV[1]) + 1000)
return slot - now
"""


def retry_after_s(headers: Mapping[str, Any] | None, default: float = DEFAULT_RETRY_AFTER_S) -> float:
    for key, value in (headers or {}).items():
        if key.lower() == "retry-after":
            raw = value[0] if isinstance(value, list | tuple) else value
            try:
                return max(0.0, float(raw))
            except (TypeError, ValueError):
                return default
    return default


class RetryAfterHandler(RateLimitErrorRetryHandler):
    """Retry a 429 after exactly its Retry-After (plus a little jitter), when that is at most
    `max_wait_s`; a longer wait is not retried here, so the call raises and the caller reschedules."""

    def __init__(self, max_retry_count: int = 2, max_wait_s: float = MAX_INLINE_WAIT_S,
                 sleep: Callable[[float], None] = time.sleep):
        super().__init__(max_retry_count=max_retry_count)
        self.max_wait_s = max_wait_s
        self.sleep = sleep

    def _can_retry(self, *, state: RetryState, request: HttpRequest, response: HttpResponse | None = None,
                   error: Exception | None = None) -> bool:
        return (response is not None and response.status_code == 429
                and retry_after_s(response.headers) <= self.max_wait_s)

    def prepare_for_next_attempt(self, *, state: RetryState, request: HttpRequest,
                                 response: HttpResponse | None = None, error: Exception | None = None) -> None:
        wait = retry_after_s(response.headers if response is not None else None)
        log.info("Slack rate limit on %s: retrying after %.1fs", request.url.rsplit("/", 1)[-1], wait)
        state.next_attempt_requested = True
        self.sleep(wait + random.uniform(0, 0.1))
        state.increment_current_attempt()


def retry_handlers(max_wait_s: float = MAX_INLINE_WAIT_S) -> list[RetryHandler]:
    return [ConnectionErrorRetryHandler(max_retry_count=1), RetryAfterHandler(max_wait_s=max_wait_s)]


def make_client(token: str, api_url: str, timeout_s: int = 10,
                max_wait_s: float = MAX_INLINE_WAIT_S) -> WebClient:
    return WebClient(token=token, base_url=api_url, timeout=timeout_s, retry_handlers=retry_handlers(max_wait_s))


def vendor_error(e: Exception, op: str) -> VendorError:
    """The VendorError for a failed Slack call (`op`: e.g. 'chat.postMessage to C0123')."""
    if isinstance(e, SlackApiError):
        status = getattr(e.response, "status_code", None)
        code = str(e.response.get("error", "") if e.response is not None else "") or f"HTTP {status}"
        if status == 429 or code == "ratelimited":
            wait = retry_after_s(getattr(e.response, "headers", None))
            return RateLimited(f"Slack rate limit on {op}; retry after {wait:g}s", retry_after=wait)
        if code in _AUTH_ERRORS or status in (401, 403):
            needed = e.response.get("needed") if e.response is not None else None
            hint = f" (the app needs the {needed} scope: add it and reinstall)" if needed else \
                " (check SLACK_BOT_TOKEN)"
            return VendorAuthError(f"Slack refused {op}: {code}{hint}", status)
        if code in _RETRYABLE_ERRORS or (status or 0) >= 500:
            return VendorUnavailable(f"Slack could not serve {op}: {code}", status)
        return VendorRejected(f"Slack rejected {op}: {code}", status)
    if isinstance(e, (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError, SlackClientError)):
        return VendorUnavailable(f"cannot reach Slack on {op} ({type(e).__name__})")
    return VendorUnavailable(f"Slack call {op} failed ({type(e).__name__})")


@contextmanager
def slack_errors(op: str) -> Iterator[None]:
    try:
        yield
    except VendorError:
        raise
    except (SlackApiError, SlackClientError, urllib.error.URLError, OSError) as e:
        raise vendor_error(e, op) from None


class ChannelPacer:
    """At most one post per `interval_s` per channel, shared through Redis by every process."""

    def __init__(self, redis: Redis | None, interval_s: float = POST_INTERVAL_S,
                 max_wait_s: float = MAX_INLINE_WAIT_S, sleep: Callable[[float], None] = time.sleep):
        self.redis = redis
        self.interval_ms = int(interval_s * 1000)
        self.max_wait_s = max_wait_s
        self.sleep = sleep
        self._script = redis.register_script(_RESERVE) if redis is not None else None
        self._local: dict[str, float] = {}

    def wait(self, channel: str) -> None:
        wait_s = self._reserve(channel)
        if wait_s > self.max_wait_s:
            raise RateLimited(f"channel {channel} has a backlog of posts; retry after {wait_s:.0f}s",
                              retry_after=wait_s)
        if wait_s > 0:
            self.sleep(wait_s)

    def _reserve(self, channel: str) -> float:
        if self._script is not None:
            try:
                return int(self._script(keys=[f"{PREFIX}:slack:pace:{channel}"], args=[self.interval_ms])) / 1000
            except RedisError as e:
                log.warning("Slack pacing falls back to this process only: Redis unreachable (%s)",
                            type(e).__name__)
        now = time.monotonic()
        slot = max(now, self._local.get(channel, 0.0) + self.interval_ms / 1000)
        self._local[channel] = slot
        return slot - now


class SlackApi:
    """The bot's Web API calls. `client` is a WebClient built by make_client (bot token)."""

    def __init__(self, client: WebClient, pacer: ChannelPacer | None = None, response_timeout_s: int = 10):
        self.client = client
        self.pacer = pacer or ChannelPacer(None)
        self.response_timeout_s = response_timeout_s

    def auth_test(self) -> dict[str, Any]:
        """auth.test's answer, plus `scopes`: the token's scopes from the X-OAuth-Scopes header."""
        with slack_errors("auth.test"):
            response = self.client.auth_test()
        headers = {k.lower(): v for k, v in (response.headers or {}).items()}
        raw = headers.get("x-oauth-scopes", "")
        raw = raw[0] if isinstance(raw, list) else raw
        return {**dict(response.data), "scopes": sorted(s.strip() for s in str(raw).split(",") if s.strip())}  # type: ignore[arg-type]

    def post_message(self, channel: str, text: str, blocks: list[dict] | None = None, *,
                     thread_ts: str | None = None, metadata: dict | None = None) -> dict[str, Any]:
        """chat.postMessage, paced per channel; returns {'channel': id, 'ts': ...}."""
        self.pacer.wait(channel)
        kwargs: dict[str, Any] = {"channel": channel, "text": text, "unfurl_links": False, "unfurl_media": False}
        if blocks:
            kwargs["blocks"] = blocks
        if thread_ts:
            kwargs["thread_ts"] = thread_ts
        if metadata:
            kwargs["metadata"] = metadata
        with slack_errors(f"chat.postMessage to {channel}"):
            r = self.client.chat_postMessage(**kwargs)
        return {"channel": r.get("channel", channel), "ts": r.get("ts", "")}

    def add_reaction(self, channel: str, ts: str, name: str) -> None:
        try:
            with slack_errors(f"reactions.add :{name}: in {channel}"):
                self.client.reactions_add(channel=channel, timestamp=ts, name=name)
        except VendorRejected as e:
            if "already_reacted" not in str(e):
                raise

    def permalink(self, channel: str, ts: str) -> str:
        with slack_errors(f"chat.getPermalink in {channel}"):
            return str(self.client.chat_getPermalink(channel=channel, message_ts=ts).get("permalink") or "")

    def thread_metadata(self, channel: str, thread_ts: str, event_type: str) -> list[dict[str, Any]]:
        """The metadata payloads of the bot's replies in a thread with this event type."""
        with slack_errors(f"conversations.replies in {channel}"):
            r = self.client.conversations_replies(channel=channel, ts=thread_ts, include_all_metadata=True,
                                                  limit=200)
        out = []
        for m in r.get("messages") or []:
            meta = m.get("metadata") or {}
            if meta.get("event_type") == event_type:
                out.append(meta.get("event_payload") or {})
        return out

    def user_email(self, user_id: str) -> str:
        """The e-mail of a workspace member (users.info; needs users:read.email), '' when Slack shows
        none or the account is deleted or a bot."""
        with slack_errors(f"users.info {user_id}"):
            user = self.client.users_info(user=user_id).get("user") or {}
        if user.get("deleted") or user.get("is_bot"):
            return ""
        return str((user.get("profile") or {}).get("email") or "").strip().lower()

    def usergroup_members(self, group_id: str) -> set[str]:
        """The user ids of a user group (usergroups.users.list; needs usergroups:read)."""
        with slack_errors(f"usergroups.users.list {group_id}"):
            return {str(u) for u in self.client.usergroups_users_list(usergroup=group_id).get("users") or []}

    def open_view(self, trigger_id: str, view: dict[str, Any]) -> None:
        with slack_errors("views.open"):
            self.client.views_open(trigger_id=trigger_id, view=view)

    def respond(self, response_url: str, message: dict[str, Any]) -> None:
        """Post to an interaction's response_url (ephemeral by default)."""
        client = WebhookClient(response_url, timeout=self.response_timeout_s, retry_handlers=retry_handlers())
        with slack_errors("response_url"):
            r = client.send_dict(message)
        if r.status_code >= 300:
            body = (r.body or "")[:40]
            if r.status_code == 429:
                raise RateLimited("Slack rate limit on response_url", retry_after_s(r.headers))
            kind = VendorUnavailable if r.status_code >= 500 else VendorRejected
            raise kind(f"Slack refused the response_url post: {r.status_code} {body}", r.status_code)
