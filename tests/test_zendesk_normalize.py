"""Zendesk payloads -> TicketEvent, from recorded webhook bodies (tests/zendesk_payloads/)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from connectors.zendesk import normalize
from connectors.zendesk.normalize import TRIGGER_KIND, from_api, parse, to_event
from worker.events import EventError, TicketEvent

PAYLOADS = Path(__file__).with_name("zendesk_payloads")
TRIGGER_BODY = Path(normalize.__file__).with_name("trigger_body.json")
BOT = "900000000001"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((PAYLOADS / f"{name}.json").read_text(encoding="utf-8"))
    return data


def test_comment_added_event() -> None:
    event = to_event(load("event_comment_added"), BOT)
    assert event == TicketEvent(
        source="zendesk", ticket_id="5158", revision="30064117810589",
        subject="Cannot login to mobile app",
        text=load("event_comment_added")["event"]["comment"]["body"],
        updated_at="2025-01-08T14:25:30Z", organization="8447346622462", channel="api",
        tags=("mobile", "login", "triage_set_priority_high"), priority="high",
        group="8447320466447", assignee="8447388090495", changed_by="8447388090494",
        priority_set_by_human=False,  # the bot's provenance tag says it set "high"
        assignee_set_by_human=True,
        extra={"delivery": "event", "event_type": "ticket.comment_added", "status": "open", "snapshot": "yes"})
    assert event.key == "zendesk:5158:30064117810589"


def test_ticket_created_event_uses_description_and_updated_at() -> None:
    event = to_event(load("event_ticket_created"), BOT)
    assert event is not None
    assert (event.ticket_id, event.revision, event.channel) == ("5201", "2025-02-03T08:01:44Z", "email")
    assert event.text.startswith("Hi, could you tell me how to export")
    assert (event.priority, event.group, event.assignee, event.organization, event.tags) == ("", "", "", "", ())
    assert not event.priority_set_by_human and not event.assignee_set_by_human
    assert event.changed_by == "8447388090612"


@pytest.mark.parametrize("name, reason", [
    ("event_comment_added_private", "internal note"),
    ("event_comment_added_by_bot", "triage bot"),
    ("event_status_changed", "ticket.status_changed is not triaged"),
    ("event_user_created", "user.created is not triaged"),
    ("trigger_by_bot", "triage bot"),
])
def test_skipped_payloads_say_why(name: str, reason: str) -> None:
    outcome = parse(load(name), BOT)
    assert outcome.event is None and reason in outcome.skipped
    assert to_event(load(name), BOT) is None


def test_bot_actor_is_skipped_even_when_the_comment_author_differs() -> None:
    payload = load("event_comment_added")
    payload["event"]["comment"]["author"]["id"] = BOT
    assert to_event(payload, BOT) is None
    payload = load("event_ticket_created")
    payload["detail"]["actor_id"] = BOT
    assert to_event(payload, BOT) is None


def test_trigger_body() -> None:
    event = to_event(load("trigger_comment"), BOT)
    assert event is not None
    assert (event.ticket_id, event.revision, event.key) == ("35436", "1274902211", "zendesk:35436:1274902211")
    assert event.tags == ("enterprise", "security", "triage_set_priority_high")  # space-separated in triggers
    assert (event.priority, event.channel, event.group, event.organization) == ("high", "web", "Support", "Fjordtech")
    assert event.requester_domain == "fjordtech.no"
    assert event.text.splitlines()[1] == "This is getting worse, please treat it as a security incident."
    assert (event.changed_by, event.assignee, event.updated_at) == ("20978392", "235323", "2024-05-14T09:12Z")
    assert not event.priority_set_by_human and event.assignee_set_by_human
    assert event.extra == {"delivery": "trigger", "status": "open"}  # minute-precise updated_at: no snapshot


def test_trigger_without_comment_id_falls_back_to_updated_at() -> None:
    event = to_event(load("trigger_new_ticket"), BOT)
    assert event is not None
    assert (event.revision, event.channel, event.tags, event.priority) == ("2024-05-14T10:02Z", "email", (), "")


def test_priority_without_provenance_tag_counts_as_human() -> None:
    payload = load("trigger_comment")
    payload["ticket"]["tags"] = "enterprise security"
    event = to_event(payload, BOT)
    assert event is not None and event.priority_set_by_human


def test_no_public_text_is_skipped() -> None:
    payload = load("trigger_comment")
    payload["comment"]["body"] = ""
    assert parse(payload, BOT).skipped == "no public comment text"


def test_shipped_trigger_body_renders_into_an_event() -> None:
    """Render trigger_body.json the way Zendesk would (JSON-escaped values) and normalise it."""
    values = {
        "ticket.id": "812", "ticket.title": 'Printer "on fire"', "ticket.status": "Open",
        "ticket.priority": "Urgent", "ticket.tags": "vip hardware", "ticket.via": "Web Service",
        "ticket.updated_at_with_timestamp": "2024-05-14T09:12Z",
        "ticket.requester.email": "kim@example.com", "ticket.organization.name": "Acme",
        "ticket.group.name": "Tier 2", "ticket.assignee.id": "", "ticket.latest_public_comment.id": "99",
        "ticket.latest_public_comment.author.id": "77", "ticket.latest_public_comment": "Smoke!\nHelp",
        "current_user.id": "77",
    }
    template = TRIGGER_BODY.read_text(encoding="utf-8")
    used = set(re.findall(r"\{\{([^}]+)\}\}", template))
    assert used == set(values), "trigger_body.json and this test disagree on placeholders"
    rendered = re.sub(r"\{\{([^}]+)\}\}", lambda m: json.dumps(values[m.group(1)])[1:-1], template)
    payload = json.loads(rendered)
    assert payload["kind"] == TRIGGER_KIND
    event = to_event(payload, BOT)
    assert event is not None
    assert (event.ticket_id, event.revision, event.priority, event.channel) == ("812", "99", "urgent", "api")
    assert (event.subject, event.text, event.tags, event.group) == (
        'Printer "on fire"', "Smoke!\nHelp", ("vip", "hardware"), "Tier 2")


SECRET_TEXT = "my card number is 4111 1111 1111 1111"


@pytest.mark.parametrize("mutate, message", [
    (lambda p: p.pop("detail"), "detail is missing"),
    (lambda p: p["detail"].update(id="abc"), "detail.id is not a number"),
    (lambda p: p["detail"].pop("id"), "detail.id is missing"),
    (lambda p: p.pop("event"), "event is missing"),
    (lambda p: p["event"].update(comment="x"), "event.comment is missing"),
    (lambda p: p["detail"].update(tags=7), "tags are neither"),
    (lambda p: p.update(type="something.else"), "neither a Zendesk event webhook"),
])
def test_malformed_event_payloads(mutate: Any, message: str) -> None:
    payload = load("event_comment_added")
    payload["event"]["comment"]["body"] = SECRET_TEXT
    payload["detail"]["subject"] = SECRET_TEXT
    mutate(payload)
    with pytest.raises(EventError, match=message) as caught:
        to_event(payload, BOT)
    assert "4111" not in str(caught.value)


def test_malformed_trigger_payloads() -> None:
    with pytest.raises(EventError, match="ticket.id is missing"):
        to_event(load("trigger_unrendered"), BOT)
    payload = load("trigger_comment")
    payload["ticket"]["id"] = SECRET_TEXT
    with pytest.raises(EventError, match="ticket.id is not a number") as caught:
        to_event(payload, BOT)
    assert "4111" not in str(caught.value)
    payload = load("trigger_new_ticket")
    payload["ticket"]["updated_at"] = ""
    with pytest.raises(EventError, match="updated_at is missing"):
        to_event(payload, BOT)
    with pytest.raises(EventError):
        to_event([], BOT)  # type: ignore[arg-type]


def test_from_api_picks_the_latest_public_comment() -> None:
    ticket = {"id": 42, "subject": "Slow reports", "status": "open", "priority": "normal", "tags": ["perf"],
              "via": {"channel": "chat"}, "updated_at": "2024-05-14T10:00:00Z", "requester_id": 7,
              "organization_id": 8, "group_id": 9, "assignee_id": 10}
    comments = [
        {"id": 3, "public": False, "author_id": 10, "body": "internal", "created_at": "2024-05-14T09:59:00Z"},
        {"id": 1, "public": True, "author_id": 7, "body": "first", "created_at": "2024-05-14T09:00:00Z"},
        {"id": 2, "public": True, "author_id": 7, "body": "follow-up", "created_at": "2024-05-14T09:30:00Z"},
    ]
    event = from_api(ticket, comments, users={7: {"id": 7, "email": "ann@example.com"}},
                     organizations={8: {"id": 8, "name": "Acme"}}, groups={})
    assert (event.revision, event.text, event.changed_by) == ("2", "follow-up", "7")
    assert (event.requester_email, event.organization, event.group, event.channel) == (
        "ann@example.com", "Acme", "9", "chat")
    assert event.priority_set_by_human and event.assignee_set_by_human
    no_comments = from_api(ticket, [])
    assert (no_comments.revision, no_comments.text) == ("2024-05-14T10:00:00Z", "")
