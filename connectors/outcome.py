"""What a connector's normaliser makes of a payload: an event to triage, or the reason to skip it."""

from __future__ import annotations

from dataclasses import dataclass

from worker.events import TicketEvent


@dataclass(frozen=True)
class Outcome:
    """What a payload became: an event, or None and the reason it was skipped."""

    event: TicketEvent | None
    skipped: str = ""
