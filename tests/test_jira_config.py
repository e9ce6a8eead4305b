"""Jira's settings, its rules (conditions and actions in the same YAML file), decide() and the wiring."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import yaml

from worker import cli
from worker.decision import Actions, HeadScore, Scores
from worker.errors import ConfigError, RulesError
from worker.events import TicketEvent
from worker.rules import parse_rules
from worker.settings import JIRA_PRIORITY_MAP, Secret, Settings, describe, load_settings
from worker.triage import decide

NOW = datetime(2025, 1, 15, 10, 0, tzinfo=UTC)
JIRA = {"JIRA_URL": "https://acme.atlassian.net/", "JIRA_EMAIL": "triage-bot@acme.com", "JIRA_API_TOKEN": "ATATT3x",
        "JIRA_WEBHOOK_SECRET": "whsec"}


def scores(sentiment: str = "frustrated", urgency: str = "high") -> Scores:
    return Scores(HeadScore(sentiment, {sentiment: 0.9}, 0.9), HeadScore(urgency, {urgency: 0.9}, 0.9), "t1")


def jira_event(**kw: Any) -> TicketEvent:
    values: dict[str, Any] = dict(source="jira", ticket_id="SUP-7", revision="10566", subject="Checkout down",
                                  text="Nothing loads", requester_email="olivia@Northwind.example",
                                  extra={"project": "SUP", "issue_type": "Incident",
                                         "request_type": "Report a system problem"})
    values.update(kw)
    return TicketEvent(**values)


# -- settings ---------------------------------------------------------------------------------------

def test_jira_settings() -> None:
    s = load_settings({**JIRA, "JIRA_BOT_ACCOUNT_ID": "557058:f58131cb-b67d-43c7-b30d-6b58d40bd077",
                       "JIRA_GROUP_FIELD": "customfield_10050", "JIRA_POLL_OVERLAP": "600"}, dotenv=None)
    j = s.jira
    assert j.enabled and j.url == "https://acme.atlassian.net" and j.email == "triage-bot@acme.com"
    assert (j.api_token.reveal(), j.webhook_secret.reveal()) == ("ATATT3x", "whsec")
    assert (j.group_field, j.poll_overlap_s, j.priority_map) == ("customfield_10050", 600, JIRA_PRIORITY_MAP)
    shown = str(describe(s)["jira"])
    assert "ATATT3x" not in shown and "whsec" not in shown
    assert not load_settings({}, dotenv=None).jira.enabled
    poll_only = load_settings({k: v for k, v in JIRA.items() if k != "JIRA_WEBHOOK_SECRET"}, dotenv=None)
    assert poll_only.jira.enabled and not poll_only.jira.webhook_secret


@pytest.mark.parametrize("env, message", [
    ({"JIRA_URL": "https://acme.atlassian.net"}, "half configured.*JIRA_EMAIL, JIRA_API_TOKEN missing"),
    ({"JIRA_WEBHOOK_SECRET": "x"}, "half configured.*JIRA_URL"),
    ({**JIRA, "JIRA_URL": "http://acme.atlassian.net"}, "over HTTPS"),
    ({**JIRA, "JIRA_URL": "https://acme.atlassian.net/jira"}, "site's root"),
    ({**JIRA, "JIRA_EMAIL": "triage-bot"}, "JIRA_EMAIL"),
    ({**JIRA, "JIRA_BOT_ACCOUNT_ID": "Triage Bot"}, "accountId"),
    ({**JIRA, "JIRA_PRIORITY_MAP": "high=P1"}, "JIRA_PRIORITY_MAP.*missing"),
    ({**JIRA, "JIRA_POLL_OVERLAP": "-1"}, "JIRA_POLL_OVERLAP"),
])
def test_bad_jira_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(env, dotenv=None)


def test_local_http_is_allowed_for_tests() -> None:
    assert load_settings({**JIRA, "JIRA_URL": "http://127.0.0.1:8080"}, dotenv=None).jira.url == "http://127.0.0.1:8080"


# -- rules -----------------------------------------------------------------------------------------

JIRA_RULES = """
rules:
  - name: sup-incidents
    when:
      source: jira
      project: [SUP, OPS]
      issue_type: Incident
      request_type: ["Report a system problem"]
      reporter_domain: northwind.example
    then:
      priority: urgent
      assignee: "5b10ac8d82e05b22cc7d4ef5"
      request_type: "Report an incident"
      jira_fields:
        customfield_10050: "Tier 2"
        Impact score: 4
  - name: later
    when: {source: jira}
    then:
      jira_fields: {customfield_10050: "Tier 3"}
"""


def test_jira_conditions_and_actions() -> None:
    rules = parse_rules(JIRA_RULES)
    matched, actions = rules.decide(jira_event(), scores(), NOW)
    assert matched == ("sup-incidents", "later")
    assert actions.request_type == "Report an incident" and actions.priority == "urgent"
    assert dict(actions.jira_fields) == {"customfield_10050": "Tier 3", "Impact score": "4"}  # a later rule wins
    assert rules.decide(jira_event(extra={"project": "DEV", "issue_type": "Incident"}), scores(), NOW)[0] == ("later",)
    assert rules.decide(jira_event(requester_email="x@other.example"), scores(), NOW)[0] == ("later",)


def rule_error(when: dict[str, Any], then: dict[str, Any]) -> str:
    text = yaml.safe_dump({"rules": [{"name": "r", "when": when, "then": then}]}, sort_keys=False)
    with pytest.raises(RulesError) as caught:
        parse_rules(text, "rules.yaml")
    return str(caught.value)


@pytest.mark.parametrize("when, then, message", [
    ({"source": "zendesk", "project": "SUP"}, {}, "can never match: project exists only on Jira issues"),
    ({"source": ["zendesk", "slack"], "request_type": "Bug"}, {}, "can never match: request_type"),
    ({"source": "zendesk"}, {"request_type": "Bug"}, "request_type applies only to Jira"),
    ({"source": "zendesk"}, {"jira_fields": {"customfield_1": "x"}}, "jira_fields applies only to Jira"),
    ({"project": "S-U-P"}, {}, "not a Jira project key"),
    ({}, {"jira_fields": {"priority": "High"}}, "cannot be set through jira_fields; use the priority"),
    ({}, {"jira_fields": {"labels": "x"}}, "cannot be set through jira_fields"),
    ({}, {"jira_fields": ["customfield_1"]}, "must be a mapping of field id or name to value"),
    ({}, {"jira_fields": {"customfield_1": ["a", "b"]}}, "must be one string or number"),
    ({}, {"jira_fields": {"customfield_1": "a", "CUSTOMFIELD_1": "b"}}, "given twice"),
    ({}, {"jira_field": {"customfield_1": "a"}}, "did you mean 'jira_fields'"),
    ({"reporter_domains": "x.com"}, {}, "did you mean 'reporter_domain'"),
])
def test_jira_rule_mistakes_name_the_line(when: dict[str, Any], then: dict[str, Any], message: str) -> None:
    error = rule_error(when, then)
    assert message in error and error.startswith("rules.yaml:")


def test_decide_keeps_jira_actions_to_jira() -> None:
    rules = parse_rules(JIRA_RULES.replace("source: jira\n      project", "project"))
    zendesk = TicketEvent(source="zendesk", ticket_id="1", revision="1", text="x",
                          extra={"project": "SUP", "issue_type": "Incident", "request_type": "Report a system problem"},
                          requester_email="a@northwind.example")
    assert decide(zendesk, scores(), rules, NOW).actions.request_type == ""
    assert decide(zendesk, scores(), rules, NOW).actions.jira_fields == ()
    assert decide(jira_event(), scores(), rules, NOW).actions.request_type == "Report an incident"
    already = jira_event(extra={**jira_event().extra, "request_type": "report an INCIDENT"})
    assert decide(already, scores(), rules, NOW).actions.request_type == ""  # already so


def test_actions_merge_jira_fields() -> None:
    merged = Actions(jira_fields=(("a", "1"), ("b", "2"))).merge(Actions(jira_fields=(("b", "3"),), request_type="X"))
    assert merged.jira_fields == (("a", "1"), ("b", "3")) and merged.request_type == "X"


# -- wiring ----------------------------------------------------------------------------------------

def test_poll_jira_checks_the_jql_first(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["poll", "jira"]) == 1
    assert "give a JQL filter" in capsys.readouterr().err
    assert cli.main(["poll", "jira", "--jql", "project = SUP order by created"]) == 1
    assert "ORDER BY" in capsys.readouterr().err
    assert cli.main(["poll", "zendesk", "--jql", "x"]) == 1
    assert "--jql is for `triage poll jira`" in capsys.readouterr().err


def test_runtime_wires_the_jira_writer_and_route(redis: Any, redis_server: Any) -> None:
    from worker import bootstrap
    from worker.settings import JiraSettings

    s = Settings(redis_url=redis_server.url, jira=JiraSettings("https://acme.atlassian.net", "bot@acme.com",
                                                               Secret("t"), Secret("w"), "5b10ac8d82e05b22cc7d4ef5"))
    rt = bootstrap.build(s)
    assert set(rt.writers) == {"jira"}  # built without calling Jira: the client connects on first use
    assert rt.jira_bot_account_id == "5b10ac8d82e05b22cc7d4ef5"
    assert rt.ticket_links["jira"](jira_event()) == "https://acme.atlassian.net/browse/SUP-7"
    app = bootstrap.http_app(rt)
    assert "/webhooks/jira" in app.openapi()["paths"]
