"""Atomic file writes: write to a temp path in the same folder, fsync, then rename into place."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path

from qadistill.errors import DiskFullError


DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in DISK_FULL


def low_on_space(folder: Path, below: int = 64 * 2**20) -> bool:
    """Whether the disk holding ``folder`` has under ``below`` bytes free: how a write that failed without an errno
    (torch's stream writer, a library's own temp copy) is told to be a full disk. False when it cannot be measured."""
    try:
        return shutil.disk_usage(folder).free < below
    except OSError:
        return False


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically; the temp file is removed on any error, and a full disk raises
    ``DiskFullError`` naming ``path``."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600: the file gets the mode a plain open() would give
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if is_disk_full(exc):
            raise DiskFullError(path) from exc
        raise


def plain_modes(folder: Path) -> None:
    """Give every file in ``folder`` the mode a plain open() would (0644 under the usual umask): transformers' safetensors
    writer leaves model.safetensors at 0600, unreadable to the rest of a group sharing the folder."""
    mode = 0o666 & ~_umask()
    for f in Path(folder).iterdir():
        if f.is_file() and not f.is_symlink() and (f.stat().st_mode & 0o777) != mode:
            os.chmod(f, mode)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


MODEL_MARKERS = ("qadistill_checksums.json", "metrics.json", "qadistill_export.json")


def check_folder_path(folder: Path, what: str = "--out", hint: str = "pick a new folder name") -> None:
    """``folder`` is a folder or can become one: refused in one line before any work when it, or the nearest of its
    parents that exists, is a file (creating it would fail only once the work is done)."""
    from qadistill.errors import UserInputError

    folder = Path(folder)
    if folder.exists():
        if not folder.is_dir():
            raise UserInputError(f"{what} {folder} is a file, not a folder", hint)
        return
    parent = _nearest_existing_parent(folder)
    if parent is not None and not parent.is_dir():
        raise UserInputError(f"{what} {folder}: {parent} is a file, not a folder", hint)


def _nearest_existing_parent(folder: Path) -> Path | None:
    return next((p for p in Path(folder).absolute().parents if p.exists()), None)


def check_can_create(folder: Path, what: str = "--out", hint: str = "pick a folder you can write to") -> None:
    """``folder`` can be written where it will go: a temp folder is made (and removed) beside it, in the nearest
    parent that exists, so a read-only or special place is refused before any work, not after it."""
    import tempfile

    from qadistill.errors import UserInputError

    folder = Path(folder)
    check_folder_path(folder, what, hint)
    parent = _nearest_existing_parent(folder)
    if parent is None:
        return
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".qadistill-probe-", dir=parent))
    except OSError as exc:
        raise UserInputError(f"{what} {folder}: cannot create it in {parent} ({exc.strerror or exc})", hint) from None


def check_replaceable(folder: Path, what: str = "--out") -> None:
    """A folder qadistill may replace: absent, empty, or one it wrote (a model folder with its own files). Anything
    else — a user's folder of other files — is refused before any work, never moved aside and deleted."""
    from qadistill.errors import UserInputError

    folder = Path(folder)
    check_folder_path(folder, what)
    if folder.is_dir() and any(folder.iterdir()) and not any((folder / m).is_file() for m in MODEL_MARKERS):
        raise UserInputError(f"{what} {folder} exists and is not a qadistill model folder: replacing it would delete "
                             "its files", "pick a new or empty folder")
    extra = _unrecorded_files(folder)
    if extra:
        shown = ", ".join(extra[:3]) + (f" and {len(extra) - 3} more" if len(extra) > 3 else "")
        raise UserInputError(f"{what} {folder} holds files qadistill did not write ({shown}): replacing the folder "
                             "would delete them", f"move them out of {folder} first, or pick another folder")


def _unrecorded_files(folder: Path) -> list[str]:
    """Files of a model folder that its checksum record does not list (a user's notes put there after the build);
    [] for a folder without a record, or one whose record does not read (the integrity check speaks for those)."""
    from qadistill.errors import ModelFolderError
    from qadistill.integrity import folder_files, read_checksums

    if not folder.is_dir():
        return []
    try:
        man = read_checksums(folder)
    except ModelFolderError:
        return []
    if man is None:
        return []
    rels = (p.relative_to(folder).as_posix() for p in folder_files(folder))
    return [r for r in rels if r not in man["files"]]


def replace_dir(tmp_dir: Path, final: Path) -> None:
    """Move a fully written temp folder into place (replacing an older one)."""
    final = Path(final)
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
        os.replace(tmp_dir, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp_dir, final)
