"""JiraWriter driving the real `jira` client against the local Jira Cloud sandbox."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from pipeline_support import dead_proxy

from connectors.jira import normalize
from connectors.jira.normalize import PriorityMap
from connectors.jira.sandbox import NOTE_FIELD, OWNER_FIELD, SCORE_FIELD, TEAM_FIELD, JiraSandbox
from connectors.jira.transport import JiraApi
from connectors.jira.writeback import JiraWriter
from worker.decision import Actions, HeadScore, Scores, TriageDecision
from worker.errors import RateLimited, VendorAuthError, VendorRejected, VendorUnavailable
from worker.events import TicketEvent
from worker.ports import Refresher, marker

TEXT = "Our checkout is down and we are losing orders every minute"


@pytest.fixture
def jira() -> Iterator[JiraSandbox]:
    with JiraSandbox() as sandbox:
        sandbox.add_user("Tom Becker", "tom@example.com")
        sandbox.add_user("Lucia Ortega", "lucia@example.com")
        sandbox.add_request_type("SUP", "Report a system problem")
        yield sandbox


def api(jira: JiraSandbox, token: str | None = None) -> JiraApi:
    return JiraApi.connect(jira.url, jira.email, token or jira.token, timeout=5)


@pytest.fixture
def writer(jira: JiraSandbox) -> JiraWriter:
    return JiraWriter(api(jira))


@pytest.fixture
def key(jira: JiraSandbox) -> str:
    return jira.add_issue("SUP", "Checkout down", TEXT, reporter="ops@northwind.example", labels=["enterprise"],
                          organization="Northwind")


def decision(event: TicketEvent, **actions: Any) -> TriageDecision:
    scores = Scores(HeadScore("frustrated", {"frustrated": 0.91, "neutral": 0.09}, 0.91),
                    HeadScore("high", {"high": 0.8, "medium": 0.2}, 0.8), "m-2025.01",
                    {"sentiment": [("down", 0.4), ("losing", 0.3)]})
    return TriageDecision(event.key, scores, ("outage",), Actions(**actions))


def calls(jira: JiraSandbox, method: str, pattern: str = "") -> list[Any]:
    return [r for r in jira.requests if r.method == method and pattern in r.path]


def test_fetch_event_and_bot_account(jira: JiraSandbox, writer: JiraWriter, key: str) -> None:
    assert writer.bot_account_id() == jira.bot_account_id
    event = writer.fetch_event(key)
    assert (event.ticket_id, event.text, event.subject, event.tags) == (key, TEXT, "Checkout down", ("enterprise",))
    assert (event.requester_email, event.organization, event.priority) == (
        "ops@northwind.example", "Northwind", "normal")
    assert event.revision == normalize.canonical_time(jira.issue(key)["fields"]["created"])
    assert event.extra["request_type"] == "Get IT help" and event.extra["project_type"] == "service_desk"
    assert isinstance(writer, Refresher)


def test_proxy_variables_are_honoured_and_read_once(jira: JiraSandbox, key: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTP_PROXY / NO_PROXY count as requests would count them, read once when the client connects."""
    dead_proxy(monkeypatch)
    with pytest.raises(VendorUnavailable, match="cannot reach Jira"):
        JiraWriter(api(jira)).fetch_event(key)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    writer = JiraWriter(api(jira))
    event = writer.fetch_event(key)  # connects: the variables are read now
    monkeypatch.delenv("NO_PROXY")  # too late for this client
    writer.apply(event, decision(event, add_tags=("triage_negative",)))
    assert "triage_negative" in jira.issue(key)["fields"]["labels"]


def test_labels_are_added_never_replaced(jira: JiraSandbox, writer: JiraWriter, key: str) -> None:
    event = writer.fetch_event(key)
    jira.edit_issue(key, by="tom@example.com", labels=["enterprise", "vip"])  # after our event was built
    writer.apply(event, decision(event, add_tags=("triage_sentiment_frustrated", "enterprise")))
    assert jira.labels(key) == ["enterprise", "vip", "triage_sentiment_frustrated"]
    [edit] = calls(jira, "PUT", "/rest/api/3/issue/")
    assert edit.json["update"] == {"labels": [{"add": "triage_sentiment_frustrated"}]}
    assert "labels" not in edit.json["fields"]  # never the whole list


def test_stale_triage_labels_are_removed_by_operation(jira: JiraSandbox, writer: JiraWriter) -> None:
    key = jira.add_issue("SUP", "Hi", "Question", labels=["triage_sentiment_neutral", "billing"])
    event = writer.fetch_event(key)
    writer.apply(event, decision(event, add_tags=("triage_sentiment_frustrated",),
                                 remove_tags=("triage_sentiment_neutral", "not_there")))
    assert jira.labels(key) == ["billing", "triage_sentiment_frustrated"]
    [edit] = calls(jira, "PUT", "/rest/api/3/issue/")
    assert edit.json["update"]["labels"] == [{"add": "triage_sentiment_frustrated"},
                                             {"remove": "triage_sentiment_neutral"}]


def test_priority_by_name_and_an_internal_jsm_comment(jira: JiraSandbox, writer: JiraWriter, key: str) -> None:
    event = writer.refresh(writer.fetch_event(key))
    assert not writer.already_applied(event)
    writer.apply(event, decision(event, priority="urgent", note=True, note_text="Call them."))
    assert jira.priority(key) == "Highest"
    [note] = [c for c in jira.comments(key) if c["author"] == jira.bot_account_id]
    assert note["public"] is False  # JSM internal: customers never see it
    assert note["body"].startswith("Triage (automatic)") and "Call them." in note["body"]
    assert "words behind it: down, losing" in note["body"]
    assert note["body"].splitlines()[-1] == marker(event)
    [post] = calls(jira, "POST")
    assert post.path == f"/rest/servicedeskapi/request/{key}/comment" and post.json["public"] is False
    assert writer.already_applied(event)
    assert len(calls(jira, "PUT", "/rest/api/3/issue/")) == 1


def test_outside_jsm_the_note_is_an_ordinary_adf_comment(jira: JiraSandbox, writer: JiraWriter) -> None:
    jira.add_project("DEV", service_desk=False)
    key = jira.add_issue("DEV", "Build broken", "CI fails", reporter="dev@example.com")
    event = writer.fetch_event(key)
    writer.apply(event, decision(event, note=True))
    [post] = calls(jira, "POST")
    assert post.path == f"/rest/api/3/issue/{key}/comment" and post.json["body"]["type"] == "doc"
    assert writer.already_applied(event)


def test_priority_a_person_set_is_kept_unless_overridden(jira: JiraSandbox, writer: JiraWriter, key: str) -> None:
    jira.edit_issue(key, by="tom@example.com", priority="Low")
    event = writer.refresh(writer.fetch_event(key))
    assert event.priority_set_by_human
    writer.apply(event, decision(event, priority="urgent", add_tags=("x",)))
    assert jira.priority(key) == "Low"
    writer.apply(event, decision(event, priority="urgent", override_human=True))
    assert jira.priority(key) == "Highest"
    # Now the bot set it last: a later triage may change it again.
    again = writer.refresh(writer.fetch_event(key))
    assert not again.priority_set_by_human
    writer.apply(again, decision(again, priority="high"))
    assert jira.priority(key) == "High"


def test_priority_chosen_at_creation_counts_as_human(jira: JiraSandbox, writer: JiraWriter) -> None:
    key = jira.add_issue("SUP", "Down", "All down", priority="Highest")
    event = writer.fetch_event(key)
    assert event.priority_set_by_human
    writer.apply(event, decision(event, priority="low"))
    assert jira.priority(key) == "Highest"


def test_custom_priority_names(jira: JiraSandbox, key: str) -> None:
    writer = JiraWriter(api(jira), priorities=PriorityMap.parse("low=Lowest,normal=Medium,high=Highest,urgent=High"))
    event = writer.fetch_event(key)
    writer.apply(event, decision(event, priority="high"))
    assert jira.priority(key) == "Highest"


def test_assignee_by_account_id_or_email(jira: JiraSandbox, writer: JiraWriter, key: str) -> None:
    event = writer.fetch_event(key)
    writer.apply(event, decision(event, assignee="lucia@example.com"))
    assert jira.assignee(key) == jira.account_id("lucia@example.com")
    [assign] = calls(jira, "PUT", "/assignee")
    assert assign.path == f"/rest/api/3/issue/{key}/assignee" and assign.json == {"accountId": jira.assignee(key)}
    # The bot assigned it: a later rule may reassign, by accountId.
    again = writer.refresh(writer.fetch_event(key))
    tom = jira.account_id("tom@example.com")
    writer.apply(again, decision(again, assignee=tom))
    assert jira.assignee(key) == tom
    with pytest.raises(VendorRejected, match="no single Jira user"):
        writer.apply(again, decision(again, assignee="nobody@example.com", override_human=True))


def test_assignee_a_person_chose_is_kept(jira: JiraSandbox, writer: JiraWriter, key: str) -> None:
    jira.edit_issue(key, by="tom@example.com", assignee="tom@example.com")
    event = writer.refresh(writer.fetch_event(key))
    assert event.assignee_set_by_human
    writer.apply(event, decision(event, assignee="lucia@example.com"))
    assert jira.assignee(key) == jira.account_id("tom@example.com")
    writer.apply(event, decision(event, assignee="lucia@example.com", override_human=True))
    assert jira.assignee(key) == jira.account_id("lucia@example.com")


def test_request_type_and_queue_fields(jira: JiraSandbox, key: str) -> None:
    writer = JiraWriter(api(jira), group_field="Support team")
    event = writer.fetch_event(key)
    owner = jira.account_id("tom@example.com")
    writer.apply(event, decision(event, request_type="report a system problem", group="Tier 2",
                                 jira_fields=((NOTE_FIELD, "Check the EU gateway"), ("Impact score", "4.5"),
                                              (OWNER_FIELD, owner))))
    assert jira.request_type(key) == "Report a system problem"
    assert jira.field(key, TEAM_FIELD) == {"id": "10102", "value": "Tier 2"}
    assert jira.field(key, SCORE_FIELD) == 4.5 and jira.field(key, OWNER_FIELD) == owner
    assert normalize.text_of(jira.field(key, NOTE_FIELD)) == "Check the EU gateway"  # ADF for a text area
    [edit] = calls(jira, "PUT", "/rest/api/3/issue/")
    assert edit.json["fields"][TEAM_FIELD] == {"value": "Tier 2"}
    # Already so: nothing is sent again.
    again = writer.fetch_event(key)
    writer.apply(again, decision(again, request_type="Report a system problem", group="Tier 2"))
    assert len(calls(jira, "PUT", "/rest/api/3/issue/")) == 1


def test_what_the_site_lacks_is_noted_not_fatal(jira: JiraSandbox, writer: JiraWriter, key: str) -> None:
    event = writer.fetch_event(key)
    writer.apply(event, decision(event, add_tags=("triage_x",), request_type="Order pizza", group="Tier 2",
                                 jira_fields=(("No such field", "1"), (TEAM_FIELD, "Tier 9"))))
    assert "triage_x" in jira.labels(key)
    [note] = [c for c in jira.comments(key) if c["author"] == jira.bot_account_id]
    body = note["body"]
    assert "Request type skipped: service desk SUP has no request type 'Order pizza'" in body
    assert "JIRA_GROUP_FIELD" in body and "no field named 'No such field'" in body
    assert f"Field {TEAM_FIELD} skipped: Jira refused" in body  # an option the select list lacks
    assert note["public"] is False and body.splitlines()[-1] == marker(event)
    assert [r.status for r in calls(jira, "PUT", "/rest/api/3/issue/")] == [400, 204]  # resent without it


def test_a_priority_the_site_lacks_is_noted_and_the_rest_written(jira: JiraSandbox, key: str) -> None:
    writer = JiraWriter(api(jira), priorities=PriorityMap.parse("low=Low,normal=Medium,high=High,urgent=Critical"))
    event = writer.fetch_event(key)
    writer.apply(event, decision(event, priority="urgent", add_tags=("x",), note=True))
    assert jira.priority(key) == "Medium" and "x" in jira.labels(key)
    [note] = [c for c in jira.comments(key) if c["author"] == jira.bot_account_id]
    assert "Priority skipped: Jira has no priority 'Critical' (fix JIRA_PRIORITY_MAP)" in note["body"]


def test_a_refused_label_edit_is_a_rejection(jira: JiraSandbox, writer: JiraWriter, key: str) -> None:
    event = writer.fetch_event(key)
    jira.fail_next(400, method="PUT")  # e.g. the labels field is not on the edit screen
    with pytest.raises(VendorRejected, match="400") as caught:
        writer.apply(event, decision(event, add_tags=("x",)))
    assert not caught.value.retryable


def test_nothing_to_change_sends_nothing(jira: JiraSandbox, writer: JiraWriter, key: str) -> None:
    event = writer.fetch_event(key)
    writer.apply(event, decision(event, add_tags=("enterprise",), priority="normal"))
    writer.apply(event, decision(event))
    assert calls(jira, "PUT") == [] and calls(jira, "POST") == []


def test_refresh_keeps_the_revision_and_reads_the_rest(jira: JiraSandbox, writer: JiraWriter, key: str) -> None:
    comment = jira.add_comment(key, "Still broken!")
    jira.edit_issue(key, by="tom@example.com", priority="High", labels=["enterprise", "vip"])
    slim = normalize.to_event(jira.webhook_payload(key, "comment_created", comment_id=comment), writer.bot_account_id())
    assert slim is not None and slim.tags == ()
    fresh = writer.refresh(slim)
    assert fresh.key == slim.key and fresh.text == "Still broken!" and fresh.changed_by == slim.changed_by
    assert fresh.tags == ("enterprise", "vip") and fresh.priority == "high" and fresh.priority_set_by_human
    assert fresh.requester_email == "ops@northwind.example" and fresh.extra["delivery"] == "webhook"
    # apply() right after refresh() reuses the issue it read.
    before = len(calls(jira, "GET", f"/rest/api/3/issue/{key}"))
    writer.apply(fresh, decision(fresh, add_tags=("triage_y",)))
    assert len(calls(jira, "GET", f"/rest/api/3/issue/{key}")) == before


def test_a_long_changelog_is_read_to_its_end(jira: JiraSandbox, writer: JiraWriter, key: str) -> None:
    jira.edit_issue(key, by="tom@example.com", priority="Low")
    for i in range(105):  # past the 100 histories an issue's changelog expansion holds
        jira.edit_issue(key, by="tom@example.com", summary=f"Checkout down ({i})")
    event = writer.fetch_event(key)
    writer.apply(event, decision(event, priority="urgent", override_human=True))  # the bot sets it last
    fresh = writer.fetch_event(key)
    assert not fresh.priority_set_by_human  # found in the newest page, not the embedded oldest 100
    assert any(r.path.endswith("/changelog") for r in jira.requests)


def test_rate_limit_is_handed_back_not_slept(jira: JiraSandbox, writer: JiraWriter, key: str) -> None:
    event = writer.fetch_event(key)
    jira.fail_next(429, times=2, retry_after=7)
    started = time.monotonic()
    with pytest.raises(RateLimited) as caught:
        writer.apply(event, decision(event, add_tags=("x",)))
    assert caught.value.retry_after == 7 and caught.value.status == 429
    assert time.monotonic() - started < 2  # the library would have slept twice that
    with pytest.raises(RateLimited):
        writer.already_applied(event)
    writer.apply(event, decision(event, add_tags=("x",)))
    assert "x" in jira.labels(key)


def test_server_errors_are_unavailable(jira: JiraSandbox, writer: JiraWriter, key: str) -> None:
    event = writer.fetch_event(key)
    jira.fail_next(503, times=None)
    for call in (lambda: writer.apply(event, decision(event, add_tags=("x",))),
                 lambda: writer.already_applied(event), lambda: writer.fetch_event(key)):
        with pytest.raises(VendorUnavailable, match="503") as caught:
            call()
        assert caught.value.retryable and TEXT not in str(caught.value)


def test_bad_credentials(jira: JiraSandbox, key: str) -> None:
    writer = JiraWriter(api(jira, token="wrong-token"))
    with pytest.raises(VendorAuthError, match="JIRA_EMAIL / JIRA_API_TOKEN rejected") as caught:
        writer.bot_account_id()
    assert caught.value.status == 401 and not caught.value.retryable and "wrong-token" not in str(caught.value)
    jira.fail_next(403, path="servicedeskapi")
    good = JiraWriter(api(jira))
    event = good.fetch_event(key)
    with pytest.raises(VendorAuthError, match="403.*agent licence"):
        good.apply(event, decision(event, note=True))


def test_rejections(jira: JiraSandbox, writer: JiraWriter, key: str) -> None:
    gone = TicketEvent(source="jira", ticket_id="SUP-999", revision="1")
    with pytest.raises(VendorRejected, match="404"):
        writer.apply(gone, decision(gone, add_tags=("x",)))
    event = writer.fetch_event(key)
    with pytest.raises(VendorRejected, match="not a valid Jira label"):
        writer.apply(event, decision(event, add_tags=("two words",)))
    with pytest.raises(VendorRejected, match="priority"):
        writer.apply(event, decision(event, priority="critical"))
    with pytest.raises(VendorRejected, match="not a Jira issue event"):
        writer.apply(TicketEvent(source="zendesk", ticket_id="42", revision="1"), decision(event))


def test_unreachable_jira() -> None:
    sandbox = JiraSandbox().start()
    url = sandbox.url
    sandbox.stop()
    writer = JiraWriter(JiraApi.connect(url, "bot@example.com", "t", timeout=2))
    with pytest.raises(VendorUnavailable, match="cannot reach Jira on GET serverInfo"):
        writer.fetch_event("SUP-1")


def test_our_own_update_does_not_retrigger(jira: JiraSandbox, writer: JiraWriter, key: str) -> None:
    """Every webhook Jira sends after our write-back (edit, assignment, comment) is skipped."""
    fired: list[Any] = []
    jira.on_change = lambda payload: fired.append(normalize.parse(payload, writer.bot_account_id()))
    event = writer.fetch_event(key)
    writer.apply(event, decision(event, add_tags=("triage_sentiment_frustrated",), priority="urgent",
                                 assignee="tom@example.com", note=True))
    assert len(fired) == 3  # issue_updated (labels, priority), issue_updated (assignee), comment_created
    assert all(o.event is None and "triage bot" in o.skipped for o in fired)


def test_only_jira_cloud_is_supported(jira: JiraSandbox) -> None:
    jira.deployment_type = "Server"
    writer = JiraWriter(api(jira))
    for _ in range(2):  # and it stays refused
        with pytest.raises(VendorRejected, match="not Jira Cloud"):
            writer.fetch_event("SUP-1")


def test_the_marker_is_found_even_when_jira_renders_it_as_a_link(jira: JiraSandbox, writer: JiraWriter,
                                                                  key: str) -> None:
    event = writer.fetch_event(key)
    token = marker(event).strip("[]")
    jira.add_comment(key, f"Triage (automatic)\n{token}", author=jira.email, public=False)  # "[...]" read as a link
    assert writer.already_applied(event)


def test_request_type_and_fields_an_agent_changed_are_kept(jira: JiraSandbox, key: str) -> None:
    writer = JiraWriter(api(jira), group_field="Support team")
    jira.edit_issue(key, by="tom@example.com", request_type="Billing question", team="Tier 1")  # re-categorised
    event = writer.refresh(writer.fetch_event(key))
    assert event.extra["request_type"] == "Billing question"
    writer.apply(event, decision(event, request_type="Report a system problem", group="Tier 2"))
    assert jira.request_type(key) == "Billing question" and jira.field(key, TEAM_FIELD)["value"] == "Tier 1"
    writer.apply(event, decision(event, request_type="Report a system problem", group="Tier 2", override_human=True))
    assert jira.request_type(key) == "Report a system problem" and jira.field(key, TEAM_FIELD)["value"] == "Tier 2"
