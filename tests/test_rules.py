"""The routing rules engine (worker.rules) and the rules file loader/reloader (worker.rules_file)."""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from worker.decision import Actions, HeadScore, Scores
from worker.errors import RulesError
from worker.events import TicketEvent
from worker.rules import RuleSet, normalize_tag, parse_rules, routing_warnings
from worker.rules_file import RulesReloader, load_rules

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2024, 1, 15, 10, 0, tzinfo=UTC)  # a Monday, 11:00 in Paris
HOURS = {"timezone": "Europe/Paris", "days": ["mon", "tue", "wed", "thu", "fri"],
         "start": "09:00", "end": "18:00"}


def head(label: str, confidence: float = 0.9, abstained: bool = False) -> HeadScore:
    return HeadScore(label=label, probabilities={label: confidence}, confidence=confidence,
                     abstained=abstained)


def scores(sentiment: str = "neutral", urgency: str = "low", confidence: float = 0.9,
           urgency_confidence: float | None = None, sentiment_abstained: bool = False,
           urgency_abstained: bool = False) -> Scores:
    return Scores(head(sentiment, confidence, sentiment_abstained),
                  head(urgency, confidence if urgency_confidence is None else urgency_confidence,
                       urgency_abstained),
                  model_version="test-1")


def event(**kw: Any) -> TicketEvent:
    values: dict[str, Any] = {"source": "zendesk", "ticket_id": "42", "revision": "r1",
                              "subject": "Question", "text": "Hello there"}
    values.update(kw)
    return TicketEvent(**values)


def one_rule(when: dict[str, Any], **top: Any) -> RuleSet:
    doc = {"default_tags": False, **top, "rules": [{"name": "r", "when": when, "then": {"add_tags": ["hit"]}}]}
    return parse_rules(yaml.safe_dump(doc, sort_keys=False))


def hit(when: dict[str, Any], ev: TicketEvent | None = None, sc: Scores | None = None,
        now: datetime = NOW, **top: Any) -> bool:
    matched, actions = one_rule(when, **top).decide(ev or event(), sc or scores(), now)
    assert (matched == ("r",)) == (actions.add_tags == ("hit",))
    return matched == ("r",)


def error(text: str, path: str = "") -> RulesError:
    with pytest.raises(RulesError) as info:
        parse_rules(text, path)
    return info.value


# -- parsing ---------------------------------------------------------------------------

FULL = """\
version: 1
tag_prefix: triage_
default_tags: true
business_hours: {timezone: Europe/Paris, days: [mon, tue, wed, thu, fri], start: "09:00", end: "18:00"}
rules:
  - name: angry-and-urgent
    when:                     # all conditions must hold; a list value means "any of"
      source: [zendesk, jira]   # project is a Jira condition: a zendesk-only rule could never match
      sentiment: frustrated
      urgency: [high]
      confidence_at_least: 0.6
      confidence_below: 0.9
      abstained: false
      keywords: [outage, "data loss"]
      regex: "refund|charge ?back"
      channel: [email, web]
      tags_present: [vip]
      tags_absent: [spam]
      organization: [Acme Inc]
      requester_domain: [acme.com]
      business_hours: false
      project: [SUP]
    then:
      add_tags: [escalated]
      priority: urgent
      group: "Tier 2"
      assignee: "12345"
      note: true
      note_text: "Escalated by rule"
      notify_slack: "#support-alerts"
      override_human: false
      stop: true
"""


def test_full_format_parses() -> None:
    rs = parse_rules(FULL, "rules.yaml")
    assert rs.tag_prefix == "triage_" and rs.default_tags and rs.path == "rules.yaml"
    assert rs.business_hours is not None and rs.business_hours.days == frozenset(range(5))
    assert (rs.business_hours.start, rs.business_hours.end) == (9 * 60, 18 * 60)
    [rule] = rs.rules
    assert (rule.name, rule.line, rule.stop, len(rule.conditions)) == ("angry-and-urgent", 6, True, 15)
    assert rule.actions == Actions(add_tags=("escalated",), priority="urgent", group="Tier 2",
                                   assignee="12345", note=True, note_text="Escalated by rule",
                                   notify_slack=("#support-alerts",), override_human=False)


def test_full_format_matches_a_ticket_that_fits_every_condition() -> None:
    rs = parse_rules(FULL)
    ev = event(subject="Outage!", text="We want a REFUND", channel="email", tags=("VIP",),
               organization="acme inc", requester_email="bob@Acme.com", extra={"project": "SUP"})
    saturday = datetime(2024, 1, 13, 12, 0, tzinfo=UTC)
    sc = scores("frustrated", "high", confidence=0.7)
    matched, actions = rs.decide(ev, sc, saturday)
    assert matched == ("angry-and-urgent",)
    assert actions.add_tags == ("triage_sentiment_frustrated", "triage_urgency_high", "escalated")
    assert actions.priority == "urgent"
    assert rs.decide(ev, sc, NOW)[0] == ()  # Monday 11:00 Paris: inside business hours


def test_example_file_parses() -> None:
    rs = load_rules(ROOT / "deploy" / "rules.example.yaml")
    assert len(rs.rules) >= 5 and rs.business_hours is not None
    assert len({r.name for r in rs.rules}) == len(rs.rules)


def test_defaults_and_optional_sections() -> None:
    for text in ("version: 1\n", "rules:\n", "rules: []\n", "tag_prefix: x_\n"):
        rs = parse_rules(text)
        assert rs.rules == () and rs.default_tags and rs.business_hours is None
    assert RuleSet().decide(event(), scores(), NOW) == (
        (), Actions(add_tags=("triage_sentiment_neutral", "triage_urgency_low")))


def test_rule_without_when_matches_everything_and_null_sections_are_empty() -> None:
    rs = parse_rules("rules:\n  - name: all\n    then:\n  - name: tagged\n    when:\n    then: {add_tags: x}\n")
    assert rs.decide(event(), scores(), NOW)[0] == ("all", "tagged")


def test_scalars_are_read_as_written() -> None:
    rs = parse_rules("business_hours: {timezone: UTC, start: 08:30, end: 18:00}\n"
                     "rules:\n  - name: r\n    then: {assignee: 12345, group: 2, priority: URGENT}\n")
    assert rs.business_hours is not None and (rs.business_hours.start, rs.business_hours.end) == (510, 1080)
    assert rs.rules[0].actions == Actions(assignee="12345", group="2", priority="urgent")


def test_tags_are_normalised_and_deduplicated() -> None:
    rs = parse_rules("tag_prefix: 'My Triage '\nrules:\n  - name: r\n"
                     "    then: {add_tags: ['Needs  Review', needs_review, VIP], notify_slack: [a, a, b]}\n")
    matched, actions = rs.decide(event(), scores("Satisfied"), NOW)
    assert actions.add_tags == ("my_triage_sentiment_satisfied", "my_triage_urgency_low", "needs_review", "vip")
    assert actions.notify_slack == ("a", "b")
    assert normalize_tag("  Hello\tBig World ") == "hello_big_world"


def test_note_text_implies_note() -> None:
    rs = parse_rules("rules:\n  - name: r\n    then: {note_text: see runbook}\n")
    assert rs.rules[0].actions.note and rs.rules[0].actions.note_text == "see runbook"


# -- validation errors -----------------------------------------------------------------

def rule(when: str = "", then: str = "{}") -> str:
    """A one-rule file: `when` lines start on line 4, `then` is on the line after them."""
    body = "".join(f"      {line}\n" for line in when.splitlines())
    return "version: 1\nrules:\n  - name: r\n" + (f"    when:\n{body}" if when else "") + f"    then: {then}\n"


BAD = [
    # (text, line, fragments of the message)
    (rule("urgncy: high"), 5, ["unknown key 'urgncy'", "did you mean 'urgency'?", "valid keys: source, sentiment"]),
    (rule("urgency: hgh"), 5, ["unknown urgency 'hgh'", "did you mean 'high'", "allowed: high, medium, low, unsure"]),
    (rule("urgency:\n  - high\n  - hgh"), 7, ["unknown urgency 'hgh'"]),
    (rule("sentiment: angry"), 5, ["unknown sentiment 'angry'", "allowed: frustrated, neutral, satisfied, unsure"]),
    (rule("source: email"), 5, ["unknown source 'email'", "allowed: zendesk, jira, slack, sandbox"]),
    (rule("regex: 'refund('"), 5, ["invalid regex 'refund('", "missing ), unterminated subpattern"]),
    (rule("regex: [ok, '[a-']"), 5, ["invalid regex '[a-'", "unterminated character set"]),
    (rule("confidence_at_least: high"), 5, ["confidence_at_least", "must be a number", "'high'"]),
    (rule("confidence_below: 1.5"), 5, ["between 0 and 1", "1.5"]),
    (rule("confidence_at_least: 0.9\nconfidence_below: 0.5"), 6, ["can never match"]),
    (rule("abstained: 'no'"), 5, ["abstained", "must be true or false", "a string"]),
    (rule("keywords: {a: 1}"), 5, ["keywords", "must be a string or a list", "got a mapping"]),
    (rule("keywords: []"), 5, ["keywords", "empty list"]),
    (rule("tags_present:"), 5, ["tags_present", "must be a string", "an empty value"]),
    (rule("channel: ['']"), 5, ["channel", "must not be empty"]),
    (rule("business_hours: true"), 5, ["business_hours", "needs a top-level business_hours section"]),
    (rule(then="{priority: critical}"), 4, ["unknown priority 'critical'", "allowed: low, normal, high, urgent"]),
    (rule(then="{priorty: high}"), 4, ["unknown key 'priorty'", "did you mean 'priority'", "valid keys: add_tags"]),
    (rule(then="{note: 'yes please'}"), 4, ["note", "must be true or false"]),
    (rule(then="{group: [a, b]}"), 4, ["group", "must be a string, got a list"]),
    (rule(then="{note: false, note_text: hi}"), 4, ["note_text but note: false"]),
    (rule(then="[stop]"), 4, ["'then' of rule 'r' must be a mapping", "got a list"]),
    ("rules:\n  - name: r\n    whn: {}\n    then: {}\n", 3, ["unknown key 'whn' in rule #1", "did you mean 'when'"]),
    ("rules:\n  - name: r\n    when: {}\n", 2, ["rule #1 is missing 'then'"]),
    ("rules:\n  - then: {}\n", 2, ["rule #1 is missing 'name'"]),
    ("rules:\n  - name: r\n    then: {}\n    then: {}\n", 4, ["duplicate key 'then'", "first on line 3"]),
    ("rules:\n  - name: a\n    then: {}\n  - name: b\n    then: {}\n  - name: a\n    then: {}\n", 6,
     ["duplicate rule name 'a'", "first on line 2"]),
    ("rules:\n  name: r\n", 2, ["rules must be a list"]),
    ("rules:\n  - just a string\n", 2, ["rule #1 must be a mapping"]),
    ("version: 2\n", 1, ["unsupported version '2'"]),
    ("version: 1\nrulez: []\n", 2, ["unknown key 'rulez'", "did you mean 'rules'", "valid keys: version, tag_prefix"]),
    ("default_tags: maybe\n", 1, ["default_tags must be true or false"]),
    ("- a\n- b\n", 1, ["the rules file must be a mapping", "got a list"]),
    ("\n\nbusiness_hours:\n  timezone: Europe/Pari\n  start: '09:00'\n  end: '18:00'\n", 4,
     ["unknown time zone 'Europe/Pari'", "did you mean 'Europe/Paris'"]),
    ("business_hours: {timezone: Nowhere/Land, start: '09:00', end: '18:00'}\n", 1,
     ["unknown time zone 'Nowhere/Land'"]),
    ("business_hours: {timezone: Europe, start: '09:00', end: '18:00'}\n", 1, ["unknown time zone 'Europe'"]),
    ("business_hours: {timezone: UTC, start: '09:00'}\n", 1, ["business_hours is missing 'end'"]),
    ("business_hours: {timezone: UTC, start: 9am, end: '18:00'}\n", 1, ["start must be a time HH:MM", "'9am'"]),
    ("business_hours:\n  timezone: UTC\n  start: '09:00'\n  end: '25:00'\n", 4,
     ["end must be a time HH:MM", "'25:00'"]),
    ("business_hours: {timezone: UTC, start: '24:00', end: '18:00'}\n", 1, ["start must be a time"]),
    ("business_hours: {timezone: UTC, start: '09:00', end: '09:00'}\n", 1, ["start and end are the same"]),
    ("business_hours:\n  timezone: UTC\n  days: [mon, fryday]\n  start: '09:00'\n  end: '18:00'\n", 3,
     ["unknown day 'fryday'", "did you mean 'friday'", "allowed: mon, tue"]),
    ("business_hours: {timezone: UTC, start: '09:00', end: '18:00', hours: 8}\n", 1,
     ["unknown key 'hours' in business_hours", "valid keys: timezone, days, start, end"]),
    # YAML syntax errors: the line comes from the YAML mark
    ("rules:\n  - name: r\n\tthen: {}\n", 3, ["YAML syntax error", "'\\t'"]),
    ("rules:\n  - name: 'r\n", 3, ["YAML syntax error", "unexpected end of stream"]),
    ("rules: [a, b\nversion: 1\n", 2, ["YAML syntax error"]),
]


@pytest.mark.parametrize(("text", "line", "fragments"), BAD, ids=[f"{i}-{b[2][0][:30]}" for i, b in enumerate(BAD)])
def test_validation_errors_name_the_line_and_the_problem(text: str, line: int, fragments: list[str]) -> None:
    e = error(text)
    assert e.line == line, str(e)
    assert str(e).startswith(f"line {line}: ")
    for fragment in fragments:
        assert fragment in str(e)


@pytest.mark.parametrize("text", ["", "   \n", "# only a comment\n"])
def test_empty_file_is_a_clear_error(text: str) -> None:
    e = error(text, "/etc/triage/rules.yaml")
    assert e.line is None and e.path == "/etc/triage/rules.yaml"
    assert str(e) == "/etc/triage/rules.yaml: the rules file is empty: expected 'version: 1' and a 'rules:' list"


def test_error_message_names_the_path_and_line() -> None:
    e = error(rule("urgency: hgh"), "rules.yaml")
    assert str(e).startswith("rules.yaml:5: unknown urgency 'hgh'") and e.path == "rules.yaml"


# -- conditions ------------------------------------------------------------------------

@pytest.mark.parametrize(("when", "kw", "expected"), [
    ({"source": "zendesk"}, {}, True),
    ({"source": ["jira", "slack"]}, {}, False),
    ({"source": "jira"}, {"source": "jira"}, True),
    ({"channel": ["email", "web"]}, {"channel": "Email"}, True),
    ({"channel": "web"}, {"channel": "api"}, False),
    ({"organization": ["Acme Inc"]}, {"organization": "ACME INC"}, True),
    ({"organization": "Acme Inc"}, {"organization": "Acme"}, False),
    ({"requester_domain": ["acme.com"]}, {"requester_email": "Bob@ACME.com"}, True),
    ({"requester_domain": "@acme.com"}, {"requester_email": "bob@acme.com"}, True),
    ({"requester_domain": "acme.com"}, {"requester_email": "bob@notacme.com"}, False),
    ({"tags_present": ["vip", "Key Account"]}, {"tags": ("VIP", "key_account", "x")}, True),
    ({"tags_present": ["vip", "key_account"]}, {"tags": ("vip",)}, False),
    ({"tags_absent": ["spam"]}, {"tags": ("vip",)}, True),
    ({"tags_absent": ["spam", "test"]}, {"tags": ("Test",)}, False),
    ({"project": ["SUP"]}, {"source": "jira", "extra": {"project": "sup"}}, True),
    ({"project": ["SUP"]}, {"source": "jira", "extra": {"project": "OPS"}}, False),
    ({"project": ["SUP"]}, {}, False),
    ({"issue_type": "Incident"}, {"source": "jira", "extra": {"issue_type": "Incident"}}, True),
    ({"request_type": ["Bug", "Outage"]}, {"source": "jira", "extra": {"request_type": "outage"}}, True),
    ({"request_type": "Bug"}, {"source": "jira", "extra": {"issue_type": "Bug"}}, False),
])
def test_event_conditions(when: dict[str, Any], kw: dict[str, Any], expected: bool) -> None:
    assert hit(when, event(**kw)) is expected


@pytest.mark.parametrize(("words", "subject", "text", "expected"), [
    (["outage"], "", "We have an OUTAGE now", True),
    (["outage"], "Outage in EU", "", True),
    (["outage"], "", "outages are fun", False),  # whole words only
    (["outage"], "", "nooutage", False),
    (["data loss"], "", "possible Data\n loss here", True),
    (["data loss"], "", "data was lost", False),
    (["refund", "c++"], "", "the C++ client crashed", True),
    (["down"], "", "breakdown", False),
])
def test_keywords(words: list[str], subject: str, text: str, expected: bool) -> None:
    assert hit({"keywords": words}, event(subject=subject, text=text)) is expected


@pytest.mark.parametrize(("pattern", "subject", "text", "expected"), [
    ("refund|charge ?back", "", "I want a REFUND", True),
    ("refund|charge ?back", "Chargeback filed", "", True),
    ("refund|charge ?back", "", "charged twice", False),
    (["^urgent", "asap$"], "URGENT: help", "", True),
    (["^urgent", "asap$"], "", "please fix asap", True),
    (r"\border #\d+", "", "about order #1234", True),
])
def test_regex(pattern: str | list[str], subject: str, text: str, expected: bool) -> None:
    assert hit({"regex": pattern}, event(subject=subject, text=text)) is expected


@pytest.mark.parametrize(("when", "sc", "expected"), [
    ({"sentiment": "frustrated"}, scores("frustrated"), True),
    ({"sentiment": ["satisfied", "neutral"]}, scores("frustrated"), False),
    ({"urgency": ["high", "medium"]}, scores(urgency="medium"), True),
    ({"urgency": "High"}, scores(urgency="low"), False),
    # an abstained head reads as "unsure", whatever label it carries
    ({"urgency": "unsure"}, scores(urgency="high", urgency_abstained=True), True),
    ({"urgency": "high"}, scores(urgency="high", urgency_abstained=True), False),
    ({"sentiment": "unsure"}, scores("unsure", sentiment_abstained=True), True),
    ({"abstained": True}, scores(sentiment_abstained=True), True),
    ({"abstained": True}, scores(), False),
    ({"abstained": False}, scores(urgency_abstained=True), False),
    # confidence is the minimum of both heads
    ({"confidence_at_least": 0.6}, scores(confidence=0.9, urgency_confidence=0.5), False),
    ({"confidence_at_least": 0.6}, scores(confidence=0.6), True),
    ({"confidence_below": 0.6}, scores(confidence=0.9, urgency_confidence=0.5), True),
    ({"confidence_below": 0.6}, scores(confidence=0.6), False),
    ({"confidence_at_least": 0.5, "confidence_below": 0.8}, scores(confidence=0.7), True),
])
def test_score_conditions(when: dict[str, Any], sc: Scores, expected: bool) -> None:
    assert hit(when, sc=sc) is expected


def test_all_conditions_must_hold() -> None:
    when = {"source": "zendesk", "urgency": "high", "keywords": ["outage"]}
    assert hit(when, event(text="outage"), scores(urgency="high"))
    assert not hit(when, event(text="outage"), scores(urgency="low"))
    assert not hit(when, event(text="fine"), scores(urgency="high"))


# -- business hours --------------------------------------------------------------------

@pytest.mark.parametrize(("now", "inside"), [
    (datetime(2024, 1, 15, 8, 0, tzinfo=UTC), True),  # Mon 09:00 Paris (CET, UTC+1): start is inclusive
    (datetime(2024, 1, 15, 7, 59, tzinfo=UTC), False),  # Mon 08:59
    (datetime(2024, 1, 15, 16, 59, tzinfo=UTC), True),  # Mon 17:59
    (datetime(2024, 1, 15, 17, 0, tzinfo=UTC), False),  # Mon 18:00: end is exclusive
    (datetime(2024, 1, 13, 10, 0, tzinfo=UTC), False),  # Saturday
    (datetime(2024, 1, 19, 23, 30, tzinfo=UTC), False),  # Sat 00:30 Paris, still Fri in UTC
    (datetime(2024, 7, 15, 7, 30, tzinfo=UTC), True),  # Mon 09:30 Paris (CEST, UTC+2)
    (datetime(2024, 7, 15, 6, 30, tzinfo=UTC), False),  # Mon 08:30 CEST, 07:30 would be inside in winter
    (datetime(2024, 1, 15, 10, 0), True),  # naive: taken as UTC
])
def test_business_hours(now: datetime, inside: bool) -> None:
    assert hit({"business_hours": True}, now=now, business_hours=HOURS) is inside
    assert hit({"business_hours": False}, now=now, business_hours=HOURS) is not inside


@pytest.mark.parametrize(("now", "inside"), [
    (datetime(2024, 1, 19, 22, 0), True),  # Fri 22:00
    (datetime(2024, 1, 20, 5, 59), True),  # Sat 05:59: Friday's night shift
    (datetime(2024, 1, 20, 6, 0), False),
    (datetime(2024, 1, 20, 22, 0), False),  # Saturday is not a shift day
    (datetime(2024, 1, 19, 5, 0), False),  # Fri 05:00 belongs to Thursday's shift
    (datetime(2024, 1, 19, 12, 0), False),
])
def test_overnight_business_hours(now: datetime, inside: bool) -> None:
    hours = {"timezone": "UTC", "days": ["Friday"], "start": "22:00", "end": "06:00"}
    assert hit({"business_hours": True}, now=now, business_hours=hours) is inside


def test_business_hours_until_midnight() -> None:
    hours = {"timezone": "UTC", "days": ["sun"], "start": "12:00", "end": "24:00"}
    assert hit({"business_hours": True}, now=datetime(2024, 1, 21, 23, 59), business_hours=hours)
    assert not hit({"business_hours": True}, now=datetime(2024, 1, 22, 0, 0), business_hours=hours)


# -- actions, order, stop, default tags --------------------------------------------------

MERGE = """\
rules:
  - name: first
    then: {add_tags: [a, shared], priority: high, group: G1, notify_slack: "#one", note_text: one}
  - name: not-matching
    when: {source: jira}
    then: {priority: low, add_tags: [never]}
  - name: second
    then: {add_tags: [b, shared], priority: urgent, notify_slack: ["#two", "#one"], note: true, override_human: true}
  - name: stopper
    when: {urgency: high}
    then: {assignee: "7", note_text: two, stop: true}
  - name: after-stop
    then: {add_tags: [late], group: G3}
"""


def test_matching_rules_merge_in_order_until_stop() -> None:
    rs = parse_rules(MERGE)
    matched, actions = rs.decide(event(), scores(urgency="high"), NOW)
    assert matched == ("first", "second", "stopper")
    assert actions == Actions(
        add_tags=("triage_sentiment_neutral", "triage_urgency_high", "a", "shared", "b"),
        priority="urgent", group="G1", assignee="7", note=True, note_text="one\ntwo",
        notify_slack=("#one", "#two"), override_human=True)


def test_without_stop_later_rules_still_apply() -> None:
    matched, actions = parse_rules(MERGE).decide(event(), scores(urgency="low"), NOW)
    assert matched == ("first", "second", "after-stop")
    assert actions.group == "G3" and actions.add_tags[-1] == "late" and actions.assignee == ""


def test_nothing_matches_gives_default_tags_only() -> None:
    rs = parse_rules("rules:\n  - name: r\n    when: {source: slack}\n    then: {priority: high}\n")
    assert rs.decide(event(), scores("frustrated", "medium"), NOW) == (
        (), Actions(add_tags=("triage_sentiment_frustrated", "triage_urgency_medium")))


def test_default_tags_for_abstained_heads_say_unsure() -> None:
    sc = scores("frustrated", "high", sentiment_abstained=True)
    assert RuleSet().decide(event(), sc, NOW)[1].add_tags == ("triage_sentiment_unsure", "triage_urgency_high")


def test_default_tags_prefix_and_switch() -> None:
    rs = parse_rules("tag_prefix: ai-\nrules:\n  - name: r\n    then: {add_tags: [x]}\n")
    assert rs.decide(event(), scores(), NOW)[1].add_tags == ("ai-sentiment_neutral", "ai-urgency_low", "x")
    rs = parse_rules("tag_prefix: ''\n")
    assert rs.decide(event(), scores(), NOW)[1].add_tags == ("sentiment_neutral", "urgency_low")
    rs = parse_rules("default_tags: false\nrules:\n  - name: r\n    then: {add_tags: [x]}\n")
    assert rs.decide(event(), scores(), NOW) == (("r",), Actions(add_tags=("x",)))
    assert parse_rules("default_tags: false\n").decide(event(), scores(), NOW)[1].empty


# -- the rules file and the reloader -----------------------------------------------------

GOOD_A = "rules:\n  - name: a\n    then: {add_tags: [a]}\n"
GOOD_B = "rules:\n  - name: b\n    then: {add_tags: [b]}\n  - name: c\n    then: {}\n"
BAD_FILE = "rules:\n  - name: a\n    then: {priority: asap}\n"


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def write(path: Path, text: str, mtime: int) -> None:
    path.write_text(text, encoding="utf-8")
    os.utime(path, (mtime, mtime))  # distinct mtimes even on coarse-grained file systems


def names(rs: RuleSet) -> list[str]:
    return [r.name for r in rs.rules]


def test_load_rules_errors_name_the_path(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    with pytest.raises(RulesError, match=r"rules\.yaml: cannot read the rules file"):
        load_rules(path)
    path.write_text(BAD_FILE, encoding="utf-8")
    with pytest.raises(RulesError) as info:
        load_rules(path)
    assert str(info.value).startswith(f"{path}:3: unknown priority 'asap'") and info.value.line == 3
    path.write_bytes(b"rules: \xff\n")
    with pytest.raises(RulesError, match="not UTF-8"):
        load_rules(str(path))


def test_reloader_first_load_failure_raises(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    with pytest.raises(RulesError):
        RulesReloader(path)
    path.write_text(BAD_FILE, encoding="utf-8")
    with pytest.raises(RulesError, match="asap"):
        RulesReloader(path)


def test_reloader_keeps_last_good_rules(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path, clock = tmp_path / "rules.yaml", Clock()
    write(path, GOOD_A, 1_700_000_000)
    reloader = RulesReloader(path, clock=clock)
    assert names(reloader.current()) == ["a"] and reloader.error is None

    write(path, GOOD_B, 1_700_000_010)
    clock.t += 0.5
    assert names(reloader.current()) == ["a"]  # checked at most once a second
    clock.t += 0.5
    assert names(reloader.current()) == ["b", "c"] and reloader.error is None

    write(path, BAD_FILE, 1_700_000_020)
    clock.t += 1
    with caplog.at_level(logging.WARNING, logger="triage.rules"):
        assert names(reloader.current()) == ["b", "c"]  # the last good rules stay
    assert reloader.error is not None and reloader.error.startswith(f"{path}:3: unknown priority 'asap'")
    [record] = [r for r in caplog.records if r.name == "triage.rules"]
    assert record.levelno == logging.WARNING and "asap" in record.getMessage()

    caplog.clear()
    clock.t += 1
    with caplog.at_level(logging.WARNING, logger="triage.rules"):
        reloader.current()  # unchanged bad file: not re-read, not logged again
    assert not caplog.records and reloader.error is not None

    write(path, GOOD_A, 1_700_000_030)
    clock.t += 1
    assert names(reloader.current()) == ["a"] and reloader.error is None


def test_reloader_survives_the_file_disappearing(tmp_path: Path) -> None:
    path, clock = tmp_path / "rules.yaml", Clock()
    write(path, GOOD_A, 1_700_000_000)
    reloader = RulesReloader(str(path), clock=clock)
    path.unlink()
    clock.t += 1
    assert names(reloader.current()) == ["a"]
    assert reloader.error is not None and "cannot read" in reloader.error
    write(path, GOOD_B, 1_700_000_000)
    clock.t += 1
    assert names(reloader.current()) == ["b", "c"] and reloader.error is None


def test_reloader_sees_an_atomic_replace(tmp_path: Path) -> None:
    path, clock = tmp_path / "rules.yaml", Clock()
    write(path, GOOD_A, 1_700_000_000)
    reloader = RulesReloader(path, clock=clock)
    new = tmp_path / "rules.yaml.tmp"
    write(new, GOOD_A.replace("name: a", "name: z"), 1_700_000_000)  # same size and mtime, new inode
    os.replace(new, path)
    clock.t += 1
    assert names(reloader.current()) == ["z"]


# -- language (triage-v3's language gate) --------------------------------------------------------


def lang_scores(language: str) -> Scores:
    from dataclasses import replace

    return replace(scores(), language=language)


@pytest.mark.parametrize(("codes", "language", "expected"), [
    (["de", "fr"], "de", True),
    (["de", "fr"], "fr", True),
    (["de", "fr"], "en", False),
    ("DE", "de", True),
    (["und"], "und", True),
    (["de"], "", False),
])
def test_language_condition(codes: Any, language: str, expected: bool) -> None:
    assert hit({"language": codes}, sc=lang_scores(language)) is expected


def test_language_condition_rejects_what_is_not_a_code() -> None:
    e = error(yaml.safe_dump({"rules": [{"name": "r", "when": {"language": ["German"]}, "then": {}}]}))
    assert "not a language code" in str(e) and "ISO 639-1" in str(e) and e.line == 6  # the list item


def test_default_tags_name_the_language() -> None:
    rs = parse_rules("rules: []\n")
    _, actions = rs.decide(event(), lang_scores("de"), NOW)
    assert actions.add_tags == ("triage_sentiment_neutral", "triage_urgency_low", "triage_language_de")
    _, actions = parse_rules("tag_prefix: 'My Team '\n").decide(event(), lang_scores("fr"), NOW)
    assert "my_team_language_fr" in actions.add_tags
    for unknown in ("", "und"):  # too short to tell, or not detected: no language tag
        _, actions = rs.decide(event(), lang_scores(unknown), NOW)
        assert not any("language" in t for t in actions.add_tags)
    _, actions = parse_rules("default_tags: false\n").decide(event(), lang_scores("de"), NOW)
    assert actions.add_tags == ()


def test_german_tickets_go_to_the_german_queue() -> None:
    rs = parse_rules("rules:\n  - name: german\n    when: {language: [de]}\n"
                     "    then: {group: Support DE, add_tags: [lang_routed]}\n")
    matched, actions = rs.decide(event(), lang_scores("de"), NOW)
    assert matched == ("german",) and actions.group == "Support DE" and "lang_routed" in actions.add_tags
    assert rs.decide(event(), lang_scores("en"), NOW)[0] == ()


# -- learned routing (the routing head) and suggest mode ------------------------------------------------

def routed(label: str = "Billing", confidence: float = 0.72, abstained: bool = False) -> Scores:
    group = HeadScore("unsure" if abstained else label, {label: confidence, "Sales": 1 - confidence}, confidence,
                      abstained=abstained, reason="confidence" if abstained else "", best_guess=label)
    return Scores(head("neutral"), head("low"), "test-1", group=group)


@pytest.mark.parametrize(("when", "sc", "expected"), [
    ({"predicted_group": "billing"}, routed(), True),  # case-insensitive
    ({"predicted_group": ["Sales", "Billing"]}, routed(), True),
    ({"predicted_group": "Sales"}, routed(), False),
    ({"predicted_group": "Billing"}, routed(abstained=True), False),  # below the head's own floor
    ({"predicted_group": "Billing"}, scores(), False),  # a model without a routing head
    ({"predicted_group": "Billing", "predicted_group_confidence_at_least": 0.7}, routed(), True),
    ({"predicted_group": "Billing", "predicted_group_confidence_at_least": 0.8}, routed(), False),
    ({"predicted_group_confidence_at_least": 0.6}, routed("Sales"), True),  # any group, confidently
    ({"predicted_group_confidence_at_least": 0.6}, routed(abstained=True), False),
])
def test_predicted_group_condition(when: dict[str, Any], sc: Scores, expected: bool) -> None:
    assert hit(when, sc=sc) is expected


def decide_one(then: dict[str, Any], sc: Scores, **top: Any) -> Actions:
    doc = {"default_tags": False, **top, "rules": [{"name": "r", "then": then}]}
    return parse_rules(yaml.safe_dump(doc, sort_keys=False)).decide(event(), sc, NOW)[1]


def test_group_predicted_is_a_suggestion_until_learned_routing_is_apply() -> None:
    assert decide_one({"group": "predicted"}, routed()) == Actions(suggested=(("group", "Billing"),))
    assert decide_one({"group": "Predicted"}, routed(), learned_routing="apply") == Actions(group="Billing")
    # a rule in suggest mode suggests, whatever the setting
    assert decide_one({"group": "predicted", "suggest": True}, routed(), learned_routing="apply") == Actions(
        suggested=(("group", "Billing"),))
    # no routing head, or it abstained: nothing to route to
    assert decide_one({"group": "predicted"}, scores(), learned_routing="apply") == Actions()
    assert decide_one({"group": "predicted", "add_tags": ["x"]}, routed(abstained=True)) == Actions(add_tags=("x",))
    assert decide_one({"request_type": "predicted"}, routed(), learned_routing="apply") == Actions(
        request_type="Billing")


def test_suggest_mode_moves_what_a_rule_sets_into_suggestions() -> None:
    a = decide_one({"priority": "urgent", "group": "Tier 2", "assignee": "12", "add_tags": ["esc"],
                    "notify_slack": "#ops", "suggest": True}, scores())
    assert a == Actions(add_tags=("esc",), notify_slack=("#ops",),
                        suggested=(("priority", "urgent"), ("group", "Tier 2"), ("assignee", "12")))
    text = ("rules:\n  - name: a\n    then: {priority: urgent, suggest: true}\n"
            "  - name: b\n    then: {priority: high}\n")
    assert parse_rules(text).decide(event(), scores(), NOW)[1].priority == "high"  # a set value wins


@pytest.mark.parametrize(("text", "line", "parts"), [
    ("learned_routing: aply\nrules: []\n", 1, ["unknown learned_routing 'aply'", "did you mean 'apply'",
                                                "allowed: suggest, apply"]),
    ("learned_routing: [apply]\n", 1, ["learned_routing must be a string"]),
    (rule("predicted_grup: Billing"), 5, ["unknown key 'predicted_grup'", "did you mean 'predicted_group'"]),
    (rule("predicted_group_confidence_at_least: 1.5"), 5, ["predicted_group_confidence_at_least",
                                                           "between 0 and 1"]),
    (rule("predicted_group: []"), 5, ["predicted_group"]),
    (rule(then="{suggest: true, add_tags: [x]}"), 4, ["has suggest but sets nothing it could suggest"]),
    (rule(then="{suggest: maybe, priority: high}"), 4, ["suggest (in rule 'r') must be true, false or a list"]),
    (rule(then="{sugest: true}"), 4, ["unknown key 'sugest'", "did you mean 'suggest'"]),
    (rule(then="{suggest: [grop], group: x}"), 4, ["unknown field to suggest 'grop'", "did you mean 'group'",
                                                  "allowed: assignee, group, jira_fields, priority"]),
    (rule(then="{suggest: [assignee], group: x}"), 4, ["has suggest but sets nothing it could suggest"]),
    ("rules:\n  - name: r\n    when: {source: zendesk}\n    then: {request_type: predicted}\n", 4,
     ["request_type applies only to Jira issues"]),
])
def test_learned_routing_and_suggest_errors_point_at_the_line(text: str, line: int, parts: list[str]) -> None:
    e = error(text)
    assert e.line == line, str(e)
    for part in parts:
        assert part in str(e), str(e)


def test_routing_warnings_name_unknown_groups_and_a_missing_head() -> None:
    rs = parse_rules(rule("predicted_group: [Biling, sales]"), "rules.yaml")
    assert routing_warnings(rs, ["Billing", "Sales"]) == [
        "rules.yaml:5: rule 'r': predicted_group 'Biling' is not a group the routing head knows (did you mean "
        "'Billing'?); it knows: Billing, Sales"]
    assert routing_warnings(rs, None) == ["rules.yaml:5: rule 'r' uses the routing head, which this model lacks: "
                                          "it never matches or routes (`triage learn` fits one from the team's "
                                          "history)"]
    assert routing_warnings(parse_rules(rule("urgency: high")), None) == []


def test_suggest_a_list_of_fields_sets_the_others() -> None:
    a = decide_one({"priority": "urgent", "group": "Tier 2", "suggest": ["group"]}, scores())
    assert a == Actions(priority="urgent", suggested=(("group", "Tier 2"),))
    a = decide_one({"jira_fields": {"customfield_1": "x"}, "priority": "low", "suggest": ["jira_fields"]}, scores())
    assert a == Actions(priority="low", suggested=(("field:customfield_1", "x"),))
    # the predicted group follows the list too, once learned routing is applied
    apply = {"learned_routing": "apply"}
    assert decide_one({"group": "predicted", "priority": "high", "suggest": ["group"]}, routed(), **apply) == \
        Actions(priority="high", suggested=(("group", "Billing"),))
    assert decide_one({"group": "predicted", "priority": "high", "suggest": ["priority"]}, routed(), **apply) == \
        Actions(group="Billing", suggested=(("priority", "high"),))
    assert decide_one({"priority": "high", "suggest": False}, scores()) == Actions(priority="high")
