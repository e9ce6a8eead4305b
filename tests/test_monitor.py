"""The drift and surge monitor on replayed decision streams (real Redis), alerting the Slack and
PagerDuty sandboxes through the real slack_sdk client and requests."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from redis import Redis

from connectors.pagerduty.client import PagerDutyEvents
from connectors.pagerduty.sandbox import PagerDutySandbox
from connectors.slack.api import SlackApi, make_client
from connectors.slack.sandbox import SlackSandbox
from worker.decision import Actions, HeadScore, Scores, TriageDecision
from worker.decision_log import DecisionLog
from worker.errors import RateLimited, VendorRejected
from worker.events import TicketEvent
from worker.metrics import MONITOR_STATE
from worker.monitor import ALERTS, Monitor, PagerDutyAlerts, SlackAlerts, Thresholds, psi

START = datetime(2026, 11, 1, 0, 0, tzinfo=UTC)
PER_HOUR = 120
SENTIMENT = {"frustrated": 0.25, "neutral": 0.55, "satisfied": 0.20}
URGENCY = {"high": 0.2, "medium": 0.5, "low": 0.3}
TEXTS = {"en": "The checkout page is not working and I cannot pay for my order",
         "fr": "Bonjour, je ne peux pas payer ma commande et le site ne marche pas pour moi"}


def _pick(rng: random.Random, dist: dict[str, float]) -> str:
    return rng.choices(list(dist), weights=list(dist.values()))[0]


class Replay:
    """Decisions replayed through the real DecisionLog, hour by hour, at PER_HOUR tickets an hour."""

    def __init__(self, redis: Redis, seed: int = 7):
        self.log = DecisionLog(redis)
        self.rng = random.Random(seed)
        self.n = 0

    def hour(self, start: datetime, shift: float = 0.0, abstain: float = 0.03, lang: str = "en",
             per_hour: int = PER_HOUR) -> None:
        for i in range(per_hour):
            sentiment = _pick(self.rng, SENTIMENT)
            if self.rng.random() < shift:  # a share of the tickets move to frustrated
                sentiment = "frustrated"
            urgency = _pick(self.rng, URGENCY)
            abstained = self.rng.random() < abstain
            s = Scores(HeadScore("unsure" if abstained else sentiment, {sentiment: 0.8}, 0.4 if abstained else 0.8,
                                 abstained), HeadScore(urgency, {urgency: 0.8}, 0.8), "replay-v1")
            self.n += 1
            e = TicketEvent(source="zendesk", ticket_id=str(self.n), revision="1", text=TEXTS[lang])
            at = start.timestamp() + i * 3600 / per_hour
            self.log.record(e, "written", TriageDecision(e.key, s, (), Actions()), now=at)

    def hours(self, start: datetime, count: int, **kw) -> datetime:
        for h in range(count):
            self.hour(start + timedelta(hours=h), **kw)
        return start + timedelta(hours=count)


class Recorder:
    def __init__(self) -> None:
        self.opened: list[str] = []
        self.resolved: list[str] = []

    def opened_(self, alert) -> None:
        self.opened.append(alert.key)

    def resolved_(self, alert) -> None:
        self.resolved.append(alert.key)


class _Sink:
    def __init__(self, rec: Recorder) -> None:
        self.rec = rec

    def opened(self, alert) -> None:
        self.rec.opened_(alert)

    def resolved(self, alert) -> None:
        self.rec.resolved_(alert)


THRESHOLDS = Thresholds(psi=0.2, surge_min_count=20, surge_factor=2.0, baseline_hours=24)


@pytest.fixture
def pd():
    with PagerDutySandbox() as sandbox:
        yield sandbox


@pytest.fixture
def slack():
    with SlackSandbox() as sandbox:
        yield sandbox


def test_psi_of_a_30_percent_shift_and_of_noise():
    labels = ("frustrated", "neutral", "satisfied", "unsure")
    base = {"frustrated": 250, "neutral": 550, "satisfied": 200}
    shifted = {"frustrated": 55, "neutral": 30, "satisfied": 15}
    assert psi(shifted, base, labels) > 0.3
    assert psi({"frustrated": 26, "neutral": 54, "satisfied": 20}, base, labels) < 0.05


def test_a_30_percent_shift_is_flagged_within_one_window_and_clean_windows_stay_quiet(redis: Redis, pd, slack):
    replay = Replay(redis)
    t = replay.hours(START, 48)  # baseline and a first daily window
    channel = slack.add_channel("triage-alerts")
    rec = Recorder()
    sinks = [_Sink(rec), PagerDutyAlerts(PagerDutyEvents(pd.routing_key, pd.events_url)),
             SlackAlerts(SlackApi(make_client(slack.token, slack.api_url)), channel)]
    monitor = Monitor(redis, replay.log, sinks, THRESHOLDS, console_url="https://triage.example.com")
    for _ in range(10):  # ten clean windows
        t = replay.hours(t, 1)
        monitor.run_once(t + timedelta(minutes=5))
    assert len(rec.opened) <= 1, rec.opened  # at most one false alarm in 10 clean windows
    false_alarms = len(rec.opened)
    t = replay.hours(t, 1, shift=0.3)  # the shifted hour
    state = monitor.run_once(t + timedelta(minutes=5))
    new = rec.opened[false_alarms:]
    assert "triage-drift-sentiment-hourly" in new, new
    assert state["psi"]["sentiment:hourly"] >= 0.2
    assert any(a["key"] == "triage-drift-sentiment-hourly" for a in state["open"])
    # PagerDuty: one trigger with the dedup key, what moved, by how much, and the console link
    alert = pd.alerts["triage-drift-sentiment-hourly"]
    assert alert["status"] == "triggered"
    trigger = alert["events"][-1]
    assert "PSI" in trigger["payload"]["summary"] and "frustrated" in trigger["payload"]["summary"]
    assert trigger["payload"]["custom_details"]["psi"] >= 0.2
    assert trigger["links"][0]["href"].startswith("https://triage.example.com/admin/")
    [msg] = [m for m in slack.messages(channel) if "sentiment label mix drifted" in m["text"]]
    assert "https://triage.example.com/admin/" in msg["text"]
    monitor.run_once(t + timedelta(minutes=30))  # the same window again: no second alert
    assert rec.opened.count("triage-drift-sentiment-hourly") == 1
    t = replay.hours(t, 1)  # back to normal
    monitor.run_once(t + timedelta(minutes=5))
    assert "triage-drift-sentiment-hourly" in rec.resolved
    assert pd.alerts["triage-drift-sentiment-hourly"]["status"] == "resolved"
    assert pd.alerts["triage-drift-sentiment-hourly"]["events"][-1]["event_action"] == "resolve"
    assert any("back to normal" in m["text"] for m in slack.messages(channel))
    assert redis.get(MONITOR_STATE) is not None


def test_a_surge_needs_a_minimum_count(redis: Redis):
    replay = Replay(redis)
    t = replay.hours(START, 48, per_hour=6)  # a quiet helpdesk: ~1 high-urgency ticket an hour
    rec = Recorder()
    monitor = Monitor(redis, replay.log, [_Sink(rec)], THRESHOLDS)
    replay.hour(t, per_hour=40)
    alerts, _ = monitor.evaluate(t + timedelta(hours=1, minutes=5))
    assert not [a for a in alerts if a.kind == "surge"]  # ~8 high urgency: many times the rate, but few
    t2 = t + timedelta(hours=1)
    URGENCY_SURGE = {"high": 0.8, "medium": 0.1, "low": 0.1}
    old = dict(URGENCY)
    URGENCY.clear()
    URGENCY.update(URGENCY_SURGE)
    try:
        replay.hour(t2, per_hour=60)
    finally:
        URGENCY.clear()
        URGENCY.update(old)
    alerts, _ = monitor.evaluate(t2 + timedelta(hours=1, minutes=5))
    surge = [a for a in alerts if a.key == "triage-surge-high-hourly"]
    assert surge and surge[0].severity == "critical" and "expected" in surge[0].summary


def test_rising_abstentions_and_a_new_language(redis: Redis):
    replay = Replay(redis)
    t = replay.hours(START, 48)
    replay.hour(t, abstain=0.3, lang="fr")
    monitor = Monitor(redis, replay.log, [], THRESHOLDS)
    alerts, state = monitor.evaluate(t + timedelta(hours=1, minutes=5))
    kinds = {a.key for a in alerts}
    assert "triage-abstain-rate" in kinds and "triage-new-language-fr" in kinds
    assert state["rates"]["abstain:current"] > 0.2


def test_a_window_with_too_few_tickets_is_not_judged(redis: Redis):
    replay = Replay(redis)
    t = replay.hours(START, 48)
    replay.hour(t, per_hour=10, shift=0.9)
    alerts, state = Monitor(redis, replay.log, [], THRESHOLDS).evaluate(t + timedelta(hours=1, minutes=5))
    assert not [a for a in alerts if a.details.get("window") == "hourly"]
    assert "sentiment:hourly" not in state["psi"]


def test_a_failed_sink_leaves_the_alert_to_open_on_the_next_run(redis: Redis, pd):
    replay = Replay(redis)
    t = replay.hours(START, 48)
    t = replay.hours(t, 1, shift=0.4)
    monitor = Monitor(redis, replay.log, [PagerDutyAlerts(PagerDutyEvents(pd.routing_key, pd.events_url))],
                      THRESHOLDS)
    pd.fail_next(500, times=10)
    monitor.run_once(t + timedelta(minutes=5))
    assert not redis.hexists(ALERTS, "triage-drift-sentiment-hourly")
    pd.clear_faults()
    monitor.run_once(t + timedelta(minutes=6))
    assert pd.alerts["triage-drift-sentiment-hourly"]["status"] == "triggered"


def test_pagerduty_errors_are_clear_and_keep_the_key_secret(pd):
    bad = PagerDutyEvents("wrong-key-0000", pd.events_url)
    with pytest.raises(VendorRejected, match="PAGERDUTY_ROUTING_KEY") as e:
        bad.trigger("k", "summary")
    assert "wrong-key" not in str(e.value)
    pd.fail_next(429)
    with pytest.raises(RateLimited):
        PagerDutyEvents(pd.routing_key, pd.events_url).resolve("k")
    with pytest.raises(ValueError, match="severity"):
        PagerDutyEvents(pd.routing_key, pd.events_url).trigger("k", "s", severity="loud")


def test_one_monitor_holds_the_lock(redis: Redis):
    a = Monitor(redis, DecisionLog(redis))
    b = Monitor(redis, DecisionLog(redis))
    assert a._hold_lock("a", 10) and not b._hold_lock("b", 10)
    assert a._hold_lock("a", 10)  # the holder extends it
    redis.delete("triage:monitor:lock")
    assert b._hold_lock("b", 10)


def test_triage_monitor_once_on_the_command_line(redis: Redis, redis_server, pd, monkeypatch, capsys):
    from worker.cli import main

    monkeypatch.setenv("REDIS_URL", redis_server.url)
    monkeypatch.setenv("PAGERDUTY_ROUTING_KEY", pd.routing_key)
    monkeypatch.setenv("PAGERDUTY_EVENTS_URL", pd.events_url)
    assert main(["monitor", "--once"]) == 0
    assert '"open": []' in capsys.readouterr().out
    monkeypatch.delenv("PAGERDUTY_ROUTING_KEY")
    assert main(["monitor", "--once"]) == 1
    assert "nowhere to send alerts" in capsys.readouterr().err
