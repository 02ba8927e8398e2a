"""Content-addressed teacher scores: one raw score per (query, passage) pair, stored in shards that `score` and
`distill` (and `eval`) share, so a pair is scored once per teacher and max length, whichever command asked first.

Layout: ``$QADISTILL_HOME/cache/scores/<space>/<shard key>.npz``. A *space* is one teacher at one max length (its
fingerprint: architecture, name, weights; a bi-encoder's pooling too). A shard holds ``keys`` ([n, 32] uint8, the
sha256 of each pair's texts) and ``raw`` ([n] float32, uncalibrated: a cross-encoder's logit, a bi-encoder's cosine).
Its key is ``make_key("shard", space, sha256 of its pair keys in order)``: the same pairs, in the same order, by the
same teacher, always find the same file. Files are written atomically and never rewritten, so processes (the ranks of
a launch, two commands at once) add to one space without a shared manifest; a shard that does not load, or holds
other pairs than its key says, is deleted and scored again.

Lookups go by shard key first (the same data cut the same way: a file read per shard), then by pair through an index
of every shard in the space (the data cut another way: a subset, a split of a scored file, another --shard-size).
That index is compact (``qadistill.shardindex``: 16 bytes a stored pair, the scores read from their files when asked
for), so memory stays flat however many pairs the space holds.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from qadistill import paths
from qadistill.cache import make_key

DEFAULT_SHARD_PAIRS = 4096


def shard_pairs_default() -> int:
    """QADISTILL_SHARD_PAIRS: pairs per shard (the resume and data-parallel granularity); default 4096."""
    return paths.env_number("QADISTILL_SHARD_PAIRS", DEFAULT_SHARD_PAIRS, int, 1, "a positive integer")


def scores_root() -> Path:
    return paths.home() / "cache" / "scores"


def pair_key(query: str, passage: str) -> bytes:
    """sha256 of one pair's texts (length-prefixed, so no two pairs share a key)."""
    q = query.encode("utf-8", "surrogatepass")
    p = passage.encode("utf-8", "surrogatepass")
    return hashlib.sha256(len(q).to_bytes(8, "little") + q + p).digest()


def pair_keys(queries: Sequence[str], passages: Sequence[str]):
    """[n, 32] uint8: the pair keys of n pairs."""
    import numpy as np

    return np.frombuffer(b"".join(pair_key(q, p) for q, p in zip(queries, passages)), dtype=np.uint8).reshape(len(queries), 32)


def content_sha(keys) -> str:
    """sha256 (hex) of pair keys in order: a shard's content, or (over the shards' hashes) a whole data set's."""
    return hashlib.sha256(keys.tobytes()).hexdigest()


@dataclass(frozen=True)
class Shard:
    """Pairs [start, stop) of a data set, with their keys and the shard key (in one score space)."""

    index: int
    start: int
    stop: int
    keys: object  # np.ndarray [n, 32] uint8
    key: str

    @property
    def pairs(self) -> int:
        return self.stop - self.start


class ScoreStore:
    """The scores of one space (one teacher at one max length)."""

    def __init__(self, space: str, root: Path | None = None) -> None:
        self.space = space
        self.dir = (Path(root) if root else scores_root()) / space
        self._index = None  # the by-pair index (``qadistill.shardindex``), made on the first lookup

    def shard_key(self, keys) -> str:
        return make_key("shard", self.space, content_sha(keys))

    def shards(self, keys, size: int, first_index: int = 0, offset: int = 0) -> list[Shard]:
        """Cut pairs (their keys) into consecutive shards of ``size`` (the last may be shorter)."""
        out = []
        for i, start in enumerate(range(0, len(keys), size)):
            k = keys[start : start + size]
            out.append(Shard(first_index + i, offset + start, offset + start + len(k), k, self.shard_key(k)))
        return out

    def path(self, key: str) -> Path:
        return self.dir / f"{key}.npz"

    def has(self, key: str) -> bool:
        return self.path(key).is_file()

    def read(self, key: str, keys=None):
        """The shard's raw scores, or None when absent or bad (a bad file is deleted). ``keys``: the pairs it must hold."""
        import numpy as np

        from qadistill.integrity import drop_recorded
        from qadistill.shardindex import load_or_drop

        p = self.path(key)
        if not p.is_file():
            return None
        got = load_or_drop(p, self._load)
        if got is not None and keys is not None and not np.array_equal(got[0], keys):
            drop_recorded(p)
            got = None
        return None if got is None else got[1]

    def _load(self, p: Path):
        """(keys, raw float32) of a shard file, or None when it holds other pairs than its name says."""
        import numpy as np

        with np.load(p, allow_pickle=False) as z:
            got, raw = z["keys"], z["raw"]
        ok = got.ndim == 2 and got.shape[1] == 32 and raw.shape == (got.shape[0],) and self.shard_key(got) == p.stem
        return (got, raw.astype(np.float32, copy=False)) if ok else None

    def write(self, key: str, keys, raw) -> str:
        """Store one shard (atomically); returns the sha256 of the file written."""
        import numpy as np

        from qadistill.integrity import write_recorded

        buf = io.BytesIO()
        np.savez(buf, keys=np.asarray(keys, dtype=np.uint8), raw=np.asarray(raw, dtype=np.float32))
        return write_recorded(self.path(key), buf.getvalue())  # its sha256 beside it, checked on load

    def file_sha(self, key: str) -> str:
        from qadistill.integrity import file_sha256

        return file_sha256(self.path(key))

    # -- by pair ------------------------------------------------------------------------------------------------------
    def _refresh(self) -> None:
        """Index the shards not indexed yet (pair key -> shard file and row; ``qadistill.shardindex``)."""
        from qadistill.shardindex import ShardIndex

        if self._index is None:
            self._index = ShardIndex(self.dir, "*.npz", self._load, default_mb=16)  # a lookup reads a few shards at a time
        self._index.refresh()

    def lookup(self, keys, refresh: bool = True):
        """(raw [n] float32, found [n] bool) for pairs by key, from every shard in the space (``refresh``: index the
        shards written since the last lookup first)."""
        import numpy as np

        if refresh or self._index is None:
            self._refresh()
        raw = np.zeros(len(keys), dtype=np.float32)
        found = self._index.lookup(np.asarray(keys, dtype=np.uint8), raw)
        return raw, found


def read_shards(store: ScoreStore, shards: Iterable[Shard]) -> list:
    return [store.read(s.key, s.keys) for s in shards]
