"""ZendeskWriter driving the real zenpy client against the local sandbox."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pipeline_support import dead_proxy
from zenpy import Zenpy

from connectors.zendesk import normalize
from connectors.zendesk.sandbox import ZendeskSandbox
from connectors.zendesk.writeback import ZendeskWriter
from worker.decision import Actions, HeadScore, Scores, TriageDecision
from worker.errors import RateLimited, VendorAuthError, VendorRejected, VendorUnavailable
from worker.events import TicketEvent
from worker.ports import marker

TEXT = "Our checkout is down and we are losing orders every minute"


@pytest.fixture
def zd(monkeypatch: pytest.MonkeyPatch) -> Iterator[ZendeskSandbox]:
    with ZendeskSandbox(email="bot@example.com", token="sandbox-token") as sandbox:
        for name, value in sandbox.env.items():
            monkeypatch.setenv(name, value)
        sandbox.add_group("Escalations")
        sandbox.add_user("Tom Becker", "tom@example.com", role="agent")
        yield sandbox


def client(token: str = "sandbox-token") -> Zenpy:
    return Zenpy(subdomain="sandbox", email="bot@example.com", token=token, disable_cache=True)


@pytest.fixture
def writer(zd: ZendeskSandbox) -> ZendeskWriter:
    return ZendeskWriter(client())


@pytest.fixture
def ticket(zd: ZendeskSandbox) -> dict[str, Any]:
    return zd.add_ticket("Checkout down", TEXT, requester="ops@northwind.example", tags=["enterprise", "checkout"],
                         channel="email")


def decision(event: TicketEvent, **actions: Any) -> TriageDecision:
    scores = Scores(HeadScore("negative", {"negative": 0.91, "neutral": 0.09}, 0.91),
                    HeadScore("urgent", {"urgent": 0.8, "normal": 0.2}, 0.8), "m-2024.05",
                    {"sentiment": [("down", 0.4), ("losing", 0.3)]})
    return TriageDecision(event.key, scores, ("outage",), Actions(**actions))


def puts(zd: ZendeskSandbox) -> list[Any]:
    return [r for r in zd.requests if r.method == "PUT"]


def test_fetch_event_and_bot_user(zd: ZendeskSandbox, writer: ZendeskWriter, ticket: dict[str, Any]) -> None:
    assert writer.bot_user_id() == str(zd.bot_user_id)
    event = writer.fetch_event(ticket["id"])
    comment = zd.comments(ticket["id"])[0]
    assert (event.ticket_id, event.revision, event.text) == (str(ticket["id"]), str(comment["id"]), TEXT)
    assert (event.requester_email, event.channel, event.tags) == ("ops@northwind.example", "email",
                                                                 ("enterprise", "checkout"))


def test_tags_are_added_not_replaced(zd: ZendeskSandbox, writer: ZendeskWriter, ticket: dict[str, Any]) -> None:
    event = writer.fetch_event(ticket["id"])
    zd.edit_ticket(ticket["id"], by="tom@example.com", additional_tags=["vip"])  # after our event was built
    writer.apply(event, decision(event, add_tags=("triage_negative", "checkout")))
    assert zd.tickets[ticket["id"]]["tags"] == ["enterprise", "checkout", "vip", "triage_negative"]
    # the event's tags were stale: Zendesk refused that update (409), the writer read the ticket, retried
    assert [r.status for r in puts(zd)] == [409, 200]
    assert all(r.json["ticket"]["safe_update"] is True for r in puts(zd))


@pytest.mark.parametrize("delivery, calls", [("api", ["PUT"]), ("event", ["PUT"]),
                                             ("trigger", ["GET", "PUT"]), ("hand-built", ["GET", "PUT"])])
def test_the_ticket_is_read_only_when_the_event_lacks_its_state(zd: ZendeskSandbox, writer: ZendeskWriter,
                                                                ticket: dict[str, Any], delivery: str,
                                                                calls: list[str]) -> None:
    """The API and event webhooks carry the ticket's tags, fields and updated_at to the second: one
    PUT. A trigger body has updated_at to the minute ({{ticket.updated_at_with_timestamp}}), too
    coarse for safe_update, and a hand-built event has no state: the writer reads the ticket first."""
    bot = writer.bot_user_id()
    event = {"api": lambda: writer.fetch_event(ticket["id"]),
             "event": lambda: normalize.to_event(zd.event_payload(ticket["id"]), bot),
             "trigger": lambda: normalize.to_event(zd.trigger_payload(ticket["id"]), bot),
             "hand-built": lambda: TicketEvent(source="zendesk", ticket_id=str(ticket["id"]), revision="r2",
                                               text=TEXT)}[delivery]()
    assert event is not None and (event.extra.get("snapshot") == "yes") == (calls == ["PUT"])
    if delivery == "trigger":
        assert len(event.updated_at) == len("2026-11-29T14:11Z")
    seen = len(zd.requests)
    writer.apply(event, decision(event, add_tags=("triage_negative",), note=True))
    assert [(r.method, r.status) for r in zd.requests[seen:]] == [(m, 200) for m in calls]
    if calls == ["PUT"]:
        assert puts(zd)[0].json["ticket"]["updated_stamp"] == event.updated_at
    assert zd.tickets[ticket["id"]]["tags"] == ["enterprise", "checkout", "triage_negative"]


def test_concurrent_update_is_retried_not_overwritten(zd: ZendeskSandbox, writer: ZendeskWriter,
                                                      ticket: dict[str, Any]) -> None:
    event = writer.fetch_event(ticket["id"])
    zd.fail_next(409, method="PUT")
    writer.apply(event, decision(event, add_tags=("triage_negative",)))
    assert [r.status for r in puts(zd)] == [409, 200]
    assert "triage_negative" in zd.tickets[ticket["id"]]["tags"]
    zd.fail_next(409, times=None, method="PUT")
    with pytest.raises(VendorUnavailable, match="409") as caught:
        writer.apply(event, decision(event, add_tags=("other",)))
    assert caught.value.retryable


def test_an_update_sent_again_writes_nothing_twice(zd: ZendeskSandbox, writer: ZendeskWriter,
                                                   ticket: dict[str, Any]) -> None:
    """A worker that died between the write-back and recording it sends the same update again (a rule
    without a note leaves no marker to find): its stamp is stale, Zendesk answers 409, and the ticket
    read again already has every change. One extra PUT and GET, nothing written twice."""
    event = writer.fetch_event(ticket["id"])
    d = decision(event, add_tags=("triage_negative",), priority="urgent")
    writer.apply(event, d)
    audits = len(zd.audits)
    writer.apply(event, d)
    assert [r.status for r in puts(zd)] == [200, 409]
    assert len(zd.audits) == audits and zd.tickets[ticket["id"]]["priority"] == "urgent"


def test_priority_group_and_note(zd: ZendeskSandbox, writer: ZendeskWriter, ticket: dict[str, Any]) -> None:
    event = writer.fetch_event(ticket["id"])
    assert not writer.already_applied(event)
    writer.apply(event, decision(event, priority="urgent", group="escalations", note=True, note_text="Call them."))
    after = zd.tickets[ticket["id"]]
    assert after["priority"] == "urgent" and after["group_id"] == writer.group_id("Escalations")
    assert "triage_set_priority_urgent" in after["tags"]
    note = zd.comments(ticket["id"])[-1]
    assert note["public"] is False and note["author_id"] == zd.bot_user_id
    assert note["body"].startswith("Triage (automatic)") and "Call them." in note["body"]
    assert note["body"].splitlines()[-1] == marker(event)
    assert writer.already_applied(event)
    changed = {e.get("field_name") for e in zd.audits[-1]["events"]}
    assert {"priority", "group_id", "tags", "status"} <= changed  # the note also opens a new ticket
    assert len(puts(zd)) == 1


def test_human_priority_and_assignee_are_kept_unless_overridden(zd: ZendeskSandbox, writer: ZendeskWriter) -> None:
    agent = zd.add_user("Lucia", "lucia@example.com", role="agent")
    t = zd.add_ticket("Refund", "Where is my refund", priority="low", assignee="lucia@example.com")
    event = writer.fetch_event(t["id"])
    assert event.priority_set_by_human and event.assignee_set_by_human
    tom = str(zd.add_user("Tom Becker", "tom@example.com", role="agent")["id"])
    writer.apply(event, decision(event, priority="high", assignee=tom, add_tags=("triage_negative",)))
    kept = zd.tickets[t["id"]]
    assert (kept["priority"], kept["assignee_id"]) == ("low", agent["id"])
    assert "triage_negative" in kept["tags"]
    writer.apply(event, decision(event, priority="high", assignee=tom, override_human=True))
    changed = zd.tickets[t["id"]]
    assert (changed["priority"], str(changed["assignee_id"])) == ("high", tom)
    assert {f"triage_set_assignee_{tom}", "triage_set_priority_high"} <= set(changed["tags"])
    # the bot's own value no longer counts as a person's: a later event may move it again
    assert not writer.fetch_event(t["id"]).priority_set_by_human


def test_nothing_to_change_sends_no_update(zd: ZendeskSandbox, writer: ZendeskWriter, ticket: dict[str, Any]) -> None:
    event = writer.fetch_event(ticket["id"])
    writer.apply(event, decision(event, add_tags=("checkout",)))
    writer.apply(event, decision(event))
    assert puts(zd) == []


def test_group_by_id_and_unknown_name(zd: ZendeskSandbox, writer: ZendeskWriter, ticket: dict[str, Any]) -> None:
    event = writer.fetch_event(ticket["id"])
    group_id = zd.add_group("Billing")["id"]
    writer.apply(event, decision(event, group=str(group_id)))
    assert zd.tickets[ticket["id"]]["group_id"] == group_id
    with pytest.raises(VendorRejected, match="no group named"):
        writer.group_id("Nope")
    assert sum(r.path == "/api/v2/groups.json" for r in zd.requests) == 1  # names are cached
    # A rule naming a group Zendesk lacks: the rest is written and the note says what was skipped.
    writer.apply(event, decision(event, group="Nope", add_tags=("escalated",)))
    after = zd.tickets[ticket["id"]]
    assert after["group_id"] == group_id and "escalated" in after["tags"]
    assert "no group named 'Nope'" in zd.comments(ticket["id"])[-1]["body"]


def test_rate_limit_is_handed_back_not_slept(zd: ZendeskSandbox, writer: ZendeskWriter,
                                            ticket: dict[str, Any]) -> None:
    event = writer.fetch_event(ticket["id"])
    zd.fail_next(429, times=2, retry_after=7)
    started = time.monotonic()
    with pytest.raises(RateLimited) as caught:
        writer.apply(event, decision(event, add_tags=("x",)))
    assert caught.value.retry_after == 7 and caught.value.status == 429
    assert time.monotonic() - started < 2  # zenpy would have slept 7s per attempt
    with pytest.raises(RateLimited):
        writer.already_applied(event)
    writer.apply(event, decision(event, add_tags=("x",)))  # the third call goes through
    assert "x" in zd.tickets[ticket["id"]]["tags"]


def test_server_errors_are_unavailable(zd: ZendeskSandbox, writer: ZendeskWriter, ticket: dict[str, Any]) -> None:
    event = writer.fetch_event(ticket["id"])
    zd.fail_next(500, times=None)
    for call in (lambda: writer.apply(event, decision(event, add_tags=("x",))),
                 lambda: writer.already_applied(event), lambda: writer.fetch_event(ticket["id"])):
        with pytest.raises(VendorUnavailable, match="500") as caught:
            call()
        assert caught.value.retryable and TEXT not in str(caught.value)


def test_bad_credentials(zd: ZendeskSandbox, ticket: dict[str, Any]) -> None:
    writer = ZendeskWriter(client(token="wrong-token"))
    with pytest.raises(VendorAuthError, match="ZENDESK_EMAIL / ZENDESK_API_TOKEN rejected") as caught:
        writer.bot_user_id()
    assert caught.value.status == 401 and not caught.value.retryable
    assert "wrong-token" not in str(caught.value)
    zd.fail_next(403)
    with pytest.raises(VendorAuthError, match="403"):
        ZendeskWriter(client()).fetch_event(ticket["id"])


def test_rejections(zd: ZendeskSandbox, writer: ZendeskWriter, ticket: dict[str, Any]) -> None:
    event = writer.fetch_event(ticket["id"])
    gone = TicketEvent(source="zendesk", ticket_id="999999", revision="1")
    with pytest.raises(VendorRejected, match="404"):
        writer.apply(gone, decision(gone, add_tags=("x",)))
    with pytest.raises(VendorRejected, match="422 RecordInvalid") as caught:
        writer.apply(event, decision(event, assignee=str(ticket["requester_id"])))  # not an agent
    assert not caught.value.retryable
    with pytest.raises(VendorRejected, match="priority"):
        writer.apply(event, decision(event, priority="critical"))


def test_unreachable_zendesk(monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox = ZendeskSandbox().start()
    netloc = sandbox.netloc
    sandbox.stop()
    monkeypatch.setenv("ZENPY_FORCE_NETLOC", netloc)
    monkeypatch.setenv("ZENPY_FORCE_SCHEME", "http")
    event = TicketEvent(source="zendesk", ticket_id="1", revision="1")
    with pytest.raises(VendorUnavailable, match="cannot reach Zendesk"):
        ZendeskWriter(client()).apply(event, decision(event, add_tags=("x",)))


def test_proxy_variables_are_honoured_and_read_once(zd: ZendeskSandbox, ticket: dict[str, Any],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTP_PROXY / NO_PROXY count as requests would count them, read once when the writer is built."""
    dead_proxy(monkeypatch)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    direct = ZendeskWriter(client())
    monkeypatch.delenv("NO_PROXY")
    proxied = ZendeskWriter(client())
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # too late for `proxied`: its session read the variables
    event = direct.fetch_event(ticket["id"])
    with pytest.raises(VendorUnavailable, match="cannot reach Zendesk on PUT"):
        proxied.apply(event, decision(event, add_tags=("triage_negative",)))
    monkeypatch.delenv("NO_PROXY")  # too late for `direct`
    direct.apply(event, decision(event, add_tags=("triage_negative",)))
    assert "triage_negative" in zd.tickets[ticket["id"]]["tags"]


def test_our_own_update_does_not_retrigger(zd: ZendeskSandbox, writer: ZendeskWriter, ticket: dict[str, Any]) -> None:
    """The trigger Zendesk fires after our update (current_user = the bot) is skipped."""
    template = Path(normalize.__file__).with_name("trigger_body.json").read_text(encoding="utf-8")
    fired: list[normalize.Outcome] = []

    def fire_trigger(updated: dict[str, Any], audit: dict[str, Any]) -> None:
        latest = [c for c in zd.comments(updated["id"]) if c["public"]][-1]
        values = {"ticket.id": updated["id"], "ticket.title": updated["subject"], "ticket.tags": " ".join(
            updated["tags"]), "ticket.latest_public_comment.id": latest["id"],
            "ticket.latest_public_comment.author.id": latest["author_id"],
            "ticket.latest_public_comment": latest["body"], "current_user.id": audit["author_id"],
            "ticket.updated_at_with_timestamp": updated["updated_at"]}
        body = template
        for name, value in values.items():
            body = body.replace("{{" + name + "}}", json.dumps(str(value))[1:-1])
        fired.append(normalize.parse(json.loads(body), writer.bot_user_id()))

    zd.on_update = fire_trigger
    event = writer.fetch_event(ticket["id"])
    writer.apply(event, decision(event, add_tags=("triage_negative",), note=True))
    assert len(fired) == 1 and fired[0].event is None and "triage bot" in fired[0].skipped
