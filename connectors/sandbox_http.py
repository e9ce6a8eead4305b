"""Plumbing the local vendor sandboxes share: recorded requests and injected faults."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    json: Any  # parsed request body, None when empty
    headers: dict[str, str]  # the Authorization value is redacted, its scheme kept
    status: int
    response: Any  # parsed response body


@dataclass
class Fault:
    status: int
    times: int | None  # None: until cleared
    retry_after: float | None
    method: str | None
    path: str | None  # regular expression searched in the path


def take_fault(faults: list[Fault], method: str, path: str) -> Fault | None:
    """The first fault matching the request, counted down (removed when used up). Caller locks."""
    for fault in faults:
        if (fault.method in (None, method)) and (fault.path is None or re.search(fault.path, path)):
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    faults.remove(fault)
            return fault
    return None


def redact(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers with the Authorization credential replaced by <redacted> (its scheme kept)."""
    return {k: (f"{v.split(' ', 1)[0]} <redacted>" if k.lower() == "authorization" else v)
            for k, v in headers.items()}
