"""Jira payloads -> TicketEvent, from webhook bodies (tests/jira_payloads/) and REST v3 JSON."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from connectors.jira import normalize
from connectors.jira.normalize import (
    AUTOMATION_KIND,
    DEFAULT_PRIORITIES,
    PriorityMap,
    adf_document,
    canonical_time,
    from_api,
    parse,
    text_of,
    to_event,
)
from worker.errors import ConfigError
from worker.events import EventError

PAYLOADS = Path(__file__).with_name("jira_payloads")
TEMPLATE = Path(normalize.__file__).with_name("automation_body.json")
BOT = "712020:9b1f6c3e-4d2a-4f8e-9c51-2f7e5a0d1b44"
CUSTOMER = "qm:1f2e3d4c-5b6a-4789-8123-456789abcdef:0a1b2c3d"
AGENT = "5b10ac8d82e05b22cc7d4ef5"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((PAYLOADS / f"{name}.json").read_text(encoding="utf-8"))
    return data


def test_issue_created_webhook() -> None:
    event = to_event(load("issue_created"), BOT)
    assert event is not None
    assert (event.source, event.ticket_id, event.revision) == ("jira", "SUP-231", "2025-01-15T08:12:32Z")
    assert event.key == "jira:SUP-231:2025-01-15T08:12:32Z"  # creation time in UTC, to the second
    assert event.subject == "Checkout is down for all EU customers"
    assert event.text.startswith("Since 8:50 nobody can pay.") and "{noformat}" not in event.text
    assert (event.requester_email, event.requester_domain, event.organization) == (
        "olivia.park@northwind.example", "northwind.example", "Northwind Traders")
    assert (event.tags, event.priority, event.assignee, event.changed_by) == (("checkout",), "normal", "", CUSTOMER)
    assert not event.priority_set_by_human  # the default priority: nobody chose it
    assert event.extra == {"project": "SUP", "project_type": "service_desk", "issue_type": "Incident",
                           "request_type": "Report a system problem", "status": "waiting for support",
                           "priority_name": "Medium", "delivery": "webhook", "event_type": "jira:issue_created"}


@pytest.mark.parametrize("name", ["comment_created", "issue_updated_commented", "comment_created_adf"])
def test_a_comment_names_the_revision_whichever_webhook_carries_it(name: str) -> None:
    event = to_event(load(name), BOT)
    assert event is not None
    assert (event.ticket_id, event.revision, event.changed_by) == ("SUP-231", "10566", CUSTOMER)
    assert event.text.startswith("It is still broken and our status page says nothing.")
    assert "accountid" not in event.text and "https://" not in event.text


def test_comment_webhooks_carry_a_slim_issue() -> None:
    event = to_event(load("comment_created"), BOT)
    assert event is not None
    assert (event.priority, event.assignee, event.tags, event.requester_email) == ("high", AGENT, (), "")
    assert event.priority_set_by_human and event.assignee_set_by_human  # until refresh() reads the changelog
    assert event.extra["event_type"] == "comment_created" and event.extra["status"] == "in progress"


@pytest.mark.parametrize("name, reason", [
    ("comment_created_internal", "internal comment"),
    ("comment_created_by_bot", "triage bot"),
    ("issue_updated_by_bot", "triage bot"),
    ("issue_updated_status", "without a new comment"),
])
def test_skipped_payloads_say_why(name: str, reason: str) -> None:
    outcome = parse(load(name), BOT)
    assert outcome.event is None and reason in outcome.skipped
    assert to_event(load(name), BOT) is None


def test_other_events_and_restricted_comments_are_skipped() -> None:
    payload = load("issue_created")
    payload["webhookEvent"] = "jira:issue_deleted"
    assert parse(payload, BOT).skipped == "event jira:issue_deleted is not triaged"
    payload = load("comment_created")
    payload["comment"]["visibility"] = {"type": "role", "value": "Developers"}
    assert "internal" in parse(payload, BOT).skipped
    payload = load("comment_created")
    del payload["comment"]["jsdPublic"]
    payload["comment"]["properties"] = [{"key": "sd.public.comment", "value": {"internal": True}}]
    assert "internal" in parse(payload, BOT).skipped


def test_a_deleted_comment_is_not_triaged() -> None:
    payload = load("issue_updated_commented")
    payload["issue_event_type_name"] = "issue_comment_deleted"
    assert parse(payload, BOT).skipped == "comment deleted"


def test_bot_as_actor_skips_even_a_customer_comment() -> None:
    payload = load("issue_updated_commented")
    payload["user"]["accountId"] = BOT
    assert parse(payload, BOT).skipped == "change made by the triage bot"


def test_priority_changed_by_a_person_in_the_webhook() -> None:
    payload = load("issue_created")
    payload["issue"]["fields"]["priority"]["name"] = "Highest"
    event = to_event(payload, BOT)
    assert event is not None and event.priority == "urgent" and event.priority_set_by_human


def test_automation_bodies() -> None:
    commented = to_event(load("automation_comment"), BOT)
    assert commented is not None
    assert (commented.ticket_id, commented.revision, commented.text) == (
        "SUP-231", "10566", "It is still broken and nobody answers.")
    assert commented.extra == {"delivery": "automation"}
    created = to_event(load("automation_created"), BOT)
    assert created is not None
    assert (created.revision, created.text) == ("2025-01-15T08:12:32Z", "Since 8:50 nobody can pay.")
    # The webhook and Automation name the creation alike: the same event key either way.
    webhook = to_event(load("issue_created"), BOT)
    assert webhook is not None and created.key == webhook.key


def test_automation_skips() -> None:
    payload = load("automation_comment")
    payload["comment"]["internal"] = "true"
    assert "internal" in parse(payload, BOT).skipped
    payload = load("automation_comment")
    payload["initiator_account_id"] = BOT
    assert "triage bot" in parse(payload, BOT).skipped
    payload = load("automation_comment")
    payload["comment"]["body"] = ""
    assert parse(payload, BOT).skipped == "no comment text"


def test_shipped_automation_template_renders_into_an_event() -> None:
    """Render automation_body.json the way Jira Automation would (JSON-escaped smart values)."""
    values = {"issue.key": "SUP-9", "issue.summary.jsonEncode": 'Printer "on fire"',
              "issue.description.jsonEncode": "Smoke!\nHelp",
              "issue.created.jiraDateTime": "2025-01-15T09:12:32.0+0100",
              "comment.id": "", "comment.body.jsonEncode": "", "comment.internal": "",
              "comment.author.accountId": "", "initiator.accountId": CUSTOMER}
    template = TEMPLATE.read_text(encoding="utf-8")
    assert set(re.findall(r"\{\{([^}]+)\}\}", template)) == set(values), "template and test disagree"
    rendered = json.loads(re.sub(r"\{\{([^}]+)\}\}", lambda m: json.dumps(values[m.group(1)])[1:-1], template))
    assert rendered["kind"] == AUTOMATION_KIND
    event = to_event(rendered, BOT)
    assert event is not None
    assert (event.ticket_id, event.subject, event.text, event.revision) == (
        "SUP-9", 'Printer "on fire"', "Smoke!\nHelp", "2025-01-15T08:12:32Z")


SECRET_TEXT = "my card number is 4111 1111 1111 1111"


@pytest.mark.parametrize("mutate, message", [
    (lambda p: p.pop("issue"), "issue is missing"),
    (lambda p: p["issue"].update(key=SECRET_TEXT), "issue.key is not an issue key"),
    (lambda p: p["issue"].pop("key"), "issue.key is missing"),
    (lambda p: p.pop("comment"), "comment is missing"),
    (lambda p: p["comment"].update(id="abc"), "comment.id is missing or not a number"),
    (lambda p: p.update(webhookEvent=None), "neither a Jira webhook"),
])
def test_malformed_webhooks(mutate: Any, message: str) -> None:
    payload = load("comment_created")
    payload["comment"]["body"] = SECRET_TEXT
    mutate(payload)
    with pytest.raises(EventError, match=message) as caught:
        to_event(payload, BOT)
    assert "4111" not in str(caught.value)


def test_malformed_creation_and_automation() -> None:
    payload = load("issue_created")
    payload["issue"]["fields"]["created"] = "yesterday"
    with pytest.raises(EventError, match="created is missing or not a date"):
        to_event(payload, BOT)
    payload = load("issue_created")
    payload["issue"]["fields"]["labels"] = "a b"
    with pytest.raises(EventError, match="labels is not a list"):
        to_event(payload, BOT)
    with pytest.raises(EventError, match="issue.key is missing"):
        to_event(load("automation_unrendered"), BOT)  # pasted without "Custom data"
    with pytest.raises(EventError):
        to_event([], BOT)  # type: ignore[arg-type]


def test_from_api_reads_the_changelog_for_who_set_what() -> None:
    issue = {"key": "SUP-7", "fields": {
        "summary": "Slow reports", "description": adf_document("Reports take ages."), "labels": ["perf"],
        "priority": {"name": "High"}, "assignee": {"accountId": AGENT}, "created": "2025-01-15T09:00:00.000+0000",
        "updated": "2025-01-15T10:00:00.000+0000", "project": {"key": "SUP", "projectTypeKey": "service_desk"},
        "reporter": {"accountId": CUSTOMER, "emailAddress": "ann@example.com"},
        "comment": {"total": 3, "comments": [
            {"id": "3", "author": {"accountId": AGENT}, "body": adf_document("internal"), "jsdPublic": False,
             "created": "2025-01-15T09:59:00.000+0000"},
            {"id": "1", "author": {"accountId": CUSTOMER}, "body": adf_document("first"),
             "created": "2025-01-15T09:10:00.000+0000"},
            {"id": "4", "author": {"accountId": BOT}, "body": adf_document("Triage (automatic)"),
             "created": "2025-01-15T09:58:00.000+0000"},
            {"id": "2", "author": {"accountId": CUSTOMER}, "body": adf_document("follow-up"),
             "created": "2025-01-15T09:30:00.000+0000"}]}},
        "changelog": {"histories": [
            {"id": "1", "author": {"accountId": AGENT}, "created": "2025-01-15T09:20:00.000+0000",
             "items": [{"field": "priority", "fieldId": "priority"}]},
            {"id": "2", "author": {"accountId": BOT}, "created": "2025-01-15T09:40:00.000+0000",
             "items": [{"field": "priority", "fieldId": "priority"}, {"field": "assignee", "fieldId": "assignee"}]}]}}
    event = from_api(issue, bot_account_id=BOT)
    assert (event.revision, event.text, event.changed_by) == ("2", "follow-up", CUSTOMER)  # public, not the bot's
    assert (event.priority, event.assignee, event.requester_domain) == ("high", AGENT, "example.com")
    assert not event.priority_set_by_human and not event.assignee_set_by_human  # the bot set both last
    issue["changelog"]["histories"].append({"id": "3", "author": {"accountId": AGENT},
                                            "created": "2025-01-15T09:50:00.000+0000",
                                            "items": [{"field": "assignee", "fieldId": "assignee"}]})
    event = from_api(issue, bot_account_id=BOT)
    assert event.assignee_set_by_human and not event.priority_set_by_human
    issue["fields"]["comment"] = {"total": 0, "comments": []}
    issue["changelog"] = {"histories": []}
    bare = from_api(issue, bot_account_id=BOT)
    assert (bare.revision, bare.text) == ("2025-01-15T09:00:00Z", "Reports take ages.")
    assert bare.priority_set_by_human and bare.assignee_set_by_human  # chosen at creation, not by the bot


def test_text_of_reads_adf_and_wiki_markup() -> None:
    doc = {"type": "doc", "version": 1, "content": [
        {"type": "heading", "content": [{"type": "text", "text": "Outage"}]},
        {"type": "bulletList", "content": [
            {"type": "listItem", "content": [{"type": "paragraph", "content": [{"type": "text", "text": "EU"}]}]},
            {"type": "listItem", "content": [{"type": "paragraph", "content": [
                {"type": "text", "text": "US"}, {"type": "hardBreak"},
                {"type": "emoji", "attrs": {"shortName": ":fire:"}}]}]}]},
        {"type": "paragraph", "content": [{"type": "inlineCard", "attrs": {"url": "https://x.example"}}]}]}
    assert text_of(doc) == "Outage\nEU\nUS\n:fire:\nhttps://x.example"
    assert text_of("see [the docs|https://d.example] {code:java}x{code}") == "see the docs x"
    assert text_of(None) == "" and text_of("{{issue.description}}") == ""
    assert text_of(adf_document("a\nb")) == "a\nb"


def test_canonical_time() -> None:
    assert canonical_time("2025-01-15T09:12:32.044+0100") == "2025-01-15T08:12:32Z"
    assert canonical_time("2025-01-15T09:12:32.0+0100") == "2025-01-15T08:12:32Z"  # Automation's jiraDateTime
    assert canonical_time("2025-01-15T08:12:32Z") == "2025-01-15T08:12:32Z"
    assert canonical_time(1736928752044) == "2025-01-15T08:12:32Z"
    assert canonical_time("soon") == "" and canonical_time(None) == ""


def test_priority_map() -> None:
    m = PriorityMap.parse("low=P4|P5, normal=P3, high=P2, urgent=P1|Blocker")
    assert (m.name_for("urgent"), m.level_of("blocker")) == ("P1", "urgent")
    assert (m.level_of("P5"), m.default_name) == ("low", "P3")
    assert m.level_of("Whatever") == ""
    assert DEFAULT_PRIORITIES.name_for("high") == "High" and DEFAULT_PRIORITIES.level_of("Lowest") == "low"
    for bad, message in [("low=Low", "missing"), ("low=Low,low=Lowest,normal=M,high=H,urgent=U", "twice"),
                         ("critical=X", "level=Name"), ("low=A,normal=A,high=H,urgent=U", "both")]:
        with pytest.raises(ConfigError, match=message):
            PriorityMap.parse(bad)
