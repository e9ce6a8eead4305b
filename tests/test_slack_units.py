"""Slack connector pieces: settings, text, the Web API wrapper against the sandbox, the writer's
exactly-once steps, the built-in alert rule, job ids."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pipeline_support import FixedScorer
from slack_support import ALERTS, WATCHED, sandbox

from connectors.slack.api import ChannelPacer, SlackApi, make_client
from connectors.slack.context import ContextStore
from connectors.slack.rules import ALERT_RULE, alert_rules
from connectors.slack.text import is_new_message, message_event, parse_command, plain, reactions_for
from connectors.slack.writer import SlackNotifier, SlackWriter
from worker.bootstrap import Rules
from worker.decision import Actions, TriageDecision
from worker.errors import ConfigError, RateLimited, VendorAuthError, VendorRejected, VendorUnavailable
from worker.events import TicketEvent
from worker.settings import SLACK_REACTIONS, load_settings


def env(**kw: str) -> dict[str, str]:
    return {"SLACK_BOT_TOKEN": "xoxb-1-2-abc", **kw}


# -- settings ------------------------------------------------------------------------------------


def test_slack_settings_defaults_and_values():
    assert not load_settings({}, dotenv=None).slack.enabled
    s = load_settings(env(SLACK_SIGNING_SECRET="s3cr3t-value", SLACK_APP_TOKEN="xapp-1-x",
                          SLACK_WATCH_CHANNELS="C0123ABCD, G0456EFGH,C0123ABCD", SLACK_ALERT_CHANNEL="#alerts",
                          SLACK_API_URL="http://127.0.0.1:9/api", SLACK_REACTIONS="escalated=:fire:,x=eyes"),
                      dotenv=None).slack
    assert s.enabled and s.watch_channels == ("C0123ABCD", "G0456EFGH") and s.alert_channel == "#alerts"
    assert s.api_url == "http://127.0.0.1:9/api/" and s.reactions == (("escalated", "fire"), ("x", "eyes"))
    assert "s3cr3t" not in repr(s) and "xapp" not in repr(s) and "xoxb" not in repr(s)
    assert load_settings(env(), dotenv=None).slack.reactions == SLACK_REACTIONS
    assert load_settings(env(SLACK_REACTIONS="none"), dotenv=None).slack.reactions == ()


@pytest.mark.parametrize("values, message", [
    ({"SLACK_SIGNING_SECRET": "s"}, "SLACK_BOT_TOKEN missing"),
    (env(SLACK_BOT_TOKEN="xoxp-user-token"), "Bot User OAuth Token"),
    (env(SLACK_APP_TOKEN="xoxb-no"), "app-level token"),
    (env(SLACK_WATCH_CHANNELS="#support"), "not a channel id"),
    (env(SLACK_ALERT_CHANNEL="alerts"), "channel id (C0123ABCD) or a #name"),
    (env(SLACK_API_URL="slack.com/api"), "http(s) URL"),
    (env(SLACK_REACTIONS="escalated"), "tag=emoji"),
])
def test_slack_settings_errors_name_the_variable(values, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_settings(values, dotenv=None)


# -- text ------------------------------------------------------------------------------------------


def test_parse_command():
    assert parse_command("").kind == parse_command("help").kind == "help"
    for raw in ("4201", "#4201", "https://acme.zendesk.com/agent/tickets/4201",
                "<https://acme.zendesk.com/agent/tickets/4201>", "https://acme.zendesk.com/hc/en-us/requests/4201"):
        r = parse_command(raw)
        assert (r.kind, r.source, r.ticket_id) == ("ticket", "zendesk", "4201"), raw
    assert parse_command("https://acme.zendesk.com/agent/tickets/4201").host == "acme"
    r = parse_command("Order 4201 never arrived <@U1|ann>")
    assert r.kind == "text" and r.text == "Order 4201 never arrived @ann"
    assert parse_command("x" * 4001).kind == "error" and parse_command("x" * 4000).kind == "text"
    for raw in ("SUP-12", "https://acme.atlassian.net/browse/SUP-12", "<https://acme.atlassian.net/browse/sup-12>",
                "http://127.0.0.1:8080/browse/SUP-12"):
        r = parse_command(raw)
        assert (r.kind, r.source, r.ticket_id) == ("ticket", "jira", "SUP-12"), raw
    assert parse_command("https://acme.atlassian.net/browse/SUP-12").host == "acme.atlassian.net"
    assert parse_command("covid-19").kind == parse_command("SUP-12 is down").kind == "text"


def test_plain_and_message_filters():
    assert plain("Hi <@U1>, see <#C1|support> and <https://x.io/a|the doc> &amp; <!here>") == \
        "Hi @U1, see #support and the doc & @here"
    base = {"type": "message", "channel": "C1", "user": "U1", "ts": "1.2", "text": "hi"}
    assert is_new_message(base) and is_new_message({**base, "subtype": "thread_broadcast"})
    for other in ({"subtype": "message_changed"}, {"subtype": "message_deleted"}, {"bot_id": "B1"},
                  {"subtype": "channel_join"}, {"user": ""}):
        assert not is_new_message({**base, **other})
    e = message_event({**base, "thread_ts": "1.0"}, "T1")
    assert (e.source, e.ticket_id, e.revision, e.extra["thread_ts"], e.extra["team"]) == \
        ("slack", "C1:1.2", "1.2", "1.0", "T1")


def test_reactions_mapping():
    mapping = dict(SLACK_REACTIONS)
    assert reactions_for(("triage_sentiment_frustrated", "escalated", ":eyes:", "triage_urgency_high", ":eyes:"),
                         mapping) == ["warning", "eyes", "rotating_light"]


# -- the Web API wrapper -------------------------------------------------------------------------------


@pytest.fixture
def sb():
    s = sandbox()
    yield s
    s.stop()


def test_long_retry_after_goes_back_to_the_queue(sb):
    api = SlackApi(make_client(sb.token, sb.api_url, max_wait_s=0.5))
    sb.fail_next("chat.postMessage", 429, retry_after=30)
    with pytest.raises(RateLimited) as e:
        api.post_message(ALERTS, "hello")
    assert e.value.retry_after == 30
    sb.fail_next("chat.postMessage", 429, retry_after=0)
    assert api.post_message(ALERTS, "hello")["ts"]  # a short wait is retried in place


def test_errors_are_mapped(sb):
    bad = SlackApi(make_client("xoxb-wrong", sb.api_url))
    with pytest.raises(VendorAuthError, match="invalid_auth"):
        bad.auth_test()
    api = SlackApi(make_client(sb.token, sb.api_url))
    with pytest.raises(VendorRejected, match="channel_not_found"):
        api.post_message("#nowhere", "x")
    ts = sb.user_message(WATCHED, "hi")["event"]["ts"]
    api.add_reaction(WATCHED, ts, "eyes")
    api.add_reaction(WATCHED, ts, "eyes")  # already_reacted is fine: a retry must not fail
    assert sb.reactions(WATCHED, ts) == ["eyes"]


def test_pacer_spaces_posts_per_channel_across_clients(redis):
    slept: list[float] = []
    p1, p2 = ChannelPacer(redis, 1.0, sleep=slept.append), ChannelPacer(redis, 1.0, sleep=slept.append)
    p1.wait("C1")
    p2.wait("C1")  # another process: same Redis, next second
    p1.wait("C2")  # another channel: no wait
    assert len(slept) == 1 and 0.9 < slept[0] <= 1.0
    slow = ChannelPacer(redis, 30.0, max_wait_s=5, sleep=slept.append)
    slow.wait("C3")
    with pytest.raises(RateLimited):  # a backlog longer than a worker should block: back to the queue
        slow.wait("C3")


# -- the writer and notifier: each step once ------------------------------------------------------------


def _decision(event: TicketEvent, **actions) -> TriageDecision:
    [s] = FixedScorer().score(["it is down"])
    return TriageDecision(event.key, s, ("r",), Actions(**actions))


def test_writer_steps_run_once_across_retries(sb, redis):
    api = SlackApi(make_client(sb.token, sb.api_url))
    writer = SlackWriter(api, redis, dict(SLACK_REACTIONS))
    event = message_event(sb.user_message(WATCHED, "It is down")["event"])
    decision = _decision(event, add_tags=("triage_urgency_high", ":fire:", "escalated"), note=True,
                         priority="urgent")
    sb.fail_next("chat.postMessage", 500)  # the reply fails after the reactions went out
    with pytest.raises(VendorUnavailable):
        writer.apply(event, decision)
    assert not writer.already_applied(event)
    writer.apply(event, decision)  # the job's retry
    writer.apply(event, decision)  # and a duplicate
    assert sb.reactions(WATCHED, event.revision) == ["rotating_light", "fire"]
    assert len([m for m in sb.messages(WATCHED, bot=True)]) == 1
    assert len(sb.calls_to("reactions.add")) == 2
    assert writer.already_applied(event)
    redis.flushall()  # the step memory lost: the reply's metadata still says it was written
    assert writer.already_applied(event)


def test_notifier_posts_one_alert_per_channel(sb, redis):
    api = SlackApi(make_client(sb.token, sb.api_url))
    notifier = SlackNotifier(api, ContextStore(redis), redis,
                             {"zendesk": lambda e: f"https://acme.zendesk.com/agent/tickets/{e.ticket_id}"})
    event = TicketEvent(source="zendesk", ticket_id="4201", revision="7", subject="Checkout <down>",
                        text="It is down")
    decision = _decision(event, notify_slack=(ALERTS, "#support-alerts", "#zendesk-alerts"))
    notifier.notify(event, decision)
    notifier.notify(event, decision)
    assert len(sb.messages(ALERTS, bot=True)) == 2  # by id and by name: the same channel, as configured
    [z] = sb.messages(sb.add_channel("zendesk-alerts"), bot=True)
    shown = json.dumps(z["blocks"])
    assert "https://acme.zendesk.com/agent/tickets/4201" in shown and "Checkout &lt;down&gt;" in shown
    assert "triage_correct" in shown


# -- the built-in alert rule ------------------------------------------------------------------------


def test_alert_rule_runs_after_the_admin_rules(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n  - name: spam\n    when: {tags_present: [spam]}\n    then: {stop: true}\n")
    rules = Rules(str(path), alert_rules(ALERTS))
    [s] = FixedScorer().score(["it is down"])
    now = datetime.now(UTC)
    slack_msg = TicketEvent(source="slack", ticket_id="C1:1.2", revision="1.2", text="down")
    matched, actions = rules().decide(slack_msg, s, now)
    assert matched == (ALERT_RULE,) and actions.notify_slack == (ALERTS,)
    assert rules().decide(TicketEvent(source="zendesk", ticket_id="1", revision="1"), s, now)[0] == ()
    spam = TicketEvent(source="slack", ticket_id="C1:1.3", revision="1.3", tags=("spam",))
    assert rules().decide(spam, s, now)[0] == ("spam",)
    assert not alert_rules("").rules


def test_context_store_round_trip(redis):
    from connectors.slack.context import Triaged

    store = ContextStore(redis, ttl_s=60)
    event = TicketEvent(source="zendesk", ticket_id="1", revision="2", tags=("a",))
    t = Triaged.of("ticket", event.key, "zendesk", "text", _decision(event, add_tags=("x",), priority="high"),
                   event=event)
    back = store.get(store.put(t))
    assert back is not None and (back.kind, back.item, back.text) == (t.kind, t.item, t.text)
    assert back.score == t.score and back.ticket_event == event and back.decided == t.decided
    assert store.get("nope") is None
    assert 0 < redis.ttl(next(iter(redis.scan_iter("triage:slack:ctx:*")))) <= 60


def test_manifest_matches_the_app():
    import yaml

    from connectors.slack import blocks as ui
    from connectors.slack.inbound import PATH

    m = yaml.safe_load((Path(__file__).resolve().parent.parent / "deploy" / "slack-manifest.yaml").read_text())
    features, settings = m["features"], m["settings"]
    assert [c["command"] for c in features["slash_commands"]] == [ui.COMMAND]
    assert [(s["type"], s["callback_id"]) for s in features["shortcuts"]] == [("message", ui.SHORTCUT)]
    assert set(m["oauth_config"]["scopes"]["bot"]) == {"commands", "chat:write", "chat:write.public",
                                                       "reactions:write", "channels:history", "groups:history",
                                                       "users:read", "users:read.email", "usergroups:read"}
    assert set(settings["event_subscriptions"]["bot_events"]) == {"message.channels", "message.groups"}
    urls = [features["slash_commands"][0]["url"], settings["event_subscriptions"]["request_url"],
            settings["interactivity"]["request_url"]]
    assert all(u.endswith(PATH) for u in urls) and settings["interactivity"]["is_enabled"]


def test_triage_text_is_cleaned_before_it_is_hashed_or_scored() -> None:
    from connectors.slack.text import parse_command, text_item

    req = parse_command("down\ud800 again\x00")
    assert req.kind == "text" and req.text == "down\ufffd again"
    text_item(req.text)  # encodes: a lone surrogate would raise here
