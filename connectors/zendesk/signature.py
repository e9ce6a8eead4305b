"""Zendesk webhook signatures: base64(HMAC-SHA256(secret, timestamp + raw_body)).

Zendesk sends the signature in X-Zendesk-Webhook-Signature and the signed timestamp, an ISO 8601
UTC time such as 2021-03-25T05:09:27Z, in X-Zendesk-Webhook-Signature-Timestamp. The timestamp is
signed as the exact header string; unix seconds are accepted too (handy for local senders).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from datetime import UTC, datetime

from worker.errors import SignatureError

SIGNATURE_HEADER = "X-Zendesk-Webhook-Signature"
TIMESTAMP_HEADER = "X-Zendesk-Webhook-Signature-Timestamp"
_UNIX = re.compile(r"[0-9]{1,12}(\.[0-9]{1,9})?")  # unix seconds, ASCII digits only


def sign(secret: str | bytes, timestamp: str, body: bytes) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    digest = hmac.new(key, timestamp.encode() + body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def parse_timestamp(timestamp: str) -> float:
    """Unix seconds of a signature timestamp (ISO 8601, naive means UTC; or unix seconds)."""
    text = timestamp.strip()
    if _UNIX.fullmatch(text):
        return float(text)
    if not text.isascii() or len(text) > 40:  # "²".isdigit() is true; fromisoformat reads other digits
        raise SignatureError("malformed timestamp: expected ISO 8601 or unix seconds")
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.timestamp()
    except (ValueError, OverflowError):
        raise SignatureError("malformed timestamp: expected ISO 8601 or unix seconds") from None


def verify(secret: str | bytes, signature: str | None, timestamp: str | None, body: bytes,
           now: float | None = None, window_s: float = 300) -> None:
    """Raise SignatureError unless `signature` signs `timestamp + body` and the timestamp is
    within `window_s` seconds of `now` (either direction: replays and clock skew alike)."""
    if not secret:
        raise SignatureError("missing signing secret: the webhook secret is not configured")
    if not signature:
        raise SignatureError(f"missing signature: no {SIGNATURE_HEADER} header")
    if not timestamp:
        raise SignatureError(f"missing timestamp: no {TIMESTAMP_HEADER} header")
    skew = (time.time() if now is None else now) - parse_timestamp(timestamp)
    if abs(skew) > window_s:
        direction = "old" if skew > 0 else "in the future"
        raise SignatureError(f"stale timestamp: {abs(skew):.0f}s {direction}, outside the {window_s:g}s window")
    expected = sign(secret, timestamp, body).encode()
    if not hmac.compare_digest(expected, signature.strip().encode("utf-8", "replace")):
        raise SignatureError("signature mismatch: wrong secret or the body was altered")
