"""A local Slack for tests and benchmarks: the Web API methods helpdesk-triage calls, response_url
endpoints, and builders for what Slack sends to the app (signed like Slack signs them).

Web API (POST or GET /api/<method>, JSON or form bodies, `Authorization: Bearer xoxb-...`), with
Slack's answer shapes and error codes (HTTP 200 with {"ok": false, "error": ...}; 429 + Retry-After):

    auth.test, chat.postMessage, chat.postEphemeral, chat.update, chat.getPermalink, reactions.add,
    views.open (trigger ids expire after 3 s, as Slack's do), conversations.replies

    POST /response/<token>   a response_url (5 uses, as Slack allows)

`fail_next(method, ...)` injects failures (429 with Retry-After, an error code, 5xx);
`post_interval_s` makes chat.postMessage answer 429 when a channel gets posts faster than that.
`calls`, `messages()`, `responses()` and `views` record everything, with arrival times
(time.perf_counter) for latency measurements.

    with SlackSandbox() as slack:
        alerts = slack.add_channel("support-alerts")
        client = WebClient(token=slack.token, base_url=slack.api_url)
        body, headers = slack.signed_form(SECRET, slack.command("/triage the site is down"))
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import itertools
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from connectors.sandbox_http import LocalServer, take_fault

Json = dict[str, Any]
TRIGGER_TTL_S = 3.0
RESPONSE_URL_USES = 5
_EMOJI_NAME = re.compile(r"[a-z0-9_+'-]{1,100}")


@dataclass(frozen=True)
class Call:
    method: str  # Web API method, or "response_url"
    args: Json
    status: int
    response: Any
    at: float  # time.perf_counter() when it arrived
    path: str = ""


@dataclass
class _Fault:
    method: str
    status: int
    error: str
    retry_after: float | None
    times: int | None


@dataclass
class _ResponseUrl:
    token: str
    uses: int = 0
    posts: list[Json] = field(default_factory=list)


class ApiError(Exception):
    def __init__(self, error: str, status: int = 200, **extra: Any):
        super().__init__(error)
        self.error, self.status, self.extra = error, status, extra


# The scopes deploy/slack-manifest.yaml asks for (the sandbox's token has them all unless a test takes one away)
SCOPES = ("chat:write", "chat:write.public", "commands", "reactions:write", "channels:history", "groups:history",
          "users:read", "users:read.email", "usergroups:read")


def sign(secret: str, body: bytes | str, timestamp: int | None = None) -> dict[str, str]:
    """Slack's request signature headers (v0, HMAC-SHA256 of 'v0:<timestamp>:<body>')."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    raw = body.encode() if isinstance(body, str) else body
    digest = hmac.new(secret.encode(), b"v0:" + ts.encode() + b":" + raw, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}


class SlackSandbox(LocalServer):
    thread_name = "slack-sandbox"

    def __init__(self, *, token: str = "xoxb-sandbox-token", team_id: str = "T0SANDBOX1",
                 team_domain: str = "sandbox", bot_user_id: str = "U0TRIAGEBOT", bot_id: str = "B0TRIAGEBOT",
                 app_id: str = "A0TRIAGEAPP", post_interval_s: float | None = None,
                 clock: Callable[[], float] = time.time):
        self.token = token
        self.team_id = team_id
        self.team_domain = team_domain
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.app_id = app_id
        self.post_interval_s = post_interval_s
        self._clock = clock
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._ts = 0.0
        self._channels: dict[str, Json] = {}
        self._messages: dict[tuple[str, str], Json] = {}
        self._calls: list[Call] = []
        self._faults: list[_Fault] = []
        self._triggers: dict[str, float] = {}
        self._views: list[Json] = []
        self._responses: dict[str, _ResponseUrl] = {}
        self._last_post: dict[str, float] = {}
        self.on_response: Callable[[str, Json], None] | None = None  # (response_url, body) on each post
        self.scopes: set[str] = set(SCOPES)  # the bot token's scopes: users.info shows e-mails with users:read.email
        self._users: dict[str, Json] = {}
        self._usergroups: dict[str, list[str]] = {}

    # -- lifecycle -------------------------------------------------------------------------------


    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the sandbox is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def api_url(self) -> str:
        """The base URL to give WebClient (SLACK_API_URL)."""
        return f"{self.url}/api/"

    # -- seeding and inspection ---------------------------------------------------------------------

    def add_user(self, user_id: str, email: str = "", *, name: str = "", deleted: bool = False,
                 is_bot: bool = False) -> Json:
        """A workspace member users.info knows (unknown ids answer user_not_found)."""
        with self._lock:
            handle = name or f"user-{user_id[-4:].lower()}"
            self._users[user_id] = {
                "id": user_id, "team_id": self.team_id, "name": handle, "deleted": deleted, "real_name": handle,
                "is_bot": is_bot, "is_app_user": False, "is_admin": False, "is_owner": False,
                "is_restricted": False, "is_ultra_restricted": False, "updated": int(self._clock()),
                "profile": {"real_name": handle, "real_name_normalized": handle, "display_name": handle,
                            "display_name_normalized": handle, "avatar_hash": "g0123456789a", "title": "",
                            "phone": "", "skype": "", "status_text": "", "status_emoji": "", "fields": None,
                            "email": email, "team": self.team_id}}
            return copy.deepcopy(self._users[user_id])

    def add_usergroup(self, group_id: str, members: list[str]) -> None:
        with self._lock:
            self._usergroups[group_id] = list(members)

    def add_channel(self, name: str, channel_id: str = "", private: bool = False) -> str:
        with self._lock:
            for c in self._channels.values():
                if c["name"] == name:
                    return str(c["id"])
            cid = channel_id or f"{'G' if private else 'C'}0{next(self._ids):07d}"
            self._channels[cid] = {"id": cid, "name": name, "is_private": private}
            return cid

    @property
    def calls(self) -> list[Call]:
        with self._lock:
            return list(self._calls)

    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def messages(self, channel: str | None = None, *, bot: bool | None = None) -> list[Json]:
        """Messages in order of posting (bot: only the bot's, or only people's)."""
        with self._lock:
            out = [copy.deepcopy(m) for (c, _), m in self._messages.items() if channel in (None, c)]
        if bot is not None:
            out = [m for m in out if bool(m.get("bot_id")) == bot]
        return sorted(out, key=lambda m: float(m["ts"]))

    def message(self, channel: str, ts: str) -> Json:
        with self._lock:
            return copy.deepcopy(self._messages[(channel, ts)])

    def reactions(self, channel: str, ts: str) -> list[str]:
        return [r["name"] for r in self.message(channel, ts).get("reactions", [])]

    @property
    def views(self) -> list[Json]:
        with self._lock:
            return copy.deepcopy(self._views)

    def responses(self, response_url: str | None = None) -> list[Json]:
        """Bodies posted to response URLs (one URL, or all), in order."""
        with self._lock:
            if response_url is not None:
                r = self._responses.get(response_url.rsplit("/", 1)[-1])
                return copy.deepcopy(r.posts) if r else []
            return [copy.deepcopy(p) for r in self._responses.values() for p in r.posts]

    def response_times(self, response_url: str) -> list[float]:
        token = response_url.rsplit("/", 1)[-1]
        return [c.at for c in self.calls if c.method == "response_url" and c.path.endswith(token) and c.status == 200]

    def fail_next(self, method: str, status: int = 429, *, error: str = "", retry_after: float | None = None,
                  times: int | None = 1) -> None:
        """The next `times` calls of `method` (a Web API method or "response_url") fail: HTTP `status`
        (429 sends Retry-After, default 1 s), or HTTP 200 with {"ok": false, "error": error}."""
        if status == 429 and retry_after is None:
            retry_after = 1
        with self._lock:
            self._faults.append(_Fault(method, status, error or ("ratelimited" if status == 429 else "fatal_error"),
                                       retry_after, times))

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.01) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError("the sandbox did not see the expected call in time")
            time.sleep(interval)

    # -- what Slack sends to the app ----------------------------------------------------------------

    def new_response_url(self) -> str:
        token = secrets.token_urlsafe(12)
        with self._lock:
            self._responses[token] = _ResponseUrl(token)
        return f"{self.url}/response/{token}"

    def new_trigger_id(self) -> str:
        trigger = f"{next(self._ids)}.{secrets.randbelow(10**12)}.{secrets.token_hex(16)}"
        with self._lock:
            self._triggers[trigger] = time.monotonic()
        return trigger

    def user_message(self, channel: str, text: str, *, user: str = "U0CUSTOMER1", thread_ts: str = "",
                     subtype: str | None = None, bot_id: str = "") -> Json:
        """A person (or another bot) posts in a channel: stored here, returned as the Events API body."""
        with self._lock:
            ts = self._next_ts()
            msg: Json = {"type": "message", "text": text, "user": user, "ts": ts, "team": self.team_id,
                         "channel": channel}
            if thread_ts:
                msg["thread_ts"] = thread_ts
            if subtype:
                msg["subtype"] = subtype
            if bot_id:
                msg["bot_id"] = bot_id
            self._messages[(channel, ts)] = msg
        event = {k: v for k, v in msg.items() if k != "reactions"}
        event["channel_type"] = "group" if channel.startswith("G") else "channel"
        event["event_ts"] = ts
        return self.event_envelope(event)

    def edit_event(self, channel: str, ts: str, text: str, user: str = "U0CUSTOMER1") -> Json:
        """The message_changed event Slack sends when a message is edited."""
        with self._lock:
            old = copy.deepcopy(self._messages[(channel, ts)])
            self._messages[(channel, ts)]["text"] = text
        edited = {**old, "text": text, "edited": {"user": user, "ts": self._next_ts()}}
        return self.event_envelope({"type": "message", "subtype": "message_changed", "hidden": True,
                                    "channel": channel, "ts": self._next_ts(), "message": edited,
                                    "previous_message": old, "event_ts": ts, "channel_type": "channel"})

    def event_envelope(self, event: Json) -> Json:
        return {"token": "legacy-verification-token", "team_id": self.team_id, "api_app_id": self.app_id,
                "event": event, "type": "event_callback", "event_id": f"Ev0{secrets.token_hex(5).upper()}",
                "event_time": int(self._clock()), "authorizations": [
                    {"enterprise_id": None, "team_id": self.team_id, "user_id": self.bot_user_id,
                     "is_bot": True, "is_enterprise_install": False}],
                "is_ext_shared_channel": False, "event_context": f"4-{secrets.token_hex(8)}"}

    def command(self, text: str, *, user: str = "U0AGENT001", channel: str = "C0COMMANDS",
                command: str = "/triage") -> dict[str, str]:
        """The form fields of a slash command invocation (response_url and trigger_id live here)."""
        return {"token": "legacy-verification-token", "team_id": self.team_id, "team_domain": self.team_domain,
                "channel_id": channel, "channel_name": "support", "user_id": user, "user_name": "agent",
                "command": command, "text": text, "api_app_id": self.app_id, "is_enterprise_install": "false",
                "response_url": self.new_response_url(), "trigger_id": self.new_trigger_id()}

    def message_shortcut(self, channel: str, ts: str, *, user: str = "U0AGENT001",
                         callback_id: str = "triage_message") -> Json:
        message = self.message(channel, ts)
        message.pop("channel", None)
        return {"type": "message_action", "token": "legacy-verification-token", "action_ts": self._next_ts(),
                "team": {"id": self.team_id, "domain": self.team_domain}, "user": self._user(user),
                "channel": {"id": channel, "name": self._channels.get(channel, {}).get("name", "")},
                "is_enterprise_install": False, "callback_id": callback_id, "trigger_id": self.new_trigger_id(),
                "response_url": self.new_response_url(), "message_ts": ts, "message": message}

    def block_action(self, action_id: str, value: str, *, user: str = "U0AGENT001", response_url: str = "",
                     channel: str = "C0COMMANDS", message_ts: str = "", ephemeral: bool = True) -> Json:
        """A button press on a message (ephemeral: an answer to /triage; else a channel message)."""
        ts = self._next_ts()
        payload: Json = {
            "type": "block_actions", "team": {"id": self.team_id, "domain": self.team_domain},
            "user": self._user(user), "api_app_id": self.app_id, "token": "legacy-verification-token",
            "container": {"type": "message", "message_ts": message_ts or ts, "channel_id": channel,
                          "is_ephemeral": ephemeral},
            "trigger_id": self.new_trigger_id(), "channel": {"id": channel, "name": "support"},
            "response_url": response_url or self.new_response_url(),
            "actions": [{"type": "button", "action_id": action_id, "block_id": "b", "value": value,
                         "text": {"type": "plain_text", "text": action_id}, "action_ts": ts}],
        }
        if not ephemeral and message_ts:
            payload["message"] = self.message(channel, message_ts)
        return payload

    def view_submission(self, view_id: str, choices: Mapping[str, str], *, user: str = "U0AGENT001") -> Json:
        """Submitting an opened modal: `choices` maps an input block_id to the option value picked."""
        view = next((copy.deepcopy(v) for v in self.views if v["id"] == view_id), None)
        if view is None:
            raise KeyError(f"no opened view {view_id}")
        values: Json = {}
        for block in view.get("blocks", []):
            if block.get("type") != "input" or block.get("block_id") not in choices:
                continue
            element = block["element"]
            option = next(o for o in element["options"] if o["value"] == choices[block["block_id"]])
            values[block["block_id"]] = {element["action_id"]: {"type": element["type"], "selected_option": option}}
        view["state"] = {"values": values}
        return {"type": "view_submission", "team": {"id": self.team_id, "domain": self.team_domain},
                "user": self._user(user), "api_app_id": self.app_id, "token": "legacy-verification-token",
                "trigger_id": self.new_trigger_id(), "view": view, "response_urls": [],
                "is_enterprise_install": False}

    @staticmethod
    def signed_form(secret: str, fields: Mapping[str, str], timestamp: int | None = None) -> tuple[bytes, dict]:
        """A slash command request: form-encoded fields, signed."""
        body = urlencode(fields).encode()
        return body, {**sign(secret, body, timestamp), "Content-Type": "application/x-www-form-urlencoded"}

    @staticmethod
    def signed_payload(secret: str, payload: Json, timestamp: int | None = None) -> tuple[bytes, dict]:
        """An interactivity request (shortcut, button, modal): form field payload=<JSON>, signed."""
        body = urlencode({"payload": json.dumps(payload)}).encode()
        return body, {**sign(secret, body, timestamp), "Content-Type": "application/x-www-form-urlencoded"}

    @staticmethod
    def signed_event(secret: str, envelope: Json, timestamp: int | None = None,
                     retry_num: int | None = None) -> tuple[bytes, dict]:
        """An Events API delivery (JSON), signed; retry_num adds Slack's retry headers."""
        body = json.dumps(envelope).encode()
        headers = {**sign(secret, body, timestamp), "Content-Type": "application/json"}
        if retry_num:
            headers.update({"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": "http_timeout"})
        return body, headers

    # -- serving --------------------------------------------------------------------------------------

    def handle(self, method: str, path: str, headers: Mapping[str, str], raw: bytes) -> tuple[int, Any, dict]:
        parts = urlsplit(path)
        extra: dict[str, str] = {}
        at = time.perf_counter()
        if parts.path.startswith("/response/"):
            name, args = "response_url", _parse_body(headers, raw)
        elif parts.path.startswith("/api/"):
            name = parts.path[len("/api/"):]
            args = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            args.update(_parse_body(headers, raw))
        else:
            return 404, {"ok": False, "error": "not_found"}, extra
        try:
            fault = self._take_fault(name)
            if fault is not None:
                if fault.retry_after is not None:
                    extra["Retry-After"] = f"{fault.retry_after:g}"
                raise ApiError(fault.error, fault.status)
            if name == "response_url":
                status, body = 200, self._response_url(parts.path.rsplit("/", 1)[-1], args)
            else:
                self._authenticate(headers, args)
                handler = getattr(self, "_m_" + name.replace(".", "_"), None)
                if handler is None:
                    raise ApiError("unknown_method", 404)
                with self._lock:
                    status, body = 200, {"ok": True, **handler(args, extra)}
        except ApiError as e:
            status, body = e.status, {"ok": False, "error": e.error, **e.extra}
        with self._lock:
            self._calls.append(Call(name, args, status, copy.deepcopy(body), at, parts.path))
        return status, body, extra

    def _take_fault(self, method: str) -> _Fault | None:
        with self._lock:
            return take_fault(self._faults, lambda f: f.method == method)

    def _authenticate(self, headers: Mapping[str, str], args: Json) -> None:
        auth = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else str(args.get("token") or "")
        if not token:
            raise ApiError("not_authed")
        if token != self.token:
            raise ApiError("invalid_auth")

    def _response_url(self, token: str, args: Json) -> Any:
        with self._lock:
            r = self._responses.get(token)
            if r is None:
                raise ApiError("no_service", 404)
            if r.uses >= RESPONSE_URL_USES:
                raise ApiError("used_url", 404)
            if not (args.get("text") or args.get("blocks") or args.get("delete_original")):
                raise ApiError("no_text", 400)
            _check_blocks(args.get("blocks"))
            r.uses += 1
            r.posts.append(copy.deepcopy(args))
        if self.on_response is not None:
            self.on_response(f"{self.url}/response/{token}", args)
        return "ok"

    # -- Web API methods (called with the lock held) -----------------------------------------------

    def _next_ts(self) -> str:
        with self._lock:
            self._ts = max(self._ts + 0.000001, self._clock())
            return f"{self._ts:.6f}"

    def _user(self, user: str) -> Json:
        return {"id": user, "username": f"user-{user[-4:].lower()}", "name": f"user-{user[-4:].lower()}",
                "team_id": self.team_id}

    def _channel(self, args: Json, key: str = "channel") -> str:
        ref = str(args.get(key) or "")
        if ref in self._channels:
            return ref
        name = ref.lstrip("#")
        for c in self._channels.values():
            if c["name"] == name:
                return str(c["id"])
        raise ApiError("channel_not_found")

    def _find(self, channel: str, ts: str) -> Json:
        msg = self._messages.get((channel, str(ts)))
        if msg is None:
            raise ApiError("message_not_found")
        return msg

    def _need(self, scope: str) -> None:
        if scope not in self.scopes:
            raise ApiError("missing_scope", needed=scope, provided=",".join(sorted(self.scopes)))

    def _m_users_info(self, args: Json, extra: dict) -> Json:
        self._need("users:read")
        user = self._users.get(str(args.get("user") or ""))
        if user is None:
            raise ApiError("user_not_found")
        out = copy.deepcopy(user)
        if "users:read.email" not in self.scopes or not out["profile"]["email"]:
            out["profile"].pop("email", None)  # Slack shows e-mails only to apps with the scope
        return {"user": out}

    def _m_usergroups_users_list(self, args: Json, extra: dict) -> Json:
        self._need("usergroups:read")
        group = str(args.get("usergroup") or "")
        if group not in self._usergroups:
            raise ApiError("no_such_subteam")
        return {"users": list(self._usergroups[group])}

    def _m_auth_test(self, args: Json, extra: dict) -> Json:
        extra["X-OAuth-Scopes"] = ",".join(sorted(self.scopes))  # Slack names a token's scopes on every answer
        return {"url": f"https://{self.team_domain}.slack.com/", "team": "Sandbox", "user": "triage",
                "team_id": self.team_id, "user_id": self.bot_user_id, "bot_id": self.bot_id,
                "is_enterprise_install": False}

    def _m_chat_postMessage(self, args: Json, extra: dict) -> Json:
        channel = self._channel(args)
        text, blocks = str(args.get("text") or ""), _json_arg(args.get("blocks"))
        if not text and not blocks:
            raise ApiError("no_text")
        if len(text) > 40000:
            raise ApiError("msg_too_long")
        _check_blocks(blocks)
        if self.post_interval_s:
            now = time.monotonic()
            wait = self._last_post.get(channel, -1e9) + self.post_interval_s - now
            if wait > 0.2:  # some slack for network jitter, as Slack allows short bursts
                extra["Retry-After"] = str(max(1, round(wait + 0.49)))
                raise ApiError("ratelimited", 429)
            self._last_post[channel] = now
        ts = self._next_ts()
        msg: Json = {"type": "message", "text": text, "user": self.bot_user_id, "bot_id": self.bot_id,
                     "ts": ts, "team": self.team_id, "channel": channel, "app_id": self.app_id}
        if blocks:
            msg["blocks"] = blocks
        thread = str(args.get("thread_ts") or "")
        if thread:
            self._find(channel, thread)
            msg["thread_ts"] = thread
        metadata = _json_arg(args.get("metadata"))
        if metadata:
            if not isinstance(metadata, dict) or not metadata.get("event_type"):
                raise ApiError("invalid_metadata_format")
            msg["metadata"] = metadata
        self._messages[(channel, ts)] = msg
        shown = {k: v for k, v in msg.items() if k not in ("channel", "metadata")}
        return {"channel": channel, "ts": ts, "message": shown}

    def _m_chat_postEphemeral(self, args: Json, extra: dict) -> Json:
        self._channel(args)
        if not args.get("user"):
            raise ApiError("user_not_in_channel")
        if not args.get("text") and not _json_arg(args.get("blocks")):
            raise ApiError("no_text")
        _check_blocks(_json_arg(args.get("blocks")))
        return {"message_ts": self._next_ts()}

    def _m_chat_update(self, args: Json, extra: dict) -> Json:
        channel = self._channel(args)
        msg = self._find(channel, str(args.get("ts") or ""))
        if msg.get("user") != self.bot_user_id:
            raise ApiError("cant_update_message")
        blocks = _json_arg(args.get("blocks"))
        _check_blocks(blocks)
        msg.update({"text": str(args.get("text") or msg["text"])} | ({"blocks": blocks} if blocks else {}))
        return {"channel": channel, "ts": msg["ts"], "text": msg["text"]}

    def _m_chat_getPermalink(self, args: Json, extra: dict) -> Json:
        channel = self._channel(args)
        ts = str(args.get("message_ts") or "")
        self._find(channel, ts)
        return {"channel": channel,
                "permalink": f"https://{self.team_domain}.slack.com/archives/{channel}/p{ts.replace('.', '')}"}

    def _m_reactions_add(self, args: Json, extra: dict) -> Json:
        channel = self._channel(args)
        name = str(args.get("name") or "")
        if not args.get("timestamp"):
            raise ApiError("no_item_specified")
        if not _EMOJI_NAME.fullmatch(name):
            raise ApiError("invalid_name")
        msg = self._find(channel, str(args["timestamp"]))
        reactions = msg.setdefault("reactions", [])
        for r in reactions:
            if r["name"] == name:
                if self.bot_user_id in r["users"]:
                    raise ApiError("already_reacted")
                r["users"].append(self.bot_user_id)
                r["count"] += 1
                return {}
        reactions.append({"name": name, "users": [self.bot_user_id], "count": 1})
        return {}

    def _m_views_open(self, args: Json, extra: dict) -> Json:
        trigger = str(args.get("trigger_id") or "")
        issued = self._triggers.pop(trigger, None)
        if issued is None:
            raise ApiError("invalid_trigger_id")
        if time.monotonic() - issued > TRIGGER_TTL_S:
            raise ApiError("expired_trigger_id")
        view = _json_arg(args.get("view"))
        problems = _check_view(view)
        if problems:
            raise ApiError("invalid_arguments", response_metadata={"messages": problems})
        opened = {**view, "id": f"V0{next(self._ids):08d}", "team_id": self.team_id, "state": {"values": {}},
                  "hash": secrets.token_hex(8), "app_id": self.app_id, "bot_id": self.bot_id}
        self._views.append(opened)
        return {"view": copy.deepcopy(opened)}

    def _m_conversations_replies(self, args: Json, extra: dict) -> Json:
        channel = self._channel(args)
        root = self._find(channel, str(args.get("ts") or ""))
        thread = str(root.get("thread_ts") or root["ts"])
        with_meta = str(args.get("include_all_metadata", "")).lower() in ("1", "true")
        out = []
        for (c, _), m in sorted(self._messages.items(), key=lambda kv: float(kv[1]["ts"])):
            if c == channel and (m["ts"] == thread or m.get("thread_ts") == thread):
                shown = {k: v for k, v in m.items() if k != "channel" and (with_meta or k != "metadata")}
                out.append(copy.deepcopy(shown))
        return {"messages": out, "has_more": False}


def _parse_body(headers: Mapping[str, str], raw: bytes) -> Json:
    if not raw:
        return {}
    ctype = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    if "json" in ctype:
        try:
            data = json.loads(raw)
        except ValueError:
            raise ApiError("invalid_json") from None
        return data if isinstance(data, dict) else {}
    return {k: v[-1] for k, v in parse_qs(raw.decode(), keep_blank_values=True).items()}


def _json_arg(value: Any) -> Any:
    """Form-encoded calls carry blocks, views and metadata as JSON strings."""
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except ValueError:
            raise ApiError("invalid_arguments") from None
    return value


def _check_blocks(blocks: Any) -> None:
    blocks = _json_arg(blocks)
    if blocks in (None, "", []):
        return
    if not isinstance(blocks, list) or len(blocks) > 50 or not all(isinstance(b, dict) and b.get("type")
                                                                   for b in blocks):
        raise ApiError("invalid_blocks")
    for b in blocks:
        if b["type"] == "section" and not (b.get("text") or b.get("fields")):
            raise ApiError("invalid_blocks")
        if b["type"] == "section" and len((b.get("text") or {}).get("text", "")) > 3000:
            raise ApiError("invalid_blocks")
        if b["type"] == "actions" and not 0 < len(b.get("elements") or []) <= 25:
            raise ApiError("invalid_blocks")
        for e in b.get("elements") or []:
            if e.get("type") == "button" and (len(str(e.get("value", ""))) > 2000
                                              or len(e.get("text", {}).get("text", "")) > 75):
                raise ApiError("invalid_blocks")


def _check_view(view: Any) -> list[str]:
    if not isinstance(view, dict):
        return ["[ERROR] view must be an object"]
    problems = []
    if view.get("type") != "modal":
        problems.append("[ERROR] view type must be modal")
    title = (view.get("title") or {}).get("text", "")
    if not title or len(title) > 24:
        problems.append("[ERROR] title must be 1-24 characters [json-pointer:/view/title/text]")
    blocks = view.get("blocks") or []
    if not blocks or len(blocks) > 100:
        problems.append("[ERROR] a view has 1-100 blocks [json-pointer:/view/blocks]")
    if any(b.get("type") == "input" for b in blocks) and not view.get("submit"):
        problems.append("[ERROR] a view with inputs needs submit [json-pointer:/view/submit]")
    if len(view.get("private_metadata") or "") > 3000:
        problems.append("[ERROR] private_metadata is over 3000 characters")
    for b in blocks:
        if b.get("type") == "input" and not (b.get("element") and b.get("label")):
            problems.append("[ERROR] an input block needs an element and a label")
    return problems


class _Handler(BaseHTTPRequestHandler):
    server_version = "SlackSandbox/1"
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        sandbox: SlackSandbox = self.server.sandbox  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        status, body, extra = sandbox.handle(self.command, self.path, dict(self.headers.items()), raw)
        if body == "ok":
            data, ctype = b"ok", "text/html"
        else:
            data, ctype = json.dumps(body).encode(), "application/json; charset=utf-8"
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


SlackSandbox.handler = _Handler
