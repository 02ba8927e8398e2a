"""The one place where core errors become what a user reads: a one-line message and a hint on stderr, an exit code.

With QADISTILL_DEBUG=1 the original traceback is shown instead.
"""

from __future__ import annotations

import errno
import functools
import os
import sys
from pathlib import Path
from typing import Callable, TypeVar

import typer

from qadistill.errors import DiskFullError, QadistillError
from qadistill.fsutil import is_disk_full, low_on_space

F = TypeVar("F", bound=Callable)

# Errors that do not come from qadistill itself, mapped to a message and a hint. Checked in order.
FOREIGN_ERRORS: list[tuple[type[BaseException], str, str]] = [
    (PermissionError, "permission denied: {exc.filename}", "check the folder's permissions or set QADISTILL_HOME"),
    (FileNotFoundError, "file not found: {exc.filename}", "check the path"),
    (MemoryError, "out of memory", "lower --batch-size or --max-length"),
]


def os_message(exc: OSError) -> str:
    where = " ".join(str(f) for f in (exc.filename, exc.filename2) if f)
    link = _broken_link(exc.filename) if exc.errno in (errno.EEXIST, errno.ENOTDIR, errno.ENOENT, errno.ELOOP) else None
    if link:
        return link
    if where and exc.errno in (errno.EEXIST, errno.ENOTDIR):  # mkdir over a file, or a file on the way to a path
        return f"{where}: a file stands where a folder is needed" + (" (on the way to it)" if exc.errno == errno.ENOTDIR else "")
    if where and exc.errno == errno.EISDIR:
        return f"{where}: a folder stands where a file is needed"
    return f"{exc.strerror or type(exc).__name__}" + (f": {where}" if where else f" ({exc})")


def _broken_link(path) -> str | None:
    """What is wrong when ``path`` or a folder on the way to it is a symbolic link that leads nowhere: dangling, or a
    loop (mkdir over one says "File exists", as if a file stood there)."""
    if not path:
        return None
    p = Path(os.fsdecode(path)).absolute()
    for q in [p, *p.parents]:
        if q.is_symlink():
            try:
                q.resolve(strict=True)
            except RuntimeError:
                return f"{q} is a symbolic link in a loop"
            except OSError as exc:
                if getattr(exc, "errno", None) == errno.ELOOP:
                    return f"{q} is a symbolic link in a loop"
                return f"{q} is a symbolic link to {os.readlink(q)}, which does not exist"
    return None


def os_hint(exc: OSError) -> str:
    if _broken_link(exc.filename):
        return "point the link at an existing folder, or set QADISTILL_HOME (or the path you gave) to a real folder"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "check the folder's permissions, or set QADISTILL_HOME to a writable folder"
    if exc.errno in (errno.EEXIST, errno.ENOTDIR, errno.EISDIR) and (exc.filename or exc.filename2):
        return "move it out of the way or choose another path (QADISTILL_HOME for qadistill's own folders), then run the command again"
    return "check the path and the disk, then run the command again"


def _disk_full(exc: BaseException) -> bool:
    text = str(exc)
    if "No space left on device" in text or "os error 28" in text or "Disk quota exceeded" in text:
        return True
    if "failed writing" in text or "file write failed" in text:  # torch's PytorchStreamWriter says no more than that
        return low_on_space(paths_home())
    return False


def _path_in(exc: BaseException) -> str | None:
    import re

    m = re.search(r"(/[^\s'\":]+)", str(exc))
    return m.group(1) if m else None


def paths_home() -> str:
    from qadistill import paths

    home = paths.home()
    while not home.exists() and home != home.parent:
        home = home.parent
    return str(home)


def debug() -> bool:
    return os.environ.get("QADISTILL_DEBUG", "").strip().lower() in {"1", "true", "yes", "on"}


def report(message: str, hint: str | None) -> None:
    from rich.console import Console
    from rich.markup import escape

    err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)
    err.print(f"[bold red]error:[/] {escape(message)}")
    if hint:
        err.print(f"[dim]hint:[/] {escape(hint)}")


def handle_errors(func: F) -> F:
    """Decorate every command with this: it maps exceptions to a message + hint + exit code."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except QadistillError as exc:
            if debug():
                raise
            report(exc.message, exc.hint)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt as exc:
            from qadistill.interrupts import exit_code_of

            # a command with something to resume says so itself (score, distill, teach, export): here, nothing is
            report("interrupted", "run the same command again")
            raise typer.Exit(exit_code_of(exc)) from None
        except Exception as exc:
            if debug():
                raise
            import sqlite3

            if isinstance(exc, sqlite3.Error):  # a store damaged in a way opening it did not show
                from qadistill import paths

                if "disk is full" in str(exc):  # SQLITE_FULL: the store is fine, its disk is not
                    full = DiskFullError(paths.store_path())
                    report(full.message, full.hint)
                    raise typer.Exit(full.exit_code) from None
                report(f"store {paths.store_path()} is damaged or from another program: {type(exc).__name__}: {exc}",
                       "restore it from a qadistill.db.bak-before-* backup next to it, or move it to a new name to start a fresh store")
                raise typer.Exit(1) from None
            if is_disk_full(exc) or _disk_full(exc):  # a raw ENOSPC outside fsutil, or torch/safetensors' wrapping of it
                full = DiskFullError(getattr(exc, "filename", None) or _path_in(exc) or paths_home())
                report(full.message, full.hint)
                raise typer.Exit(full.exit_code) from None
            for etype, msg, hint in FOREIGN_ERRORS:
                if isinstance(exc, etype):
                    report(msg.format(exc=exc), hint)
                    raise typer.Exit(1) from None
            if isinstance(exc, OSError):
                report(os_message(exc), os_hint(exc))
                raise typer.Exit(1) from None
            report(f"unexpected {type(exc).__name__}: {exc}", "rerun with QADISTILL_DEBUG=1 for the traceback and report it")
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def stdout_is_tty() -> bool:
    return sys.stdout.isatty()
