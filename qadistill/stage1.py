"""TMKD stage 1 on a user's unlabelled pairs (`distill --unlabelled FILE`), streamed: memory does not grow with the pool.

The file (JSONL/TSV/CSV/Parquet, ``qadistill.stream``; labels absent or ignored) is read once up front to validate,
count and hash it, before any model loads. Training then reads it shard by shard (``shard_pairs`` consecutive pairs,
cut as `qadistill score` cuts them): each teacher's raw scores for the shard come from the score store (a shard
`score` wrote is found by its key; a missing one is scored and written, as `score` would), are calibrated as the
built-in stage 1 calibrates them, trained on with soft labels only, and dropped. Consecutive rows with one query form
that query's candidate list (what the listwise and margin-mse losses rank); a list that straddles two shards is two lists.

It checkpoints like the labelled loop (``qadistill.train``) and resumes exactly: the checkpoint holds the pass, the
shard and the steps taken in it. The learning rate warms up and decays linearly over the pool's pairs times passes.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from qadistill.errors import DataError, UserInputError
from qadistill.progress import NullProgress, Progress
from qadistill.stream import PairStream
from qadistill.train import TrainConfig, _Loop, rng_states, run_loop, set_rng_states


@dataclass(frozen=True)
class UnlabelledPool:
    """A validated pool file: ``sha256`` is what `qadistill score` records for the same data and shard size."""

    path: str  # absolute: the card and metrics.json say which file, whatever the working folder was
    format: str
    pairs: int
    queries: int  # distinct query texts
    sha256: str
    shard_pairs: int
    stream: PairStream = field(repr=False, compare=False)
    single_lists: int = 0  # runs of one row: a ranking loss has nothing to rank in them
    lists: int = 0  # candidate lists: runs of consecutive rows with one query (a query in two runs has two lists)

    def shard_sizes(self) -> list[int]:
        full, rest = divmod(self.pairs, self.shard_pairs)
        return [self.shard_pairs] * full + ([rest] if rest else [])

    def info(self, passes: int) -> dict:
        return {"path": self.path, "format": self.format, "pairs": self.pairs, "queries": self.queries,
                "lists": self.lists, "sha256": self.sha256, "shard_pairs": self.shard_pairs, "passes": passes}


def scan_pool(spec: str, shard_pairs: int) -> UnlabelledPool:
    """Open, validate (every row: a bad one fails here with its file and line), count and hash an unlabelled pool.
    Distinct queries are counted from an 8-byte hash per candidate list (8 bytes a list in memory, whatever the size
    of the file)."""
    from array import array

    import numpy as np

    from qadistill import data as _data
    from qadistill.scores import content_sha, pair_keys
    from qadistill.stream import open_pairs

    if spec.startswith("hf:") or spec in _data.NAMED:
        raise UserInputError(f"--unlabelled {spec}: expected a file of query–passage pairs, not a named data set",
                             "pass a .jsonl/.tsv/.csv/.parquet file (its labels, if any, are ignored)")
    stream = open_pairs(spec, labels=False)  # labels are ignored here, whatever they hold
    h, n, lists, single, last, run = hashlib.sha256(), 0, 0, 0, None, 0
    starts = array("Q")  # one hash per list
    for qs, ps in stream.chunks(shard_pairs):
        h.update(content_sha(pair_keys(qs, ps)).encode())
        n += len(qs)
        for q in qs:
            if q != last:
                single += run == 1
                lists, last, run = lists + 1, q, 0
                starts.append(int.from_bytes(hashlib.blake2b(q.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little"))
            run += 1
    single += run == 1
    if n == 0:
        raise DataError(f"{spec}: no rows", "the file holds a header only or is empty")
    queries = int(np.unique(np.frombuffer(starts, dtype=np.uint64)).size)
    return UnlabelledPool(str(Path(stream.path).resolve()), stream.format, n, queries, h.hexdigest(), shard_pairs, stream, single, lists)


def grouped_pairs(shard: int, qs: list[str], ps: list[str]) -> list:
    """The shard's pairs, unlabelled, each run of consecutive rows with one query under one query id."""
    from qadistill.data import QAPair

    out, run = [], -1
    for i, (q, p) in enumerate(zip(qs, ps)):
        run += i == 0 or q != qs[i - 1]
        out.append(QAPair(f"u{shard}-{run}", q, f"u{shard}-{i}", p, None))
    return out


class ShardTargets:
    """Calibrated teacher logits of one shard ([n, K] for mkdm, [n, 1] for avg/single), through the score store."""

    def __init__(self, teachers: list, mode: str, shard_pairs: int, progress: Progress | None = None,
                 layout: list | None = None) -> None:
        # layout: with only some teachers labelling the pool, where each head's target comes from (teachers.stage1_layout)
        self.teachers, self.mode, self.shard_pairs, self.layout = teachers, mode, shard_pairs, layout
        self.progress = progress or NullProgress()
        self.cals = [t.calibration(self.progress) for t in teachers]  # first: a missing calibration split fails now
        self.seconds = 0.0

    def fingerprint(self) -> str:
        """The teachers' score spaces, calibrations and the reduction: with the pool's sha256, what a checkpoint
        was trained on."""
        what = [[t.score_space(), None if c is None else [c.a, c.b]] for t, c in zip(self.teachers, self.cals)]
        return hashlib.sha256(json.dumps([what, self.mode] + ([self.layout] if self.layout else [])).encode()).hexdigest()

    def __call__(self, qs: list[str], ps: list[str]):
        from qadistill import parallel
        from qadistill.teachers import spread_targets, stack_targets

        t0 = time.perf_counter()
        with parallel.collective():  # under a launcher one process scores a missing shard, the others read its file
            raw = [t.pair_scores(qs, ps, self.progress, "unlabelled pool", shard_pairs=self.shard_pairs) for t in self.teachers]
        cols = [c.apply(r) if c else r for c, r in zip(self.cals, raw)]
        self.seconds += time.perf_counter() - t0
        return spread_targets(stack_targets(cols, "avg" if self.mode == "avg" else "mkdm"), self.layout)


class _StreamLoop(_Loop):
    """``qadistill.train``'s loop over a pool read shard by shard: the pairs and targets of one shard at a time."""

    def __init__(self, model, tokenizer, pool: UnlabelledPool, targets: ShardTargets, cfg: TrainConfig, work: Path,
                 dev) -> None:
        self._setup(model, tokenizer, cfg, work, dev)
        self._seed()
        self.pool, self.targets = pool, targets
        self.data_fp = hashlib.sha256(f"{pool.sha256}:{pool.shard_pairs}:{targets.fingerprint()}".encode()).hexdigest()
        # the progress bar's total (a ranking loss packs whole lists, so a shard may take a few more steps)
        self.steps_per_epoch = sum(math.ceil(n / cfg.batch_size / self.world) for n in pool.shard_sizes())
        self.total = self.steps_per_epoch * cfg.epochs
        self.state.update(shard=0, shard_start=0)
        self._optimizer()

    def _schedule(self) -> None:
        import torch

        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda _: self._lr_factor())

    def _lr_factor(self) -> float:
        """Linear warm-up then decay over the pairs of every pass (a shard's batch count is known only when read)."""
        done = self.state["pairs_seen"] / max(self.pool.pairs * self.cfg.epochs, 1)
        warm = self.cfg.warmup_ratio
        if done < warm:
            return done / warm
        return max(0.0, (1.0 - done) / max(1.0 - warm, 1e-9))

    def epoch(self, task, interrupt) -> bool:
        """The rest of the current pass: shard by shard from the one the state names (a resumed run skips the shards
        and the steps it already took). True: stop early."""
        state, stop = self.state, False
        for i, (qs, ps) in enumerate(self.pool.stream.chunks(self.pool.shard_pairs)):
            if i < state["shard"]:
                continue
            self._shard(i, qs, ps)
            seed = (self.cfg.seed * 1000 + state["epoch"]) * 1_000_003 + i
            batches = self.seeded_batches(seed)
            mine = batches[self.rank :: self.world][: math.ceil(len(batches) / self.world)]
            stop = self.run(mine[state["step"] - state["shard_start"] :], task, interrupt)
            if stop:
                break
            state.update(shard=i + 1, shard_start=state["step"])
        if not stop:
            state.update(shard=0, shard_start=state["step"])
        return self.end_epoch(stop, interrupt)

    def _shard(self, i: int, qs: list[str], ps: list[str]) -> None:
        """Hold shard ``i``: its pairs and teacher targets. Scoring may load a teacher (whose missing weights are drawn
        at random), so the random states are put back: a resumed run draws what the uninterrupted one drew."""
        saved = rng_states()
        logits = self.targets(qs, ps)
        set_rng_states(saved)
        self._tensors(grouped_pairs(i, qs, ps), logits)


def rehearsal_sample(pool: UnlabelledPool, targets: ShardTargets, want: int, seed: int) -> tuple[list, object]:
    """About ``want`` pairs of the pool for the labelled stage to rehearse (``[distill] rehearse``): whole shards in a
    seeded order until they hold ``want`` (all of them for a smaller pool), read in one pass and labelled through the
    score store as stage 1 labels them. Returns the pairs (each shard's lists under ids of their own, as
    ``grouped_pairs`` names them) and their targets [n, K]."""
    import random

    import numpy as np

    sizes = pool.shard_sizes()
    order = list(range(len(sizes)))
    random.Random(seed).shuffle(order)
    chosen, held = set(), 0
    for i in order:
        if held >= want:
            break
        chosen.add(i)
        held += sizes[i]
    pairs, logits = [], []
    for i, (qs, ps) in enumerate(pool.stream.chunks(pool.shard_pairs)):
        if i in chosen:
            pairs += grouped_pairs(i, qs, ps)
            logits.append(np.asarray(targets(qs, ps), dtype=np.float32))
    return pairs, np.concatenate(logits)


def train_stream(model, tokenizer, pool: UnlabelledPool, targets: ShardTargets, cfg: TrainConfig, work: Path, dev=None,
                 resume: bool = False, progress: Progress | None = None, label: str = "stage 1 (unlabelled)") -> dict:
    """Train ``model`` in place on the pool, ``cfg.epochs`` passes; returns the run state (as ``train.train``)."""
    return run_loop(_StreamLoop(model, tokenizer, pool, targets, cfg, Path(work), dev), resume, progress, label)
