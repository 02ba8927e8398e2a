"""The training loop shared by `teach` (gold labels, one head) and `distill` (MKDM and its baselines).

Read top to bottom: seeded length-bucketed batches; AdamW with linear warm-up and decay; gradient clipping; an
optional exponential moving average of the weights (``ema_decay``: what is evaluated, selected and kept); dev MAP at
each epoch end (and every ``eval_every`` steps) with the best weights kept and early stopping; a resumable checkpoint
every ``checkpoint_every`` steps and on Ctrl-C. It runs under Hugging Face Accelerate, so
``accelerate launch -m qadistill distill ...`` trains data-parallel unchanged: each process takes every n-th batch and
gradients are averaged; only the main process evaluates and writes.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import random
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from qadistill.data import QAPair, QADataset
from qadistill.losses import PRECISIONS
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
    loss: str = "pointwise"  # teacher objective: pointwise (soft BCE) | listwise (KL over a query's list) | margin-mse
    list_size: int = 16  # ranking losses: a query's candidates are cut into lists of at most this many
    freeze_embeddings: bool = False  # keep the word embeddings (most of a small student's weights) as initialised
    precision: str = "fp32"  # fp32 | bf16 (autocast; fp32 weights) | auto (bf16 where the device computes it natively)
    epochs_setting: str = "epochs"  # what the user calls ``epochs`` in messages (TMKD stage 1: unlabelled_passes)
    ema_decay: float = 0.0  # >0: evaluate, select and keep an exponential moving average of the trained weights
    rehearse: float = 0.0  # >0: this many teacher-only batches of the rehearsal set per batch of the pairs (train's rehearsal)



def resolve_precision(precision: str) -> str:
    """What ``precision`` means on this machine: ``auto`` is bf16 on a CUDA GPU that supports it and on a CPU with
    native bf16 arithmetic (AVX512-BF16 or AMX: a training step of the 3-layer student ran 1.5x faster than fp32 on
    this 2-core AVX512-BF16 machine), else fp32 (emulated bf16 would be slower than fp32)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    import torch

    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    from qadistill.doctor import cpu_features

    f = cpu_features()
    return "bf16" if f["avx512_bf16"] or f["amx_bf16"] else "fp32"


def train_config(settings, **overrides) -> TrainConfig:
    """The loop's settings from anything that carries some of them by name (a ``FinetuneConfig``, a recipe's
    ``DistillSettings``); the rest keep TrainConfig's defaults, ``overrides`` win."""
    given = {f.name: getattr(settings, f.name) for f in fields(TrainConfig) if hasattr(settings, f.name)}
    return replace(TrainConfig(**given), **overrides)


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


def grouped_batches(groups: list[int], lengths: list[int], batch_size: int, list_size: int, seed: int,
                    bucket: int = 50) -> list[list[int]]:
    """Batches that keep a query's candidates together, for the ranking losses. Each query's candidates are shuffled
    and cut into lists of at most ``list_size``; the lists are shuffled, sorted by their longest pair within windows
    of ``bucket`` batches (a batch is padded to its longest pair), and packed whole into batches of at most
    ``batch_size`` pairs (a list longer than the batch is cut to it). Every pair appears once per epoch. Seeded."""
    rng = random.Random(seed)
    by_q: dict[int, list[int]] = {}
    for i, g in enumerate(groups):
        by_q.setdefault(g, []).append(i)
    size = max(1, min(list_size, batch_size))
    lists = []
    for g in sorted(by_q):
        members = by_q[g]
        rng.shuffle(members)
        lists += [members[s : s + size] for s in range(0, len(members), size)]
    rng.shuffle(lists)
    per_window = max(1, batch_size * bucket // size)  # lists per window of about ``bucket`` batches
    batches: list[list[int]] = []
    for s in range(0, len(lists), per_window):
        chunk = sorted(lists[s : s + per_window], key=lambda m: max(lengths[i] for i in m))
        cur: list[int] = []
        for m in chunk:
            if cur and len(cur) + len(m) > batch_size:
                batches.append(cur)
                cur = []
            cur = cur + m
        if cur:
            batches.append(cur)
    rng.shuffle(batches)
    return batches


def score_pairs(model, tokenizer, pairs: list[QAPair], max_length: int, batch_size: int = 64):
    """Inference scores [N] of a multi-head student (mean of heads) for pairs, length-sorted batches."""
    from qadistill.backends import StudentBackend

    qs, ps = [p.query for p in pairs], [p.passage for p in pairs]
    return StudentBackend(model, tokenizer, max_length).score(qs, ps, batch_size, length_order(tokenizer, qs, ps, max_length))


def length_order(tokenizer, qs: list[str], ps: list[str], max_length: int) -> list[int]:
    """Pair indices sorted by tokenized length (batches of neighbours pad little)."""
    lengths = [len(x) for x in tokenizer(qs, ps, truncation=True, max_length=max_length)["input_ids"]]
    return sorted(range(len(qs)), key=lambda i: lengths[i])


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
    rehearsal: tuple | None = None,  # (pairs, teacher logits [M, K]): teacher-only pairs mixed in, cfg.rehearse per batch
) -> dict:
    """Train ``model`` (a MultiHeadStudent) in place; returns the run state. The best (or last) weights are loaded
    into ``model`` at the end. ``work`` holds the checkpoint and the best weights while training.

    With ``rehearsal`` and ``cfg.rehearse`` = r > 0, each epoch also takes about r batches of the rehearsal pairs per
    batch of ``pairs`` (a seeded draw of that set's own batches, a new draw each epoch), shuffled in among them. Their
    labels are ignored, so they train on the teachers alone: the labelled stage keeps rehearsing what TMKD stage 1
    taught instead of drifting to the gold labels only."""
    return run_loop(_Loop(model, tokenizer, pairs, teacher_logits, cfg, Path(work), dev, rehearsal), resume, progress, label)


def run_loop(loop: "_Loop", resume: bool, progress: Progress | None, label: str) -> dict:
    """Drive a loop (this module's, or ``qadistill.stage1``'s over a stream) to its end; returns the run state."""
    from qadistill.interrupts import deferred

    progress = progress or NullProgress()
    loop.restore(resume)
    task = progress.task(label, loop.total, done=loop.state["step"])
    loop.dmodel.train()
    stop = False
    with deferred() as interrupt:
        while loop.state["epoch"] < loop.cfg.epochs and not stop:
            stop = loop.epoch(task, interrupt)
    task.done()
    return loop.finish(stop)


class _Loop:
    """One training run's moving parts: data as tensors, optimizer and schedule under Accelerate, the run state, and
    the checkpoint and best weights in ``work``. Its steps run in the order ``train`` calls them."""

    n_main: int | None = None  # pairs held before the rehearsal set (None: no rehearsal set, all are trained on)

    def __init__(self, model, tokenizer, pairs: list[QAPair], teacher_logits, cfg: TrainConfig, work: Path,
                 dev: QADataset | None, rehearsal: tuple | None = None) -> None:
        self._setup(model, tokenizer, cfg, work, dev)
        self._seed()
        self.n_main = len(pairs)  # the pairs trained on; any after them are the rehearsal set
        if rehearsal is not None and cfg.rehearse > 0:
            pairs, teacher_logits = with_rehearsal(pairs, teacher_logits, *rehearsal)
        self._tensors(pairs, teacher_logits)
        self.data_fp = data_fingerprint(self.qs, self.ps, self.y, self.tl)  # what the checkpoint was trained on
        # per-epoch step counts (a ranking loss packs whole lists, so an epoch's batch count can vary with its seed)
        epochs = [self.batches(e) for e in range(cfg.epochs)]
        self.epoch_steps = [math.ceil(len(b) / self.world) for b in epochs]
        self.rehearsal_batches = [sum(x[0] >= self.n_main for x in b) for b in epochs]  # of each epoch's batches
        self.steps_per_epoch = self.epoch_steps[0]
        self.total = sum(self.epoch_steps)
        self._optimizer()

    def _setup(self, model, tokenizer, cfg: TrainConfig, work: Path, dev: QADataset | None) -> None:
        """Accelerate, the precision, the work folder's files and a fresh run state."""
        import torch
        from accelerate import Accelerator

        self.precision = resolve_precision(cfg.precision)
        self.acc = Accelerator(cpu=not torch.cuda.is_available())  # autocast is ours (step): Accelerate's is once per process
        self.main = self.acc.is_main_process
        self.model, self.tokenizer, self.cfg, self.dev = model, tokenizer, cfg, dev
        self.ckpt, self.best_path = work / "checkpoint.pt", work / "best.pt"
        work.mkdir(parents=True, exist_ok=True)
        self.world, self.rank = self.acc.num_processes, self.acc.process_index
        self.ema: dict | None = None  # name -> averaged weight, with ema_decay (set in restore)
        self.state = {"step": 0, "epoch": 0, "best_map": -1.0, "best_step": 0, "evals_since_best": 0, "history": [],
                      "train_seconds": 0.0, "pairs_seen": 0}

    def _seed(self) -> None:
        import numpy as np
        import torch

        torch.manual_seed(self.cfg.seed)
        random.seed(self.cfg.seed)
        np.random.seed(self.cfg.seed)

    def _tensors(self, pairs: list[QAPair], teacher_logits) -> None:
        """The texts, gold labels [N] (NaN: none), teacher logits [N, K], query groups and token lengths."""
        import numpy as np
        import torch

        cfg = self.cfg
        self.qs, self.ps = [p.query for p in pairs], [p.passage for p in pairs]
        self.y = torch.tensor([float("nan") if p.label is None else float(p.label) for p in pairs])
        qindex: dict[str, int] = {}
        self.groups = [qindex.setdefault(p.query_id, len(qindex)) for p in pairs]
        self.g = torch.tensor(self.groups)
        tl = None if teacher_logits is None else torch.as_tensor(np.asarray(teacher_logits, dtype=np.float32))
        if tl is not None and tl.dim() == 1:
            tl = tl[:, None]
        self.tl = tl
        self.lengths = [len(x) for x in self.tokenizer(self.qs, self.ps, truncation=True, max_length=cfg.max_length)["input_ids"]]

    def batches(self, epoch: int) -> list[list[int]]:
        """The epoch's batches, seeded by epoch."""
        return self.seeded_batches(self.cfg.seed + epoch)

    def seeded_batches(self, seed: int) -> list[list[int]]:
        """Length-bucketed batches of the pairs held, or whole query lists for a ranking loss; with a rehearsal set,
        round(rehearse x their count) of its own batches (a seeded draw) shuffled in among them."""
        n = len(self.qs) if self.n_main is None else self.n_main
        main = self._batches(0, n, seed)
        if n == len(self.qs):
            return main
        extra = self._batches(n, len(self.qs), seed + 1)  # already in a seeded random order
        mixed = main + extra[: min(len(extra), round(self.cfg.rehearse * len(main)))]
        random.Random(seed + 2).shuffle(mixed)
        return mixed

    def _batches(self, lo: int, hi: int, seed: int) -> list[list[int]]:
        """Batches of the pairs ``lo..hi-1`` alone (indices into all the pairs held)."""
        cfg = self.cfg
        if cfg.loss == "pointwise":
            out = bucketed_batches(self.lengths[lo:hi], cfg.batch_size, seed)
        else:
            out = grouped_batches(self.groups[lo:hi], self.lengths[lo:hi], cfg.batch_size, cfg.list_size, seed)
        return [[i + lo for i in b] for b in out] if lo else out

    def _optimizer(self) -> None:
        """AdamW without weight decay on biases and LayerNorm weights; linear warm-up then decay."""
        import torch

        cfg, model = self.cfg, self.model
        if cfg.freeze_embeddings:  # about 15% less time per step for a 3-layer, hidden-384 student
            for n, p in model.named_parameters():
                if n.endswith("embeddings.word_embeddings.weight"):
                    p.requires_grad_(False)
        no_decay = ("bias", "LayerNorm.weight")
        trained = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        groups = [
            {"params": [p for n, p in trained if not n.endswith(no_decay)], "weight_decay": cfg.weight_decay},
            {"params": [p for n, p in trained if n.endswith(no_decay)], "weight_decay": 0.0},
        ]
        self.opt = torch.optim.AdamW(groups, lr=cfg.learning_rate)
        self._schedule()

    def _schedule(self) -> None:
        from transformers import get_linear_schedule_with_warmup

        self.sched = get_linear_schedule_with_warmup(self.opt, int(self.cfg.warmup_ratio * self.total), max(self.total, 1))

    def restore(self, resume: bool) -> None:
        """Continue from the checkpoint when asked (weights, optimizer, schedule, state, RNGs), then hand the model to
        Accelerate."""
        if resume and self.ckpt.exists():
            saved = self._load_checkpoint()
            self.model.load_state_dict(saved["model"])
            self.opt.load_state_dict(saved["optimizer"])
            self.sched.load_state_dict(saved["scheduler"])
            self.state = saved["state"]
            self.state.setdefault("epoch", self.state["step"] // max(self.steps_per_epoch, 1))  # checkpoints written before 0.2
            self.state["train_seconds_before"] = self.state["train_seconds"]  # spent by the run(s) this one resumes
            set_rng_states(saved.get("rng") or {"torch": saved["torch_rng"]})
            self.ema = saved.get("ema")
        self.dmodel, self.opt, self.sched = self.acc.prepare(self.model, self.opt, self.sched)
        self.raw = self.acc.unwrap_model(self.dmodel)
        if self.cfg.ema_decay and self.ema is None:
            self.ema = {n: p.detach().clone() for n, p in self.raw.named_parameters() if p.requires_grad}
            self.state["ema_updates"] = 0

    def ema_update(self) -> None:
        """Move the average toward the weights just stepped to; the decay ramps up over the first steps
        ((1+n)/(10+n), as TensorFlow's ExponentialMovingAverage), so the average soon forgets its start."""
        import torch

        if not self.cfg.ema_decay:
            return
        n = self.state["ema_updates"]
        d = min(self.cfg.ema_decay, (1 + n) / (10 + n))
        with torch.no_grad():
            for name, p in self.raw.named_parameters():
                if name in self.ema:
                    self.ema[name].mul_(d).add_(p.detach(), alpha=1 - d)
        self.state["ema_updates"] = n + 1

    @contextlib.contextmanager
    def ema_weights(self):
        """A context in which the model holds the averaged weights (the trained ones come back after)."""
        if not self.cfg.ema_decay:
            yield
            return
        params = dict(self.raw.named_parameters())
        kept = {n: params[n].detach().clone() for n in self.ema}
        self._load_weights(self.ema)
        try:
            yield
        finally:
            self._load_weights(kept)

    def _load_weights(self, tensors: dict) -> None:
        """Copy ``tensors`` (name -> tensor) into the model's parameters of those names."""
        import torch

        params = dict(self.raw.named_parameters())
        with torch.no_grad():
            for n, v in tensors.items():
                params[n].copy_(v)

    def _load_checkpoint(self) -> dict:
        """The checkpoint, refused (before any step) when damaged or made from other settings or data: resuming it
        would give weights that match neither run."""
        import torch

        from qadistill.errors import UserInputError

        fresh = f"to start over, delete {self.ckpt.parent.parent} and rerun without --resume"
        from qadistill.integrity import sidecar_problem

        problem = sidecar_problem(self.ckpt)
        if problem is not None:
            raise UserInputError(f"checkpoint {self.ckpt} is damaged ({problem})", fresh)
        try:
            saved = torch.load(self.ckpt, weights_only=False)
        except Exception as exc:
            raise UserInputError(f"checkpoint {self.ckpt} is damaged ({type(exc).__name__}: {_first_words(str(exc))})", fresh) from None
        free = ("checkpoint_every", "epochs_setting")  # settings that change no weight
        mine = {k: v for k, v in asdict(self.cfg).items() if k not in free}
        theirs = {k: v for k, v in (saved.get("config") or {}).items() if k not in free}
        if theirs:  # a setting added after the checkpoint was written ran with its default (the old behaviour)
            theirs = {**{k: v for k, v in asdict(TrainConfig()).items() if k not in free}, **theirs}
        named = {"epochs": self.cfg.epochs_setting}
        changed = [f"{named.get(k, k)} {theirs.get(k)!r} -> {v!r}" for k, v in mine.items() if theirs and theirs.get(k) != v]
        if changed:
            raise UserInputError(f"checkpoint {self.ckpt} was made with other settings ({', '.join(changed[:4])})",
                                 "resume with the settings of the interrupted run, or " + fresh)
        if saved.get("data") not in (None, self.data_fp):
            raise UserInputError(f"checkpoint {self.ckpt} was made on other training data (or other teacher scores)",
                                 "resume with the data of the interrupted run, or " + fresh)
        return saved

    def save_checkpoint(self) -> None:
        # written only between steps, with every RNG state and the position (step, epoch): a resumed run replays
        # exactly what the uninterrupted run would have done
        if self.main:
            save_hashed({"model": self.raw.state_dict(), "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
                         "rng": rng_states(), "state": self.state, "config": asdict(self.cfg), "data": self.data_fp,
                         "ema": self.ema}, self.ckpt)
        self.acc.wait_for_everyone()

    def evaluate(self) -> None:
        if self.dev is None or not self.main:
            return
        state = self.state
        with self.ema_weights():  # with ema_decay, the average is what is measured and kept
            m = dev_map(self.raw, self.tokenizer, self.dev, self.cfg.max_length)
            dm = -1.0 if m["map"] is None else m["map"]  # a dev set with no scorable query keeps the last weights
            state["history"].append({"step": state["step"], "dev_map": m["map"], "dev_mrr": m["mrr"]})
            if dm > state["best_map"]:
                state.update(best_map=dm, best_step=state["step"], evals_since_best=0)
                save_hashed(self.raw.state_dict(), self.best_path)
            else:
                state["evals_since_best"] += 1

    def step(self, b: list[int]) -> float:
        import torch

        from qadistill.losses import distill_loss, ranking_distill_loss

        cfg, acc, dmodel, tl = self.cfg, self.acc, self.dmodel, self.tl
        enc = self.tokenizer([self.qs[i] for i in b], [self.ps[i] for i in b], padding=True, truncation=True,
                             max_length=cfg.max_length, return_tensors="pt").to(acc.device)
        with torch.autocast(acc.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            out = dmodel(**enc)
        out, teacher, y = out.float(), None if tl is None else tl[b].to(acc.device), self.y[b].to(acc.device)  # losses in fp32
        if cfg.loss == "pointwise":
            loss = distill_loss(out, teacher, y, cfg.temperature, cfg.alpha)
        else:
            loss = ranking_distill_loss(out, teacher, y, self.g[b].to(acc.device), cfg.loss, cfg.temperature, cfg.alpha)
        acc.backward(loss)
        acc.clip_grad_norm_(dmodel.parameters(), cfg.max_grad_norm)
        self.opt.step()
        self.sched.step()
        self.opt.zero_grad(set_to_none=True)
        return float(loss.detach())

    def epoch(self, task, interrupt) -> bool:
        """The rest of the current epoch (a resumed run skips the batches it already took); True: stop early."""
        epoch = self.state["epoch"]
        batches = self.batches(epoch)[self.rank :: self.world][: self.epoch_steps[epoch]]
        stop = self.run(batches[self.state["step"] - sum(self.epoch_steps[:epoch]) :], task, interrupt)
        return self.end_epoch(stop, interrupt)

    def run(self, batches: list[list[int]], task, interrupt) -> bool:
        """Train on ``batches`` in order, checkpointing as set and on Ctrl-C; True: stop early (no dev improvement)."""
        cfg, state, world = self.cfg, self.state, self.world
        stop = False
        t0 = time.perf_counter()
        for b in batches:
            loss = self.step(b)
            self.ema_update()
            state["step"] += 1
            state["pairs_seen"] += len(b) * world
            el = time.perf_counter() - t0
            state["train_seconds"] += el
            if cfg.eval_every and state["step"] % cfg.eval_every == 0:
                self.evaluate()
            stop = state["evals_since_best"] >= cfg.patience
            if stop:
                break
            if (cfg.checkpoint_every and state["step"] % cfg.checkpoint_every == 0) or interrupt.requested:
                self.save_checkpoint()
                interrupt.check()
            # a KeyboardInterrupt raised from here on (e.g. by a progress callback) finds a consistent state
            try:
                task.advance(1, loss=loss, pairs_s=len(b) * world / max(el, 1e-9))
            except KeyboardInterrupt:
                self.save_checkpoint()
                raise
            t0 = time.perf_counter()
        return stop

    def end_epoch(self, stop: bool, interrupt) -> bool:
        """Evaluate (unless just done), count the epoch, checkpoint; True: stop (early, or out of patience)."""
        cfg, state = self.cfg, self.state
        if not stop and (not cfg.eval_every or state["step"] % cfg.eval_every):
            self.evaluate()
        state["epoch"] += 1
        self.save_checkpoint()
        interrupt.check()
        return stop or state["evals_since_best"] >= cfg.patience

    def finish(self, stop: bool) -> dict:
        """The best dev weights back into the model (unless told to keep the last), and the run's state."""
        import torch

        state = self.state
        state["stopped_early"] = stop
        if self.cfg.select_on_dev and self.best_path.exists():
            from qadistill.integrity import sidecar_problem

            problem = sidecar_problem(self.best_path)
            if problem is not None:
                from qadistill.errors import UserInputError

                raise UserInputError(f"the best dev weights {self.best_path} are damaged ({problem})",
                                     f"to start over, delete {self.best_path.parent.parent} and rerun without --resume")
            self.raw.load_state_dict(torch.load(self.best_path, weights_only=True))
        elif self.cfg.ema_decay:  # the last average, not the last step's weights
            self._load_weights(self.ema)
        state["seconds_per_pair"] = state["train_seconds"] / max(state["pairs_seen"], 1)
        state["precision"] = self.precision
        if self.n_main is not None and len(self.qs) > self.n_main:
            state["rehearsal"] = {"ratio": self.cfg.rehearse, "pairs_held": len(self.qs) - self.n_main,
                                  "batches_per_epoch": self.rehearsal_batches, "steps": sum(self.epoch_steps)}
        return state


def with_rehearsal(pairs: list[QAPair], teacher_logits, extra: list[QAPair], extra_logits) -> tuple[list[QAPair], object]:
    """``pairs`` then ``extra`` with their labels dropped (trained on the teachers alone) and their query ids kept
    apart (a query in both is two lists), and the two teacher-logit arrays stacked. The logits must have one column
    layout: the same heads."""
    import numpy as np

    if teacher_logits is None:
        raise ValueError("rehearsal trains on teacher logits, and these pairs have none (gold-only training)")
    a = np.asarray(teacher_logits, dtype=np.float32).reshape(len(pairs), -1)
    b = np.asarray(extra_logits, dtype=np.float32).reshape(len(extra), -1)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"rehearsal logits have {b.shape[1]} columns, the pairs' have {a.shape[1]}: one per head in both")
    moved = [replace(p, query_id=f"rehearse:{p.query_id}", label=None) for p in extra]
    return list(pairs) + moved, np.concatenate([a, b])


def save_hashed(obj, path: Path) -> None:
    """``torch.save(obj)`` to ``path`` through a temp file, with the sha256 of the bytes written beside it
    (``integrity.sidecar_path``): a resumed run refuses a checkpoint whose bytes changed (``integrity.sidecar_problem``),
    which a zip that still opens would hide."""
    import torch

    from qadistill.integrity import file_sha256, sidecar_path, sidecar_record

    tmp, side = path.with_suffix(".tmp"), sidecar_path(path)
    side_tmp = side.with_suffix(".tmp")
    try:
        torch.save(obj, tmp)
        side_tmp.write_text(sidecar_record(file_sha256(tmp), path))
        side.unlink(missing_ok=True)  # a stop between the renames leaves the file unrecorded (loaded as before), never
        tmp.replace(path)  # a good file beside the record of the one it replaced
        side_tmp.replace(side)
    except BaseException as exc:
        full = isinstance(exc, Exception) and _out_of_space(exc, path.parent)  # measured before the temp file goes
        tmp.unlink(missing_ok=True)
        side_tmp.unlink(missing_ok=True)
        if full:
            from qadistill.errors import DiskFullError

            raise DiskFullError(path, f"free space on the disk of {path.parent} (or move QADISTILL_HOME to a bigger one), "
                                "then rerun the same command with --resume: it continues from the last checkpoint kept") from exc
        raise


def _out_of_space(exc: Exception, folder: Path) -> bool:
    """Whether a failed write ran out of disk: an ENOSPC/EDQUOT, or torch's stream writer failing (it says only "unexpected
    pos" or "failed writing") while the disk it wrote to has under 16 MB left."""
    from qadistill.fsutil import is_disk_full, low_on_space

    return is_disk_full(exc) or low_on_space(folder, 16 * 2**20)


def _first_words(text: str, limit: int = 120) -> str:
    """The first line of an exception's text, cut at a word boundary."""
    line = (text.splitlines() or [""])[0]
    return line if len(line) <= limit else line[:limit].rsplit(" ", 1)[0] + " …"


def data_fingerprint(qs: list[str], ps: list[str], y, tl) -> str:
    """sha256 of the training texts, gold labels [N] and teacher logits [N, K] (tensors; ``tl`` may be None)."""
    h = hashlib.sha256()
    for q, p in zip(qs, ps):
        h.update(q.encode("utf-8", "surrogatepass") + b"\x00" + p.encode("utf-8", "surrogatepass") + b"\x01")
    h.update(y.numpy().tobytes() + (b"" if tl is None else tl.numpy().tobytes()))
    return h.hexdigest()


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
