"""Jira webhook authentication.

Jira Cloud admin webhooks registered with a secret carry `X-Hub-Signature: sha256=<hex>`, the
HMAC-SHA256 of the raw body under the secret (no timestamp is signed: replays are absorbed by the
delivery identifier and the event key, see inbound.py). Jira Service Management Automation's "Send
web request" cannot sign, so its requests authenticate with `Authorization: Bearer <secret>`
(a hidden header in the rule). Both are checked in constant time; without a configured secret
every request is refused.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from worker.errors import SignatureError

SIGNATURE_HEADER = "X-Hub-Signature"
AUTHORIZATION_HEADER = "Authorization"
IDENTIFIER_HEADER = "X-Atlassian-Webhook-Identifier"  # one per delivery, the same on its retries
RETRY_HEADER = "X-Atlassian-Webhook-Retry"  # retry count, absent on the first attempt
METHOD = "sha256"


def sign(secret: str | bytes, body: bytes) -> str:
    """The X-Hub-Signature value Jira sends for `body`: "sha256=<hex digest>"."""
    key = secret.encode() if isinstance(secret, str) else secret
    return f"{METHOD}={hmac.new(key, body, hashlib.sha256).hexdigest()}"


def verify(secret: str | bytes, signature: str | None, body: bytes) -> None:
    """Raise SignatureError unless `signature` is sha256=<hex HMAC of body under secret>."""
    if not secret:
        raise SignatureError("missing signing secret: JIRA_WEBHOOK_SECRET is not configured")
    if not signature:
        raise SignatureError(f"missing signature: no {SIGNATURE_HEADER} header")
    method, sep, digest = signature.strip().partition("=")
    if not sep or method.lower() != METHOD:
        raise SignatureError(f"malformed signature: expected {METHOD}=<hex>")
    try:
        sent = bytes.fromhex(digest)
    except ValueError:
        raise SignatureError(f"malformed signature: expected {METHOD}=<hex>") from None
    key = secret.encode() if isinstance(secret, str) else secret
    if not hmac.compare_digest(hmac.new(key, body, hashlib.sha256).digest(), sent):
        raise SignatureError("signature mismatch: wrong secret or the body was altered")


def verify_token(secret: str | bytes, authorization: str | None) -> None:
    """Raise SignatureError unless `authorization` is "Bearer <secret>" (Automation web requests)."""
    if not secret:
        raise SignatureError("missing signing secret: JIRA_WEBHOOK_SECRET is not configured")
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise SignatureError(f"missing signature: no {SIGNATURE_HEADER} header nor Authorization: Bearer token")
    key = secret if isinstance(secret, bytes) else secret.encode()
    if not hmac.compare_digest(token.strip().encode("utf-8", "replace"), key):
        raise SignatureError("token mismatch: the Authorization bearer token is not the webhook secret")


def authenticate(secret: str | bytes, headers: Mapping[str, str], body: bytes) -> str:
    """Check a request by whichever credential it carries; returns "signature" or "token".
    A signature, when present, is always the one checked (a token cannot stand in for a bad one)."""
    signature = headers.get(SIGNATURE_HEADER)
    if signature or not headers.get(AUTHORIZATION_HEADER):
        verify(secret, signature, body)
        return "signature"
    verify_token(secret, headers.get(AUTHORIZATION_HEADER))
    return "token"
