"""Shadow mode: with a challenger set, the worker's scorer also scores with it, returns only the
champion's scores (nothing of the challenger is written back), and records both answers without the
ticket text; `triage model compare` scores both against what agents later set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from redis import Redis
from test_registry import candidate

from model.registry import Registry
from worker.champion import ChampionScorer, publish
from worker.history import HistoryRow, labelled
from worker.shadow import STREAM, ShadowLog, compare

TEXTS = ["The checkout has been down for an hour, we are losing sales!\nCall me at +1 415 555 0100",
         "Where can I change my e-mail address? Thanks"]


def shadowing(tmp_path: Path, redis: Redis) -> ChampionScorer:
    reg = Registry(tmp_path / "models")
    reg.add(*candidate(tmp_path, "team-9", True))
    publish(redis, reg)
    scorer = ChampionScorer(reg.root, redis, interval_s=0)
    scorer.wait_loaded()
    return scorer


def test_shadow_scores_with_the_challenger_and_returns_only_the_champions_answers(tmp_path: Path,
                                                                                  redis: Redis) -> None:
    scorer = shadowing(tmp_path, redis)
    champion = scorer.version
    scores = scorer.score(TEXTS)
    assert [s.model_version for s in scores] == [champion, champion]
    entries = list(ShadowLog(redis).entries())
    assert len(entries) == 2
    assert {e["champion"]["version"] for e in entries} == {champion}
    assert {e["challenger"]["version"] for e in entries} == {"team-9"}
    raw = json.dumps([(k.decode(), {f.decode(): v.decode() for f, v in d.items()}) for k, d in redis.xrange(STREAM)])
    assert "checkout" not in raw and "555" not in raw  # no ticket text, no phone number


def test_no_challenger_no_shadow(tmp_path: Path, redis: Redis) -> None:
    scorer = shadowing(tmp_path, redis)
    scorer.registry.promote()
    publish(redis, scorer.registry)
    scorer.score(TEXTS[:1])
    scorer.wait_loaded()
    redis.delete(STREAM)
    scorer.score(TEXTS)
    assert scorer.version == "team-9" and redis.xlen(STREAM) == 0


def test_a_failing_challenger_never_fails_a_ticket(tmp_path: Path, redis: Redis) -> None:
    scorer = shadowing(tmp_path, redis)

    class Broken:
        version = "broken"

        def score(self, texts):
            raise RuntimeError("boom")

    scorer.challenger.scorer = Broken()  # type: ignore[union-attr]
    assert len(scorer.score(TEXTS)) == 2 and redis.xlen(STREAM) == 0


def test_compare_scores_both_against_the_agents_later_labels(tmp_path: Path, redis: Redis,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    scorer = shadowing(tmp_path, redis)
    scorer.score(TEXTS)
    entries = list(ShadowLog(redis).entries())
    subject, body = TEXTS[0].split("\n", 1)
    rows = [HistoryRow("zendesk:1", "zendesk", "", subject, body.replace("+1 415 555 0100", "[phone]"),
                       {"urgency": labelled("urgency", "high", "agent-corrected-bot")}),
            HistoryRow("zendesk:2", "zendesk", "", "", TEXTS[1],
                       {"urgency": labelled("urgency", "low", "bot-unchanged")})]
    result = compare(entries, rows)
    assert result["shadowed"] == 2 and result["handled_by_agents"] == 1  # bot-unchanged is not an agent's call
    right = entries[0]["champion"]["urgency"] == "high"
    assert result["accuracy"]["champion"] == (1.0 if right else 0.0)
    assert result["versions"]["challenger"] == ["team-9"]
    history = tmp_path / "recent.jsonl"
    history.write_text("".join(r.to_json() + "\n" for r in rows))
    from worker.cli import main

    kw = redis.connection_pool.connection_kwargs
    monkeypatch.setenv("REDIS_URL", f"redis://{kw['host']}:{kw['port']}/{kw.get('db', 0)}")
    assert main(["model", "compare", "--history", str(history)]) == 0
    assert json.loads(capsys.readouterr().out)["handled_by_agents"] == 1
