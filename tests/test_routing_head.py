"""The learned routing head (model/routing_head.py): fitted from a small generated team's groups,
written into a copy of the shipped graph as `group_logits`, served by the runtime as Prediction.group;
sentiment and urgency untouched; rare groups left out and said so; too few groups refused; and
`triage learn`'s hook."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from connectors.zendesk.sandbox_history import generated_team
from model.runtime import DEFAULT_MODEL_DIR, GROUP_OUTPUT, ModelError, TriageModel
from worker.history import HistoryRow, labelled

pytest.importorskip("sklearn")
pytest.importorskip("onnx")

from model.learn import FeatureCache  # noqa: E402
from model.routing_head import (  # noqa: E402
    RoutingRefused,
    attach,
    fit_routing,
    group_examples,
    write_routing,
)

# the generated team's templates differ by priority: groups from it are learnable from the text
GROUP_OF = {"high": "Incident response", "medium": "Engineering", "low": "Service desk"}
RARE = "Legal"
TEXTS = ["The checkout is down for everyone, we are losing sales", "How do I rename a project? Thanks",
         "Export from the API misses columns since the update"]
FRENCH = "Personne ne peut se connecter depuis ce matin, 200 salariés bloqués, c'est inadmissible."


def history(path: Path, n: int = 240, group=None) -> Path:
    rows = []
    for i, t in enumerate(generated_team(n, seed=5)):
        name = group(i, t) if group else (RARE if i % 40 == 7 else GROUP_OF[t.priority])
        rows.append(HistoryRow(f"zendesk:{7000 + i}", "zendesk", datetime.fromtimestamp(1.7e9 + i * 3600, UTC)
                               .strftime("%Y-%m-%dT%H:%M:%SZ"), t.subject, t.body,
                               {"urgency": labelled("urgency", t.priority, "agent-set")}, group=name, type=t.type))
    path.write_text("".join(r.to_json() + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("routing")
    data = history(tmp / "team.jsonl")
    cache = FeatureCache(Path(DEFAULT_MODEL_DIR), tmp / "cache", progress=False)
    head = fit_routing(group_examples([data]), cache.features, min_tickets=20)
    model_dir = tmp / "routed"
    shutil.copytree(DEFAULT_MODEL_DIR, model_dir)
    write_routing(model_dir, head)
    return {"tmp": tmp, "data": data, "cache": cache, "head": head, "dir": model_dir}


def test_each_ticket_weighs_by_who_routed_it(tmp_path: Path) -> None:
    rows = [HistoryRow(f"zendesk:{i}", "zendesk", f"2026-01-0{i}T00:00:00Z", "s", f"text {i}", labels, group=g,
                       type="Incident")
            for i, (g, labels) in enumerate([
                ("Billing", {"group": labelled("group", "Billing", "agent-corrected-bot")}),
                ("Billing", {"group": labelled("group", "Billing", "bot-unchanged")}),
                ("Sales", {}),  # no label (a history pulled before labels were read): weight 1
                ("Sales", {"group": labelled("group", "Sales", "agent-set")})], 1)]
    path = tmp_path / "h.jsonl"
    path.write_text("".join(r.to_json() + "\n" for r in rows))
    assert [e.weight for e in group_examples([path])] == [3.0, 0.5, 1.0, 2.0]
    assert [e.weight for e in group_examples([path], "type")] == [1.0] * 4  # the labels weigh groups only


def test_rare_groups_are_left_out_and_said_so(team) -> None:
    head = team["head"]
    assert head.labels == ("Engineering", "Incident response", "Service desk")
    assert list(head.left_out) == [RARE] and 0 < head.left_out[RARE] < 20
    meta = json.loads((team["dir"] / "triage.json").read_text())
    assert meta["routing"]["left_out"] == head.left_out and meta["routing"]["min_tickets"] == 20
    assert meta["routing"]["field"] == "group" and meta["routing"]["labels"] == list(head.labels)
    assert tuple(meta["decision"]["group"]["labels"]) == head.labels
    held = meta["routing"]["figures"]["held_out"]
    assert held["accuracy"] > held["majority_accuracy"] and held["outside_groups"] >= 1
    assert head.shipped and "ships" in head.reason


def test_the_graph_gets_group_logits_and_the_runtime_answers_a_group(team) -> None:
    import onnx

    graph = onnx.load(str(team["dir"] / "model.int8.onnx"))
    assert GROUP_OUTPUT in [o.name for o in graph.graph.output]
    model, base = TriageModel(team["dir"]), TriageModel(DEFAULT_MODEL_DIR)
    preds = model.score(TEXTS)
    for p in preds:
        assert p.group is not None and set(p.group.probabilities) == set(team["head"].labels)
        assert p.group.best_guess in team["head"].labels
    assert preds[0].group.best_guess == "Incident response"
    assert all(p.group is None for p in base.score(TEXTS))
    # the graph computes what the fitted head computes on the pooled vectors
    np.testing.assert_allclose(model.group_logits(TEXTS), team["head"].logits(team["cache"].features(TEXTS)),
                               atol=1e-3)
    with pytest.raises(ModelError, match="no routing head"):
        base.group_logits(TEXTS)


def test_sentiment_and_urgency_are_bit_identical_to_the_base(team) -> None:
    model, base = TriageModel(team["dir"]), TriageModel(DEFAULT_MODEL_DIR)
    for new, old in zip(model.logits(TEXTS), base.logits(TEXTS)):
        assert np.array_equal(new, old)
    a, b = model.score(TEXTS[:1])[0], base.score(TEXTS[:1])[0]
    assert a.sentiment == b.sentiment and a.urgency == b.urgency and a.top_words == b.top_words


def test_the_group_head_abstains_for_other_languages_and_empty_texts(team) -> None:
    model = TriageModel(team["dir"])
    french, empty = model.score([FRENCH, "   "])
    assert not french.language_supported
    assert french.group.abstained and french.group.reason == "language"
    assert french.group.best_guess in model.group_rule.labels
    assert empty.empty and empty.group.abstained and empty.group.reason == "empty"


def test_a_routing_section_without_its_output_is_refused(team, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(DEFAULT_MODEL_DIR, broken)
    meta = json.loads((team["dir"] / "triage.json").read_text())
    (broken / "triage.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="routing head and its metadata go together"):
        TriageModel(broken)


def test_too_few_groups_are_refused_with_the_counts(team, tmp_path: Path) -> None:
    one = history(tmp_path / "one.jsonl", group=lambda i, t: "Billing" if i % 10 else "Legal")
    with pytest.raises(RoutingRefused) as e:
        fit_routing(group_examples([one]), team["cache"].features, min_tickets=30)
    msg = str(e.value)
    assert "needs at least 2 groups with 30 or more tickets" in msg and "has 1 (Billing" in msg
    assert "--min-group-tickets" in msg and "\n" not in msg
    with pytest.raises(RoutingRefused, match="--route-by 'queue'"):
        group_examples([one], "queue")


def test_learn_hook_writes_a_head_that_ships_and_none_that_does_not(team, tmp_path: Path) -> None:
    said: list[str] = []
    routed = tmp_path / "routed"
    shutil.copytree(DEFAULT_MODEL_DIR, routed)
    got = attach(routed, [team["data"]], team["cache"].features, "group", 20, said.append)
    assert got and got["shipped"] and got["left_out"] == team["head"].left_out
    assert any(RARE in s and "left out" in s for s in said)
    assert TriageModel(routed).group_rule is not None
    # groups the text says nothing about: not better than the majority on validation, so not shipped,
    # and a head the base carried is dropped
    rng = np.random.default_rng(3)
    noise = history(tmp_path / "noise.jsonl", group=lambda i, t: ["A", "B", "C"][rng.integers(3)])
    said.clear()
    got = attach(routed, [noise], team["cache"].features, "group", 20, said.append)
    assert got and not got["shipped"] and "not shipped" in got["reason"]
    assert TriageModel(routed).group_rule is None and "routing" not in json.loads((routed / "triage.json").read_text())
    assert attach(routed, [noise], team["cache"].features, "type", 500, said.append)["shipped"] is False
    assert "needs at least 2 types" in said[-1]


def test_triage_learn_writes_the_routing_head_and_reports_it(team, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from worker.cli import main

    out = tmp_path / "challenger"
    argv = ["learn", "--data", str(team["data"]), "--out", str(out), "--no-public", "--min-per-class", "10",
            "--min-group-tickets", "20"]
    assert main(argv) == 0, capsys.readouterr().err
    captured = capsys.readouterr()
    summary = json.loads(captured.out.splitlines()[-1])
    assert summary["routing"]["shipped"] and summary["routing"]["left_out"] == team["head"].left_out
    assert "routing head: validation accuracy" in captured.err
    meta = json.loads((out / "triage.json").read_text())
    assert meta["routing"]["labels"] == list(team["head"].labels) and "group" in meta["decision"]
    [p] = TriageModel(out).score(TEXTS[:1])
    assert p.group is not None and p.group.best_guess == "Incident response"
    report = (out / "learn_report" / "report.md").read_text()
    assert "## Routing head (by group): shipped" in report and f"{RARE} (" in report
    assert json.loads((out / "learn_report" / "report.json").read_text())["routing"]["shipped"]
    # --route-by none: no routing head
    assert main([*argv[:4], str(tmp_path / "plain"), *argv[5:], "--route-by", "none"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["routing"] is None
    assert TriageModel(tmp_path / "plain").group_rule is None


@pytest.mark.parametrize("system", ["zendesk", "jira"])
def test_the_sandbox_team_is_routed_by_type_and_keeps_its_queue(system: str, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    from connectors.jira.sandbox_history import REQUEST_TYPES
    from connectors.zendesk.sandbox_history import GROUPS
    from worker.cli import main
    from worker.history import read_rows

    out = tmp_path / f"{system}.jsonl"
    assert main(["history", "pull", system, "--sandbox", "40", "--out", str(out)]) == 0, capsys.readouterr().err
    rows = read_rows(out)
    names = set(GROUPS.values()) if system == "zendesk" else {name for name, _ in REQUEST_TYPES.values()}
    assert rows and {r.group for r in rows} <= names and len({r.group for r in rows}) > 1
    for r in rows:
        assert any(t.startswith("queue_" if system == "zendesk" else "queue-") for t in r.tags), r.tags
        if system == "jira":  # the request type and its issue type
            assert (r.group, r.type) in set(REQUEST_TYPES.values())
