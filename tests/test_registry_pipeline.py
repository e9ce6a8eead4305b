"""The learning loop's model swap inside the real pipeline: webhook -> queue -> worker (RQ) -> Zendesk
sandbox, with TRIAGE_MODEL_DIR naming a models folder. Each note names the version that scored it;
a promote reaches the worker without a restart; the shadowed challenger writes nothing."""

from __future__ import annotations

import re

import httpx
import pytest
from pipeline_support import RULES, SECRET, drain, serve, settings
from test_registry import candidate

from connectors.zendesk.sandbox import ZendeskSandbox
from model.registry import Registry
from worker import bootstrap
from worker.champion import ChampionScorer, publish
from worker.shadow import STREAM


@pytest.fixture
def zd(zd: ZendeskSandbox) -> ZendeskSandbox:
    zd.add_group("Support")
    return zd


def test_workers_write_with_the_champion_and_follow_a_promote(tmp_path, redis, redis_server, zd) -> None:
    reg = Registry(tmp_path / "models")
    reg.add(*candidate(tmp_path, "team-5", True))
    publish(redis, reg)
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    rt = bootstrap.build(settings(redis_server.url, str(rules), zd, model_dir=str(reg.root)))
    scorer = getattr(rt.scorer, "scorer", rt.scorer)  # inside worker/metrics.py's TimedScorer, when there
    assert isinstance(scorer, ChampionScorer)
    scorer.interval_s = 0
    scorer.wait_loaded()  # the challenger, for shadow scoring
    shipped = scorer.version
    server, url = serve(rt)
    try:
        with httpx.Client(base_url=url, timeout=10) as http:
            def triage(subject: str) -> str:
                tid = zd.add_ticket(subject, "Checkout is down since 9am, this is unacceptable")["id"]
                body, headers = zd.signed_trigger(tid, SECRET)
                assert http.post("/webhooks/zendesk", content=body, headers=headers).status_code == 202
                drain(rt)
                notes = [c["body"] for c in zd.comments(tid) if not c["public"] and c["author_id"] == zd.bot_user_id]
                puts = [r for r in zd.requests if r.method == "PUT" and f"/tickets/{tid}.json" in r.path]
                assert len(notes) == 1 and len(puts) == 1  # the shadow model wrote nothing
                return re.search(r"model (\S+)", notes[0]).group(1)

            assert triage("First") == shipped
            assert redis.xlen(STREAM) >= 1  # shadowed by the challenger, recorded, not written
            reg.promote()
            publish(redis, reg)
            triage("Second")  # notices the promote: the new champion loads while the old one writes
            scorer.wait_loaded()
            assert triage("Third") == "team-5"
    finally:
        server.should_exit = True
