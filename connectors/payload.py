"""Reading values out of vendor payloads, where trigger bodies and Automation templates may hold
unrendered placeholders ({{ticket.id}}, {{issue.key}}) and ids come as numbers or strings."""

from __future__ import annotations

import re
from typing import Any

PLACEHOLDER = re.compile(r"^\{\{.*\}\}$", re.DOTALL)


def text(value: Any) -> str:
    """A rendered string value; None, containers, booleans and unrendered {{placeholders}} become ''."""
    if value is None or isinstance(value, (dict, list, bool)):
        return ""
    s = str(value).strip()
    return "" if PLACEHOLDER.match(s) else s


def ident(value: Any) -> str:
    """An id as a string: 123, 123.0 and "123" all give "123"."""
    if isinstance(value, bool):
        return ""
    if isinstance(value, (int, float)):
        return str(int(value))
    return text(value)


def integer(value: Any) -> int:
    """A non-negative integer id, 0 when absent or not a number."""
    s = ident(value)
    return int(s) if s.isdigit() else 0
