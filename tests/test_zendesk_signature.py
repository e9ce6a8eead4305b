"""Webhook signatures: base64(HMAC-SHA256(secret, timestamp + raw body)), Zendesk's scheme."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from connectors.zendesk.signature import SignatureError, parse_timestamp, sign, verify
from worker.errors import TriageError

SECRET = "dGhpc19pc19hX3NpZ25pbmdfc2VjcmV0"
TS = "2024-05-14T09:12:30Z"  # what Zendesk sends in X-Zendesk-Webhook-Signature-Timestamp
NOW = parse_timestamp(TS) + 20
BODY = b'{"type":"zen:event-type:ticket.created","detail":{"id":"5201"}}'


def test_sign_matches_the_documented_formula() -> None:
    expected = base64.b64encode(hmac.new(SECRET.encode(), TS.encode() + BODY, hashlib.sha256).digest()).decode()
    assert sign(SECRET, TS, BODY) == expected
    assert sign(SECRET.encode(), TS, BODY) == expected


def test_good_signature_passes() -> None:
    verify(SECRET, sign(SECRET, TS, BODY), TS, BODY, now=NOW)
    verify(SECRET, sign(SECRET, "1715677950", BODY), "1715677950", BODY, now=1715677950)  # unix seconds too


@pytest.mark.parametrize("signature, body, secret", [
    (sign(SECRET, TS, BODY), BODY + b" ", SECRET),  # body altered
    (sign("another-secret", TS, BODY), BODY, SECRET),  # wrong secret
    ("not base64 at all \u00e9", BODY, SECRET),
])
def test_bad_signature_is_a_mismatch(signature: str, body: bytes, secret: str) -> None:
    with pytest.raises(SignatureError, match="mismatch"):
        verify(secret, signature, TS, body, now=NOW)


def test_signature_covers_the_timestamp() -> None:
    other = "2024-05-14T09:12:31Z"
    with pytest.raises(SignatureError, match="mismatch"):
        verify(SECRET, sign(SECRET, TS, BODY), other, BODY, now=NOW)


@pytest.mark.parametrize("skew, word", [(301, "old"), (-301, "future")])
def test_stale_timestamp_either_direction(skew: float, word: str) -> None:
    with pytest.raises(SignatureError, match=f"stale.*{word}"):
        verify(SECRET, sign(SECRET, TS, BODY), TS, BODY, now=parse_timestamp(TS) + skew)
    verify(SECRET, sign(SECRET, TS, BODY), TS, BODY, now=parse_timestamp(TS) + skew, window_s=600)


@pytest.mark.parametrize("signature, timestamp, what", [
    (None, TS, "missing signature"),
    ("", TS, "missing signature"),
    ("abc", None, "missing timestamp"),
    ("abc", "", "missing timestamp"),
    ("abc", "yesterday-ish", "malformed timestamp"),
])
def test_missing_and_malformed(signature: str | None, timestamp: str | None, what: str) -> None:
    with pytest.raises(SignatureError, match=what) as caught:
        verify(SECRET, signature, timestamp, BODY, now=NOW)
    assert isinstance(caught.value, TriageError)


def test_no_secret_configured_rejects() -> None:
    with pytest.raises(SignatureError, match="secret"):
        verify("", sign(SECRET, TS, BODY), TS, BODY, now=NOW)


def test_timestamp_formats() -> None:
    assert parse_timestamp("2024-05-14T09:12Z") == parse_timestamp("2024-05-14T09:12:00+00:00")
    assert parse_timestamp("2024-05-14T09:12:00") == parse_timestamp("2024-05-14T09:12:00Z")  # naive = UTC
    assert parse_timestamp("1715677950") == 1715677950.0
