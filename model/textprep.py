"""Turning a ticket into model input: one definition shared by training and the runtime."""

from __future__ import annotations

import re
import unicodedata

# A 1 MB ticket must not cost 1 MB of tokenisation: the model reads at most `max_tokens`
# word pieces, so only the head of the text can matter. 32 characters a token is generous.
CHARS_PER_TOKEN_CAP = 32
_SPACE = re.compile(r"\s+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def ticket_text(subject: str | None, body: str | None) -> str:
    """The text a ticket is scored on: its subject, then its (latest public) body."""
    subject = (subject or "").strip()
    body = (body or "").strip()
    if subject and body and not body.startswith(subject):
        return f"{subject}\n{body}"
    return body or subject


def clean(text: str | bytes, max_tokens: int) -> str:
    """Decode, normalise and cap a text; never raises on junk."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    text = text[: max_tokens * CHARS_PER_TOKEN_CAP]
    text = unicodedata.normalize("NFC", text)
    # Control characters (binary junk) become spaces; letters, symbols and emoji stay.
    return _SPACE.sub(" ", _CONTROL.sub(" ", text)).strip()
