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
    state = {"step": 0, "epoch": 0, "best_map": -1.0, "best_step": 0, "evals_since_best": 0, "history": [], "train_seconds": 0.0,
             "pairs_seen": 0}
    if resume and ckpt.exists():
        saved = torch.load(ckpt, weights_only=False)
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        sched.load_state_dict(saved["scheduler"])
        state = saved["state"]
        state.setdefault("epoch", state["step"] // max(steps_per_epoch, 1))  # checkpoints written before 0.2
        set_rng_states(saved.get("rng") or {"torch": saved["torch_rng"]})
    dmodel, opt, sched = acc.prepare(model, opt, sched)
    raw = acc.unwrap_model(dmodel)

    def save_checkpoint() -> None:
        # written only between steps, with every RNG state and the position (step, epoch): a resumed run replays
        # exactly what the uninterrupted run would have done
        if main:
            tmp = ckpt.with_suffix(".tmp")
            try:
                torch.save({"model": raw.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                            "rng": rng_states(), "state": state, "config": asdict(cfg)}, tmp)
                tmp.replace(ckpt)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        acc.wait_for_everyone()

    def evaluate() -> None:
        if dev is None or not main:
            return
        m = dev_map(raw, tokenizer, dev, cfg.max_length)
        dm = -1.0 if m["map"] is None else m["map"]  # a dev set with no scorable query keeps the last weights
        state["history"].append({"step": state["step"], "dev_map": m["map"], "dev_mrr": m["mrr"]})
        if dm > state["best_map"]:
            state.update(best_map=dm, best_step=state["step"], evals_since_best=0)
            tmp = best_path.with_suffix(".tmp")
            torch.save(raw.state_dict(), tmp)
            tmp.replace(best_path)
        else:
            state["evals_since_best"] += 1

    def step(b: list[int]) -> float:
        enc = tokenizer([qs[i] for i in b], [ps[i] for i in b], padding=True, truncation=True,
                        max_length=cfg.max_length, return_tensors="pt").to(acc.device)
        from qadistill.losses import distill_loss

        loss = distill_loss(dmodel(**enc), None if tl is None else tl[b].to(acc.device), y[b].to(acc.device), cfg.temperature, cfg.alpha)
        acc.backward(loss)
        acc.clip_grad_norm_(dmodel.parameters(), cfg.max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        return float(loss.detach())

    task = progress.task(label, total)
    task.advance(state["step"])
    dmodel.train()
    stop = False
    from qadistill.interrupts import deferred

    with deferred() as interrupt:
        while state["epoch"] < cfg.epochs and not stop:
            epoch = state["epoch"]
            batches = bucketed_batches(lengths, cfg.batch_size, cfg.seed + epoch)[rank::world][:steps_per_epoch]
            t0 = time.perf_counter()
            for b in batches[state["step"] - epoch * steps_per_epoch :]:
                loss = step(b)
                state["step"] += 1
                state["pairs_seen"] += len(b) * world
                el = time.perf_counter() - t0
                state["train_seconds"] += el
                if cfg.eval_every and state["step"] % cfg.eval_every == 0:
                    evaluate()
                stop = state["evals_since_best"] >= cfg.patience
                if stop:
                    break
                if (cfg.checkpoint_every and state["step"] % cfg.checkpoint_every == 0) or interrupt.requested:
                    save_checkpoint()
                    interrupt.check()
                # a KeyboardInterrupt raised from here on (e.g. by a progress callback) finds a consistent state
                try:
                    task.advance(1, loss=loss, pairs_s=len(b) * world / max(el, 1e-9))
                except KeyboardInterrupt:
                    save_checkpoint()
                    raise
                t0 = time.perf_counter()
            if not stop and (not cfg.eval_every or state["step"] % cfg.eval_every):
                evaluate()
            state["epoch"] = epoch + 1
            save_checkpoint()
            interrupt.check()
            stop = stop or state["evals_since_best"] >= cfg.patience
    task.done()
    state["stopped_early"] = stop
    if cfg.select_on_dev and best_path.exists():
        raw.load_state_dict(torch.load(best_path, weights_only=True))
    state["seconds_per_pair"] = state["train_seconds"] / max(state["pairs_seen"], 1)
    return state


def rng_states() -> dict:
    """Every random state a training step reads: torch (CPU and CUDA), Python's ``random`` and NumPy."""
    import numpy as np
    import torch

    out = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_states(states: dict) -> None:
    import numpy as np
    import torch

    torch.set_rng_state(states["torch"])
    if "python" in states:
        random.setstate(states["python"])
    if "numpy" in states:
        np.random.set_state(states["numpy"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
