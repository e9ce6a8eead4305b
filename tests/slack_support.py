"""The Slack stack under test: the real Bolt app inside `triage serve`'s FastAPI app, served over real
HTTP by uvicorn, requests signed with Slack's scheme, talking to connectors/slack/sandbox.py for
the Web API and response_urls; Redis, RQ and the Zendesk sandbox as in pipeline_support. Only the
model is the FixedScorer."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import httpx

from connectors.slack import blocks as ui
from connectors.slack.sandbox import SlackSandbox
from connectors.zendesk.sandbox import ZendeskSandbox
from worker.settings import Secret, SlackSettings

SIGNING_SECRET = "test-slack-signing-secret"
WATCHED, ALERTS, ZD_ALERTS, OTHER = "C0SUPPORT1", "C0ALERTS01", "C0ZDALERT1", "C0RANDOM01"
SLACK_RULES = """
rules:
  - name: urgent
    when: {urgency: high}
    then: {priority: urgent, add_tags: [escalated]}
  - name: slack-eyes
    when: {source: slack, sentiment: frustrated}
    then: {add_tags: [":eyes:"], note: true}
  - name: zendesk-alert
    when: {source: zendesk, urgency: high}
    then: {notify_slack: "#zendesk-alerts", note: true}
"""


AGENT_EMAIL, LEAD_EMAIL = "agent@example.com", "lead@example.com"  # helpdesk agents in the tests' helpdesks


def sandbox(**kw: Any) -> SlackSandbox:
    sb = SlackSandbox(**kw).start()
    sb.add_user("U0AGENT001", AGENT_EMAIL, name="agent")
    sb.add_user("U0LEAD0001", LEAD_EMAIL, name="lead")
    sb.add_user("U0CUSTOMER1", "customer1@example.org", name="customer1")
    sb.add_user("U0CUSTOMER9", "customer9@example.org", name="customer9")
    sb.add_user("U0STRANGER1", "stranger@example.org", name="stranger")
    sb.add_channel("support", WATCHED)
    sb.add_channel("support-alerts", ALERTS)
    sb.add_channel("zendesk-alerts", ZD_ALERTS)
    sb.add_channel("random", OTHER)
    return sb


def slack_settings(sb: SlackSandbox, **kw: Any) -> SlackSettings:
    values: dict[str, Any] = dict(bot_token=Secret(sb.token), signing_secret=Secret(SIGNING_SECRET),
                                  app_token=Secret("xapp-1-test"), watch_channels=(WATCHED,), alert_channel=ALERTS,
                                  api_url=sb.api_url)
    values.update(kw)
    return SlackSettings(**values)


@dataclass
class Slack:
    """A client that speaks to the app as Slack does."""

    http: httpx.Client
    sb: SlackSandbox
    secret: str = SIGNING_SECRET

    def command(self, text: str, **kw: Any) -> tuple[httpx.Response, str, float]:
        """POST a signed /triage; returns the answer, the response_url and the ack time (s)."""
        fields = self.sb.command(text, **kw)
        body, headers = self.sb.signed_form(self.secret, fields)
        t0 = time.perf_counter()
        r = self.http.post("/slack/events", content=body, headers=headers)
        return r, fields["response_url"], time.perf_counter() - t0

    def interact(self, payload: dict[str, Any]) -> httpx.Response:
        body, headers = self.sb.signed_payload(self.secret, payload)
        return self.http.post("/slack/events", content=body, headers=headers)

    def event(self, envelope: dict[str, Any], retry_num: int | None = None) -> httpx.Response:
        body, headers = self.sb.signed_event(self.secret, envelope, retry_num=retry_num)
        return self.http.post("/slack/events", content=body, headers=headers)

    def answer(self, response_url: str, n: int = 1, timeout: float = 10.0) -> dict[str, Any]:
        """The n-th body posted to a response_url (waits for it)."""
        posts = self.sb.wait_for(lambda: len(self.sb.responses(response_url)) >= n and self.sb.responses(response_url),
                                 timeout)
        return posts[n - 1]


def block_text(message: dict[str, Any]) -> str:
    """Every text in a message's blocks, for assertions."""
    return json.dumps(message.get("blocks") or [], ensure_ascii=False)


def action_value(message: dict[str, Any], action_id: str) -> str:
    for block in message.get("blocks") or []:
        for element in block.get("elements") or []:
            if element.get("action_id") == action_id:
                return str(element.get("value", ""))
    raise AssertionError(f"no {action_id} button in the message")


def has_action(message: dict[str, Any], action_id: str) -> bool:
    try:
        action_value(message, action_id)
        return True
    except AssertionError:
        return False


def alerts(sb: SlackSandbox, channel: str = ALERTS) -> list[dict[str, Any]]:
    return [m for m in sb.messages(channel, bot=True) if "thread_ts" not in m]


def add_agents(zd: ZendeskSandbox) -> None:
    """The Slack users U0AGENT001 and U0LEAD0001 are agents of this Zendesk."""
    zd.add_user("Agent", AGENT_EMAIL, role="agent")
    zd.add_user("Lead", LEAD_EMAIL, role="admin")


def zd_ticket(zd: ZendeskSandbox, angry: bool = True) -> int:
    if angry:
        return int(zd.add_ticket("Checkout down", "Checkout is down since 9am, this is unacceptable",
                                 requester="ops@northwind.example", channel="email")["id"])
    return int(zd.add_ticket("Invoice copy", "Could you send me a copy of last month's invoice?",
                             requester="amy@example.com", channel="web")["id"])


def apply_button(message: dict[str, Any]) -> str:
    return action_value(message, ui.ACTION_APPLY)
