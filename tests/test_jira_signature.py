"""Jira webhook authentication: X-Hub-Signature (HMAC-SHA256 of the raw body, hex) or a bearer token."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from connectors.jira.signature import SignatureError, authenticate, sign, verify, verify_token
from worker.errors import TriageError

SECRET = "s3cr3t-from-the-webhook-page"
BODY = b'{"timestamp":1736932352115,"webhookEvent":"jira:issue_created","issue":{"key":"SUP-1"}}'


def test_sign_matches_the_documented_formula() -> None:
    expected = "sha256=" + hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, BODY) == expected == sign(SECRET.encode(), BODY)


def test_good_signature_passes_in_any_hex_case() -> None:
    verify(SECRET, sign(SECRET, BODY), BODY)
    method, digest = sign(SECRET, BODY).split("=")
    verify(SECRET, f"SHA256={digest.upper()}", BODY)


@pytest.mark.parametrize("signature, body, what", [
    (sign(SECRET, BODY), BODY + b" ", "mismatch"),  # body altered (re-serialised JSON differs too)
    (sign("another-secret", BODY), BODY, "mismatch"),
    ("sha1=" + hashlib.sha1(BODY).hexdigest(), BODY, "malformed"),
    ("sha256=not-hex", BODY, "malformed"),
    ("deadbeef", BODY, "malformed"),
    ("sha256=\u00e9", BODY, "malformed"),
    (None, BODY, "missing signature"),
    ("", BODY, "missing signature"),
])
def test_bad_signatures(signature: str | None, body: bytes, what: str) -> None:
    with pytest.raises(SignatureError, match=what) as caught:
        verify(SECRET, signature, body)
    assert isinstance(caught.value, TriageError) and SECRET not in str(caught.value)


def test_no_secret_configured_refuses_everything() -> None:
    with pytest.raises(SignatureError, match="JIRA_WEBHOOK_SECRET"):
        verify("", sign("", BODY), BODY)
    with pytest.raises(SignatureError, match="JIRA_WEBHOOK_SECRET"):
        verify_token("", "Bearer ")


def test_bearer_token_for_automation_requests() -> None:
    verify_token(SECRET, f"Bearer {SECRET}")
    verify_token(SECRET, f"bearer   {SECRET} ")
    for bad in (f"Bearer {SECRET}x", "Bearer", f"Basic {SECRET}", None):
        with pytest.raises(SignatureError):
            verify_token(SECRET, bad)


def test_authenticate_picks_the_credential_sent() -> None:
    assert authenticate(SECRET, {"X-Hub-Signature": sign(SECRET, BODY)}, BODY) == "signature"
    assert authenticate(SECRET, {"Authorization": f"Bearer {SECRET}"}, BODY) == "token"
    with pytest.raises(SignatureError, match="missing signature"):
        authenticate(SECRET, {}, BODY)
    # A bad signature is not rescued by a good token alongside it.
    with pytest.raises(SignatureError, match="mismatch"):
        authenticate(SECRET, {"X-Hub-Signature": sign("x", BODY), "Authorization": f"Bearer {SECRET}"}, BODY)
