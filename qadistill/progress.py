"""A tiny progress protocol so the core can report progress without knowing about rich (the CLI supplies one)."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def task(self, description: str, total: int, done: int = 0) -> "Task":
        """A task of ``total`` units of which ``done`` are already done (a resumed run): its rate and ETA count only
        the units this process advances."""
        ...


class Task(Protocol):
    def advance(self, n: int = 1, **fields: object) -> None: ...
    def skip(self, n: int) -> None:
        """``n`` units found already done (a stored shard reused): they fill the bar, not the rate or the ETA."""
        ...
    def done(self) -> None: ...


class _NullTask:
    def advance(self, n: int = 1, **fields: object) -> None:
        pass

    def skip(self, n: int) -> None:
        pass

    def done(self) -> None:
        pass


class NullProgress:
    def task(self, description: str, total: int, done: int = 0) -> _NullTask:
        return _NullTask()


def _fields_text(fields: dict) -> str:
    """A task's extra fields as ``k=v`` (floats to 4 significant digits), for the bar and for plain lines alike."""
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items())


HEARTBEAT_S = 60.0  # a plain task also prints a line when this long has passed since its last one


class _PlainTask:
    """Progress as a few plain lines (for a pipe or a log): the start, each quarter with its ETA, a line at the next
    step after HEARTBEAT_S seconds without one (a long first quarter is not silence), the end."""

    def __init__(self, console, description: str, total: int, done: int = 0) -> None:
        import time

        self._c, self._d, self._total = console, description, max(int(total), 0)
        self._n = min(max(int(done), 0), self._total)
        self._worked = self._reused = 0  # units this process advanced / found done (skip)
        self._quarter = self._n * 4 // self._total if self._total else 0
        self._t0 = self._said = time.perf_counter()
        self._first: tuple[float, int] | None = None  # (time, units worked) at the first step
        left = f"{self._total - self._n} of {self._total} to do ({self._n} done before)" if self._n else f"{self._total} to do"
        self._c.print(f"{description}: {left}", markup=False, highlight=False, soft_wrap=True)

    def skip(self, n: int) -> None:
        import time

        self._n += n
        self._reused += n
        self._report({}, time.perf_counter())

    def advance(self, n: int = 1, **fields: object) -> None:
        import time

        now = time.perf_counter()
        self._n += n
        self._worked += n
        if self._first is None:  # the first step carries the start-up (loading models, a resumed run's checkpoint)
            self._first = (now, self._worked)
        self._report(fields, now)

    def _report(self, fields: dict, now: float) -> None:
        if not self._total:
            return
        q = min(4, self._n * 4 // self._total)
        if (self._quarter < q < 4) or (self._n < self._total and now - self._said >= HEARTBEAT_S):
            self._quarter, self._said = max(self._quarter, q), now
            el = now - self._t0
            t1, w1 = self._first or (now, self._worked)
            if self._worked > w1 and now > t1:  # this process's rate after its first step: start-up is not a step's cost
                eta = f"ETA {(now - t1) / (self._worked - w1) * (self._total - self._n):.0f}s"
            elif self._worked:
                eta = f"ETA {el / self._worked * (self._total - self._n):.0f}s"
            else:
                eta = "ETA unknown"  # only reused units so far
            pct = 100 * self._n // self._total
            self._c.print(f"{self._d}: {self._n}/{self._total} ({pct}%) {el:.0f}s elapsed, {eta}{self._reused_text()} "
                          f"{_fields_text(fields)}".rstrip(), markup=False, highlight=False, soft_wrap=True)

    def _reused_text(self) -> str:
        return f" ({self._reused} already done, reused)" if self._reused else ""

    def done(self) -> None:
        import time

        if self._quarter < 4:
            self._quarter = 4
            took = f"done in {time.perf_counter() - self._t0:.0f}s"
            if self._reused and not self._worked:  # the start line's "N to do" turned out to be stored already
                took += f": nothing to do, all {self._reused} already done (reused)"
            else:
                took += self._reused_text()
            self._c.print(f"{self._d}: {took}", markup=False, highlight=False, soft_wrap=True)


class RichProgress:
    """Progress bars on stderr (a terminal), or a few plain lines per task when stderr is a pipe or a file.
    Use as a context manager."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self._console = Console(stderr=True)
        self._plain = not self._console.is_terminal
        self._p = Progress(
            TextColumn("{task.description}", style="bold", markup=False), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[info]}", markup=False),  # descriptions name the user's files: never read as markup
            TimeElapsedColumn(), TimeRemainingColumn(), console=self._console, transient=False,
        )

    def __enter__(self) -> "RichProgress":
        if not self._plain:
            self._p.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._plain:
            self._p.stop()

    def task(self, description: str, total: int, done: int = 0):
        if self._plain:
            return _PlainTask(self._console, description, total, done)
        tid = self._p.add_task(description, total=total, completed=done, info="")  # rich's rate: advances only
        p = self._p

        class _T:
            reused = 0

            def advance(self, n: int = 1, **fields: object) -> None:
                info = _fields_text(fields) + (f" ({self.reused} reused)" if self.reused else "")
                p.update(tid, advance=n, **({"info": info.strip()} if info.strip() else {}))

            def skip(self, n: int) -> None:
                # rich's rate counts what update() adds: reused units go onto the task directly, as done= does
                self.reused += n
                task = next(t for t in p.tasks if t.id == tid)
                task.completed += n
                p.update(tid, info=f"({self.reused} reused)")

            def done(self) -> None:
                p.update(tid, completed=total)

        return _T()
