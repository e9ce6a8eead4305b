"""Issue 20 §4: only helpdesk agents look up and apply tickets from Slack; others' corrections are not
training data. Real Bolt in `triage serve`'s app over HTTP, the Slack, Zendesk and Jira sandboxes
(users.info with e-mail, Zendesk user search, Jira's browse-permission user search), real Redis."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pipeline_support import runtime, serve, settings
from slack_support import (
    AGENT_EMAIL,
    SLACK_RULES,
    Slack,
    action_value,
    add_agents,
    block_text,
    sandbox,
    slack_settings,
    zd_ticket,
)

from connectors.slack import blocks as ui
from connectors.slack.sandbox import SlackSandbox
from connectors.zendesk.sandbox import ZendeskSandbox
from worker.feedback import FeedbackStore, export_rows
from worker.settings import JiraSettings, Secret

STRANGER = "U0STRANGER1"


@pytest.fixture
def sb() -> Iterator[SlackSandbox]:
    s = sandbox()
    yield s
    s.stop()


@pytest.fixture
def zd(zd: ZendeskSandbox) -> ZendeskSandbox:
    add_agents(zd)
    zd.add_user("Stranger", "stranger@example.org")  # an end user of the helpdesk, not an agent
    return zd


def make_stack(redis_server: Any, zd: ZendeskSandbox, sb: SlackSandbox, tmp_path: Any, **slack: Any):
    rules = tmp_path / "rules.yaml"
    rules.write_text(SLACK_RULES)
    rt = runtime(settings(redis_server.url, str(rules), zd, slack=slack_settings(sb, **slack)))
    server, url = serve(rt)
    return rt, server, url


@pytest.fixture
def stack(redis, redis_server, zd, sb, tmp_path) -> Iterator[tuple[Any, Slack]]:
    rt, server, url = make_stack(redis_server, zd, sb, tmp_path)
    with httpx.Client(base_url=url, timeout=10) as http:
        yield rt, Slack(http, sb)
    server.should_exit = True


def ticket_reads(zd: ZendeskSandbox, tid: int) -> int:
    return sum(1 for q in zd.requests if q.method == "GET" and f"tickets/{tid}" in q.path)


def test_a_stranger_cannot_look_up_a_ticket(stack, sb, zd) -> None:
    _, slack = stack
    tid = zd_ticket(zd)
    _, url, _ = slack.command(str(tid), user=STRANGER)
    answer = slack.answer(url)
    assert answer["response_type"] == "ephemeral"  # privately
    assert "Only Zendesk agents may look up" in answer["text"] and "stranger@example.org" in answer["text"]
    assert "Checkout" not in block_text(answer) and "unacceptable" not in block_text(answer)
    assert ticket_reads(zd, tid) == 0  # the ticket was never read for them
    # the same command from an agent works
    _, url, _ = slack.command(str(tid))
    assert "Checkout down" in block_text(slack.answer(url))


def test_text_triage_stays_open_to_everyone(stack, sb) -> None:
    _, slack = stack
    _, url, _ = slack.command("The checkout is down again, this is unacceptable", user=STRANGER)
    assert "*frustrated*" in block_text(slack.answer(url))
    assert not sb.calls_to("users.info")  # nothing to check


def test_a_stranger_cannot_apply_an_agents_triage(stack, sb, zd) -> None:
    rt, slack = stack
    tid = zd_ticket(zd)
    _, url, _ = slack.command(str(tid))
    ctx = action_value(slack.answer(url), ui.ACTION_APPLY)
    slack.interact(sb.block_action(ui.ACTION_APPLY, ctx, response_url=url, user=STRANGER))
    refused = slack.answer(url, 2)
    assert "Only Zendesk agents may look up or apply" in refused["text"] and refused["replace_original"] is False
    assert zd.tickets[tid].get("priority") is None and not [q for q in zd.requests if q.method == "PUT"]
    assert not list(FeedbackStore(rt.redis).all())


def test_a_strangers_correction_is_kept_but_not_training_data(stack, sb) -> None:
    rt, slack = stack
    _, url, _ = slack.command("The checkout is down again, this is unacceptable", user=STRANGER)
    answer = slack.answer(url)
    wrong = action_value(answer, ui.ACTION_WRONG["sentiment"])
    for n, (user, label) in enumerate(((STRANGER, "satisfied"), ("U0AGENT001", "neutral")), 1):
        slack.interact(sb.block_action(ui.ACTION_WRONG["sentiment"], wrong, response_url=url, user=user))
        view = sb.wait_for(lambda n=n: sb.views[-1] if len(sb.views) == n else None)
        assert slack.interact(sb.view_submission(view["id"], {"head_sentiment": label}, user=user)).status_code == 200
    stranger_fb, agent_fb = list(FeedbackStore(rt.redis).all())
    assert (stranger_fb.by, stranger_fb.agent) == (STRANGER, False)
    assert (agent_fb.by, agent_fb.agent) == ("U0AGENT001", True)
    rows = export_rows(FeedbackStore(rt.redis).all())
    assert [r["sentiment"] for r in rows] == ["neutral"] and rows[0]["by"] == "U0AGENT001"  # the stranger's: not
    notes = [block_text(slack.answer(url, n)) for n in (2, 3)]
    assert "not used for training" in notes[0] and "the model learns from it" in notes[1]


def test_allow_lists_and_a_missing_email_scope(redis, redis_server, zd, sb, tmp_path) -> None:
    sb.add_usergroup("S0SUPPORT1", ["U0CUSTOMER9"])
    rt, server, url = make_stack(redis_server, zd, sb, tmp_path, allowed_users=(STRANGER,),
                                 allowed_usergroups=("S0SUPPORT1",))
    try:
        with httpx.Client(base_url=url, timeout=10) as http:
            slack = Slack(http, sb)
            tid = zd_ticket(zd)
            for user in (STRANGER, "U0CUSTOMER9"):  # allow-listed: by id, by user group
                _, rurl, _ = slack.command(str(tid), user=user)
                assert "Checkout down" in block_text(slack.answer(rurl)), user
            _, rurl, _ = slack.command(str(tid), user="U0CUSTOMER1")
            assert "Only Zendesk agents" in slack.answer(rurl)["text"]
            sb.scopes.discard("users:read.email")  # an app installed without the scope: no e-mails
            _, rurl, _ = slack.command(str(tid), user="U0LEAD0001")
            assert "Slack shares no e-mail for you" in slack.answer(rurl)["text"]
    finally:
        server.should_exit = True


def test_agent_checks_are_cached(stack, sb, zd) -> None:
    _, slack = stack
    tid = zd_ticket(zd)
    for _ in range(3):
        _, url, _ = slack.command(str(tid))
        slack.answer(url)
    assert len(sb.calls_to("users.info")) == 1
    assert sum(1 for q in zd.requests if "users/search" in q.path) == 1


def test_jira_needs_a_user_who_can_browse_the_issue(redis, redis_server, zd, sb, tmp_path) -> None:
    from connectors.jira.sandbox import JiraSandbox

    rules = tmp_path / "rules.yaml"
    rules.write_text(SLACK_RULES)
    with JiraSandbox() as jira:
        jira.add_user("Agent", AGENT_EMAIL)
        jira.add_user("Customer", "stranger@example.org", account_type="customer")  # a portal customer
        key = jira.add_issue("SUP", "Checkout down", "Checkout is down since 9am, this is unacceptable")
        rt = runtime(settings(redis_server.url, str(rules), zd, slack=slack_settings(sb),
                              jira=JiraSettings(jira.url, jira.email, Secret(jira.token), Secret("jira-secret"),
                                                jira.bot_account_id)))
        server, url = serve(rt)
        try:
            with httpx.Client(base_url=url, timeout=10) as http:
                slack = Slack(http, sb)
                _, rurl, _ = slack.command(key, user=STRANGER)
                answer = slack.answer(rurl)
                assert f"not a Jira user who can see {key}" in answer["text"] and "Checkout" not in block_text(answer)
                _, rurl, _ = slack.command(key)
                assert f"Jira ticket #{key}" in block_text(slack.answer(rurl))
                assert any(c.path == "/rest/api/3/user/viewissue/search" for c in jira.requests)
        finally:
            server.should_exit = True


def test_a_restricted_zendesk_agent_looks_up_no_tickets_but_their_corrections_count(stack, sb, zd) -> None:
    """The bot reads tickets as itself: an agent who may see only their groups' tickets would see
    others through it, so they get the refusal; they are still an agent for training data."""
    rt, slack = stack
    zd.add_user("Gail Groups", "gail@example.com", role="agent", ticket_restriction="groups")
    sb.add_user("U0GROUPS01", "gail@example.com", name="gail")
    tid = zd_ticket(zd)
    _, url, _ = slack.command(str(tid), user="U0GROUPS01")
    answer = slack.answer(url)
    assert "who can see every ticket" in answer["text"] and "Checkout" not in block_text(answer)
    _, url, _ = slack.command("The checkout is down again, this is unacceptable", user="U0GROUPS01")
    wrong = action_value(slack.answer(url), ui.ACTION_WRONG["sentiment"])
    slack.interact(sb.block_action(ui.ACTION_WRONG["sentiment"], wrong, response_url=url, user="U0GROUPS01"))
    [view] = sb.wait_for(lambda: sb.views)
    slack.interact(sb.view_submission(view["id"], {"head_sentiment": "neutral"}, user="U0GROUPS01"))
    [fb] = list(FeedbackStore(rt.redis).all())
    assert fb.agent is True and export_rows([fb])
