"""`qadistill teach`: fine-tune a cross-encoder teacher on labelled pairs (gold BCE), keep the best dev-MAP checkpoint.

The loop reads top to bottom: seeded length-bucketed batches, AdamW with linear warm-up and decay, gradient clipping,
dev MAP every ``eval_every`` steps and at each epoch end, early stopping, a resumable checkpoint every
``checkpoint_every`` steps (and on Ctrl-C), and the final folder written to a temp path and renamed into place.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from qadistill import paths
from qadistill.data import QADataset, load_dataset
from qadistill.errors import UserInputError
from qadistill.fsutil import atomic_write_text, replace_dir
from qadistill.metrics import ranking_metrics
from qadistill.progress import NullProgress, Progress
from qadistill.recipes import TeacherRecipe, recipe_to_toml


@dataclass
class FinetuneConfig:
    data: str = "wikiqa"
    train_split: str = "train"
    dev_split: str = "dev"
    epochs: int = 2
    learning_rate: float = 3e-5
    batch_size: int = 16
    max_length: int = 128
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    seed: int = 42
    eval_every: int = 0  # steps; 0 = only at epoch ends
    patience: int = 2  # evaluations without dev-MAP improvement before stopping
    checkpoint_every: int = 200
    train_filter: str = "with-positive"  # or "all": WikiQA practice trains on questions that have an answer
    limit_train_queries: int | None = None


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


def filter_train(ds: QADataset, how: str) -> QADataset:
    if how == "all":
        return ds
    groups = ds.query_groups()
    keep = {q for q, idx in groups.items() if any(ds.pairs[i].label == 1 for i in idx)}
    return QADataset(ds.name, ds.split, [p for p in ds.pairs if p.query_id in keep], ds.path)


def score_dataset(model, tokenizer, ds: QADataset, max_length: int, batch_size: int = 64):
    import numpy as np
    import torch

    qs, ps = [p.query for p in ds.pairs], [p.passage for p in ds.pairs]
    lengths = [len(x) for x in tokenizer(qs, ps, truncation=True, max_length=max_length)["input_ids"]]
    order = sorted(range(len(qs)), key=lambda i: lengths[i])
    out = np.empty(len(qs), dtype=np.float32)
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for s in range(0, len(order), batch_size):
            idx = order[s : s + batch_size]
            enc = tokenizer([qs[i] for i in idx], [ps[i] for i in idx], padding=True, truncation=True, max_length=max_length, return_tensors="pt")
            out[idx] = model(**enc).logits[:, 0].float().numpy()
    model.train(was_training)
    return out


def finetune_cross_encoder(
    recipe: TeacherRecipe,
    base_folder: Path,
    cfg: FinetuneConfig,
    out_dir: Path | None = None,
    resume: bool = False,
    progress: Progress | None = None,
) -> dict:
    import numpy as np
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, get_linear_schedule_with_warmup

    progress = progress or NullProgress()
    if recipe.architecture != "cross-encoder":
        raise UserInputError(f"'{recipe.name}' is a {recipe.architecture}: `teach` fine-tunes cross-encoders", "pick a cross-encoder teacher recipe")
    out_dir = Path(out_dir) if out_dir else paths.artifacts_dir() / recipe.name
    work = out_dir.with_name(out_dir.name + ".work")
    ckpt = work / "checkpoint"
    if work.exists() and not resume:
        if (ckpt / "state.pt").exists():
            raise UserInputError(f"an unfinished run exists in {work}", "add --resume to continue it, or delete that folder to start over")
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    train = load_dataset(cfg.data, cfg.train_split)
    if cfg.limit_train_queries:
        train = train.subset_queries(cfg.limit_train_queries)
    train = filter_train(train, cfg.train_filter)
    dev = load_dataset(cfg.data, cfg.dev_split)
    tok = AutoTokenizer.from_pretrained(str(base_folder))
    model = AutoModelForSequenceClassification.from_pretrained(str(base_folder), num_labels=1)
    qs, ps = [p.query for p in train.pairs], [p.passage for p in train.pairs]
    ys = torch.tensor([float(p.label) for p in train.pairs])
    lengths = [len(x) for x in tok(qs, ps, truncation=True, max_length=cfg.max_length)["input_ids"]]
    steps_per_epoch = (len(qs) + cfg.batch_size - 1) // cfg.batch_size
    total = steps_per_epoch * cfg.epochs
    no_decay = ("bias", "LayerNorm.weight")
    groups = [
        {"params": [p for n, p in model.named_parameters() if not n.endswith(no_decay)], "weight_decay": cfg.weight_decay},
        {"params": [p for n, p in model.named_parameters() if n.endswith(no_decay)], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=cfg.learning_rate)
    sched = get_linear_schedule_with_warmup(opt, int(cfg.warmup_ratio * total), total)
    state = {"step": 0, "best_map": -1.0, "best_step": 0, "evals_since_best": 0, "history": [], "train_seconds": 0.0}
    if resume and (ckpt / "state.pt").exists():
        saved = torch.load(ckpt / "state.pt", weights_only=False)
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        sched.load_state_dict(saved["scheduler"])
        torch.set_rng_state(saved["torch_rng"])
        state = saved["state"]

    def save_checkpoint() -> None:
        ckpt.mkdir(parents=True, exist_ok=True)
        tmp = ckpt / "state.pt.tmp"
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                    "torch_rng": torch.get_rng_state(), "state": state, "config": asdict(cfg)}, tmp)
        tmp.replace(ckpt / "state.pt")

    def evaluate_dev() -> float:
        s = score_dataset(model, tok, dev, cfg.max_length)
        m = ranking_metrics([p.query_id for p in dev.pairs], s.tolist(), dev.labels())
        state["history"].append({"step": state["step"], "dev_map": m["map"], "dev_mrr": m["mrr"]})
        if m["map"] > state["best_map"]:
            state.update(best_map=m["map"], best_step=state["step"], evals_since_best=0)
            model.save_pretrained(str(work / "best"), safe_serialization=True)
        else:
            state["evals_since_best"] += 1
        return m["map"]

    task = progress.task(f"teach {recipe.name}", total)
    task.advance(state["step"])
    model.train()
    stopped_early = False
    try:
        for epoch in range(state["step"] // steps_per_epoch, cfg.epochs):
            batches = bucketed_batches(lengths, cfg.batch_size, cfg.seed + epoch)
            t0 = time.perf_counter()
            for b in batches[state["step"] - epoch * steps_per_epoch :]:
                enc = tok([qs[i] for i in b], [ps[i] for i in b], padding=True, truncation=True, max_length=cfg.max_length, return_tensors="pt")
                loss = torch.nn.functional.binary_cross_entropy_with_logits(model(**enc).logits[:, 0], ys[b])
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
                state["step"] += 1
                el = time.perf_counter() - t0
                task.advance(1, loss=float(loss.detach()), pairs_s=len(b) / max(el, 1e-9))
                state["train_seconds"] += el
                t0 = time.perf_counter()
                if cfg.eval_every and state["step"] % cfg.eval_every == 0:
                    evaluate_dev()
                if cfg.checkpoint_every and state["step"] % cfg.checkpoint_every == 0:
                    save_checkpoint()
                if state["evals_since_best"] >= cfg.patience:
                    stopped_early = True
                    break
            if stopped_early:
                break
            if not cfg.eval_every or state["step"] % cfg.eval_every:
                evaluate_dev()
            save_checkpoint()
            if state["evals_since_best"] >= cfg.patience:
                stopped_early = True
                break
    except KeyboardInterrupt:
        save_checkpoint()
        raise
    task.done()

    # assemble the final folder: best weights + tokenizer + metrics + recipe, then rename into place
    final_tmp = work / "final"
    if final_tmp.exists():
        shutil.rmtree(final_tmp)
    shutil.copytree(work / "best", final_tmp)
    tok.save_pretrained(str(final_tmp))
    metrics = {
        "dev_map": state["best_map"], "best_step": state["best_step"], "steps": state["step"], "stopped_early": stopped_early,
        "train_pairs": len(qs), "train_seconds": state["train_seconds"], "history": state["history"],
        "config": asdict(cfg), "base": str(base_folder), "data_fingerprint": {"train": train.fingerprint(), "dev": dev.fingerprint()},
    }
    atomic_write_text(final_tmp / "metrics.json", json.dumps(metrics, indent=2))
    atomic_write_text(final_tmp / "recipe.toml", recipe_to_toml(recipe))
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    replace_dir(final_tmp, out_dir)
    shutil.rmtree(work, ignore_errors=True)
    metrics["path"] = str(out_dir)
    return metrics
