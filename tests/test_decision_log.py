"""The decision log on a real Redis: entries, no text by default, caps, overrides, and the use case's calls."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from redis import Redis

import worker.store as store_module
from worker.decision import Actions, HeadScore, Scores, TriageDecision
from worker.decision_log import OVERRIDES, STREAM, DecisionLog, abstain_reason, guess_language, hour_key
from worker.errors import ConfigError, VendorUnavailable
from worker.events import TicketEvent
from worker.rules import parse_rules
from worker.settings import load_settings
from worker.triage import TriageService

T0 = datetime(2026, 11, 30, 10, 0, tzinfo=UTC).timestamp()
SECRET_TEXT = "my card 4111 1111 1111 1111 was charged twice"


def scores(sentiment: str = "frustrated", urgency: str = "high", conf: float = 0.9, abstain: bool = False) -> Scores:
    return Scores(HeadScore("unsure" if abstain else sentiment, {sentiment: conf}, conf, abstain),
                  HeadScore(urgency, {urgency: conf}, conf), "test-v1")


def event(**kw) -> TicketEvent:
    base = dict(source="zendesk", ticket_id="42", revision="c1", subject="Charged twice", text=SECRET_TEXT,
                requester_email="ann@acme.com", tags=("vip",), channel="email")
    base.update(kw)
    return TicketEvent(**base)  # type: ignore[arg-type]


def decision(e: TicketEvent, **actions) -> TriageDecision:
    a = Actions(add_tags=("triage_sentiment_frustrated", "triage_urgency_high"), priority="urgent", note=True,
                **actions)
    return TriageDecision(e.key, scores(), ("urgent",), a)


def link(e: TicketEvent) -> str:
    return f"https://acme.zendesk.com/agent/tickets/{e.ticket_id}"


def test_an_entry_says_what_was_decided_and_done_without_the_text(redis: Redis):
    log = DecisionLog(redis, links={"zendesk": link})
    e = event()
    entry_id = log.record(e, "written", decision(e), now=T0, received_at=T0 - 1.5)
    got = log.get(entry_id or "")
    assert got is not None and got.at.timestamp() == T0
    assert got["source"] == "zendesk" and got["ticket_id"] == "42" and got["link"].endswith("/tickets/42")
    assert got["sentiment"]["label"] == "frustrated" and got["urgency"]["confidence"] == 0.9
    assert got["rules"] == ["urgent"] and got["actions"]["priority"] == "urgent" and got["actions"]["note"]
    assert got["model_version"] == "test-v1" and got["latency_ms"] == 1500.0 and got["abstain_reason"] == "none"
    assert got["event"]["requester_domain"] == "acme.com" and got["language"] == "en"
    raw = str(redis.xrange(STREAM))
    assert "4111" not in raw and "Charged twice" not in raw and "ann@" not in raw  # customer data stays out
    counts = redis.hgetall(hour_key(datetime.fromtimestamp(T0, UTC)))
    assert counts[b"n"] == b"1" and counts[b"s:frustrated"] == b"1" and counts[b"r:urgent"] == b"1"


def test_text_is_kept_only_when_opted_in(redis: Redis):
    log = DecisionLog(redis, keep_text=True)
    e = event()
    got = log.get(log.record(e, "written", decision(e), now=T0) or "")
    assert got is not None and got["text"] == SECRET_TEXT
    assert got.event().text == SECRET_TEXT and got.event().tags == ("vip",)


def test_the_stream_is_capped_by_size_and_by_age(redis: Redis):
    log = DecisionLog(redis, max_entries=100, retention_days=1)
    e = event()
    for i in range(600):
        log.record(event(revision=str(i)), "written", decision(e), now=T0 + i)
    assert 100 <= redis.xlen(STREAM) < 600  # approximate trimming: whole nodes
    redis.delete(STREAM)
    log = DecisionLog(redis, max_entries=10_000, retention_days=1)
    for i in range(50):  # two days old
        log.record(event(revision=f"old{i}"), "written", decision(e), now=T0 - 2 * 86400 + i)
    log._since_trim = 10_000  # the next record trims by age
    log.record(e, "written", decision(e), now=T0)
    assert redis.xlen(STREAM) == 1


def test_an_agent_changing_what_the_bot_set_is_an_override_naming_the_decision(redis: Redis):
    log = DecisionLog(redis, links={"zendesk": link})
    first = event()
    log.record(first, "written", decision(first), now=T0)
    # the agent set priority low and removed the bot's urgency tag; a new comment comes in
    later = event(revision="c2", priority="low", priority_set_by_human=True,
                  tags=("vip", "triage_sentiment_frustrated"))
    log.record(later, "nothing_to_write", decision(later), now=T0 + 60)
    overrides = log.overrides()
    assert len(overrides) == 1
    o = overrides[0]
    assert o["decision_key"] == first.key and o["decision_at"] == T0 and o["fields"]["priority"] == ["urgent", "low"]
    assert o["fields"]["tags"][0] == "triage_urgency_high"
    assert first.key in log.overridden_keys()
    third = event(revision="c3", priority="low", priority_set_by_human=True)
    log.record(third, "nothing_to_write", decision(third), now=T0 + 120)
    assert redis.xlen(OVERRIDES) == 1  # reported once



def test_an_override_seen_by_a_revision_the_bot_writes_again_keeps_watching_what_it_writes_now(redis: Redis):
    log = DecisionLog(redis)
    first = event()
    log.record(first, "written", decision(first), now=T0)
    second = event(revision="c2", priority="low", priority_set_by_human=True)  # the agent's priority; a new group
    log.record(second, "written", TriageDecision(second.key, scores(), ("g",), Actions(group="Tier 2")), now=T0 + 60)
    third = event(revision="c3", priority="low", priority_set_by_human=True, group="Tier 1")
    log.record(third, "nothing_to_write", decision(third), now=T0 + 120)
    assert [o["fields"].get("group") for o in log.overrides()] == [["Tier 2", "Tier 1"], None]


def test_suggestions_settle_only_on_a_human_change_and_a_rule_that_sets_the_field_withdraws_its_own(
        redis: Redis):
    seen: list[dict] = []
    log = DecisionLog(redis, observer=lambda d: seen.append(d["suggestion"]) if "suggestion" in d else None)
    first = event(priority="normal", priority_set_by_human=True)
    suggest = TriageDecision(first.key, scores(), ("s",), Actions(
        note=True, suggested=(("priority", "urgent"), ("group", "Tier 2"), ("assignee", "ana@acme.com"))))
    log.record(first, "written", suggest, now=T0)
    assert set(redis.hkeys("triage:suggested:zendesk:42")) == {b"priority", b"group"}  # no e-mail assignee
    # the priority an agent chose before the suggestion is no answer to it; the bot setting it is none either
    log.record(event(revision="c2", priority="normal", priority_set_by_human=True), "nothing_to_write",
               decision(first), now=T0 + 60)
    log.record(event(revision="c3", priority="high", priority_set_by_human=False), "nothing_to_write",
               decision(first), now=T0 + 90)
    assert seen == []
    # a rule now sets the group itself: that withdraws the group's suggestion
    sets_group = TriageDecision(first.key, scores(), ("g",), Actions(group="Tier 1"))
    log.record(event(revision="c4", priority="normal", priority_set_by_human=True), "written", sets_group,
               now=T0 + 120)
    log.record(event(revision="c5", priority="high", priority_set_by_human=True, group="Tier 1"),
               "nothing_to_write", decision(first), now=T0 + 180)
    assert seen == [{"priority": "rejected"}] and not redis.exists("triage:suggested:zendesk:42")
    jira = event(source="jira", ticket_id="SUP-1")  # a Jira event carries no group: left to the history pull
    log.record(jira, "written", TriageDecision(jira.key, scores(), ("s",), Actions(
        note=True, suggested=(("group", "Tier 2"), ("priority", "urgent")))), now=T0 + 240)
    assert redis.hkeys("triage:suggested:jira:SUP-1") == [b"priority"]


def test_no_override_when_the_ticket_still_has_what_the_bot_set(redis: Redis):
    log = DecisionLog(redis)
    first = event()
    log.record(first, "written", decision(first), now=T0)
    later = event(revision="c2", priority="urgent", tags=("vip", "triage_sentiment_frustrated", "triage_urgency_high"))
    log.record(later, "nothing_to_write", decision(later), now=T0 + 60)
    assert log.overrides() == []


def test_recent_filters_newest_first(redis: Redis):
    log = DecisionLog(redis)
    for i in range(30):
        e = event(ticket_id=str(i), source="jira" if i % 3 == 0 else "zendesk")
        d = TriageDecision(e.key, scores(abstain=i % 5 == 0), ("urgent",) if i % 2 else (), Actions())
        log.record(e, "nothing_to_write", d, now=T0 + i)
    newest = log.recent(5)
    assert [d["ticket_id"] for d in newest] == ["29", "28", "27", "26", "25"]
    jira = log.recent(50, source="jira")
    assert len(jira) == 10 and all(d["source"] == "jira" for d in jira)
    assert len(log.recent(50, rule="urgent")) == 15
    assert {d["ticket_id"] for d in log.recent(50, abstained=True)} == {"0", "5", "10", "15", "20", "25"}
    assert len(log.recent(50, label="unsure")) == 6
    page2 = log.recent(5, before="(" + newest[-1].id)
    assert page2[0]["ticket_id"] == "24"
    hours = log.hourly(datetime.fromtimestamp(T0, UTC), 2)
    assert hours[-1][1]["n"] == 30 and hours[0][1] == {}


def test_a_redis_error_is_counted_not_raised(redis: Redis, caplog: pytest.LogCaptureFixture):
    dead = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    log = DecisionLog(dead)
    e = event()
    assert log.record(e, "written", decision(e)) is None
    assert log.errors == 1 and "not logged: Redis unreachable (ConnectionError)" in caplog.text
    # a command Redis refuses (here: a replayed entry older than the stream's newest) says so
    log = DecisionLog(redis)
    log.record(e, "written", decision(e), now=T0)
    assert log.record(e, "written", decision(e), now=T0 - 60) is None
    assert log.errors == 1 and "not logged: Redis refused it (ResponseError)" in caplog.text


def test_abstain_reason_and_language_guess():
    assert abstain_reason(scores()) == "none"
    assert abstain_reason(scores(abstain=True)) == "sentiment"
    empty = Scores(HeadScore("unsure", {}, 0.0, True), HeadScore("unsure", {}, 0.0, True), "v")
    assert abstain_reason(empty) == "empty_text"
    assert guess_language("Bonjour, je ne peux pas me connecter à mon compte depuis hier") == "fr"
    assert guess_language("Hallo, ich kann mich nicht mit meinem Konto anmelden, bitte helfen") == "de"
    assert guess_language("The site is down and I cannot log in to my account") == "en"
    assert guess_language("ログインできません。助けてください") == "ja"
    assert guess_language("ok") == "und"


class _Writer:
    def __init__(self, fail: Exception | None = None) -> None:
        self.fail = fail

    def apply(self, event: TicketEvent, decision: TriageDecision) -> None:
        if self.fail is not None:
            raise self.fail

    def already_applied(self, event: TicketEvent) -> bool:
        return False


class _Observer:
    def __init__(self) -> None:
        self.seen: list[dict] = []
        self.failures: list[tuple[str, str]] = []


def _store(redis: Redis):
    cls = getattr(store_module, "RedisStore", None) or store_module.Store
    return cls(redis)


def test_the_use_case_logs_each_decision_and_counts_failures(redis: Redis):
    obs = _Observer()
    log = DecisionLog(redis, observer=obs.seen.append,
                      failure_observer=lambda e, kind: obs.failures.append((e.key, kind)))
    rules = parse_rules("rules:\n  - name: urgent\n    when: {urgency: high}\n    then: {priority: urgent}\n")
    service = TriageService(lambda: rules, {"zendesk": _Writer()}, _store(redis), decisions=log)
    outcome = service.process(event(), lambda e: scores())
    assert outcome.status == "written"
    [logged] = log.recent(5)
    assert logged["status"] == "written" and logged["rules"] == ["urgent"] and logged["written"]
    assert obs.seen[-1]["status"] == "written"
    seen = len(obs.seen)
    service.process(event(), lambda e: scores())  # a duplicate delivery: nothing decided, nothing logged
    assert log.count() == 1 and len(obs.seen) == seen
    failing = TriageService(lambda: rules, {"zendesk": _Writer(VendorUnavailable("503"))}, _store(redis),
                            decisions=log)
    with pytest.raises(VendorUnavailable):
        failing.process(event(revision="c9"), lambda e: scores())
    assert obs.failures == [("zendesk:42:c9", "VendorUnavailable")] and log.count() == 1


def test_decision_log_settings_are_validated():
    o = load_settings({"TRIAGE_DECISION_LOG_MAX": "5000", "TRIAGE_DECISION_LOG_DAYS": "7",
                       "TRIAGE_DECISION_LOG_TEXT": "1"}).observability
    assert (o.decision_log_max, o.decision_log_days, o.decision_log_text) == (5000, 7, True)
    assert load_settings({}).observability.decision_log_text is False
    with pytest.raises(ConfigError, match="TRIAGE_DECISION_LOG_MAX=5 must be at least 100"):
        load_settings({"TRIAGE_DECISION_LOG_MAX": "5"})
    with pytest.raises(ConfigError, match="TRIAGE_DECISION_LOG_TEXT"):
        load_settings({"TRIAGE_DECISION_LOG_TEXT": "maybe"})
    with pytest.raises(ConfigError, match="TRIAGE_ADMIN_TOKEN is too short"):
        load_settings({"TRIAGE_ADMIN_TOKEN": "short"})

