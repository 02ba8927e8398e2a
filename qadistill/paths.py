"""Where qadistill keeps things. Every location can be overridden by an environment variable."""

from __future__ import annotations

import os
from pathlib import Path

APP = "qadistill"


def home() -> Path:
    """QADISTILL_HOME: the user zoo, the store, built artifacts. Default: the platform's user data dir."""
    env = os.environ.get("QADISTILL_HOME")
    if env:
        return Path(env).expanduser()
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
