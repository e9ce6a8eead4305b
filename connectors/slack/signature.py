"""Slack request signatures: `v0=` + hex HMAC-SHA256(signing secret, "v0:<timestamp>:<raw body>").

Checked on the raw bytes before anything parses the body; the timestamp (X-Slack-Request-Timestamp,
unix seconds) must be within the window either way, so a captured request cannot be replayed later.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Mapping

from worker.errors import SignatureError

SIGNATURE_HEADER = "X-Slack-Signature"
TIMESTAMP_HEADER = "X-Slack-Request-Timestamp"
WINDOW_S = 300  # Slack's own recommendation: five minutes
_TIMESTAMP = re.compile(r"[0-9]{1,12}")  # ASCII digits only


def sign(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256).hexdigest()
    return f"v0={digest}"


def verify(secret: str, headers: Mapping[str, str], body: bytes, now: float | None = None,
           window_s: float = WINDOW_S) -> None:
    """Raise SignatureError unless the request's signature and timestamp are Slack's for `body`."""
    if not secret:
        raise SignatureError("missing signing secret: SLACK_SIGNING_SECRET is not configured")
    timestamp = (headers.get(TIMESTAMP_HEADER) or "").strip()
    signature = (headers.get(SIGNATURE_HEADER) or "").strip()
    if not timestamp:
        raise SignatureError(f"missing timestamp: no {TIMESTAMP_HEADER} header")
    if not signature:
        raise SignatureError(f"missing signature: no {SIGNATURE_HEADER} header")
    if not _TIMESTAMP.fullmatch(timestamp):
        raise SignatureError(f"malformed timestamp: {TIMESTAMP_HEADER} must be unix seconds")
    skew = (time.time() if now is None else now) - int(timestamp)
    if abs(skew) > window_s:
        direction = "old" if skew > 0 else "in the future"
        raise SignatureError(f"stale timestamp: {abs(skew):.0f}s {direction}, outside the {window_s:g}s window")
    expected = sign(secret, timestamp, body).encode()
    if not hmac.compare_digest(expected, signature.encode("utf-8", "replace")):
        raise SignatureError("signature mismatch: wrong signing secret or the body was altered")
