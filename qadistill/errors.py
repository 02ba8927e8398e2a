"""One family of typed errors. The CLI maps each to a one-line message plus a hint (the next command to run).

The core raises these and never prints; ``qadistill.cli.errors`` renders them.
"""

from __future__ import annotations


class QadistillError(Exception):
    """Base of every error qadistill raises on purpose.

    ``message`` says what is wrong (one line, naming the file/field/name);
    ``hint`` says what to do next, ideally a command to run.
    ``exit_code`` is 2 for bad input from the user, 1 for a broken environment.
    """

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:  # pragma: no cover - trivial
        return self.message


class UserInputError(QadistillError):
    """Bad input from the user: a flag, a file, a name."""

    exit_code = 2


class RecipeError(UserInputError):
    """A recipe file that cannot be read or does not validate."""

    def __init__(self, path: object, field: str | None, problem: str, hint: str | None = None) -> None:
        where = f"{path}" + (f": field '{field}'" if field else "")
        hint = hint or "fix the recipe and try again; `qadistill zoo show quickstart` shows a valid one"
        super().__init__(f"{where}: {problem}", hint)
        self.path = path
        self.field = field
        self.problem = problem


class UnknownNameError(UserInputError, KeyError):
    """A zoo name that is not in the registry."""

    def __init__(self, name: str, kind: str = "model", suggestions: list[str] | None = None, actual: str | None = None) -> None:
        suggestions = suggestions or []
        # actual: what the name is instead (a name of another kind is not "unknown" to the user who built it)
        msg = f"'{name}' is {actual}, not a {kind}" if actual else f"unknown {kind} '{name}'"
        if suggestions:
            msg += " (did you mean " + ", ".join(f"'{s}'" for s in suggestions) + "?)"
        super().__init__(msg, "run `qadistill zoo list` to see every name")
        self.name = name
        self.suggestions = suggestions

    def __str__(self) -> str:  # KeyError would quote the message otherwise
        return self.message


class NameConflictError(UserInputError):
    """Adding a recipe whose name is already taken."""


class SourceError(QadistillError):
    """A model source that cannot be resolved to a folder (package missing, Hub unreachable, folder incomplete)."""


class ModelFolderError(SourceError, UserInputError):
    """A model folder that is damaged or was edited: its config and weights disagree, or a file no longer matches the
    checksum recorded when it was built or pulled. Bad input (exit 2), never a silently wrong score."""

    exit_code = 2


class StoreError(QadistillError):
    """The SQLite store is unreadable or from a newer qadistill."""


class DataError(UserInputError):
    """A dataset that cannot be loaded (missing file/column, bad label...)."""


class ExportError(QadistillError):
    """An export, optimization or quantization that cannot be done (with the way out in the hint)."""


class ParityError(QadistillError):
    """An exported variant that drifts from PyTorch by more than the allowed bound (with --strict)."""


class InterruptedRunError(QadistillError):
    """A run stopped by Ctrl-C or SIGTERM after saving what it had (exit 130, or 128 + the signal)."""

    def __init__(self, message: str, hint: str | None = None, cause: BaseException | None = None) -> None:
        super().__init__(message, hint)
        from qadistill.interrupts import exit_code_of

        self.exit_code = exit_code_of(cause) if cause is not None else 130


class MissingPackageError(QadistillError):
    """An optional package the asked-for feature needs is not installed: the environment, not the input (exit 1)."""


class DiskFullError(QadistillError):
    """A write that ran out of disk space (ENOSPC) or quota (EDQUOT); nothing half-written is left behind."""

    def __init__(self, path: object, hint: str | None = None) -> None:
        super().__init__(
            f"no space left on the disk while writing {path}",
            hint or "free some space on that disk, or set QADISTILL_HOME to a folder on a bigger disk and run again",
        )
        self.path = path


class ExportInputError(ExportError, UserInputError):
    """An export asked of something that is not an exportable relevance-model folder: bad input (exit 2)."""

    exit_code = 2


class ScoreError(QadistillError):
    """A model produced NaN or inf scores: no metric is computed from them (exit 1)."""
