"""Personal data out of ticket text, before it is stored (`triage history pull`) or sent (the LLM
second opinion): e-mail addresses, card numbers (13-19 digits passing the Luhn check) and phone
numbers (8+ digits after +, 00 or a bracket, else 9-15) become [email], [card], [phone]. Dates,
times and short order numbers are kept. Pure: no I/O."""

from __future__ import annotations

import re

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_DIGITS = re.compile(r"(?<![\w+])(?:\+|00)?\d[\d ().-]{6,}\d(?!\w)")


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0


def _number(m: re.Match[str]) -> str:
    raw = m.group(0)
    digits = re.sub(r"\D", "", raw)
    if 13 <= len(digits) <= 19 and _luhn(digits):
        return "[card]"
    if raw.startswith(("+", "00", "(")) and 8 <= len(digits) <= 15 or 9 <= len(digits) <= 15:
        return "[phone]"
    return raw  # a date, an order number: kept


def redact(text: str) -> str:
    """The text with e-mail addresses, card and phone numbers replaced (see the module docstring)."""
    return _DIGITS.sub(_number, _EMAIL.sub("[email]", text))
