"""The training loop shared by `teach` (gold labels, one head) and `distill` (MKDM and its baselines).

Read top to bottom: seeded length-bucketed batches; AdamW with linear warm-up and decay; gradient clipping; dev MAP at
each epoch end (and every ``eval_every`` steps) with the best weights kept and early stopping; a resumable checkpoint
every ``checkpoint_every`` steps and on Ctrl-C. It runs under Hugging Face Accelerate, so
``accelerate launch -m qadistill distill ...`` trains data-parallel unchanged: each process takes every n-th batch and
gradients are averaged; only the main process evaluates and writes.
"""

from __future__ import annotations

import math
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from qadistill.data import QAPair, QADataset
from qadistill.metrics import ranking_metrics
from qadistill.progress import NullProgress, Progress


@dataclass
class TrainConfig:
    epochs: int = 1
    batch_size: int = 32
    learning_rate: float = 1e-4
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_length: int = 128
    temperature: float = 2.0
    alpha: float = 0.5
    seed: int = 42
    eval_every: int = 0  # steps; 0 = at epoch ends only
    patience: int = 2  # evaluations without improvement before stopping
    checkpoint_every: int = 200
    max_grad_norm: float = 1.0
    select_on_dev: bool = True  # keep the best dev-MAP weights (else the last)


def bucketed_batches(lengths: list[int], batch_size: int, seed: int, bucket: int = 50) -> list[list[int]]:
    """Shuffle, then sort within windows of ``bucket`` batches by length: little padding, still random. Seeded."""
    rng = random.Random(seed)
    idx = list(range(len(lengths)))
    rng.shuffle(idx)
    win = batch_size * bucket
    batches = []
    for s in range(0, len(idx), win):
        chunk = sorted(idx[s : s + win], key=lambda i: lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def score_pairs(model, tokenizer, pairs: list[QAPair], max_length: int, batch_size: int = 64):
    """Inference scores [N] of a multi-head student (mean of heads) for pairs, length-sorted batches."""
    import numpy as np
    import torch

    qs, ps = [p.query for p in pairs], [p.passage for p in pairs]
    lengths = [len(x) for x in tokenizer(qs, ps, truncation=True, max_length=max_length)["input_ids"]]
    order = sorted(range(len(qs)), key=lambda i: lengths[i])
    out = np.empty(len(qs), dtype=np.float32)
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for s in range(0, len(order), batch_size):
            idx = order[s : s + batch_size]
            enc = tokenizer([qs[i] for i in idx], [ps[i] for i in idx], padding=True, truncation=True, max_length=max_length, return_tensors="pt")
            out[idx] = model.score(model(**enc)).float().numpy()
    model.train(was_training)
    return out


def dev_map(model, tokenizer, dev: QADataset, max_length: int) -> dict:
    s = score_pairs(model, tokenizer, dev.pairs, max_length)
    return ranking_metrics([p.query_id for p in dev.pairs], s.tolist(), dev.labels())


def train(
    model,
    tokenizer,
    pairs: list[QAPair],
    teacher_logits,  # numpy [N, K] or None
    cfg: TrainConfig,
    work: Path,
    dev: QADataset | None = None,
    resume: bool = False,
    progress: Progress | None = None,
    label: str = "train",
) -> dict:
    """Train ``model`` (a MultiHeadStudent) in place; returns the run state. The best (or last) weights are loaded
    into ``model`` at the end. ``work`` holds the checkpoint and the best weights while training."""
    import numpy as np
    import torch
    from accelerate import Accelerator
    from transformers import get_linear_schedule_with_warmup

    progress = progress or NullProgress()
    acc = Accelerator(cpu=not torch.cuda.is_available())
    main = acc.is_main_process
    work = Path(work)
    ckpt = work / "checkpoint.pt"
    best_path = work / "best.pt"
    work.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    qs, ps = [p.query for p in pairs], [p.passage for p in pairs]
    y = torch.tensor([float("nan") if p.label is None else float(p.label) for p in pairs])
    tl = None if teacher_logits is None else torch.as_tensor(np.asarray(teacher_logits, dtype=np.float32))
    if tl is not None and tl.dim() == 1:
        tl = tl[:, None]
    lengths = [len(x) for x in tokenizer(qs, ps, truncation=True, max_length=cfg.max_length)["input_ids"]]
    world, rank = acc.num_processes, acc.process_index
    steps_per_epoch = math.ceil(math.ceil(len(qs) / cfg.batch_size) / world)
    total = steps_per_epoch * cfg.epochs

    no_decay = ("bias", "LayerNorm.weight")
    groups = [
        {"params": [p for n, p in model.named_parameters() if not n.endswith(no_decay)], "weight_decay": cfg.weight_decay},
        {"params": [p for n, p in model.named_parameters() if n.endswith(no_decay)], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=cfg.learning_rate)
    sched = get_linear_schedule_with_warmup(opt, int(cfg.warmup_ratio * total), max(total, 1))
    state = {"step": 0, "best_map": -1.0, "best_step": 0, "evals_since_best": 0, "history": [], "train_seconds": 0.0, "pairs_seen": 0}
    if resume and ckpt.exists():
        saved = torch.load(ckpt, weights_only=False)
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        sched.load_state_dict(saved["scheduler"])
        torch.set_rng_state(saved["torch_rng"])
        state = saved["state"]
    dmodel, opt, sched = acc.prepare(model, opt, sched)
    raw = acc.unwrap_model(dmodel)

    def save_checkpoint() -> None:
        if main:
            tmp = ckpt.with_suffix(".tmp")
            torch.save({"model": raw.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                        "torch_rng": torch.get_rng_state(), "state": state, "config": asdict(cfg)}, tmp)
            tmp.replace(ckpt)
        acc.wait_for_everyone()

    def evaluate() -> None:
        if dev is None or not main:
            return
        m = dev_map(raw, tokenizer, dev, cfg.max_length)
        state["history"].append({"step": state["step"], "dev_map": m["map"], "dev_mrr": m["mrr"]})
        if m["map"] > state["best_map"]:
            state.update(best_map=m["map"], best_step=state["step"], evals_since_best=0)
            tmp = best_path.with_suffix(".tmp")
            torch.save(raw.state_dict(), tmp)
            tmp.replace(best_path)
        else:
            state["evals_since_best"] += 1

    task = progress.task(label, total)
    task.advance(state["step"])
    dmodel.train()
    stop = False
    try:
        for epoch in range(state["step"] // max(steps_per_epoch, 1), cfg.epochs):
            batches = bucketed_batches(lengths, cfg.batch_size, cfg.seed + epoch)[rank::world][:steps_per_epoch]
            t0 = time.perf_counter()
            for b in batches[state["step"] - epoch * steps_per_epoch :]:
                enc = tokenizer([qs[i] for i in b], [ps[i] for i in b], padding=True, truncation=True,
                                max_length=cfg.max_length, return_tensors="pt").to(acc.device)
                from qadistill.losses import distill_loss

                out = dmodel(**enc)
                loss = distill_loss(out, None if tl is None else tl[b].to(acc.device), y[b].to(acc.device), cfg.temperature, cfg.alpha)
                acc.backward(loss)
                acc.clip_grad_norm_(dmodel.parameters(), cfg.max_grad_norm)
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
                state["step"] += 1
                state["pairs_seen"] += len(b) * world
                el = time.perf_counter() - t0
                state["train_seconds"] += el
                task.advance(1, loss=float(loss.detach()), pairs_s=len(b) * world / max(el, 1e-9))
                t0 = time.perf_counter()
                if cfg.eval_every and state["step"] % cfg.eval_every == 0:
                    evaluate()
                if cfg.checkpoint_every and state["step"] % cfg.checkpoint_every == 0:
                    save_checkpoint()
                if state["evals_since_best"] >= cfg.patience:
                    stop = True
                    break
            if stop:
                break
            if not cfg.eval_every or state["step"] % cfg.eval_every:
                evaluate()
            save_checkpoint()
            if state["evals_since_best"] >= cfg.patience:
                break
    except KeyboardInterrupt:
        save_checkpoint()
        raise
    task.done()
    state["stopped_early"] = stop or state["evals_since_best"] >= cfg.patience
    if cfg.select_on_dev and best_path.exists():
        raw.load_state_dict(torch.load(best_path, weights_only=True))
    state["seconds_per_pair"] = state["train_seconds"] / max(state["pairs_seen"], 1)
    return state


def clear_work(work: Path) -> None:
    shutil.rmtree(work, ignore_errors=True)
