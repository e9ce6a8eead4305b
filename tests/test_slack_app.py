"""End to end on Slack: the real Bolt app served over HTTP by `triage serve`'s app, signed requests,
a local Slack Web API (connectors/slack/sandbox.py), real Redis, RQ worker and Zendesk sandbox."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from pipeline_support import drain, runtime, serve, settings
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_support import (
    AGENT_EMAIL,
    ALERTS,
    OTHER,
    SIGNING_SECRET,
    SLACK_RULES,
    WATCHED,
    ZD_ALERTS,
    Slack,
    action_value,
    add_agents,
    alerts,
    block_text,
    has_action,
    sandbox,
    slack_settings,
    zd_ticket,
)

from connectors.slack import blocks as ui
from connectors.slack.sandbox import SlackSandbox, sign
from connectors.zendesk.sandbox import ZendeskSandbox
from worker.feedback import FeedbackStore
from worker.queueing import QueueUnavailable


@pytest.fixture
def sb() -> Iterator[SlackSandbox]:
    s = sandbox()
    yield s
    s.stop()


@pytest.fixture
def zd(zd: ZendeskSandbox) -> ZendeskSandbox:
    add_agents(zd)
    return zd


@pytest.fixture
def stack(redis, redis_server, zd, sb, tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(SLACK_RULES)
    rt = runtime(settings(redis_server.url, str(rules), zd, slack=slack_settings(sb)))
    server, url = serve(rt)
    with httpx.Client(base_url=url, timeout=10) as http:
        yield rt, Slack(http, sb)
    server.should_exit = True


# -- signatures (Bolt verifies them) ----------------------------------------------------------------


def test_signature_good_bad_stale(stack, sb):
    _, slack = stack
    fields = sb.command("help")
    body, headers = sb.signed_form(SIGNING_SECRET, fields)
    assert slack.http.post("/slack/events", content=body, headers=headers).status_code == 200
    _, bad = sb.signed_form("not-the-secret", fields)
    assert slack.http.post("/slack/events", content=body, headers=bad).status_code == 401
    stale = sign(SIGNING_SECRET, body, int(time.time()) - 301)  # outside the 5-minute window
    assert slack.http.post("/slack/events", content=body,
                           headers={**stale, "Content-Type": headers["Content-Type"]}).status_code == 401
    tampered = body.replace(b"help", b"hel")
    assert slack.http.post("/slack/events", content=tampered, headers=headers).status_code == 401
    assert slack.http.post("/slack/events", content=body,
                           headers={"Content-Type": headers["Content-Type"]}).status_code == 401
    assert not sb.responses()  # nothing answered the refused ones


def test_url_verification_challenge(stack, sb):
    _, slack = stack
    r = slack.event({"type": "url_verification", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
                     "token": "x"})
    assert r.status_code == 200 and "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P" in r.text


# -- /triage --------------------------------------------------------------------------------------------


def test_triage_text_answers_through_response_url(stack, sb):
    _, slack = stack
    r, url, ack_s = slack.command("The checkout is down again, this is unacceptable")
    assert r.status_code == 200 and r.text == "" and ack_s < 1.0  # acked at once, answer follows
    answer = slack.answer(url)
    assert answer["response_type"] == "ephemeral" and answer["replace_original"] is True
    text = block_text(answer)
    assert "*frustrated*" in text and "90%" in text and "*high*" in text and "80%" in text
    assert "`down`" in text  # the words behind it
    assert "`urgent`" in text and "`slack-eyes`" in text  # the rules that matched ...
    assert ":eyes:" in text and ":warning:" in text and "reply in thread" in text  # ... and what they would do
    assert f"alert <#{ALERTS}>" in text  # the built-in alert rule (SLACK_ALERT_CHANNEL)
    assert has_action(answer, ui.ACTION_WRONG["sentiment"]) and not has_action(answer, ui.ACTION_APPLY)
    assert not sb.calls_to("chat.postMessage") and not sb.calls_to("reactions.add")  # it only shows


def test_triage_help_and_errors_are_ephemeral(stack, sb):
    _, slack = stack
    r, _, _ = slack.command("help")
    assert r.status_code == 200 and r.json()["response_type"] == "ephemeral"
    assert "/triage 4201" in r.text and f"<#{WATCHED}>" in r.text
    r, url, _ = slack.command("x" * 4500)
    assert r.status_code == 200 and "4,500 characters" in r.json()["text"]
    r, _, _ = slack.command("https://other.zendesk.com/agent/tickets/12")
    assert "other.zendesk.com" in r.json()["text"]
    time.sleep(0.2)
    assert not sb.responses(url)  # refused at the ack: no work started


def test_triage_ticket_then_apply_writes_back_and_alerts(stack, sb, zd):
    rt, slack = stack
    tid = zd_ticket(zd)
    r, url, ack_s = slack.command(f"https://sandbox.zendesk.com/agent/tickets/{tid}")
    assert r.status_code == 200 and f"Looking up Zendesk ticket {tid}" in r.json()["text"] and ack_s < 1.0
    answer = slack.answer(url)
    text = block_text(answer)
    assert f"Zendesk ticket #{tid}" in text and "Checkout down" in text and "priority *urgent*" in text
    assert "`+escalated`" in text and "alert #zendesk-alerts" in text
    assert zd.tickets[tid].get("priority") is None  # showing is not writing
    # Apply: the worker's use case, right now, with the scores shown
    press = slack.interact(sb.block_action(ui.ACTION_APPLY, action_value(answer, ui.ACTION_APPLY),
                                           response_url=url))
    assert press.status_code == 200
    applied = slack.answer(url, 2)
    assert "Applied by <@U0AGENT001>" in block_text(applied) and not has_action(applied, ui.ACTION_APPLY)
    ticket = zd.tickets[tid]
    assert ticket["priority"] == "urgent" and "escalated" in ticket["tags"]
    assert any(not c["public"] and "Triage (automatic)" in c["body"] for c in zd.comments(tid))
    # the rule's notify_slack: an alert in #zendesk-alerts linking the ticket, with Correct?
    [alert] = alerts(sb, ZD_ALERTS)
    assert f"https://sandbox.zendesk.com/agent/tickets/{tid}" in block_text(alert)
    assert has_action(alert, ui.ACTION_CORRECT)
    [fb] = list(FeedbackStore(rt.redis).all())
    assert fb.verdict == "applied" and fb.human == {} and fb.item.startswith(f"zendesk:{tid}:")
    # the worker later gets the same revision: exactly once, nothing written twice
    puts = sum(1 for q in zd.requests if q.method == "PUT")
    assert rt.enqueuer.submit(rt.writers["zendesk"].fetch_event(tid)) == "done"  # type: ignore[attr-defined]
    press = slack.interact(sb.block_action(ui.ACTION_APPLY, action_value(answer, ui.ACTION_APPLY),
                                           response_url=url))
    assert "already triaged" in block_text(slack.answer(url, 3))
    assert sum(1 for q in zd.requests if q.method == "PUT") == puts and len(alerts(sb, ZD_ALERTS)) == 1


def test_zendesk_rule_alerts_slack_from_the_worker(stack, sb, zd):
    """A webhook-triggered ticket whose rules say notify_slack: the worker alerts after writing back."""
    from pipeline_support import SECRET

    rt, slack = stack
    tid = zd_ticket(zd)
    body, headers = zd.signed_trigger(tid, SECRET)
    assert slack.http.post("/webhooks/zendesk", content=body, headers=headers).status_code == 202
    drain(rt)
    assert zd.tickets[tid]["priority"] == "urgent"
    [alert] = alerts(sb, ZD_ALERTS)
    assert f"Zendesk ticket #{tid}: Checkout down" in block_text(alert) and has_action(alert, ui.ACTION_CORRECT)
    assert not alerts(sb)  # the built-in Slack alert rule is for watched messages only


def test_triage_shows_the_llm_answer_the_worker_used_and_never_asks_it_itself(redis, redis_server, zd, sb, tmp_path):
    """With the LLM second opinion on, /triage of a ticket the worker escalated shows the cached answer
    (the labels written back); before that, the model's answer and that the worker would ask."""
    from connectors.llm.sandbox import LlmSandbox
    from model.textprep import ticket_text
    from worker.escalation import KEY
    from worker.ports import Deferred
    from worker.settings import LLMSettings, Secret

    rules = tmp_path / "rules.yaml"
    rules.write_text(SLACK_RULES)
    with LlmSandbox(api_key="k") as llm:
        cfg = LLMSettings(base_url=llm.base_url, model="sandbox-model", api_key=Secret("k"), timeout_s=5,
                          deadline_s=5, escalate=("borderline",), high_threshold=0.8, urgency_band=0.1)
        rt = runtime(settings(redis_server.url, str(rules), zd, slack=slack_settings(sb), llm=cfg))
        server, url = serve(rt)
        try:
            with httpx.Client(base_url=url, timeout=10) as http:
                slack = Slack(http, sb)
                tid = zd_ticket(zd)  # the fixed scorer's P(high) 0.8: borderline
                _, answer_url, _ = slack.command(f"https://sandbox.zendesk.com/agent/tickets/{tid}")
                before = block_text(slack.answer(answer_url))
                assert "the worker asks the LLM second opinion" in before and llm.calls == 0
                event = rt.writers["zendesk"].fetch_event(tid)  # the worker escalates it
                [scores] = rt.scorer.score([ticket_text(event.subject, event.text)])
                with pytest.raises(Deferred):
                    rt.second_opinion.review(event, scores)
                deadline = time.monotonic() + 10
                while not redis.keys(f"{KEY}:cache:*") and time.monotonic() < deadline:
                    time.sleep(0.05)
                _, answer_url, _ = slack.command(f"https://sandbox.zendesk.com/agent/tickets/{tid}")
                after = block_text(slack.answer(answer_url))
                assert "decided by the LLM second opinion (sandbox-model" in after and "sandbox keyword guess" in after
                assert llm.calls == 1  # the worker's question only
        finally:
            server.should_exit = True
            rt.second_opinion.close()


def test_triage_unknown_ticket_and_helpdesk_down(stack, sb, zd):
    _, slack = stack
    _, url, _ = slack.command("999999")
    answer = slack.answer(url)
    assert answer["response_type"] == "ephemeral" and "ticket 999999 was not found" in answer["text"]
    tid = zd_ticket(zd)
    zd.fail_next(503, times=None)
    _, url, _ = slack.command(str(tid))
    answer = slack.answer(url)
    assert "Zendesk is not answering right now" in answer["text"]
    zd.clear_faults()
    zd.fail_next(429, times=None, retry_after=42)
    _, url, _ = slack.command(str(tid))
    assert "try again in 42s" in slack.answer(url)["text"]


def test_apply_refuses_a_ticket_that_changed(stack, sb, zd):
    _, slack = stack
    tid = zd_ticket(zd)
    _, url, _ = slack.command(str(tid))
    answer = slack.answer(url)
    zd.add_comment(tid, "Still down!! Any news?")
    slack.interact(sb.block_action(ui.ACTION_APPLY, action_value(answer, ui.ACTION_APPLY), response_url=url))
    assert "changed since this triage" in slack.answer(url, 2)["text"]
    assert zd.tickets[tid].get("priority") is None


# -- feedback: buttons -> modal -> durable record ---------------------------------------------------


def test_wrong_sentiment_button_records_feedback(stack, sb):
    rt, slack = stack
    _, url, _ = slack.command("The checkout is down again, this is unacceptable")
    answer = slack.answer(url)
    ctx = action_value(answer, ui.ACTION_WRONG["sentiment"])
    assert slack.interact(sb.block_action(ui.ACTION_WRONG["sentiment"], ctx, response_url=url)).status_code == 200
    [view] = sb.wait_for(lambda: sb.views)
    blocks = {b["block_id"]: b for b in view["blocks"] if b["type"] == "input"}
    assert blocks["head_sentiment"]["optional"] is False and blocks["head_urgency"]["optional"] is True
    assert "initial_option" not in blocks["head_sentiment"]["element"]
    # nothing picked: the modal says so and nothing is stored
    r = slack.interact(sb.view_submission(view["id"], {}))
    assert r.json()["response_action"] == "errors"
    r = slack.interact(sb.view_submission(view["id"], {"head_sentiment": "neutral"}, user="U0LEAD0001"))
    assert r.status_code == 200 and r.text == ""  # closes the modal
    [fb] = list(FeedbackStore(rt.redis).all())
    assert fb.human == {"sentiment": "neutral"} and fb.model == {"sentiment": "frustrated", "urgency": "high"}
    assert fb.verdict == "corrected" and fb.by == "U0LEAD0001" and fb.via == "text" and fb.at
    assert fb.text == "The checkout is down again, this is unacceptable" and fb.item.startswith("text:")
    assert fb.model_version == "fixed-test" and fb.confidence == {"sentiment": 0.9, "urgency": 0.8}
    updated = slack.answer(url, 2)
    assert "<@U0LEAD0001> recorded sentiment *neutral* (model said frustrated)" in block_text(updated)


def test_message_shortcut(stack, sb):
    rt, slack = stack
    env = sb.user_message(OTHER, "Thanks a lot, that fixed it! <@U0AGENT001> you rock", user="U0CUSTOMER9")
    payload = sb.message_shortcut(OTHER, env["event"]["ts"])
    r = slack.interact(payload)
    assert r.status_code == 200
    answer = slack.answer(payload["response_url"])
    text = block_text(answer)
    assert "*satisfied*" in text and "*low*" in text and f"<#{OTHER}>" in text and "<@U0CUSTOMER9>" in text
    assert has_action(answer, ui.ACTION_WRONG["urgency"])
    # a correction on it names the message as the item
    slack.interact(sb.block_action(ui.ACTION_WRONG["urgency"], action_value(answer, ui.ACTION_WRONG["urgency"]),
                                   response_url=payload["response_url"]))
    [view] = sb.wait_for(lambda: sb.views)
    slack.interact(sb.view_submission(view["id"], {"head_urgency": "medium"}))
    [fb] = sb.wait_for(lambda: list(FeedbackStore(rt.redis).all()))
    assert fb.item == f"slack:{OTHER}:{env['event']['ts']}:{env['event']['ts']}" and fb.via == "message"
    assert fb.text == "Thanks a lot, that fixed it! @U0AGENT001 you rock"


def test_shortcut_on_a_message_without_text(stack, sb):
    _, slack = stack
    env = sb.user_message(OTHER, "", subtype="file_share")
    payload = sb.message_shortcut(OTHER, env["event"]["ts"])
    slack.interact(payload)
    assert "no text to triage" in slack.answer(payload["response_url"])["text"]


# -- channel watch ---------------------------------------------------------------------------------


def test_channel_watch_reacts_replies_and_alerts(stack, sb):
    rt, slack = stack
    env = sb.user_message(WATCHED, "Our checkout is down and it is unacceptable", user="U0CUSTOMER1")
    ts = env["event"]["ts"]
    assert slack.event(env).status_code == 200
    drain(rt)
    assert sb.reactions(WATCHED, ts) == ["warning", "rotating_light", "eyes"]  # default map + `:eyes:`
    [reply] = [m for m in sb.messages(WATCHED, bot=True) if m.get("thread_ts") == ts]
    assert "Triage (automatic)" in reply["text"] and "frustrated" in reply["text"]
    [alert] = alerts(sb)
    text = block_text(alert)
    assert "Frustrated, high urgency" in text and f"<#{WATCHED}>" in text and "<@U0CUSTOMER1>" in text
    permalink = f"https://sandbox.slack.com/archives/{WATCHED}/p{ts.replace('.', '')}"
    assert permalink in text and "Our checkout is down" in text
    # Correct? on the alert: both heads preselected; the agent fixes urgency
    ctx = action_value(alert, ui.ACTION_CORRECT)
    press = sb.block_action(ui.ACTION_CORRECT, ctx, channel=ALERTS, message_ts=alert["ts"], ephemeral=False)
    slack.interact(press)
    [view] = sb.wait_for(lambda: sb.views)
    inputs = {b["block_id"]: b for b in view["blocks"] if b["type"] == "input"}
    assert inputs["head_urgency"]["element"]["initial_option"]["value"] == "high"
    slack.interact(sb.view_submission(view["id"], {"head_sentiment": "frustrated", "head_urgency": "medium"}))
    [fb] = list(FeedbackStore(rt.redis).all())
    assert fb.via == "alert" and fb.human == {"sentiment": "frustrated", "urgency": "medium"}
    assert fb.verdict == "corrected" and fb.item == f"slack:{WATCHED}:{ts}:{ts}"
    updated = slack.answer(press["response_url"])
    assert updated["replace_original"] is True and "urgency *medium* (model said high)" in block_text(updated)


def test_watch_ignores_bots_edits_other_channels_and_calm_messages(stack, sb):
    rt, slack = stack
    calm = sb.user_message(WATCHED, "How do I change my invoice address?")
    for env in (sb.user_message(WATCHED, "The site is down!", bot_id="B0OTHERBOT", subtype="bot_message"),
                sb.user_message(OTHER, "The site is down, unacceptable"),
                sb.edit_event(WATCHED, calm["event"]["ts"], "The site is down, unacceptable"),
                calm):
        assert slack.event(env).status_code == 200
    assert rt.enqueuer.queue.count == 1  # only the calm new message
    drain(rt)
    assert not alerts(sb)
    assert not sb.calls_to("reactions.add")  # neutral/medium: no mapped reaction, no rule


def test_retried_event_delivery_gives_one_alert(stack, sb):
    rt, slack = stack
    env = sb.user_message(WATCHED, "Payments are broken since this morning")
    assert slack.event(env).status_code == 200
    assert slack.event(env, retry_num=1).status_code == 200  # Slack did not see our answer in time
    assert rt.enqueuer.queue.count == 1
    drain(rt)
    assert slack.event(env, retry_num=2).status_code == 200
    again = sb.event_envelope(env["event"])  # the same message under another event id
    assert slack.event(again).status_code == 200
    drain(rt)
    assert len(alerts(sb)) == 1 and len(sb.reactions(WATCHED, env["event"]["ts"])) == 3


def test_event_is_redelivered_when_the_queue_is_down(stack, sb, monkeypatch):
    rt, slack = stack
    env = sb.user_message(WATCHED, "Everything is down")

    def down(event):
        raise QueueUnavailable("Redis unreachable: ConnectionError")

    monkeypatch.setattr(rt.enqueuer, "submit", down)
    r = slack.event(env)
    assert r.status_code == 503 and r.headers["Retry-After"] == "30"  # as the webhooks: Slack delivers it again
    assert r.json() == {"error": "queue unavailable, retry later"}
    monkeypatch.undo()
    assert slack.event(env, retry_num=1).status_code == 200
    assert rt.enqueuer.queue.count == 1


def test_rate_limited_post_is_retried_after_retry_after(stack, sb):
    rt, slack = stack
    env = sb.user_message(WATCHED, "The app is broken, unacceptable")
    slack.event(env)
    sb.fail_next("chat.postMessage", 429, retry_after=1)
    drain(rt)
    posts = sb.calls_to("chat.postMessage")
    limited = [i for i, c in enumerate(posts) if c.status == 429]
    assert len(limited) == 1
    retry = posts[limited[0] + 1]
    assert retry.args["channel"] == posts[limited[0]].args["channel"] and retry.status == 200
    assert retry.at - posts[limited[0]].at >= 1.0  # waited what Retry-After said
    assert len(alerts(sb)) == 1 and len([m for m in sb.messages(WATCHED, bot=True)]) == 1


def test_posts_are_paced_per_channel(redis, redis_server, zd, tmp_path):
    """Slack allows about one message a second per channel: alerts never trip a strict limit."""
    sb = sandbox(post_interval_s=1.0)
    try:
        rules = tmp_path / "rules.yaml"
        rules.write_text("rules: []\n")
        rt = runtime(settings(redis_server.url, str(rules), zd, slack=slack_settings(sb)))
        for text in ("The site is down", "Checkout broken", "Unacceptable outage"):
            rt.enqueuer.submit(_watched_event(sb, text))
        started = time.perf_counter()
        drain(rt)
        posts = sb.calls_to("chat.postMessage")
        assert [c.status for c in posts] == [200, 200, 200] and len(alerts(sb)) == 3
        assert time.perf_counter() - started >= 2.0
    finally:
        sb.stop()


def _watched_event(sb: SlackSandbox, text: str):
    from connectors.slack.text import message_event

    return message_event(sb.user_message(WATCHED, text)["event"])


# -- Socket Mode: the same app, no signature, answers over the socket ---------------------------------


class _FakeSocketClient:
    def __init__(self):
        import logging

        self.logger = logging.getLogger("test.socket")
        self.sent = []

    def send_socket_mode_response(self, response):
        self.sent.append(response)


def test_socket_mode_serves_the_same_app(stack, sb):
    from connectors.slack.socket import socket_mode_handler

    rt, slack = stack
    handler = socket_mode_handler(rt.slack_app(socket_mode=True), "xapp-1-test")
    client = _FakeSocketClient()
    fields = sb.command("The checkout is down, unacceptable")
    handler.handle(client, SocketModeRequest(type="slash_commands", envelope_id="env-1", payload=fields))
    assert [r.envelope_id for r in client.sent] == ["env-1"]
    assert "*frustrated*" in block_text(slack.answer(fields["response_url"]))
    env = sb.user_message(WATCHED, "It is broken")
    handler.handle(client, SocketModeRequest(type="events_api", envelope_id="env-2", payload=env,
                                             retry_attempt=0))
    assert rt.enqueuer.queue.count == 1 and [r.envelope_id for r in client.sent] == ["env-1", "env-2"]


# -- Jira issues through /triage ----------------------------------------------------------------------


def test_triage_jira_issue_and_apply(redis, redis_server, zd, sb, tmp_path):
    from connectors.jira.sandbox import JiraSandbox
    from worker.settings import JiraSettings, Secret

    rules = tmp_path / "rules.yaml"
    rules.write_text(SLACK_RULES)
    with JiraSandbox() as jira:
        jira.add_user("Agent", AGENT_EMAIL)
        key = jira.add_issue("SUP", "Checkout down", "Checkout is down since 9am, this is unacceptable",
                             request_type="Report a system problem")
        rt = runtime(settings(redis_server.url, str(rules), zd, slack=slack_settings(sb),
                              jira=JiraSettings(jira.url, jira.email, Secret(jira.token), Secret("jira-secret"),
                                                jira.bot_account_id)))
        server, url = serve(rt)
        try:
            with httpx.Client(base_url=url, timeout=10) as http:
                slack = Slack(http, sb)
                r, rurl, _ = slack.command(key)
                assert f"Looking up Jira ticket {key}" in r.json()["text"]
                answer = slack.answer(rurl)
                assert f"Jira ticket #{key}" in block_text(answer) and f"{jira.url}/browse/{key}" in block_text(answer)
                slack.interact(sb.block_action(ui.ACTION_APPLY, action_value(answer, ui.ACTION_APPLY),
                                               response_url=rurl))
                assert "Applied by" in block_text(slack.answer(rurl, 2))
                assert "triage_sentiment_frustrated" in jira.labels(key)
                _, rurl, _ = slack.command(f"{jira.url}/browse/SUP-999")
                assert "Jira ticket SUP-999 was not found" in slack.answer(rurl)["text"]
        finally:
            server.should_exit = True
