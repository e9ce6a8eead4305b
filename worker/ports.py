"""The ports the core talks through; adapters live in connectors/ and model/."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Protocol, runtime_checkable

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


@runtime_checkable
class Refresher(Protocol):
    """Optional, on a Writer whose payloads are partial or may be stale (Jira's comment webhooks
    carry a slim issue): the use case calls refresh() before deciding."""

    def refresh(self, event: TicketEvent) -> TicketEvent:
        """The event with the ticket's current fields (tags, priority, assignee, who set them, ...),
        keeping its source, ticket id, revision, text and changed_by: the same key."""
        ...


class Notifier(Protocol):
    """Tells people about a decision whose rules say notify_slack (after the write-back). Must be
    idempotent per event key and channel: a retried job calls it again."""

    def notify(self, event: TicketEvent, decision: TriageDecision) -> None:
        ...


class Deferred(Exception):  # noqa: N818 - a signal, not an error
    """Raised by SecondOpinion.review: the ticket waits for an answer and comes back in a job of its
    own (the attempt gives its lease back; nothing is written now)."""


class SecondOpinion(Protocol):
    """A second judge for the tickets the model is unsure of (worker/escalation.py: an LLM)."""

    def review(self, event: TicketEvent, scores: Scores) -> Scores:
        """The scores to decide on: `scores` as they are, or the second judge's (decided_by "llm").
        Raises Deferred when its answer is not in yet. Never raises anything else: on any failure
        the model's scores stand, the reason in their second_opinion."""
        ...


class Attempt(StrEnum):
    """What `Store.begin` says of a ticket revision: the exactly-once protocol's states."""

    FIRST = "first"  # nobody tried it yet: write it back
    AGAIN = "again"  # an earlier attempt started it and did not finish: look for its note first
    DONE = "done"  # triaged already: nothing to do
    BUSY = "busy"  # another job holds it now: nothing to do here

    @property
    def taken(self) -> bool:
        """This owner holds the revision now (and must finish or release it)."""
        return self in (Attempt.FIRST, Attempt.AGAIN)


class Store(Protocol):
    """The use case's memory of what it did, per ticket revision (an event key): the unit of work of
    the exactly-once protocol. begin -> (write back) -> finish, or release when the attempt failed.
    worker.store.RedisStore is the adapter; tests use an in-memory one."""

    def begin(self, keys: Sequence[str], owner: str) -> list[Attempt]:
        """Take the revisions for `owner` (a job id), all in one step; per key its Attempt. A job
        that runs again (a retry, or after its worker died) gets its own revisions back (AGAIN)."""
        ...

    def finish(self, keys: Sequence[str]) -> None:
        """Record the revisions as triaged and drop their leases (each done before its lease goes)."""
        ...

    def release(self, key: str, owner: str) -> None:
        """Give a revision's lease back after a failed attempt (only if `owner` still holds it)."""
        ...


class DecisionSink(Protocol):
    """Told of each revision's outcome, after the write-back (worker.decision_log: the decision log
    and the metrics). Must not raise for its own failures: what it records is already done."""

    def decided(self, event: TicketEvent, status: str, decision: TriageDecision | None) -> None:
        ...

    def failed(self, event: TicketEvent, error: BaseException) -> None:
        ...
