"""The on-disk logit cache: one ``.npy`` per key plus a manifest, under ``$QADISTILL_HOME/cache/logits``.

A key is (teacher fingerprint, data fingerprint, max length, kind of score). Files are written atomically and the
manifest records each file's sha256 and shape, so a truncated or corrupt file is detected and recomputed, never used.
Long computations write finished chunks to ``<key>.parts/`` as they go: an interrupted scoring resumes where it stopped.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Sequence

from qadistill import paths
from qadistill.fsutil import atomic_write_bytes, atomic_write_text


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
    def _locked(self):
        with open(self.root / ".lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _manifest(self) -> dict:
        try:
            return json.loads(self.manifest_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

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
            p.unlink(missing_ok=True)
            return None
        try:
            arr = np.load(io.BytesIO(data), allow_pickle=False)
        except Exception:
            p.unlink(missing_ok=True)
            return None
        if list(arr.shape) != entry["shape"]:
            p.unlink(missing_ok=True)
            return None
        return arr

    def put(self, key: str, arr, meta: dict | None = None) -> None:
        import numpy as np

        buf = io.BytesIO()
        np.save(buf, np.asarray(arr), allow_pickle=False)
        data = buf.getvalue()
        atomic_write_bytes(self.path(key), data)
        with self._locked():
            m = self._manifest()
            m[key] = {"sha256": hashlib.sha256(data).hexdigest(), "shape": list(np.asarray(arr).shape), "created": time.time(), **(meta or {})}
            atomic_write_text(self.manifest_path, json.dumps(m, indent=1, sort_keys=True))

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
        [start, stop). Finished chunks are kept in ``<key>.parts/`` so an interrupted run resumes."""
        import numpy as np

        hit = self.get(key)
        if hit is not None:
            if on_chunk:
                on_chunk(n_items)
            return hit
        parts = self.root / f"{key}.parts"
        parts.mkdir(exist_ok=True)
        chunks = []
        for start in range(0, n_items, chunk_size):
            stop = min(start + chunk_size, n_items)
            cp = parts / f"{start:09d}-{stop:09d}.npy"
            arr = None
            if cp.exists():
                try:
                    arr = np.load(cp, allow_pickle=False)
                    if arr.shape[0] != stop - start:
                        arr = None
                except Exception:
                    arr = None
            if arr is None:
                arr = np.asarray(fn(start, stop))
                buf = io.BytesIO()
                np.save(buf, arr, allow_pickle=False)
                atomic_write_bytes(cp, buf.getvalue())
            chunks.append(arr)
            if on_chunk:
                on_chunk(stop - start)
        full = np.concatenate(chunks, axis=0) if chunks else np.zeros((0,), dtype=np.float32)
        self.put(key, full, meta)
        shutil.rmtree(parts, ignore_errors=True)
        return full

    def entries(self) -> dict:
        return self._manifest()


def length_order(lengths: Sequence[int]) -> list[int]:
    """Indices sorted by length (longest first), so batches hold similar lengths and padding is small."""
    return sorted(range(len(lengths)), key=lambda i: -lengths[i])
