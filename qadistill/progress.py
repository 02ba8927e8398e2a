"""A tiny progress protocol so the core can report progress without knowing about rich (the CLI supplies one)."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def task(self, description: str, total: int) -> "Task": ...


class Task(Protocol):
    def advance(self, n: int = 1, **fields: object) -> None: ...
    def done(self) -> None: ...


class _NullTask:
    def advance(self, n: int = 1, **fields: object) -> None:
        pass

    def done(self) -> None:
        pass


class NullProgress:
    def task(self, description: str, total: int) -> _NullTask:
        return _NullTask()


class RichProgress:
    """Progress bars on stderr. Use as a context manager."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self._p = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True), transient=False,
        )

    def __enter__(self) -> "RichProgress":
        self._p.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._p.stop()

    def task(self, description: str, total: int):
        tid = self._p.add_task(description, total=total, info="")
        p = self._p

        class _T:
            def advance(self, n: int = 1, **fields: object) -> None:
                info = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items())
                p.update(tid, advance=n, **({"info": info} if fields else {}))

            def done(self) -> None:
                p.update(tid, completed=total)

        return _T()
