"""Runs `qadistill ARGS...` in this process with its teachers' forward passes counted, so a test can see how many
pairs each process of a launch scored (and SIGKILL it after its Nth score shard). Usage:
    [torchrun --nproc_per_node N] python score_worker.py score|distill ARGS...
Environment: SCORE_COUNT_DIR (required): each process appends "cross ROWS" / "bi ROWS" per forward pass to
SCORE_COUNT_DIR/<pid>.txt; SCORE_KILL_AFTER=K: SIGKILL this process right after it wrote its Kth score shard."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path


def _log(kind: str, rows: int) -> None:
    with open(Path(os.environ["SCORE_COUNT_DIR"]) / f"{os.getpid()}.txt", "a") as fh:
        fh.write(f"{kind} {rows} {os.environ.get('RANK', '0')}\n")


def patch() -> None:
    from qadistill import backends, scores

    run, vectors, write = backends.TorchBackend.run, backends.BiEncoderTorchBackend._vectors, scores.ScoreStore.write

    def counted_run(self, enc):
        _log("cross", len(enc["input_ids"]))
        return run(self, enc)

    def counted_vectors(self, enc):
        _log("bi", len(enc["input_ids"]))
        return vectors(self, enc)

    written = []

    def killing_write(self, key, keys, raw):
        sha = write(self, key, keys, raw)
        written.append(key)
        if len(written) == int(os.environ.get("SCORE_KILL_AFTER", "0")):
            os.kill(os.getpid(), signal.SIGKILL)
        return sha

    backends.TorchBackend.run = counted_run
    backends.BiEncoderTorchBackend._vectors = counted_vectors
    scores.ScoreStore.write = killing_write


if __name__ == "__main__":
    Path(os.environ["SCORE_COUNT_DIR"]).mkdir(parents=True, exist_ok=True)
    patch()
    from qadistill.cli import main

    sys.argv = ["qadistill", *sys.argv[1:]]
    main()
