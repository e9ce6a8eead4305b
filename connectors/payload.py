"""Reading values out of vendor payloads, where trigger bodies and Automation templates may hold
unrendered placeholders ({{ticket.id}}, {{issue.key}}) and ids come as numbers or strings.

Ids are checked here, at the edge: a number that is not a whole number (NaN, 1e999, 4.5) or one
past 64 bits (5,000 digits, as a number or a string) is an EventError (the route answers 422),
never an exception further in.
"""

from __future__ import annotations

import math
import re
from typing import Any

from worker.events import EventError

PLACEHOLDER = re.compile(r"^\{\{.*\}\}$", re.DOTALL)
MAX_ID_DIGITS = 19  # helpdesk ids are 64-bit integers: 9223372036854775807 has 19 digits
_DIGITS = re.compile(r"[0-9]+")  # ASCII digits only: "²".isdigit() is true, int("²") fails


def text(value: Any) -> str:
    """A rendered string value; None, containers, booleans and unrendered {{placeholders}} become ''."""
    if value is None or isinstance(value, (dict, list, bool)):
        return ""
    s = str(value).strip()
    return "" if PLACEHOLDER.match(s) else s


def is_number(s: str) -> bool:
    """`s` is a non-negative integer of ASCII digits that fits a 64-bit id."""
    return len(s) <= MAX_ID_DIGITS and _DIGITS.fullmatch(s) is not None


def ident(value: Any) -> str:
    """An id as a string: 123, 123.0 and "123" all give "123". Raises EventError for a number
    that cannot be an id (NaN, infinite, fractional, longer than 64 bits), in any form."""
    if isinstance(value, bool):
        return ""
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer() or abs(value) >= 10 ** MAX_ID_DIGITS:
            raise EventError("an id is not a whole number in range")
        return str(int(value))
    if isinstance(value, int):
        if abs(value) >= 10 ** MAX_ID_DIGITS:
            raise EventError(f"an id is longer than {MAX_ID_DIGITS} digits")
        return str(value)
    s = text(value)
    if s.isdigit() and not is_number(s):
        raise EventError(f"an id is not {MAX_ID_DIGITS} ASCII digits at most")
    return s


def integer(value: Any) -> int:
    """A non-negative integer id, 0 when absent or not a number."""
    try:
        s = ident(value)
    except EventError:
        return 0
    return int(s) if is_number(s) else 0
