"""Suggest mode (issue 17 item 6): rules that suggest instead of set, the note and tags that carry the
suggestion, the real zenpy / jira clients against the sandboxes (nothing but the note and tags changes),
and `triage history pull` reading accepted and rejected suggestions back as labels."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from test_zendesk_spec import openapi, spec_problems  # noqa: F401  (openapi: a fixture)
from zenpy import Zenpy

from connectors.jira.history import JiraHistory
from connectors.jira.history import pull as pull_jira
from connectors.jira.sandbox import REQUEST_TYPE_FIELD, TEAM_FIELD, JiraSandbox
from connectors.jira.transport import JiraApi
from connectors.jira.writeback import JiraWriter
from connectors.zendesk.history import ZendeskHistory, suggestion_outcomes
from connectors.zendesk.history import pull as pull_zendesk
from connectors.zendesk.sandbox import ZendeskSandbox
from connectors.zendesk.writeback import ZendeskWriter
from worker import suggestions
from worker.decision import Actions, HeadScore, Scores, note_body
from worker.decision_log import DecisionLog, summarise
from worker.events import TicketEvent
from worker.history import PROVENANCE_WEIGHTS, HistoryRow, acceptance, read_rows
from worker.rules import parse_rules
from worker.store import RedisStore
from worker.triage import Status, TriageService, decide

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
SUGGEST = """\
rules:
  - name: outage
    when: {keywords: [down]}
    then: {priority: urgent, group: Escalations, suggest: true}
"""


def scores(group: HeadScore | None = None) -> Scores:
    return Scores(HeadScore("frustrated", {"frustrated": 0.9, "neutral": 0.1}, 0.9),
                  HeadScore("high", {"high": 0.8, "medium": 0.2}, 0.8), "m-1", group=group)


def event(**kw: Any) -> TicketEvent:
    values: dict[str, Any] = {"source": "zendesk", "ticket_id": "42", "revision": "r1", "subject": "Site down",
                              "text": "Nothing loads", "priority": "normal", "group": "Support"}
    return TicketEvent(**{**values, **kw})


# -- merging: one place decides -------------------------------------------------------------------

def test_a_set_value_beats_a_suggestion_whichever_rule_comes_first() -> None:
    suggest = Actions(priority="urgent", group="Tier 2").as_suggestions()
    assert suggest.priority == suggest.group == "" and suggest.suggested == (("priority", "urgent"),
                                                                             ("group", "Tier 2"))
    later_set = suggest.merge(Actions(priority="high"))
    assert later_set.priority == "high" and later_set.suggested == (("group", "Tier 2"),)
    earlier_set = Actions(priority="high").merge(suggest)
    assert earlier_set.priority == "high" and earlier_set.suggested == (("group", "Tier 2"),)
    # a later suggestion for a field replaces an earlier one; other fields accumulate
    both = suggest.merge(Actions(group="Billing", assignee="7").as_suggestions())
    assert dict(both.suggested) == {"priority": "urgent", "group": "Billing", "assignee": "7"}
    jira = Actions(jira_fields=(("customfield_10050", "Tier 2"),)).as_suggestions()
    assert jira.suggested == (("field:customfield_10050", "Tier 2"),) and not jira.jira_fields
    assert jira.merge(Actions(jira_fields=(("CUSTOMFIELD_10050", "Tier 1"),))).suggested == ()


def test_decide_keeps_the_fields_forces_the_note_and_tags_each_suggestion() -> None:
    rules = parse_rules(SUGGEST)
    d = decide(event(), scores(), rules, NOW)
    a = d.actions
    assert (a.priority, a.group, a.assignee) == ("", "", "") and a.note
    assert a.suggested == (("priority", "urgent"), ("group", "Escalations"))
    assert {"triage_suggested_priority_urgent", "triage_suggested_group_escalations"} <= set(a.add_tags)
    assert "triage_urgency_high" in a.add_tags  # the bot's own labels still go on
    # what the rules would not set is not suggested: an agent's priority, a value the ticket has
    human = decide(event(priority="high", priority_set_by_human=True, group="escalations"), scores(), rules, NOW)
    assert human.actions.suggested == () and not human.actions.note
    # made once: a later revision of a ticket that carries the suggestion's tag does not repeat it
    again = decide(event(tags=("triage_suggested_priority_urgent", "triage_urgency_high")), scores(), rules, NOW)
    assert again.actions.suggested == (("group", "Escalations"),)
    assert decide(event(tags=tuple(a.add_tags)), scores(), rules, NOW).actions == Actions()
    # Jira-only suggestions mean nothing elsewhere
    jira_rules = parse_rules("rules:\n  - name: r\n    then: {request_type: Billing, suggest: true}\n")
    assert decide(event(), scores(), jira_rules, NOW).actions.suggested == ()
    assert decide(event(source="jira", ticket_id="SUP-1"), scores(), jira_rules, NOW).actions.suggested == (
        ("request_type", "Billing"),)


def test_the_note_says_it_plainly_and_the_code_line_reads_back_whatever_the_name() -> None:
    odd = "Tier_2 [EU] *ops* {x} Facturación"
    suggested = (("priority", "urgent"), ("group", odd), ("field:customfield_10050", "a=b c"))
    body = note_body(scores(), ("outage",), "", suggested)
    assert f"Suggested (not applied): priority urgent, group {odd}, field customfield_10050 a=b c" in body
    code = next(line for line in body.splitlines() if line.startswith(suggestions.CODE))
    assert all(ch.isalnum() or ch in " %=:" for ch in code)  # nothing a helpdesk's markup would touch
    assert suggestions.parse(f"- {body}\nmore") == dict(suggested)
    assert suggestions.tags("triage_", suggested) == (
        "triage_suggested_priority_urgent", "triage_suggested_group_tier_2_eu_ops_x_facturación",
        "triage_suggested_field_customfield_10050_a_b_c")
    assert suggestions.parse("no suggestion here") == {}


def test_the_decision_log_shows_suggestions_apart_from_actions(redis: Redis) -> None:
    d = decide(event(), scores(), parse_rules(SUGGEST), NOW)
    assert list(d.to_dict()["actions"]["suggested"]) == [("priority", "urgent"), ("group", "Escalations")]
    log = DecisionLog(redis)
    log.record(event(), "written", d)
    [entry] = log.recent(10)
    assert entry["actions"]["suggested"] == {"priority": "urgent", "group": "Escalations"}
    assert "priority" not in entry["actions"] and "group" not in entry["actions"]


# -- the write-backs: only the note and the tags ------------------------------------------------------

@pytest.fixture
def zd(monkeypatch: pytest.MonkeyPatch) -> Iterator[ZendeskSandbox]:
    with ZendeskSandbox() as sandbox:
        for name, value in sandbox.env.items():
            monkeypatch.setenv(name, value)
        sandbox.add_group("Escalations")
        sandbox.add_group("Billing")
        sandbox.add_user("Tom Becker", "tom@example.com", role="agent")
        yield sandbox


def zenpy() -> Zenpy:
    return Zenpy(subdomain="sandbox", email="bot@example.com", token="t", disable_cache=True)


def service(rules: str, writers: dict[str, Any], redis: Redis, group: HeadScore | None = None) -> tuple[
        TriageService, Any]:
    ruleset = parse_rules(rules)
    svc = TriageService(lambda: ruleset, writers, RedisStore(redis), clock=lambda: NOW)
    return svc, lambda e: scores(group)


def test_zendesk_suggest_mode_writes_only_the_note_and_tags(zd: ZendeskSandbox, redis: Redis) -> None:
    t = zd.add_ticket("Site down", "Nothing loads since 9am", requester="ops@acme.example")
    before = zd.tickets[t["id"]]
    writer = ZendeskWriter(zenpy())
    svc, score = service(SUGGEST, {"zendesk": writer}, redis)
    result = svc.process(writer.fetch_event(t["id"]), score)
    assert result.status == Status.WRITTEN
    after = zd.tickets[t["id"]]
    def rest(ticket: dict[str, Any]) -> dict[str, Any]:  # all but the tags, the times, and the status:
        return {k: v for k, v in ticket.items()  # Zendesk opens a new ticket on any agent's comment
                if k not in ("tags", "updated_at", "generated_timestamp", "status")}
    assert rest(after) == rest(before) and after["status"] == "open"
    assert {"triage_suggested_priority_urgent", "triage_suggested_group_escalations"} <= set(after["tags"])
    [put] = [r for r in zd.requests if r.method == "PUT"]
    assert set(put.json["ticket"]) == {"safe_update", "updated_stamp", "tags", "comment"}
    note = zd.comments(t["id"])[-1]
    assert not note["public"] and "Suggested (not applied): priority urgent, group Escalations" in note["body"]


def jira_api(jira: JiraSandbox) -> JiraApi:
    return JiraApi.connect(jira.url, jira.email, jira.token, timeout=5)


JIRA_RULES = """\
rules:
  - name: outage
    when: {keywords: [down]}
    then:
      priority: urgent
      group: Tier 2
      assignee: tom@example.com
      request_type: Report a system problem
      suggest: true
"""


def test_jira_suggest_mode_writes_only_the_note_and_labels(jira: JiraSandbox, redis: Redis) -> None:
    key = jira.add_issue("SUP", "Site down", "Nothing loads since 9am", reporter="ops@acme.example")
    before = jira.issue(key)["fields"]
    writer = JiraWriter(jira_api(jira), group_field=TEAM_FIELD)
    svc, score = service(JIRA_RULES, {"jira": writer}, redis)
    assert svc.process(writer.fetch_event(key), score).status == Status.WRITTEN
    after = jira.issue(key)["fields"]
    def rest(fields: dict[str, Any]) -> dict[str, Any]:  # all but the labels, the comments, the times
        return {k: v for k, v in fields.items() if k not in ("labels", "comment", "updated", REQUEST_TYPE_FIELD)}
    assert rest(after) == rest(before)
    assert jira.request_type(key) == "Get IT help"
    assert "triage_suggested_priority_urgent" in jira.labels(key)
    assert "triage_suggested_request_type_report_a_system_problem" in jira.labels(key)
    edits = [r for r in jira.requests if r.method == "PUT"]
    assert len(edits) == 1 and set(edits[0].json) <= {"fields", "update"} and not edits[0].json.get("fields")
    body = jira.comments(key)[-1]["body"]
    assert "Suggested (not applied): priority urgent, group Tier 2, assignee tom@example.com, " \
           "request type Report a system problem" in body


# -- history: accepted and rejected suggestions become labels ---------------------------------------

def test_zendesk_end_to_end_an_agent_accepts_one_suggestion_and_rejects_another(
        zd: ZendeskSandbox, redis: Redis, tmp_path: Path) -> None:
    accepted = zd.add_ticket("Site down", "Nothing loads since 9am", requester="a@acme.example")
    rejected = zd.add_ticket("Login down", "Cannot log in, down for everyone", requester="b@acme.example")
    writer = ZendeskWriter(zenpy())
    svc, score = service(SUGGEST, {"zendesk": writer}, redis)
    for t in (accepted, rejected):
        assert svc.process(writer.fetch_event(t["id"]), score).status == Status.WRITTEN
    billing = zd.add_group("Billing")["id"]
    zd.edit_ticket(accepted["id"], by="tom@example.com", priority="urgent", status="solved")
    zd.edit_ticket(rejected["id"], by="tom@example.com", priority="high", group_id=billing, status="solved")
    out = tmp_path / "z.jsonl"
    h = ZendeskHistory(zenpy(), zd.bot_user_id, sleep=lambda s: None)
    pull_zendesk(h, out, since=datetime.fromtimestamp(time.time() - 86400, UTC), progress=False)
    rows = {r.id: r for r in read_rows(out)}
    a, r = rows[f"zendesk:{accepted['id']}"], rows[f"zendesk:{rejected['id']}"]
    assert a.suggested == {"priority": "urgent", "group": "Escalations"}
    assert a.suggestion_outcome == {"priority": "accepted", "group": "open"}
    assert a.label("urgency") == ("high", "suggestion-accepted", PROVENANCE_WEIGHTS["suggestion-accepted"])
    assert r.label("urgency") == ("high", "suggestion-rejected", PROVENANCE_WEIGHTS["suggestion-rejected"])
    assert r.suggestion_outcome["priority"] == "rejected"
    assert r.suggestion_outcome["group"] == "rejected"
    assert r.label("group")[:2] == ("Billing", "suggestion-rejected")
    rates = acceptance(rows.values())
    assert rates["priority"] == {"accepted": 1, "rejected": 1, "open": 0, "rate": 0.5}


def test_an_assignee_suggested_by_email_is_accepted_when_agents_assign_that_agent(
        openapi, zd: ZendeskSandbox, redis: Redis, tmp_path: Path) -> None:  # noqa: F811
    """Rules may name an agent by e-mail; audits record the assignee's id: the pull looks it up."""
    ana = zd.add_user("Ana Ops", "ana@example.com", role="agent")
    ben = zd.add_user("Ben Ops", "ben@example.com", role="agent")
    taken = zd.add_ticket("Site down", "Nothing loads since 9am", requester="a@acme.example")
    passed = zd.add_ticket("Login down", "Cannot log in, down for everyone", requester="b@acme.example")
    writer = ZendeskWriter(zenpy())
    rules = ("rules:\n  - name: outage\n    when: {keywords: [down]}\n"
             "    then: {assignee: ANA@example.com, suggest: true}\n")
    svc, score = service(rules, {"zendesk": writer}, redis)
    for t in (taken, passed):
        assert svc.process(writer.fetch_event(t["id"]), score).status == Status.WRITTEN
        assert zd.tickets[t["id"]].get("assignee_id") is None  # suggested, not set
    zd.edit_ticket(taken["id"], by="tom@example.com", assignee_id=ana["id"], status="solved")
    zd.edit_ticket(passed["id"], by="tom@example.com", assignee_id=ben["id"], status="solved")
    out = tmp_path / "z.jsonl"
    h = ZendeskHistory(zenpy(), zd.bot_user_id, sleep=lambda s: None)
    pull_zendesk(h, out, since=datetime.fromtimestamp(time.time() - 86400, UTC), progress=False)
    rows = {r.id: r for r in read_rows(out)}
    assert rows[f"zendesk:{taken['id']}"].suggestion_outcome == {"assignee": "accepted"}
    assert rows[f"zendesk:{passed['id']}"].suggestion_outcome == {"assignee": "rejected"}
    looked_up = [r.path for r in zd.requests if r.path.startswith("/api/v2/users/") and r.path[14:15].isdigit()]
    assert sorted(looked_up) == sorted({f"/api/v2/users/{ana['id']}.json", f"/api/v2/users/{ben['id']}.json"})
    problems, _ = spec_problems(openapi, zd.requests)
    assert not problems, "\n".join(problems[:10])


def test_a_later_revision_settles_suggestions_live_once_in_the_counters_and_metrics(
        redis: Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    """The decision log keeps a ticket's open suggestions; the revision that shows an agent's choice
    counts each as accepted or rejected (hour counters, triage_suggestion_outcomes), once."""
    tick = itertools.count(time.time(), 1.0)  # a second per change: each revision is a new one
    with ZendeskSandbox(clock=lambda: next(tick)) as zd:
        for k, v in zd.env.items():
            monkeypatch.setenv(k, v)
        zd.add_user("Tom Agent", "tom@example.com", role="agent")
        settle_live(zd, redis)


def settle_live(zd: ZendeskSandbox, redis: Redis) -> None:
    from worker.metrics import REGISTRY, observe_decision

    def outcomes() -> dict[str, float]:
        return {f"{f}:{o}": REGISTRY.get_sample_value("triage_suggestion_outcomes_total",
                                                      {"field": f, "outcome": o}) or 0.0
                for f in ("priority", "group") for o in ("accepted", "rejected")}

    settled: list[dict[str, Any]] = []
    log = DecisionLog(redis, observer=lambda d: (settled.append(d) if "suggestion" in d else None,
                                                 observe_decision(d)))
    writer = ZendeskWriter(zenpy())
    score = lambda e: scores()  # noqa: E731
    ruleset = parse_rules(SUGGEST)
    svc = TriageService(lambda: ruleset, {"zendesk": writer}, RedisStore(redis), clock=lambda: NOW, decisions=log)
    t = zd.add_ticket("Site down", "Nothing loads since 9am", requester="a@acme.example")
    quiet = zd.add_ticket("Login down", "Cannot log in, down for everyone", requester="b@acme.example")
    made = REGISTRY.get_sample_value("triage_suggestions_total", {"field": "priority"}) or 0.0
    for ticket in (t, quiet):
        assert svc.process(writer.fetch_event(ticket["id"]), score).status == Status.WRITTEN
    assert REGISTRY.get_sample_value("triage_suggestions_total", {"field": "priority"}) == made + 2
    before = outcomes()
    zd.add_comment(quiet["id"], "Any news?", author="b@acme.example")  # nobody chose anything yet
    svc.process(writer.fetch_event(quiet["id"]), score)
    billing = zd.add_group("Billing")["id"]
    zd.edit_ticket(t["id"], by="tom@example.com", priority="urgent", group_id=billing)
    # the ticket's next revision (its revision is its latest public comment) shows the agent's choice
    zd.add_comment(t["id"], "Thanks, still down", author="a@acme.example")
    svc.process(writer.fetch_event(t["id"]), score)
    assert settled == [{"source": "zendesk", "suggestion": {"priority": "accepted", "group": "rejected"}}]
    zd.add_comment(t["id"], "Still down an hour later", author="a@acme.example")
    svc.process(writer.fetch_event(t["id"]), score)  # settled once: a later revision counts nothing
    assert len(settled) == 1
    after = outcomes()
    assert {k: after[k] - before[k] for k in after} == {"priority:accepted": 1, "priority:rejected": 0,
                                                         "group:accepted": 0, "group:rejected": 1}
    counters = summarise(log.hourly(datetime.now(UTC), 2))
    assert counters["sg:priority:accepted"] == counters["sg:group:rejected"] == 1
    assert redis.hgetall(f"triage:suggested:zendesk:{quiet['id']}")  # still open


def test_jira_end_to_end_suggestions_read_back_from_comment_and_changelog(
        jira: JiraSandbox, redis: Redis, tmp_path: Path) -> None:
    key = jira.add_issue("SUP", "Site down", "Nothing loads since 9am", reporter="ops@acme.example")
    other = jira.add_issue("SUP", "Login down", "Cannot log in: down", reporter="b@acme.example")
    writer = JiraWriter(jira_api(jira), group_field=TEAM_FIELD)
    svc, score = service(JIRA_RULES, {"jira": writer}, redis)
    for k in (key, other):
        assert svc.process(writer.fetch_event(k), score).status == Status.WRITTEN
    jira.edit_issue(key, by="tom@example.com", priority="Highest", request_type="Report a system problem")
    jira.edit_issue(other, by="tom@example.com", priority="Low", assignee="tom@example.com")
    out = tmp_path / "j.jsonl"
    pull_jira(JiraHistory(jira_api(jira), jira.bot_account_id, "project = SUP", sleep=lambda s: None), out,
              progress=False)
    rows = {r.id: r for r in read_rows(out)}
    a, b = rows[f"jira:{key}"], rows[f"jira:{other}"]
    assert a.suggested["priority"] == "urgent" and a.suggestion_outcome["priority"] == "accepted"
    assert a.label("urgency")[:2] == ("high", "suggestion-accepted")
    assert a.suggestion_outcome["request_type"] == "accepted"
    assert a.label("group")[:2] == ("Report a system problem", "suggestion-accepted")
    assert a.suggestion_outcome["group"] == "open"  # JiraHistory was not told the group field
    assert b.label("urgency")[:2] == ("low", "suggestion-rejected")
    assert b.suggestion_outcome["assignee"] == "rejected"  # an e-mail suggestion never matches an accountId


def test_outcomes_only_count_what_agents_set_after_the_note() -> None:
    bot, agent = "1", "2"
    note = note_body(scores(), (), "", (("priority", "urgent"),))

    def audit(n: int, author: str, *events: dict[str, Any]) -> dict[str, Any]:
        return {"id": n, "author_id": author, "created_at": f"2026-01-0{n}T00:00:00Z", "events": list(events)}

    audits = [audit(1, agent, {"type": "Change", "field_name": "priority", "value": "low"}),
              audit(2, bot, {"type": "Comment", "body": note}),
              audit(3, bot, {"type": "Change", "field_name": "priority", "value": "high"})]
    assert suggestion_outcomes(audits, bot, {}) == ({"priority": "urgent"}, {"priority": "open"}, {})
    audits.append(audit(4, agent, {"type": "Change", "field_name": "priority", "value": "urgent"}))
    assert suggestion_outcomes(audits, bot, {})[1] == {"priority": "accepted"}
    # a later note suggesting only the group keeps the priority's suggestion and its outcome
    group_note = note_body(scores(), (), "", (("group", "Billing"),))
    audits += [audit(5, bot, {"type": "Comment", "body": group_note}),
               audit(6, agent, {"type": "Change", "field_name": "group_id", "value": 77})]
    assert suggestion_outcomes(audits, bot, {77: "Billing"}) == (
        {"priority": "urgent", "group": "Billing"}, {"priority": "accepted", "group": "accepted"},
        {"priority": "urgent", "group": "Billing"})
    assert acceptance([HistoryRow("z:1", "zendesk", "", "s", "t", suggestion_outcome={"priority": "open"})]) == {
        "priority": {"accepted": 0, "rejected": 0, "open": 1, "rate": None}}


def test_rules_test_shows_suggestions_apart_from_actions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from worker.cli import main

    rules = tmp_path / "rules.yaml"
    rules.write_text("tag_prefix: 'My Team '\nrules:\n  - name: s\n    then: {priority: urgent, group: Tier 2, "
                     "suggest: true}\n  - name: learned\n    then: {group: predicted}\n")
    samples = Path(__file__).parents[1] / "deploy/samples/zendesk.jsonl"
    assert main(["rules", "test", str(rules), "--tickets", str(samples)]) == 0
    captured = capsys.readouterr()
    assert f"warning: {rules}:6: rule 'learned' uses the routing head, which this model lacks" in captured.err
    first = captured.out.split("ticket ")[1]
    actions = next(line for line in first.splitlines() if "actions:" in line)
    assert "my_team_suggested_priority_urgent" in actions and '"priority"' not in actions
    assert 'suggested, not applied: {"priority": "urgent", "group": "Tier 2"}' in first


def test_a_priority_suggestion_is_read_back_from_its_tag_when_the_note_is_gone() -> None:
    bot, agent = "1", "2"
    zendesk = [{"id": 1, "author_id": bot, "created_at": "2026-01-01T00:00:00Z", "events": [
                   {"type": "Change", "field_name": "tags", "value": ["vip", "team_suggested_priority_high"],
                    "previous_value": ["vip"]}]},
               {"id": 2, "author_id": agent, "created_at": "2026-01-02T00:00:00Z", "events": [
                   {"type": "Change", "field_name": "priority", "value": "low"}]}]
    assert suggestion_outcomes(zendesk, bot, {})[:2] == ({"priority": "high"}, {"priority": "rejected"})
    zendesk[0]["events"][0].update(value="vip triage_suggested_priority_high", previous_value="vip")  # as words
    assert suggestion_outcomes(zendesk, bot, {})[0] == {"priority": "high"}
    from connectors.jira.history import suggestion_outcomes as jira_outcomes

    def history(n: int, author: str, item: dict[str, Any]) -> dict[str, Any]:
        return {"id": str(n), "author": {"accountId": author}, "created": f"2026-01-0{n}T00:00:00.000+0000",
                "items": [item]}

    labels = {"field": "labels", "fromString": "vip", "toString": "vip triage_suggested_priority_urgent"}
    jira = [history(1, bot, labels),
            history(2, agent, {"field": "priority", "fieldId": "priority", "toString": "Highest"})]
    assert jira_outcomes(jira, [], bot)[:2] == ({"priority": "urgent"}, {"priority": "accepted"})
    assert suggestions.from_tags(["triage_suggested_group_billing"]) == {}


def test_slack_says_what_the_rules_would_suggest() -> None:
    from connectors.slack.blocks import describe_actions

    a = decide(event(), scores(), parse_rules(SUGGEST), NOW).actions
    described = describe_actions(a, "zendesk", {})
    assert "suggest priority *urgent*, group *Escalations*" in described and "internal note" in described
    assert not any(d.startswith(("priority", "group")) for d in described)


def test_the_decision_log_keeps_the_learned_group_for_dry_runs(redis: Redis) -> None:
    from worker.admin.views import dry_run

    group = HeadScore("Billing", {"Billing": 0.8, "Sales": 0.2}, 0.8)
    d = decide(event(), scores(group), parse_rules("rules: []\n"), NOW)
    log = DecisionLog(redis)
    log.record(event(), "nothing_to_write", d)
    [entry] = log.recent(10)
    assert entry.scores().group == HeadScore("Billing", {"Billing": 0.8, "Sales": 0.2}, 0.8)
    edited = parse_rules("rules:\n  - name: learned\n    when: {predicted_group: billing}\n"
                         "    then: {group: predicted}\n")
    [change] = dry_run(edited, parse_rules("rules: []\n"), None, [entry], False)["changes"]
    assert change["rules_after"] == ("learned",) and change["diff"]["suggested"][1] == (("group", "Billing"),)
