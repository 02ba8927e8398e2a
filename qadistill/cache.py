"""The on-disk logit cache: one ``.npy`` per key plus a manifest, under ``$QADISTILL_HOME/cache/logits``.

A key is (teacher fingerprint, data fingerprint, max length, kind of score). Files are written atomically and the
manifest records each file's sha256 and shape, so a truncated or corrupt file is detected and recomputed, never used.
Long computations write finished chunks to ``<key>.parts/`` as they go: an interrupted scoring resumes where it stopped,
and a per-key lock (``.locks/<key>.lock``) makes a second process wait for the first instead of doing the work twice.
A corrupt manifest is moved aside (``manifest.json.corrupt-<time>``) and rebuilt from the files, never silently dropped.
Each ``.npy`` (and each finished chunk) also has its sha256 recorded beside it (``NAME.npy.sha256``,
``integrity.write_recorded``): a rebuild drops a file whose bytes changed since it was written, and a resumed computation
recomputes such a chunk, so two faults at once (a corrupt manifest and an edited file) are caught too. Files written
before the record existed have none and are trusted as before.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import logging
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Sequence

from qadistill import paths
from qadistill.fsutil import atomic_write_text
from qadistill.integrity import drop_recorded, sidecar_problem, write_recorded

log = logging.getLogger(__name__)


def cache_root() -> Path:
    return paths.home() / "cache" / "logits"


def make_key(*parts: object) -> str:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:24]


class LogitCache:
    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root else cache_root()
        self.root.mkdir(parents=True, exist_ok=True)
        self.manifest_path = self.root / "manifest.json"

    @contextmanager
    def _locked(self, lock: Path | None = None) -> Iterator[None]:
        """An exclusive flock: the manifest's (``.lock``) or another lock file. Not re-entrant: never nest the same."""
        lock = lock or self.root / ".lock"
        lock.parent.mkdir(parents=True, exist_ok=True)
        with open(lock, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _key_lock(self, key: str):
        """Held while one process computes ``key``: a second one waits, then reads the result."""
        return self._locked(self.root / ".locks" / f"{key}.lock")

    # -- the manifest ---------------------------------------------------------------------------------------------------
    def _read_manifest(self) -> dict | None:
        """The manifest; {} when there is none yet, None when it is corrupt."""
        try:
            m = json.loads(self.manifest_path.read_text())
        except FileNotFoundError:
            return {}
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None
        if not isinstance(m, dict) or not all(isinstance(v, dict) and "sha256" in v and "shape" in v for v in m.values()):
            return None
        return m

    def _manifest(self) -> dict:
        m = self._read_manifest()
        if m is None:
            with self._locked():
                m = self._manifest_locked()
        return m

    def _manifest_locked(self) -> dict:
        """The manifest, recovered first when it is corrupt; call with the manifest lock held."""
        m = self._read_manifest()
        return m if m is not None else self._recover()

    def _recover(self) -> dict:
        """Move a corrupt manifest aside (manifest.json.corrupt-<time>) and rebuild it from the .npy files on disk
        (sha256 and shape recomputed; a file that does not load is dropped)."""
        aside = self.root / f"manifest.json.corrupt-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        os.replace(self.manifest_path, aside)
        entries = {}
        for f in sorted(self.root.glob("*.npy")):
            problem = sidecar_problem(f, required=True)
            entry = None if problem else _entry_for_file(f)
            if problem:
                log.warning("logit cache file %s: %s; deleted, it is computed again when needed", f.name, problem)
            if entry is None:
                drop_recorded(f)
            else:
                entries[f.stem] = entry
        atomic_write_text(self.manifest_path, json.dumps(entries, indent=1, sort_keys=True))
        log.warning("logit cache manifest %s was corrupt: moved to %s; %d entries rebuilt from the files",
                    self.manifest_path, aside.name, len(entries))
        return entries

    def path(self, key: str) -> Path:
        return self.root / f"{key}.npy"

    def get(self, key: str):
        """The cached array, or None when absent, truncated or corrupt (a bad file is deleted)."""
        import numpy as np

        entry = self._manifest().get(key)
        p = self.path(key)
        if entry is None or not p.exists():
            return None
        data = p.read_bytes()
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            drop_recorded(p)
            return None
        try:
            arr = np.load(io.BytesIO(data), allow_pickle=False)
        except Exception:
            drop_recorded(p)
            return None
        if list(arr.shape) != entry["shape"]:
            drop_recorded(p)
            return None
        return arr

    def put(self, key: str, arr, meta: dict | None = None) -> None:
        """Write the array, then its manifest entry; on any error (a full disk included) nothing is left behind."""
        import numpy as np

        arr = np.asarray(arr)
        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=False)
        data = buf.getvalue()
        digest = write_recorded(self.path(key), data)
        try:
            with self._locked():
                m = self._manifest_locked()
                m[key] = {"sha256": digest, "shape": list(arr.shape), "created": time.time(), **(meta or {})}
                atomic_write_text(self.manifest_path, json.dumps(m, indent=1, sort_keys=True))
        except BaseException:
            drop_recorded(self.path(key))  # a file the manifest does not vouch for is never read: free it
            raise

    def compute(
        self,
        key: str,
        n_items: int,
        chunk_size: int,
        fn: Callable[[int, int], object],
        meta: dict | None = None,
        on_chunk: Callable[[int], None] | None = None,
    ):
        """Return the cached array for ``key`` or compute it chunk by chunk: ``fn(start, stop)`` gives the rows
        [start, stop). Finished chunks are kept in ``<key>.parts/`` so an interrupted run resumes. One process at a time
        computes a key (a per-key lock): a second one waits and then reads the first one's result."""
        hit = self.get(key)
        if hit is None:
            with self._key_lock(key):
                hit = self.get(key)  # another process may have computed it while this one waited
                if hit is None:
                    return self._compute(key, n_items, chunk_size, fn, meta, on_chunk)
        if on_chunk:
            on_chunk(n_items)
        return hit

    def _compute(self, key: str, n_items: int, chunk_size: int, fn: Callable[[int, int], object], meta: dict | None,
                 on_chunk: Callable[[int], None] | None):
        import numpy as np

        parts = self.root / f"{key}.parts"
        parts.mkdir(exist_ok=True)
        chunks = []
        for start in range(0, n_items, chunk_size):
            stop = min(start + chunk_size, n_items)
            cp = parts / f"{start:09d}-{stop:09d}.npy"
            arr = None
            if cp.exists():
                try:
                    problem = sidecar_problem(cp, required=True)
                    if problem:
                        log.warning("logit cache chunk %s: %s; computed again", cp, problem)
                    else:
                        arr = np.load(cp, allow_pickle=False)
                        if arr.shape[0] != stop - start:
                            arr = None
                except Exception:
                    arr = None
            if arr is None:
                arr = np.asarray(fn(start, stop))
                buf = io.BytesIO()
                np.save(buf, arr, allow_pickle=False)
                write_recorded(cp, buf.getvalue())
            chunks.append(arr)
            if on_chunk:
                on_chunk(stop - start)
        full = np.concatenate(chunks, axis=0) if chunks else np.zeros((0,), dtype=np.float32)
        self.put(key, full, meta)
        shutil.rmtree(parts, ignore_errors=True)
        return full

    def entries(self) -> dict:
        return self._manifest()


def _entry_for_file(f: Path) -> dict | None:
    """A manifest entry for an .npy file, or None when it does not load."""
    import numpy as np

    try:
        data = f.read_bytes()
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception:
        return None
    if not isinstance(arr, np.ndarray):
        return None
    return {"sha256": hashlib.sha256(data).hexdigest(), "shape": list(arr.shape), "created": f.stat().st_mtime, "recovered": True}


def length_order(lengths: Sequence[int]) -> list[int]:
    """Indices sorted by length (longest first), so batches hold similar lengths and padding is small."""
    return sorted(range(len(lengths)), key=lambda i: -lengths[i])
