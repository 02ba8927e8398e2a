"""Which shard file holds a key: the one index behind both content-addressed stores (teacher scores, ``qadistill.scores``;
text embeddings, ``qadistill.embcache``), in memory that stays small however much was stored.

A store is a folder of ``.npz`` files, each a few thousand sha256 keys ([n, 32] uint8) with their values (a score
each, or an embedding row each), written atomically and never rewritten. The index keeps, per stored key, only its
first 8 bytes, the file and the row (16 bytes; a dict of Python bytes and floats took ~200), in a few sorted runs
that ``np.searchsorted`` reads (merged as they grow, like a log-structured tree, up to 2^18 keys a run).
A prefix hit is checked against the full key in the file itself. The files' keys and values are read when asked for,
through a cache of whole loaded files bounded in bytes (QADISTILL_SHARD_CACHE_MB; by default 128 for embeddings,
16 for scores), never all held.

A file that does not load (truncated, corrupt), fails the store's own check or disagrees with the sha256 recorded
beside it when it was written (``integrity.sidecar_problem``: a file rewritten with other values that still loads) is deleted, so
its keys are computed again; files another process adds are picked up by the next ``refresh``. Files written before
the record existed have none and are read as before.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from pathlib import Path
from typing import Callable

log = logging.getLogger(__name__)

DEFAULT_CACHE_MB = 128
MAX_RUN = 1 << 18  # keys per sorted run: merging stops there, so a merge never holds more than ~10 MB extra


def load_or_drop(path: Path, load: Callable[[Path], tuple | None]):
    """``load(path)`` -> (keys, values), or None when it raises or rejects the file or its bytes disagree with their
    recorded sha256; a rejected file is deleted (with its record), so its keys are computed again."""
    from qadistill.integrity import drop_recorded, sidecar_problem

    try:
        problem = sidecar_problem(path, required=True)
        got = None if problem else load(path)
    except Exception:  # a truncated or corrupt file: drop it, its keys are computed again
        problem, got = None, None
    if problem:
        log.warning("%s: %s; deleted, its entries are computed again", path, problem)
    if got is None:
        drop_recorded(path)
    return got


def _prefix(keys):
    """The first 8 bytes of each [n, 32] uint8 key, as uint64 [n]."""
    import numpy as np

    return np.ascontiguousarray(keys[:, :8]).view("<u8").reshape(len(keys))


def cache_mb_setting(default_mb: float) -> float:
    """QADISTILL_SHARD_CACHE_MB, a number of megabytes >= 0 (unset: ``default_mb``); anything else is a one-line error."""
    from qadistill.paths import env_number

    return env_number("QADISTILL_SHARD_CACHE_MB", float(default_mb), float, 0, "a number of megabytes (0 or more)")


class ShardIndex:
    """Keys -> (file, row) over the files ``pattern`` matches in ``folder``; ``load(path)`` reads and checks one file,
    returning (keys [n, 32] uint8, values [n, ...]) or None for a bad file."""

    def __init__(self, folder: Path, pattern: str, load: Callable[[Path], tuple | None], cache_mb: float | None = None,
                 default_mb: float = DEFAULT_CACHE_MB) -> None:
        self.folder, self.pattern, self._load = Path(folder), pattern, load
        self._names: list[str] = []  # file id -> file name
        self._seen: set[str] = set()
        self._runs: list[tuple] = []  # (sorted prefixes uint64, file ids int32, rows int32), largest first
        self._cache: OrderedDict = OrderedDict()  # file id -> (keys, values), least recently used first
        self._cached = 0
        mb = cache_mb if cache_mb is not None else cache_mb_setting(default_mb)
        self._budget = int(mb * (1 << 20))

    def __len__(self) -> int:
        return sum(len(r[0]) for r in self._runs)

    def refresh(self) -> None:
        """Index the files not indexed yet (this process's or another's)."""
        if not self.folder.is_dir():
            return
        for f in sorted(self.folder.glob(self.pattern)):
            if f.name not in self._seen:
                got = load_or_drop(f, self._load)
                if got is not None:
                    self.add(f.name, *got)

    def add(self, name: str, keys, values) -> None:
        """Index one file (its keys and values as just written or read)."""
        import numpy as np

        fid = len(self._names)
        self._names.append(name)
        self._seen.add(name)
        prefix = _prefix(keys)
        order = np.argsort(prefix, kind="stable")
        self._runs.append((prefix[order], np.full(len(order), fid, dtype=np.int32), order.astype(np.int32)))
        while len(self._runs) > 1 and len(self._runs[-2][0]) <= len(self._runs[-1][0]) and \
                len(self._runs[-1][0]) + len(self._runs[-2][0]) <= MAX_RUN:
            b, a = self._runs.pop(), self._runs.pop()
            cat = [np.concatenate([x, y]) for x, y in zip(a, b)]
            o = np.argsort(cat[0], kind="stable")
            self._runs.append(tuple(c[o] for c in cat))
        self._remember(fid, (keys, values))

    def lookup(self, keys, out=None):
        """found [n] bool: which keys are stored; ``out[i]`` (when given) gets key i's values where found."""
        import numpy as np

        found = np.zeros(len(keys), dtype=bool)
        for sel, values in self.hits(keys):
            found[sel] = True
            if out is not None:
                out[sel] = values
        return found

    def hits(self, keys):
        """(positions, their values) file by file, for the keys that are stored; every prefix hit is checked on its
        full key (two keys that share 8 bytes, about 1 in 10^8 at a million keys, count as not stored)."""
        import numpy as np

        q = _prefix(keys)
        fid = np.full(len(q), -1, dtype=np.int32)
        row = np.zeros(len(q), dtype=np.int32)
        for pre, fids, rows in self._runs:
            if not len(pre):
                continue
            pos = np.minimum(np.searchsorted(pre, q), len(pre) - 1)
            hit = (fid < 0) & (pre[pos] == q)
            fid[hit], row[hit] = fids[pos[hit]], rows[pos[hit]]
        for f in np.unique(fid[fid >= 0]):
            sel = np.nonzero(fid == f)[0]
            got = self._file(int(f))
            if got is not None:
                sel = sel[(got[0][row[sel]] == keys[sel]).all(axis=1)]
                yield sel, got[1][row[sel]]

    def _file(self, fid: int):
        """(keys, values) of one file, through the bounded cache; None if it no longer loads."""
        if fid in self._cache:
            self._cache.move_to_end(fid)
            return self._cache[fid]
        got = load_or_drop(self.folder / self._names[fid], self._load)
        if got is not None:
            self._remember(fid, got)
        return got

    def _remember(self, fid: int, got: tuple) -> None:
        self._cache[fid] = got
        self._cached += sum(a.nbytes for a in got)
        while self._cached > self._budget and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._cached -= sum(a.nbytes for a in old)
