"""One lock per artifact name, so two runs that would write the same artifact fail at once, not after their work.

The lock is an ``flock`` on ``$QADISTILL_HOME/locks/NAME.lock``: the kernel drops it when the process dies (a crash or
SIGKILL never leaves a stale lock behind), and the file holds the owner's pid for the message.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from typing import Iterator

from qadistill import paths
from qadistill.errors import QadistillError


class BusyError(QadistillError):
    """Another process holds the lock of this name (exit 1: wait for it, or pick another name)."""


@contextmanager
def artifact_lock(name: str, what: str = "artifact", hint: str = "wait for it to finish, or pick another --name",
                  shown: str | None = None) -> Iterator[None]:
    """Hold NAME's lock for the block (``shown``: the name the busy message gives, e.g. the model of "NAME.export")."""
    paths.check_name(name)
    folder = paths.home() / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.lock"
    fh = open(path, "a+")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            owner = fh.read().strip() or "?"
            raise BusyError(
                f"another qadistill process (pid {owner}) is building the {what} '{shown or name}' right now",
                hint,
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        yield
    finally:
        fh.close()  # closing the file releases the lock
