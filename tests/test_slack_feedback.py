"""Agents' corrections: durable in Redis, exported as training rows that `triage model train` uses,
summarised as agreement per head over time."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from worker import cli
from worker.feedback import (
    CSV_COLUMNS,
    Feedback,
    FeedbackError,
    FeedbackStore,
    agreement,
    export_rows,
    format_agreement,
    to_csv,
)
from worker.local_redis import LocalRedis

REPO = Path(__file__).resolve().parent.parent
MODEL = {"sentiment": "frustrated", "urgency": "high"}
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)  # a Monday


def verdict(item: str, human: dict[str, str], model: dict[str, str] = MODEL, text: str = "", **kw) -> Feedback:
    return Feedback(item=item, text=text or f"ticket text of {item}", model=model, human=human, by="U0AGENT001",
                    via="slash", source="zendesk", model_version="v1", **kw)


def test_record_and_read_back_in_order(redis):
    store = FeedbackStore(redis)
    a = store.record(verdict("zendesk:1:1", {"sentiment": "neutral"}), now=T0)
    b = store.record(verdict("zendesk:2:1", {"sentiment": "frustrated", "urgency": "high"}), now=T0)
    c = store.record(verdict("zendesk:3:1", {}), now=T0)
    assert (a.verdict, b.verdict, c.verdict) == ("corrected", "confirmed", "applied")
    assert a.at == "2026-11-02T09:00:00Z" and a.id
    back = list(store.all())
    assert [f.item for f in back] == ["zendesk:1:1", "zendesk:2:1", "zendesk:3:1"] and back[0] == a
    assert list(store.all(since=datetime.now(UTC) + timedelta(hours=1))) == []
    with pytest.raises(FeedbackError, match="not a label"):
        store.record(verdict("zendesk:4:1", {"sentiment": "angry"}))
    with pytest.raises(FeedbackError, match="empty"):
        store.record(verdict("zendesk:4:1", {"sentiment": "neutral"}, text=" "))


def test_reading_pages_through_many_verdicts(redis):
    store = FeedbackStore(redis)
    for i in range(25):
        store.record(verdict(f"zendesk:{i}:1", {"urgency": "low"}))
    assert len(list(store.all(page=7))) == 25 and store.count() == 25


def test_feedback_survives_a_redis_restart():
    """Deployed Redis runs with AOF (deploy/compose.yaml): a restart keeps every correction."""
    server = LocalRedis(appendonly=True).start()
    try:
        from redis import Redis

        store = FeedbackStore(Redis.from_url(server.url))
        store.record(verdict("zendesk:9:1", {"urgency": "medium"}))
        server.stop()
        server.start()
        [back] = list(FeedbackStore(Redis.from_url(server.url)).all())
        assert back.human == {"urgency": "medium"}
    finally:
        server.close()


def test_export_keeps_the_latest_label_per_item_and_head():
    rows = export_rows([
        verdict("zendesk:1:1", {"sentiment": "neutral"}),
        verdict("zendesk:1:1", {"urgency": "medium"}),  # a second agent fixes the other head
        verdict("zendesk:1:1", {"sentiment": "satisfied"}),  # and a third changes their mind
        verdict("zendesk:2:1", {}),  # an Apply: no label
        verdict("text:abc", {"urgency": "low"}, text="Hello, a small question"),
    ], weight=3)
    assert [(r["item"], r["sentiment"], r["urgency"], r["weight"], r["verdicts"]) for r in rows] == [
        ("zendesk:1:1", "satisfied", "medium", "3", "3"), ("text:abc", "", "low", "3", "1")]
    assert all(r["human_confirmed"] == "1" and r["model_sentiment"] == "frustrated" for r in rows)
    header = next(csv.reader(io.StringIO(to_csv(rows))))
    assert tuple(header) == CSV_COLUMNS and header[:4] == ["text", "sentiment", "urgency", "weight"]


def test_agreement_per_head_per_week():
    fb = [
        verdict("a", {"sentiment": "frustrated", "urgency": "high"}, at="2026-11-02T10:00:00Z"),
        verdict("b", {"sentiment": "neutral"}, at="2026-11-03T10:00:00Z"),
        verdict("c", {"urgency": "high"}, model={"sentiment": "neutral", "urgency": "unsure"},
                at="2026-11-10T10:00:00Z"),
        verdict("d", {}, at="2026-11-10T11:00:00Z", verdict="applied"),
    ]
    rows = agreement(fb, "week")
    assert [r.period for r in rows] == ["week of 2026-11-02", "week of 2026-11-09", "all"]
    w1, w2, total = rows
    assert (w1.heads["sentiment"].judged, w1.heads["sentiment"].agreed, w1.heads["sentiment"].rate) == (2, 1, 0.5)
    assert w1.heads["urgency"].rate == 1.0
    assert (w2.heads["urgency"].judged, w2.heads["urgency"].abstained, w2.heads["urgency"].rate) == (1, 1, None)
    assert w2.applied == 1 and total.verdicts == 4
    table = format_agreement(rows)
    assert "50% of 2" in table and "n/a of 1, 1 unsure" in table
    assert [r.period for r in agreement(fb, "month")] == ["2026-11", "all"]
    assert format_agreement([]).startswith("no feedback yet")


def test_cli_export_and_stats(redis, redis_server, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    store = FeedbackStore(redis)
    store.record(verdict("zendesk:1:1", {"sentiment": "neutral", "urgency": "medium"}))
    store.record(verdict("zendesk:2:1", {"urgency": "high"}))
    assert cli.main(["feedback", "export", "--out", "fb.csv", "--weight", "2.5"]) == 0
    err = capsys.readouterr().err
    assert "2 training rows (1 sentiment and 2 urgency labels, weight 2.5) from 2 verdicts" in err
    assert "triage model train --extra-csv fb.csv" in err
    rows = list(csv.DictReader((tmp_path / "fb.csv").open()))
    assert [(r["sentiment"], r["urgency"], r["weight"]) for r in rows] == [("neutral", "medium", "2.5"),
                                                                             ("", "high", "2.5")]
    assert cli.main(["feedback", "stats", "--by", "day", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out[-1]["period"] == "all" and out[-1]["urgency"] == {"judged": 2, "agreed": 1, "model_unsure": 0,
                                                                 "agreement": 0.5}


def test_export_then_train_uses_the_rows(redis, redis_server, tmp_path, monkeypatch, capsys):
    """Smoke: corrections -> `triage feedback export` -> `triage model train --extra-csv` (the real
    training code, one step on a tiny data set) -> the checkpoint says the rows were trained on."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    store = FeedbackStore(redis)
    corrections = [("Checkout has been down for an hour, fix it now", {"sentiment": "frustrated", "urgency": "high"}),
                   ("Thanks, all good now", {"sentiment": "satisfied"}),
                   ("Can I change the invoice address?", {"urgency": "low"})]
    for i, (text, human) in enumerate(corrections):
        store.record(Feedback(item=f"text:{i}", text=text, model={"sentiment": "neutral", "urgency": "medium"},
                              human=human, by="U0AGENT001"))
    assert cli.main(["feedback", "export", "--out", "feedback.csv"]) == 0

    data = tmp_path / "data"
    data.mkdir()
    labelled = [("the app crashes all the time", "negative", "high"), ("works fine, thanks", "positive", "low"),
                ("how do I reset my password", "neutral", "medium"),
                ("still broken, nobody answers", "negative", "high"),
                ("great support today", "positive", "low"), ("question about billing", "neutral", "medium")]
    for name, rows in (("train.csv", labelled * 8), ("val.csv", labelled)):
        with (data / name).open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["text", "sentiment", "urgency"])
            w.writerows(rows)
    config = yaml.safe_load((REPO / "model" / "configs" / "train.yaml").read_text())
    config.update(datasets=[{"name": "tiny", "file": "train.csv", "sentiment_col": "sentiment",
                             "urgency_col": "urgency", "role": "train"},
                            {"name": "tiny_val", "file": "val.csv", "sentiment_col": "sentiment",
                             "urgency_col": "urgency", "role": "val"}], evals_per_epoch=1)
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(config))

    assert cli.main(["model", "train", "--config", str(tmp_path / "train.yaml"), "--data-root", str(data),
                     "--out", str(tmp_path / "run"), "--extra-csv", "feedback.csv", "--limit", "32",
                     "--epochs", "0.02"]) == 0
    import torch

    ckpt = torch.load(str(tmp_path / "run" / "best.pt"), map_location="cpu", weights_only=False)
    assert ckpt["data"]["extra_rows"] == 3 and ckpt["data"]["extra_weight"] == 6.0  # 3 rows x weight 2
    # --limit 32 samples 29 public rows and keeps every correction
    assert ckpt["data"]["train_rows"] == 32 and ckpt["data"]["extra_csv"] == ["feedback.csv"]
