"""Learned routing end to end: a model with a real routing head (model/routing_head.py, fitted on a small
generated team), scored through ModelScorer, rules with `group: predicted` (suggested, then applied once
the admin sets learned_routing: apply), the real zenpy client against the sandbox, and history pull
reading the agent's verdict on the suggested group back as a `group` label."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from zenpy import Zenpy

from connectors.zendesk.history import ZendeskHistory, pull
from connectors.zendesk.sandbox import ZendeskSandbox
from connectors.zendesk.sandbox_history import generated_team
from connectors.zendesk.writeback import ZendeskWriter
from model.runtime import DEFAULT_MODEL_DIR, TriageModel
from worker.history import HistoryRow, labelled, read_rows
from worker.rules import parse_rules, routing_warnings
from worker.scoring import ModelScorer
from worker.store import RedisStore
from worker.triage import Status, TriageService

pytest.importorskip("sklearn")
pytest.importorskip("onnx")

from model.learn import FeatureCache  # noqa: E402
from model.routing_head import fit_routing, group_examples, write_routing  # noqa: E402

GROUP_OF = {"high": "Incident response", "medium": "Engineering", "low": "Service desk"}
OUTAGE = ("Checkout down", "The checkout is down for everyone, we are losing sales")
RULES = """\
learned_routing: {mode}
rules:
  - name: learned
    when: {{predicted_group_confidence_at_least: 0.3}}
    then: {{group: predicted}}
  - name: incidents
    when: {{predicted_group: [incident RESPONSE]}}
    then: {{add_tags: [routed_incident]}}
"""


@pytest.fixture(scope="module")
def routed(tmp_path_factory: pytest.TempPathFactory) -> ModelScorer:
    tmp = tmp_path_factory.mktemp("routed")
    rows = [HistoryRow(f"zendesk:{7000 + i}", "zendesk", datetime.fromtimestamp(1.7e9 + i * 3600, UTC)
                       .strftime("%Y-%m-%dT%H:%M:%SZ"), t.subject, t.body,
                       {"urgency": labelled("urgency", t.priority, "agent-set")}, group=GROUP_OF[t.priority])
            for i, t in enumerate(generated_team(240, seed=5))]
    data = tmp / "team.jsonl"
    data.write_text("".join(r.to_json() + "\n" for r in rows))
    cache = FeatureCache(Path(DEFAULT_MODEL_DIR), tmp / "cache", progress=False)
    model_dir = tmp / "model"
    shutil.copytree(DEFAULT_MODEL_DIR, model_dir)
    write_routing(model_dir, fit_routing(group_examples([data]), cache.features, min_tickets=20))
    return ModelScorer(TriageModel(model_dir))


@pytest.fixture
def zd(monkeypatch: pytest.MonkeyPatch) -> Iterator[ZendeskSandbox]:
    with ZendeskSandbox() as sandbox:
        for name, value in sandbox.env.items():
            monkeypatch.setenv(name, value)
        for name in GROUP_OF.values():
            sandbox.add_group(name)
        sandbox.add_user("Tom Becker", "tom@example.com", role="agent")
        yield sandbox


def zenpy() -> Zenpy:
    return Zenpy(subdomain="sandbox", email="bot@example.com", token="t", disable_cache=True)


def triage(zd: ZendeskSandbox, redis: Redis, scorer: ModelScorer, mode: str) -> tuple[dict[str, Any], Any]:
    rules = parse_rules(RULES.format(mode=mode))
    writer = ZendeskWriter(zenpy())
    service = TriageService(lambda: rules, {"zendesk": writer}, RedisStore(redis))
    t = zd.add_ticket(*OUTAGE, requester="ops@acme.example")
    result = service.process(writer.fetch_event(t["id"]), lambda e: scorer.score([f"{e.subject}\n{e.text}"])[0])
    assert result.status == Status.WRITTEN and result.decision is not None
    return t, result.decision


def test_the_predicted_group_is_suggested_then_read_back_as_a_label(zd: ZendeskSandbox, redis: Redis,
                                                                    routed: ModelScorer, tmp_path: Path) -> None:
    assert routing_warnings(parse_rules(RULES.format(mode="suggest")), routed.model.group_rule.labels) == []
    t, decision = triage(zd, redis, routed, "suggest")
    group = decision.scores.group
    assert group is not None and group.label == "Incident response"
    assert decision.matched_rules == ("learned", "incidents") and "routed_incident" in decision.actions.add_tags
    assert decision.actions.group == "" and decision.actions.suggested == (("group", "Incident response"),)
    assert zd.tickets[t["id"]].get("group_id") == t.get("group_id")  # not routed
    note = zd.comments(t["id"])[-1]["body"]
    assert f"group (learned): Incident response {group.confidence:.0%}" in note
    assert "Suggested (not applied): group Incident response" in note
    # the agent routes it elsewhere: a rejected suggestion, the agent's group is the label
    engineering = zd.add_group("Engineering")["id"]
    zd.edit_ticket(t["id"], by="tom@example.com", group_id=engineering, status="solved")
    out = tmp_path / "z.jsonl"
    pull(ZendeskHistory(zenpy(), zd.bot_user_id, sleep=lambda s: None), out,
         since=datetime.fromtimestamp(time.time() - 86400, UTC), progress=False)
    [row] = read_rows(out)
    assert row.suggested == {"group": "Incident response"} and row.suggestion_outcome == {"group": "rejected"}
    assert row.label("group")[:2] == ("Engineering", "suggestion-rejected") and row.group == "Engineering"


def test_learned_routing_apply_routes_the_ticket(zd: ZendeskSandbox, redis: Redis, routed: ModelScorer) -> None:
    t, decision = triage(zd, redis, routed, "apply")
    assert decision.actions.group == "Incident response" and decision.actions.suggested == ()
    assert zd.tickets[t["id"]].get("group_id") == zd.add_group("Incident response")["id"] != t.get("group_id")
    assert "Suggested" not in zd.comments(t["id"])[-1]["body"]
