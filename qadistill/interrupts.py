"""Ctrl-C and SIGTERM, handled the same way everywhere.

* ``install()`` (called once by the CLI) makes SIGINT and SIGTERM raise ``Interrupted`` (a ``KeyboardInterrupt``) in
  the main thread — even when the process was started by a script in the background, where the shell leaves SIGINT
  ignored and a Ctrl-C or ``kill -INT`` would otherwise do nothing.
* ``deferred()`` is for loops whose state must stay consistent (a training step): the first signal only sets a flag
  that the loop reads between steps (it then saves a checkpoint and raises); a second signal raises at once.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """A SIGINT/SIGTERM turned into an exception; ``exit_code`` follows the shell convention (128 + signal)."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + int(self.signum)


def exit_code_of(exc: BaseException) -> int:
    return exc.exit_code if isinstance(exc, Interrupted) else 130


def _raise(signum, frame) -> None:
    raise Interrupted(signum)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def install() -> None:
    """SIGINT/SIGTERM raise ``Interrupted`` in the main thread (no-op elsewhere)."""
    if _main_thread():
        for s in SIGNALS:
            signal.signal(s, _raise)


class Flag:
    """Set by the first signal inside ``deferred()``; ``check()`` raises it at a safe point."""

    def __init__(self) -> None:
        self.signum: int | None = None

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def check(self) -> None:
        if self.signum is not None:
            raise Interrupted(self.signum)


@contextmanager
def deferred() -> Iterator[Flag]:
    """Inside the block the first SIGINT/SIGTERM sets the flag; a second one raises at once. Outside the main thread
    (where signals cannot be caught) the flag simply never rises."""
    flag = Flag()
    if not _main_thread():
        yield flag
        return

    def handler(signum, frame) -> None:
        if flag.signum is not None:
            raise Interrupted(signum)
        flag.signum = signum

    old = {s: signal.signal(s, handler) for s in SIGNALS}
    try:
        yield flag
    finally:
        for s, h in old.items():
            signal.signal(s, h)
