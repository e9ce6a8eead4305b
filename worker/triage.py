"""The use case: scores -> routing rules -> write-back, exactly once per ticket revision."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum

from worker.decision import Actions, Scores, TriageDecision
from worker.errors import ConfigError
from worker.events import TicketEvent
from worker.ports import Attempt, DecisionSink, Deferred, Notifier, Refresher, Store, Writer
from worker.rules import RuleSet
from worker.suggestions import tags as suggestion_tags

log = logging.getLogger("triage.worker")


class Status(StrEnum):
    """How one attempt at a ticket revision ended."""

    WRITTEN = "written"  # the decision was written back
    NOTHING_TO_WRITE = "nothing_to_write"  # the ticket already has what the rules want
    RECOVERED = "recovered"  # an interrupted attempt had written it: its note was found
    DUPLICATE = "duplicate"  # triaged already (Attempt.DONE)
    BUSY = "busy"  # another job holds it now (Attempt.BUSY)


@dataclass(frozen=True)
class TriageResult:
    """What TriageService.complete made of one ticket revision."""

    status: Status
    key: str = ""  # the event key (source:ticket:revision)
    decision: TriageDecision | None = None

    @property
    def settled(self) -> bool:
        """This attempt finished the revision: TriageService.finish records it."""
        return self.status in (Status.WRITTEN, Status.NOTHING_TO_WRITE, Status.RECOVERED)

    def to_dict(self) -> dict:
        return {"status": self.status, "key": self.key,
                "decision": self.decision.to_dict() if self.decision else None}


def decide(event: TicketEvent, scores: Scores, rules: RuleSet, now: datetime) -> TriageDecision:
    """Pure: the rules' actions, minus what an agent decided and what the ticket already has."""
    matched, actions = rules.decide(event, scores, now)
    current = set(event.tags)
    prefix = rules.tag_prefix
    ours = tuple(t for t in current if t.startswith((f"{prefix}sentiment_", f"{prefix}urgency_", f"{prefix}language_")))
    changes: dict = {
        "add_tags": tuple(t for t in actions.add_tags if t not in current),
        "remove_tags": tuple(t for t in ours if t not in actions.add_tags) if rules.default_tags else (),
    }
    # A value an agent chose wins unless the rule says otherwise (the connector tells which).
    for name, by_human in (("priority", event.priority_set_by_human), ("assignee", event.assignee_set_by_human)):
        wanted = getattr(actions, name)
        if wanted == getattr(event, name) or (wanted and not actions.sets(wanted, by_human)):
            changes[name] = ""
    if actions.group and actions.group == event.group:
        changes["group"] = ""
    if event.source != "jira":  # request_type and jira_fields mean nothing elsewhere
        changes["request_type"], changes["jira_fields"] = "", ()
    elif actions.request_type.lower() == event.extra.get("request_type", "").lower():
        changes["request_type"] = ""
    if actions.suggested:
        # made once: a suggestion whose tag the ticket carries is not repeated on every later revision
        lowered = {t.lower() for t in current}
        suggested = tuple(s for s in _suggestions(event, actions) if suggestion_tags(prefix, [s])[0] not in lowered)
        changes["suggested"] = suggested
        changes["add_tags"] += suggestion_tags(prefix, suggested)
        changes["note"] = actions.note or bool(suggested)  # the note carries them
    return TriageDecision(event.key, scores, matched, replace(actions, **changes))


def _suggestions(event: TicketEvent, actions: Actions) -> tuple[tuple[str, str], ...]:
    """The suggestions worth making: what the rules would set, as decide() would let them (not what
    the ticket has already, nor a priority/assignee an agent chose unless override_human)."""
    out = []
    for name, value in actions.suggested:
        if name in ("priority", "assignee"):
            by_human = event.priority_set_by_human if name == "priority" else event.assignee_set_by_human
            if value == getattr(event, name) or not actions.sets(value, by_human):
                continue
        elif name == "group" and value.lower() == event.group.lower():
            continue
        elif (name == "request_type" or name.startswith("field:")) and (
                event.source != "jira" or name == "request_type"
                and value.lower() == event.extra.get("request_type", "").lower()):
            continue  # Jira only; or the issue has that request type
        out.append((name, value))
    return tuple(out)


def _writes_something(a: Actions) -> bool:
    return bool(a.add_tags or a.remove_tags or a.priority or a.group or a.assignee or a.note
                or a.request_type or a.jira_fields or a.suggested)


class TriageService:
    """The use case, exactly once per ticket revision: begin (take the revisions, Store) -> complete
    (score, decide with the rules, write back through the source's Writer, notify) -> finish
    (record the settled ones), or release (give a failed one back for a retry or a duplicate).

    It depends only on ports (worker.ports: Store, Writer, Refresher, Notifier); bootstrap wires the
    Redis store and the vendor writers. A crash between the write-back and finish is safe: the next
    attempt is Attempt.AGAIN and looks for the bot's note (Writer.already_applied) first."""

    def __init__(self, rules: Callable[[], RuleSet], writers: Mapping[str, Writer], store: Store,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC), notifier: Notifier | None = None,
                 decisions: DecisionSink | None = None):
        self.rules = rules
        self.decisions = decisions  # the decision log and metrics (None: not recorded)
        self.writers = writers
        self.store = store
        self.clock = clock
        self.notifier = notifier  # posts notify_slack alerts after the write-back (None: not configured)
        # isinstance on a Protocol is slow: ask once per writer, not per ticket
        self.refreshers: dict[str, Refresher] = {s: w for s, w in writers.items() if isinstance(w, Refresher)}

    def _notify(self, event: TicketEvent, decision: TriageDecision) -> None:
        # Before finish(): a failed alert fails the job, whose retry re-sends only what is missing.
        if self.notifier is not None and decision.actions.notify_slack:
            self.notifier.notify(event, decision)

    def begin(self, events: Sequence[TicketEvent], owner: str) -> list[Attempt]:
        """Take the revisions for `owner` (a job id), in one round trip: per event DONE or BUSY
        (nothing to do: triaged, or another job holds it), else FIRST or AGAIN (see Store)."""
        return self.store.begin([e.key for e in events], owner)

    def process(self, event: TicketEvent, score: Callable[[TicketEvent], Scores]) -> TriageResult:
        """Triage one ticket revision on its own (begin + complete + finish)."""
        owner = uuid.uuid4().hex
        outcome = self.complete(event, self.begin([event], owner)[0], owner, score)
        try:
            self.finish([outcome])
        except BaseException:  # no job will run again under `owner`: free the revision for a later attempt
            self.release(event, owner)
            raise
        return outcome

    def complete(self, event: TicketEvent, attempt: Attempt, owner: str,
                 score: Callable[[TicketEvent], Scores]) -> TriageResult:
        """Triage a revision `begin` gave `attempt`; `score` is called only when it still needs it.
        The caller records a settled outcome with `finish` (a job records all of its tickets in
        one round trip); until then the revision stays leased to `owner`, and if the worker dies
        first, the next attempt finds the bot's note (`again`). If this raises, the lease goes
        back, so that a retry or a duplicate delivery can take it."""
        if not attempt.taken:  # BUSY: another job is writing it back now
            return TriageResult(Status.DUPLICATE if attempt == Attempt.DONE else Status.BUSY, key=event.key)
        try:
            outcome = self._complete(event, attempt, score)
        except BaseException as e:
            self.release(event, owner)
            if self.decisions is not None and not isinstance(e, Deferred):  # Deferred: waits for the LLM
                self.decisions.failed(event, e)
            raise
        if self.decisions is not None:
            self.decisions.decided(event, str(outcome.status), outcome.decision)
        return outcome

    def finish(self, outcomes: Sequence[TriageResult]) -> None:
        """Record the settled revisions as triaged and drop their leases, in one round trip."""
        self.store.finish([o.key for o in outcomes if o.settled])

    def release(self, event: TicketEvent, owner: str) -> None:
        """Give back a revision `owner` took and did not finish, for a retry or a duplicate's job."""
        self.store.release(event.key, owner)

    def _complete(self, event: TicketEvent, attempt: Attempt,
                  score: Callable[[TicketEvent], Scores]) -> TriageResult:
        writer = self.writers.get(event.source)
        if writer is None:
            raise ConfigError(f"no write-back configured for source {event.source!r}: set its variables "
                              "(see deploy/env.example)")
        key = event.key
        scores = score(event)
        refresher = self.refreshers.get(event.source)
        if refresher is not None:  # decide on the ticket as it is now, not as the payload had it
            event = refresher.refresh(event)
        if scores.language and not event.language:  # the event carries what the model detected
            event = replace(event, language=scores.language)
        decision = decide(event, scores, self.rules(), self.clock())
        a = decision.actions
        if not _writes_something(a):
            self._notify(event, decision)
            return TriageResult(Status.NOTHING_TO_WRITE, key, decision)
        # An earlier attempt may have died between writing and recording: the note's marker tells.
        if attempt == Attempt.AGAIN and a.note and writer.already_applied(event):
            self._notify(event, decision)
            log.info("ticket %s revision %s was already written back", event.ticket_id, event.revision)
            return TriageResult(Status.RECOVERED, key, decision)
        writer.apply(event, decision)
        self._notify(event, decision)
        log.info("triaged %s ticket %s: sentiment=%s urgency=%s rules=%s", event.source, event.ticket_id,
                 scores.sentiment.label, scores.urgency.label, ",".join(decision.matched_rules) or "-")
        return TriageResult(Status.WRITTEN, key, decision)
