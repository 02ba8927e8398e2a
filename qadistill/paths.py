"""Where qadistill keeps things. Every location can be overridden by an environment variable."""

from __future__ import annotations

import os
import re
from pathlib import Path

APP = "qadistill"


def home() -> Path:
    """QADISTILL_HOME: the user zoo, the store, built artifacts. Default: the platform's user data dir."""
    env = os.environ.get("QADISTILL_HOME")
    if env:
        p = Path(env).expanduser()
        if p.exists() and not p.is_dir():
            from qadistill.errors import QadistillError

            raise QadistillError(f"QADISTILL_HOME {p} is a file, not a folder", "point QADISTILL_HOME at a folder (it is created if missing)")
        return p
    from platformdirs import user_data_dir

    return Path(user_data_dir(APP, appauthor=False))


def cache_dir() -> Path:
    """QADISTILL_CACHE: unpacked packaged models and other re-creatable files (safe to delete).

    Kept apart from QADISTILL_HOME so a fresh home (tests, a second user zoo) does not unpack 400 MB again.
    """
    env = os.environ.get("QADISTILL_CACHE")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir(APP, appauthor=False))


def user_zoo_dir() -> Path:
    return home() / "zoo"


def artifacts_dir() -> Path:
    return home() / "artifacts"


def store_path() -> Path:
    return home() / "qadistill.db"


def hf_hub_cache() -> Path:
    """The Hugging Face Hub cache, resolved the way huggingface_hub does (without importing it)."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    hf_home = os.environ.get("HF_HOME")
    if hf_home:
        return Path(hf_home).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "huggingface" / "hub"


def hf_offline() -> bool:
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in {"1", "true", "yes", "on"}:
            return True
    return False


def data_dir() -> Path | None:
    """QADISTILL_DATA_DIR, else ../shared/data next to the project when that exists (development and CI)."""
    env = os.environ.get("QADISTILL_DATA_DIR")
    if env:
        return Path(env).expanduser()
    here = Path(__file__).resolve().parent.parent
    for cand in (here.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"):
        if cand.is_dir():
            return cand
    return None


# Names that become folders under QADISTILL_HOME (artifacts, locks, work dirs): a safe character set, so a name can
# never climb out of the home ('../x'), hide ('.x') or hold a path separator.
ARTIFACT_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_name(name: str, what: str = "--name") -> str:
    """Return ``name`` when it is safe as a folder name under the home; else raise ``UserInputError`` naming ``what``."""
    from qadistill.errors import UserInputError

    if not isinstance(name, str) or not ARTIFACT_NAME_RE.match(name) or ".." in name:
        raise UserInputError(
            f"{what}: {name!r} is not a valid name (letters, digits, '.', '_', '-'; starts with a letter or digit; "
            "no '..' or path separators; at most 128 characters)",
            "pick a name such as my-student-s42",
        )
    return name


def work_path(final: Path) -> Path:
    """Where a build of the folder ``final`` keeps its checkpoints until the folder is in place: ``NAME.work`` beside it."""
    final = Path(final)
    return final.with_name(final.name + ".work")


def under_home(path: Path) -> bool:
    """True when ``path`` (resolved) lies inside QADISTILL_HOME: the only place qadistill ever deletes."""
    try:
        Path(path).resolve().relative_to(home().resolve())
    except ValueError:
        return False
    return Path(path).resolve() != home().resolve()


def env_number(name: str, default, kind=float, minimum=0, what: str = "a number (0 or more)"):
    """The environment variable NAME read as ``kind`` (unset or blank: ``default``); a value that does not parse, is
    not finite or is under ``minimum`` is a one-line UserInputError naming it, with a value that works."""
    import math

    from qadistill.errors import UserInputError

    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value) or value < minimum:
        raise UserInputError(f"{name}={raw!r} is not {what}", f"unset it, or set e.g. {name}={kind(default):g}")
    return value
