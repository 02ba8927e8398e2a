"""Data-parallel teacher scoring under `torchrun` / `accelerate launch`: which process this is, its contiguous share of
a list of shards, and a wait for the shards the other processes write.

Sharing is opt-in (``collective()``): only code that every process runs in the same order (`score`, the teacher
scoring of `distill`) splits work between processes. Anything else scores everything itself, as before, so a scorer
called by rank 0 alone can never wait for shards no other process will write.

The processes share nothing but the file system: each writes its own shard files (atomically, content-addressed) and
waits until the others' files are present. No collective op runs while scoring, so a slow share never trips a
process-group timeout, and a process that dies makes torchrun stop the others.
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence, TypeVar

T = TypeVar("T")
_on = threading.local()


def _launched() -> bool:
    """True under a launcher that started several processes (torchrun and accelerate launch set WORLD_SIZE)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


def state():
    """Accelerate's ``PartialState`` (CPU-only machines get gloo, as `distill` sets it up)."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def world() -> tuple[int, int]:
    """(this process's index, number of processes); (0, 1) without a launcher, and then accelerate is not imported."""
    if not _launched():
        return 0, 1
    s = state()
    return s.process_index, s.num_processes


def is_main() -> bool:
    return world()[0] == 0


@contextmanager
def collective() -> Iterator[None]:
    """Within this block every process runs the same scoring calls in the same order: shards are split between them."""
    before = getattr(_on, "depth", 0)
    _on.depth = before + 1
    try:
        yield
    finally:
        _on.depth = before


def sharing() -> bool:
    """Whether work is split between processes here (inside ``collective()`` with more than one process)."""
    return getattr(_on, "depth", 0) > 0 and world()[1] > 1


def share(items: Sequence[T]) -> list[T]:
    """This process's contiguous share of ``items`` (accelerate's ``split_between_processes``: the first
    ``len % n`` processes get one more); all of them when not sharing."""
    items = list(items)
    if not sharing():
        return items
    with state().split_between_processes(items) as mine:
        return list(mine)


def wait_until(done: Callable[[], bool], what: str, poll: float = 0.2, timeout: float | None = None) -> None:
    """Poll ``done()`` until it is true (another process is writing what it checks for). ``timeout``: seconds, else
    QADISTILL_WAIT_TIMEOUT, else no limit (torchrun stops every process when one fails)."""
    from qadistill.errors import QadistillError

    if timeout is None and os.environ.get("QADISTILL_WAIT_TIMEOUT"):
        timeout = float(os.environ["QADISTILL_WAIT_TIMEOUT"])
    t0 = time.monotonic()
    while not done():
        if timeout is not None and time.monotonic() - t0 > timeout:
            raise QadistillError(f"waited {timeout:.0f}s for {what} from the other processes",
                                 "check that every process of the launch is still running, then run the command again")
        time.sleep(poll)
