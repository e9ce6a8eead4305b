"""`triage learn`: a challenger from a small generated team history, on the shipped model; the refusals;
the promotion gate and its report."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from connectors.zendesk.sandbox_history import generated_team
from model.gate import gate
from model.learn import LearnConfig, LearnRefused, learn_and_compare
from model.runtime import DEFAULT_MODEL_DIR, TriageModel
from worker.history import HistoryRow, labelled

pytest.importorskip("sklearn")
onnx = pytest.importorskip("onnx")
pytest.importorskip("model.urgency_head", reason="model/urgency_head.py (features, head fit, head write) not here")


def history_file(path: Path, n: int = 150, only: str | None = None) -> Path:
    rows = []
    for i, t in enumerate(generated_team(n, seed=3)):
        label = only or t.priority
        provenance = "agent-corrected-bot" if i % 4 == 0 else "agent-set"
        rows.append(HistoryRow(f"zendesk:{5000 + i}", "zendesk", datetime.fromtimestamp(1.7e9 + i * 3600, UTC)
                               .strftime("%Y-%m-%dT%H:%M:%SZ"), t.subject, t.body,
                               {"urgency": labelled("urgency", label, provenance)}, group=t.queue))
    path.write_text("".join(r.to_json() + "\n" for r in rows))
    return path


def config(tmp_path: Path, data: Path, **kwargs) -> LearnConfig:
    return LearnConfig(data=[data], out=tmp_path / "challenger", replay=0, data_root=None,
                       cache_dir=tmp_path / "cache", progress=False, **{"min_per_class": 10, **kwargs})


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("learn")
    return learn_and_compare(config(tmp, history_file(tmp / "team.jsonl")))


def test_learn_exports_a_challenger_that_keeps_encoder_and_sentiment(outcome) -> None:
    out = outcome.result.out
    model = TriageModel(out)
    base = TriageModel(DEFAULT_MODEL_DIR)
    assert model.version == outcome.result.version and model.version.startswith(base.version + "+team-")
    meta = json.loads((out / "triage.json").read_text())
    assert meta["learned"]["held_out_newest"] == 30 and meta["learned"]["base_version"] == base.version
    assert meta["learned"]["provenance"] == {"agent-corrected-bot": 30, "agent-set": 90} or \
        sum(meta["learned"]["provenance"].values()) == meta["learned"]["train_rows"]
    texts = ["The checkout is down for everyone, we are losing sales", "How do I rename a project? Thanks"]
    s_new, u_new = model.logits(texts)
    s_old, u_old = base.logits(texts)
    np.testing.assert_allclose(s_new, s_old, atol=1e-5)  # sentiment untouched
    assert not np.allclose(u_new, u_old)  # a new urgency head
    [p] = model.score(texts[:1])
    assert p.urgency.best_guess in ("high", "medium", "low")


def test_the_report_compares_both_models_on_the_newest_tickets(outcome) -> None:
    folder = outcome.result.out / "learn_report"
    report = json.loads((folder / "report.json").read_text())
    assert set(report["reports"]) == {"champion", "challenger", "support_champion", "support_challenger"}
    for name in ("champion", "challenger"):
        rep = report["reports"][name]
        assert rep["n"] == 30 and {"per_class", "confusion", "ece", "high", "answered"} <= set(rep)
    assert "support-like high-urgency recall" in {c["name"] for c in report["gate"]["checks"]}
    # the select half is trained on, so the gate checks the report half only
    from model.learn import support_report_rows

    assert report["reports"]["support_champion"]["n"] == len(support_report_rows()) > 100
    md = (folder / "report.md").read_text()
    assert "Gate:" in md and "| high |" in md and "coverage.png" in md
    assert (folder / "coverage.png").read_bytes()[:4] == b"\x89PNG"
    gate_file = json.loads((outcome.result.out / "gate.json").read_text())
    assert gate_file["passed"] == outcome.gate.passed
    assert "public sentiment" in " ".join(c["name"] for c in gate_file["checks"])
    # the templates are easy: the team's own head beats the shipped one on them
    assert report["reports"]["challenger"]["macro_f1"] > report["reports"]["champion"]["macro_f1"]


def test_too_few_labels_are_refused_with_what_is_needed(tmp_path: Path) -> None:
    with pytest.raises(LearnRefused, match=r"needs at least 120 of each urgency class .*and has high \d+"):
        learn_and_compare(LearnConfig(data=[history_file(tmp_path / "t.jsonl", n=40)], out=tmp_path / "o",
                                      replay=0, data_root=None, progress=False))
    assert not (tmp_path / "o").exists()


def test_a_one_sided_history_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LearnRefused, match="needs at least 10 of each"):
        learn_and_compare(config(tmp_path, history_file(tmp_path / "t.jsonl", only="high")))
    data = history_file(tmp_path / "u.jsonl", n=200)
    rows = data.read_text().splitlines()
    skew = [r.replace('"label": "medium"', '"label": "high"') if i % 10 else r for i, r in enumerate(rows)]
    data.write_text("\n".join(skew) + "\n")
    with pytest.raises(LearnRefused, match="too one-sided"):
        learn_and_compare(config(tmp_path, data, max_share=0.6, min_per_class=3))


def test_an_existing_model_folder_is_never_overwritten(tmp_path: Path) -> None:
    (tmp_path / "challenger").mkdir()
    (tmp_path / "challenger" / "x").write_text("keep")
    with pytest.raises(LearnRefused, match="exists and is not empty"):
        learn_and_compare(config(tmp_path, history_file(tmp_path / "t.jsonl")))
    assert (tmp_path / "challenger" / "x").read_text() == "keep"


def _report(f1: float, recalls: tuple[float, float, float]) -> dict:
    return {"macro_f1": f1, "per_class": {lab: {"recall": r, "support": 10}
                                          for lab, r in zip(("high", "medium", "low"), recalls)}}


def test_the_gate_passes_fails_and_says_why() -> None:
    champ = _report(0.40, (0.5, 0.5, 0.5))
    assert gate(champ, _report(0.45, (0.49, 0.6, 0.55))).passed  # a 1-point recall drop is allowed
    worse = gate(champ, _report(0.39, (0.6, 0.6, 0.6)))
    assert not worse.passed and worse.reasons[0].startswith("team urgency macro-F1: 0.3900")
    dropped = gate(champ, _report(0.50, (0.47, 0.7, 0.7)))
    assert not dropped.passed and "recall of high" in dropped.reasons[0]
    public = gate(champ, _report(0.45, (0.5, 0.5, 0.5)), {"macro_recall": 0.70}, {"macro_recall": 0.67})
    assert not public.passed and "public sentiment" in public.reasons[0]
    skipped = gate(champ, _report(0.45, (0.5, 0.5, 0.5)))
    assert skipped.passed and "not checked" in skipped.checks[-1].rule
    support_a = {"macro_f1": 0.75, "high": {"recall": 0.88}}
    forgot = gate(champ, _report(0.45, (0.5, 0.5, 0.5)), None, None, support_a,
                  {"macro_f1": 0.48, "high": {"recall": 0.42}})
    assert not forgot.passed and [r.split(":")[0] for r in forgot.reasons] == \
        ["support-like urgency macro-F1", "support-like high-urgency recall"]
    kept = gate(champ, _report(0.45, (0.5, 0.5, 0.5)), None, None, support_a,
                {"macro_f1": 0.74, "high": {"recall": 0.87}})
    assert kept.passed


def test_cli_learn_prints_the_verdict_and_refuses_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from worker.cli import main

    monkeypatch.setenv("HOME", str(tmp_path))  # the feature cache lives under ~/.cache

    data = history_file(tmp_path / "team.jsonl")
    assert main(["learn", "--data", str(data), "--out", str(tmp_path / "m"), "--no-public",
                 "--min-per-class", "10"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out.splitlines()[-1])
    assert summary["out"] == str(tmp_path / "m") and "report:" in captured.err
    assert main(["learn", "--data", str(tmp_path / "missing.jsonl"), "--no-public"]) == 1
    assert "no such file" in capsys.readouterr().err
    assert main(["learn", "--data", str(data), "--out", str(tmp_path / "n"), "--no-public"]) == 1
    assert "needs at least 120" in capsys.readouterr().err


def test_cli_learn_adds_the_challenger_to_the_registry(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from model.registry import Registry
    from worker.cli import main

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("TRIAGE_MODELS_DIR", str(tmp_path / "models"))
    data = history_file(tmp_path / "team.jsonl")
    assert main(["learn", "--data", str(data), "--no-public", "--min-per-class", "10"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out.splitlines()[-1])
    reg = Registry()
    assert summary["version"] == 1 and reg.state().aliases == {"champion": 0, "challenger": 1}
    assert (reg.root / "v1" / "learn_report" / "report.md").is_file()
    assert f"report: {reg.root / 'v1' / 'learn_report' / 'report.md'}" in captured.err
    if summary["gate"]:
        assert "next: triage model promote 1" in captured.err
        assert main(["model", "promote"]) == 0 and reg.champion_dir() == reg.root / "v1"
    else:
        assert "--force" in captured.err


def test_cli_learn_from_redis_adds_slack_corrections_and_llm_labels_but_none_about_held_out_tickets(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, redis,
        redis_server) -> None:
    from model.textprep import ticket_text
    from worker.cli import main
    from worker.escalation import LABELS_KEY
    from worker.feedback import Feedback, FeedbackStore

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    data = history_file(tmp_path / "team.jsonl")
    newest = [json.loads(line) for line in data.read_text().splitlines()][-1]  # a held-out ticket
    store = FeedbackStore(redis)
    for i, (text, urgency, agent) in enumerate([("Our whole office cannot print invoices", "high", True),
                                                ("Tiny typo on the pricing page", "low", True),
                                                ("A non-agent's opinion", "high", False),
                                                (ticket_text(newest["subject"], newest["text"]), "low", True)]):
        store.record(Feedback(item=f"text:{i}", text=text, model={"urgency": "medium"}, human={"urgency": urgency},
                              by="U1", via="slash", agent=agent))
    redis.rpush(LABELS_KEY, json.dumps({"text": "Payroll export fails for everyone", "urgency": "high",
                                        "sentiment": "frustrated", "provenance": "llm"}))
    assert main(["learn", "--data", str(data), "--out", str(tmp_path / "m"), "--no-public", "--min-per-class", "10",
                 "--from-redis"]) == 0
    err = capsys.readouterr().err
    assert "from Redis: 3 Slack corrections, 1 LLM labels with an urgency" in err  # the non-agent's is not one
    learned = json.loads((tmp_path / "m" / "triage.json").read_text())["learned"]
    assert learned["provenance"]["slack-correction"] == 2 and learned["provenance"]["llm"] == 1
    assert learned["left_out_about_held_out_tickets"] == 1
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    assert main(["learn", "--data", str(data), "--out", str(tmp_path / "n"), "--no-public", "--from-redis"]) == 1
    assert "--from-redis: cannot read Redis" in capsys.readouterr().err


def test_weights_come_from_the_pull_unless_learn_overrides_them(tmp_path: Path) -> None:
    from model.learn import team_examples

    data = history_file(tmp_path / "t.jsonl", n=8)
    rows = data.read_text().replace('"weight": 2.0', '"weight": 1.25')
    data.write_text(rows)
    got = {e.provenance: e.weight for e in team_examples([data])}
    assert got == {"agent-corrected-bot": 3.0, "agent-set": 1.25}
    assert {e.weight for e in team_examples([data], {"agent-set": 0.0})} == {3.0}  # 0: left out


def test_the_challenger_replays_support_like_text_and_has_an_ngram_part(outcome) -> None:
    learned = json.loads((outcome.result.out / "triage.json").read_text())["learned"]
    replayed = learned["replay_support_like"]
    assert replayed["prototypes"] > 100 and replayed["support_select_half"] > 100
    assert learned["provenance"]["prototype"] == replayed["prototypes"]
    graph = onnx.load(str(outcome.result.out / "model.int8.onnx"))
    table = next(onnx.numpy_helper.to_array(i) for i in graph.graph.initializer if i.name == "urgency_ngrams0/table")
    assert table.any() and learned["notes"]["ngrams"] == int(table.any(axis=1).sum())
    oof = learned["notes"]["out_of_fold"]
    assert set(oof["recall"]) == {"high", "medium", "low"} and 0 < oof["macro_f1"] <= 1
    [p] = TriageModel(outcome.result.out).score(["The checkout is down for everyone, we are losing sales"])
    assert p.urgency.best_guess == "high" and p.top_words["urgency"]


def test_the_challenger_floor_answers_the_share_the_champion_answers() -> None:
    from model.learn import coverage_floor

    rng = np.random.default_rng(3)
    probs = rng.dirichlet([1, 1, 1], size=400)
    floor, how = coverage_floor(probs, ((0.0, 0.0, 0.0), 1.0), 0.6)
    conf = probs.max(1)
    assert abs((conf >= floor).mean() - 0.6) < 0.01 and "60%" in how
    # with a P(high) threshold, the highs it decides are answered whatever their confidence
    floor_t, _ = coverage_floor(probs, ((0.0, 0.0, 0.0), 0.3), 0.6)
    high = probs[:, 0] >= 0.3
    pred = np.where(high, 0, probs[:, 1:].argmax(1) + 1)
    answered = high | (probs[np.arange(400), pred] >= floor_t)
    assert abs(answered.mean() - 0.6) < 0.01
    assert coverage_floor(probs, ((0.0, 0.0, 0.0), 1.0), 1.0)[0] <= conf.min()


def test_the_decision_rule_aims_above_the_champions_recalls_and_says_when_it_cannot() -> None:
    from model.learn import RULE_MARGIN, decision
    from model.metrics import summary

    rng = np.random.default_rng(5)
    y = rng.integers(0, 3, 900)
    logits = rng.normal(size=(900, 3)) + 1.5 * np.eye(3)[y] + np.array([1.0, 0.0, -1.0])  # leans to high
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)

    def recalls(rule) -> np.ndarray:
        pred = np.argmax(np.log(probs) + np.asarray(rule[0]), axis=1)
        m = summary(y, pred, ("high", "medium", "low"))
        return np.array([m["per_class"][lab]["recall"] for lab in ("high", "medium", "low")])

    floor = [0.5, 0.5, 0.5]
    rule = decision(probs, y, floor)
    assert rule[1] == 1.0 and (recalls(rule) >= np.array(floor) + RULE_MARGIN).all()  # low shifted up
    assert rule[0][2] > 0
    impossible = decision(probs, y, [0.99, 0.99, 0.99])  # none keeps them: the least-bad worst class
    assert min(recalls(impossible)) == max(min(recalls(((0.0, m, lo), 1.0))) for m in np.linspace(-1, 1, 21)
                                           for lo in np.linspace(-1, 1, 21))
