"""The use case with our own ports faked (a recording writer; an in-memory store) and the real Redis store."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from worker.decision import Actions, HeadScore, Scores, TriageDecision, note_body
from worker.errors import ConfigError, VendorUnavailable
from worker.events import EventError, TicketEvent
from worker.ports import Attempt, marker
from worker.rules import RuleSet, parse_rules
from worker.settings import Secret, load_settings
from worker.store import Store
from worker.triage import Status, TriageService, decide

NOW = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


def scores(sentiment: str = "frustrated", urgency: str = "high", conf: float = 0.9) -> Scores:
    return Scores(HeadScore(sentiment, {sentiment: conf}, conf), HeadScore(urgency, {urgency: conf}, conf), "test-v1",
                  {"sentiment": [("broken", 0.4)], "urgency": [("now", 0.3)]})


def event(**kw) -> TicketEvent:
    base = dict(source="zendesk", ticket_id="42", revision="c1", subject="Site down", text="Nothing loads")
    base.update(kw)
    return TicketEvent(**base)  # type: ignore[arg-type]


RULES = parse_rules("""
rules:
  - name: urgent
    when: {urgency: high}
    then: {priority: urgent, note: true}
  - name: vip
    when: {tags_present: [vip]}
    then: {assignee: "7", override_human: true}
""")


class RecordingWriter:
    def __init__(self, applied: bool = False, fail: Exception | None = None) -> None:
        self.calls: list[TriageDecision] = []
        self.applied = applied
        self.fail = fail

    def apply(self, event: TicketEvent, decision: TriageDecision) -> None:
        if self.fail is not None:
            raise self.fail
        self.calls.append(decision)

    def already_applied(self, event: TicketEvent) -> bool:
        return self.applied


class MemoryStore:
    """worker.ports.Store in a dict: the exactly-once protocol without Redis (no TTLs)."""

    def __init__(self) -> None:
        self.done: set[str] = set()
        self.started: set[str] = set()
        self.leases: dict[str, str] = {}

    def begin(self, keys: Sequence[str], owner: str) -> list[Attempt]:
        out = []
        for key in keys:
            if key in self.done:
                out.append(Attempt.DONE)
            elif self.leases.get(key, owner) != owner:
                out.append(Attempt.BUSY)
            else:
                self.leases[key] = owner
                out.append(Attempt.AGAIN if key in self.started else Attempt.FIRST)
                self.started.add(key)
        return out

    def finish(self, keys: Sequence[str]) -> None:
        for key in keys:
            self.done.add(key)
            self.leases.pop(key, None)

    def release(self, key: str, owner: str) -> None:
        if self.leases.get(key) == owner:
            del self.leases[key]


def test_the_service_on_an_in_memory_store():
    store, writer = MemoryStore(), RecordingWriter()
    service = TriageService(lambda: RULES, {"zendesk": writer}, store, clock=lambda: NOW)
    assert service.process(event(), lambda e: scores()).status == Status.WRITTEN
    assert service.process(event(), lambda e: scores()).status == Status.DUPLICATE and len(writer.calls) == 1
    # a job wrote a ticket and died before finish(): its next run finds the note
    e = event(revision="c2")
    (first,) = service.begin([e], "job-1")
    assert first == Attempt.FIRST and service.complete(e, first, "job-1", lambda e: scores()).settled
    assert service.begin([e], "job-2") == [Attempt.BUSY]
    writer.applied = True
    (again,) = service.begin([e], "job-1")
    result = service.complete(e, again, "job-1", lambda e: scores())
    assert again == Attempt.AGAIN and result.status == Status.RECOVERED and len(writer.calls) == 2
    service.finish([result])
    assert store.done == {event().key, e.key} and not store.leases
    # a failed write-back gives the revision back
    writer.fail = VendorUnavailable("Zendesk could not serve PUT ticket 42 (503)", 503)
    e3 = event(revision="c3")
    with pytest.raises(VendorUnavailable):
        service.complete(e3, service.begin([e3], "job-3")[0], "job-3", lambda e: scores())
    assert e3.key not in store.leases and service.begin([e3], "job-4") == [Attempt.AGAIN]


def test_event_json_round_trip_and_validation():
    e = event(tags=("a", "b"), extra={"project": "SUP"})
    assert TicketEvent.from_json(e.to_json()) == e
    assert e.key == "zendesk:42:c1"
    with pytest.raises(EventError, match="unknown source"):
        event(source="email")
    with pytest.raises(EventError, match="unknown event fields"):
        TicketEvent.from_dict({**e.__dict__, "surprise": 1})


def test_decide_adds_default_tags_and_replaces_our_stale_ones():
    d = decide(event(tags=("triage_sentiment_satisfied", "billing")), scores(), RULES, NOW)
    assert set(d.actions.add_tags) == {"triage_sentiment_frustrated", "triage_urgency_high"}
    assert d.actions.remove_tags == ("triage_sentiment_satisfied",)
    assert d.actions.priority == "urgent" and d.matched_rules == ("urgent",)


def test_decide_keeps_a_priority_an_agent_chose():
    # The connector says an agent chose "low": the rule's "urgent" is dropped.
    d = decide(event(priority="low", priority_set_by_human=True), scores(), RULES, NOW)
    assert d.actions.priority == ""
    # The bot set "high" earlier: the value is ours, the rule may change it.
    d = decide(event(priority="high"), scores(), RULES, NOW)
    assert d.actions.priority == "urgent"


def test_override_human_lets_the_rule_win():
    d = decide(event(assignee="3", assignee_set_by_human=True, tags=("vip",)), scores(), RULES, NOW)
    assert d.actions.assignee == "7"


def test_no_write_when_the_ticket_already_matches():
    e = event(priority="urgent", tags=("triage_sentiment_neutral", "triage_urgency_low"))
    d = decide(e, scores("neutral", "low"), RuleSet(), NOW)
    assert d.actions == Actions()


def test_service_writes_once_per_revision(redis):
    writer = RecordingWriter()
    service = TriageService(lambda: RULES, {"zendesk": writer}, Store(redis), clock=lambda: NOW)
    assert service.process(event(), lambda e: scores()).status == "written"
    assert service.process(event(), lambda e: scores()).status == "duplicate"
    assert len(writer.calls) == 1
    # A new customer comment is a new revision: triaged again.
    assert service.process(event(revision="c2"), lambda e: scores()).status == "written"
    assert len(writer.calls) == 2


def test_crashed_attempt_is_not_written_twice(redis):
    store = Store(redis)
    e = event()
    assert store.begin([e.key], "job-1") == ["first"]  # job-1 started, wrote, and its worker died before finish()
    writer = RecordingWriter(applied=True)
    service = TriageService(lambda: RULES, {"zendesk": writer}, store, clock=lambda: NOW)
    assert service.begin([e], "job-2") == ["busy"]  # a duplicate's job leaves it to job-1 while job-1 holds it
    assert service.complete(e, Attempt.BUSY, "job-2", lambda e: scores()).status == Status.BUSY
    (again,) = service.begin([e], "job-1")  # RQ runs job-1 again (its worker died)
    assert again == "again"
    assert service.complete(e, again, "job-1", lambda e: scores()).status == "recovered"
    assert writer.calls == []
    # ... and if the marker is absent the write happens.
    e2 = event(revision="c9")
    store.begin([e2.key], "job-3")
    writer.applied = False
    (again,) = service.begin([e2], "job-3")
    outcome = service.complete(e2, again, "job-3", lambda e: scores())
    assert outcome.status == "written" and outcome.settled
    assert store.begin([e2.key], "job-4") == ["busy"]  # leased to job-3 until it records its tickets
    service.finish([outcome])
    assert store.begin([e2.key], "job-4") == ["done"]


def test_a_lease_lasts_until_it_expires_or_is_given_back(redis):
    store = Store(redis, lease_ttl_s=1)
    a, b = event(revision="c1"), event(revision="c2")
    assert store.begin([a.key, b.key], "job-1") == ["first", "first"]
    assert store.begin([a.key, b.key], "job-2") == ["busy", "busy"]
    store.release(a.key, "job-2")  # not job-2's to give back
    assert store.begin([a.key], "job-2") == ["busy"]
    store.release(a.key, "job-1")
    assert store.begin([a.key], "job-2") == ["again"]
    time.sleep(1.1)  # job-1 died long ago: its lease expired
    assert store.begin([b.key], "job-2") == ["again"]


def test_two_jobs_at_once_write_a_revision_once(redis):
    entered, go = threading.Event(), threading.Event()

    class SlowWriter(RecordingWriter):
        def apply(self, event: TicketEvent, decision: TriageDecision) -> None:
            entered.set()
            go.wait(5)
            super().apply(event, decision)

    writer = SlowWriter()
    service = TriageService(lambda: RULES, {"zendesk": writer}, Store(redis), clock=lambda: NOW)
    e = event()
    first = threading.Thread(target=lambda: service.finish([service.complete(e, service.begin([e], "job-1")[0],
                                                                              "job-1", lambda e: scores())]))
    first.start()
    assert entered.wait(5)  # job-1 is writing the ticket back
    (attempt,) = service.begin([e], "job-2")  # a second job with the same revision, on another worker
    assert service.complete(e, attempt, "job-2", lambda e: scores()).status == "busy"
    go.set()
    first.join(5)
    assert len(writer.calls) == 1 and service.begin([e], "job-3") == ["done"]


def test_a_failed_write_back_gives_the_revision_back(redis):
    writer = RecordingWriter(fail=VendorUnavailable("Zendesk could not serve PUT ticket 1 (503)", 503))
    service = TriageService(lambda: RULES, {"zendesk": writer}, Store(redis), clock=lambda: NOW)
    e = event()
    (first,) = service.begin([e], "job-1")
    with pytest.raises(VendorUnavailable):
        service.complete(e, first, "job-1", lambda e: scores())
    writer.fail = None
    assert service.process(e, lambda e: scores()).status == "written"  # a duplicate delivery's job may take it


def test_note_names_scores_words_rules_and_model():
    body = note_body(scores(), ("urgent",))
    assert "sentiment: frustrated" in body and "broken" in body and "urgent" in body and "test-v1" in body
    assert marker(event()) == "[triage:zendesk:42:c1]"


def test_settings_validate_and_name_the_variable(tmp_path):
    s = load_settings({"REDIS_URL": "redis://x:6379/0", "TRIAGE_RETRY_INTERVALS": "1,2"}, dotenv=None)
    assert s.retry_intervals_s == (1, 2) and not s.zendesk.enabled
    with pytest.raises(ConfigError, match="REDIS_URL"):
        load_settings({"REDIS_URL": "localhost:6379"}, dotenv=None)
    with pytest.raises(ConfigError, match="ZENDESK_API_TOKEN"):
        load_settings({"ZENDESK_SUBDOMAIN": "acme", "ZENDESK_EMAIL": "a@b.c", "ZENDESK_WEBHOOK_SECRET": "s"},
                      dotenv=None)
    with pytest.raises(ConfigError, match="TRIAGE_BATCH_SIZE"):
        load_settings({"TRIAGE_BATCH_SIZE": "lots"}, dotenv=None)
    with pytest.raises(ConfigError, match="TRIAGE_RULES"):
        load_settings({"TRIAGE_RULES": str(tmp_path / "missing.yaml")}, dotenv=None)
    env = tmp_path / ".env"
    env.write_text("ZENDESK_SUBDOMAIN=acme\nZENDESK_EMAIL=bot@acme.com\nZENDESK_API_TOKEN=tok123\n"
                   "ZENDESK_WEBHOOK_SECRET=s3cr3t-hook\n")
    s = load_settings(dotenv=str(env))
    assert s.zendesk.enabled and s.zendesk.api_token.reveal() == "tok123"
    assert "tok123" not in repr(s) and "s3cr3t-hook" not in repr(s)
    assert repr(Secret("x")) == "Secret('***')"


def test_a_humans_choice_wins_in_one_place():
    keep, override = Actions(priority="urgent"), Actions(priority="urgent", override_human=True)
    assert keep.sets("urgent", set_by_human=False) and not keep.sets("urgent", set_by_human=True)
    assert override.sets("urgent", set_by_human=True) and not keep.sets("", set_by_human=False)
    human = event(priority="low", priority_set_by_human=True)
    assert decide(human, scores(), RULES, NOW).actions.priority == ""  # the agent's low stays
