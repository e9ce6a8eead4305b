"""The ports the core talks through; adapters live in connectors/ and model/."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from worker.decision import Scores, TriageDecision
from worker.events import TicketEvent


class Scorer(Protocol):
    @property
    def version(self) -> str:
        """The model version, written into every decision."""
        ...

    def score(self, texts: Sequence[str]) -> list[Scores]:
        """Scores for each text, in order (top words included)."""
        ...


class Writer(Protocol):
    """Writes a decision back to one helpdesk. Raises worker.errors.VendorError subclasses."""

    def apply(self, event: TicketEvent, decision: TriageDecision) -> None:
        """One write-back: tags added (others kept), priority/group/assignee, internal note.
        The note carries `marker(event)` so `already_applied` can find it after a crash."""
        ...

    def already_applied(self, event: TicketEvent) -> bool:
        """True if the helpdesk already holds this revision's write-back (looks for the marker)."""
        ...


def marker(event: TicketEvent) -> str:
    """A token written into the internal note that identifies the triaged revision."""
    return f"[triage:{event.key}]"
