"""The console's sign-in: the admin token from TRIAGE_ADMIN_TOKEN, compared in constant time; a
signed session cookie (HttpOnly, SameSite=Strict, Secure over HTTPS) that expires; a CSRF token per
session for every form and htmx request; sign-in attempts limited per client address in Redis (so
every `serve` process counts the same attempts)."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from redis import Redis
from redis.exceptions import RedisError

from worker.store import PREFIX

COOKIE = "triage_admin"
SESSION_S = 8 * 3600
ATTEMPTS = 5  # sign-in attempts a client address may make per ATTEMPT_WINDOW_S
ATTEMPT_WINDOW_S = 300


@dataclass(frozen=True)
class Session:
    nonce: str
    expires: int
    csrf: str


class Auth:
    def __init__(self, token: str, redis: Redis, clock=time.time):
        self.token = token.encode()
        self.key = hashlib.sha256(b"triage-admin-session\0" + self.token).digest()
        self.redis = redis
        self.clock = clock

    def token_ok(self, given: str) -> bool:
        return hmac.compare_digest(given.strip().encode("utf-8", "replace"), self.token)

    def _sign(self, text: str) -> str:
        return hmac.new(self.key, text.encode(), hashlib.sha256).hexdigest()

    def new_cookie(self) -> str:
        nonce, expires = secrets.token_urlsafe(16), int(self.clock()) + SESSION_S
        body = f"{nonce}.{expires}"
        return f"{body}.{self._sign(body)}"

    def session(self, cookie: str | None) -> Session | None:
        """The session a cookie holds, or None (missing, forged, expired)."""
        if not cookie or cookie.count(".") != 2:
            return None
        nonce, expires, sig = cookie.split(".")
        if not hmac.compare_digest(sig, self._sign(f"{nonce}.{expires}")) or not expires.isdigit():
            return None
        if int(expires) < self.clock():
            return None
        return Session(nonce, int(expires), self._sign(f"csrf.{nonce}"))

    def csrf_ok(self, session: Session, given: str) -> bool:
        return bool(given) and hmac.compare_digest(given.encode("utf-8", "replace"), session.csrf.encode())

    def attempt(self, client: str) -> bool:
        """Count a sign-in attempt from `client`; False once it made ATTEMPTS in the window."""
        key = f"{PREFIX}:admin:signin:{hashlib.sha256(client.encode()).hexdigest()[:16]}"
        pipe = self.redis.pipeline()  # a RedisError goes up: no sign-in while attempts cannot be counted
        pipe.incr(key)
        pipe.expire(key, ATTEMPT_WINDOW_S, nx=True)
        return int(pipe.execute()[0]) <= ATTEMPTS

    def clear_attempts(self, client: str) -> None:
        key = f"{PREFIX}:admin:signin:{hashlib.sha256(client.encode()).hexdigest()[:16]}"
        with contextlib.suppress(RedisError):
            self.redis.delete(key)
