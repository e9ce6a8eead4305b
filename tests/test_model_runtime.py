"""The shipped model through its runtime: outputs, bad input, broken artifacts, decisions."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from model.data import SENTIMENT_LABELS, URGENCY_LABELS
from model.decision import DecisionRule
from model.runtime import DEFAULT_MODEL_DIR, ModelError, TriageModel


@pytest.fixture(scope="module")
def model() -> TriageModel:
    return TriageModel(DEFAULT_MODEL_DIR, threads=1)


def test_scores_have_labels_calibrated_probabilities_and_version(model):
    [p] = model.score(["The checkout page has been down for an hour and we are losing orders. Fix it now!"])
    for head, labels in (("sentiment", SENTIMENT_LABELS), ("urgency", URGENCY_LABELS)):
        h = getattr(p, head)
        assert set(h.probabilities) == set(labels)
        assert abs(sum(h.probabilities.values()) - 1) < 1e-3
        assert h.best_guess in labels
        assert h.confidence == pytest.approx(h.probabilities[h.best_guess], abs=1e-3)
    assert p.model_version == model.version
    assert p.sentiment.best_guess == "frustrated"
    words = [w for w, _ in p.top_words["sentiment"]]
    assert words and all(w in "the checkout page has been down for an hour and we are losing orders. fix it now!"
                         for w in words)


def test_clear_cases_go_the_right_way(model):
    angry, happy = model.score(["This is the third time your update broke my account. Terrible service, I want a "
                                "refund.", "Thank you so much, the new dashboard is great and support was quick!"])
    assert angry.sentiment.best_guess == "frustrated"
    assert happy.sentiment.best_guess == "satisfied"


def test_scores_do_not_depend_on_batch_mates(model):
    texts = ["short one", "a much longer ticket text " * 20, "medium length ticket about a billing problem"]
    s_all, u_all = model.logits(texts)  # batch_size 1: one call per text
    for i, t in enumerate(texts):
        s_one, u_one = model.logits([t])
        assert np.array_equal(s_one[0], s_all[i]) and np.array_equal(u_one[0], u_all[i])


@pytest.mark.parametrize("text", ["", "   \n\t ", "\x00\x01\x02"])
def test_empty_text_abstains_explicitly(model, text):
    [p] = model.score([text])
    assert p.empty and p.sentiment.abstained and p.urgency.abstained and p.sentiment.label == "unsure"


@pytest.mark.parametrize("text", [
    "x" * 1_000_000,
    "word " * 200_000,
    b"\xff\xfe\xfa not utf-8 \xc3\x28",
    bytes(range(256)) * 100,
    "😡😡😡🔥🔥",
    "Das Produkt funktioniert seit gestern nicht mehr, bitte dringend helfen",
    "我的订单还没有到，请尽快处理",
])
def test_bad_or_odd_input_gets_a_result(model, text):
    [p] = model.score([text])
    assert p.sentiment.label in (*SENTIMENT_LABELS, "unsure")
    assert p.urgency.label in (*URGENCY_LABELS, "unsure")


def test_long_text_says_what_was_cut(model):
    text = "Subject: outage\n" + "the service is down again and again " * 400
    [p] = model.score([text])
    assert p.truncated and 0 < p.chars_scored < len(text)
    [short] = model.score(["The service is down"])
    assert not short.truncated and short.chars_scored == len("The service is down")


def test_top_words_are_words_of_the_text(model):
    text = "Your app deleted all my invoices and nobody answers my emails"
    [p] = model.score([text])
    words = {w for ws in p.top_words.values() for w, _ in ws}
    assert words and words <= {w.lower() for w in text.split()}


def test_missing_model_names_the_path_and_the_fix(tmp_path):
    with pytest.raises(ModelError, match=r"missing: .*triage\.json.*triage model export"):
        TriageModel(tmp_path)


def test_corrupt_model_names_the_path(tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(DEFAULT_MODEL_DIR, folder)
    (folder / "model.int8.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelError, match=r"corrupt: .*model\.int8\.onnx"):
        TriageModel(folder)
    (folder / "triage.json").write_text("{")
    with pytest.raises(ModelError, match="metadata unreadable"):
        TriageModel(folder)


def test_decision_rule_threshold_and_abstain():
    rule = DecisionRule(URGENCY_LABELS, threshold_label="high", threshold=0.3, abstain_below=0.5)
    # P(high) = 0.35 reaches the threshold: high wins over a likelier "low", and is not withheld.
    r = rule.decide(np.log(np.array([0.35, 0.15, 0.5])))
    assert r.label == "high" and not r.abstained
    # Below the threshold: argmax of the rest, withheld under the floor.
    r = rule.decide(np.log(np.array([0.2, 0.35, 0.45])))
    assert r.best_guess == "low" and r.abstained and r.label == "unsure"


def test_shipped_artifact_records_its_checks():
    meta = json.loads((DEFAULT_MODEL_DIR / "triage.json").read_text())
    parity = meta["parity"]
    assert parity["onnx_fp32_vs_torch_max_abs_diff"] < 1e-3
    assert min(parity["int8_vs_fp32_argmax_agreement"].values()) >= 0.98
    assert meta["decision"]["urgency"]["threshold_label"] == "high"
    assert meta["data_hashes"] and meta["version"]


def test_eval_cli_writes_report_and_plots_for_any_csv(tmp_path, capsys):
    from worker.cli import main

    data = tmp_path / "mine.csv"
    data.write_text("body,mood,prio\n"
                    "\"Site down, we lose money every minute\",negative,high\n"
                    "\"Thanks, all good now\",positive,low\n"
                    "\"How do I reset my password?\",neutral,medium\n"
                    "\"Still broken after two days, unacceptable\",negative,high\n")
    out = tmp_path / "report"
    assert main(["model", "eval", "--data", str(data), "--text-col", "body", "--sentiment-col", "mood",
                 "--urgency-col", "prio", "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out.splitlines()[0])
    assert set(printed) == {"sentiment", "urgency"}
    assert {p.name for p in out.iterdir()} >= {"report.md", "confusion.png", "reliability.png", "high_urgency_pr.png"}
    assert "macro-F1" in (out / "report.md").read_text()


def test_score_cli_reads_csv_and_jsonl(tmp_path, capsys):
    from worker.cli import main

    (tmp_path / "t.jsonl").write_text('{"subject": "Login broken", "body": "Nobody can log in"}\n{"text": "thanks"}\n')
    assert main(["score", "--file", str(tmp_path / "t.jsonl")]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(lines) == 2 and all(x["model_version"] for x in lines)
    with pytest.raises(SystemExit, match="no such file"):
        main(["score", "--file", str(tmp_path / "missing.csv")])
