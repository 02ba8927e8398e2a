"""Content-addressed text embeddings: each distinct text is embedded once per (model, max length, pooling), whatever
split, pool or command asked for it first, and whichever process did it.

Layout: ``$QADISTILL_HOME/cache/embeddings/<space>/shard-*.npz``, one shard per finished chunk, each holding the
sha256 of its texts and their rows. Shards are written atomically under unique names and never rewritten, so two
processes can add to one space at once without a shared manifest to corrupt; an interrupted run keeps every finished
chunk; a shard that does not load (truncated, corrupt) is deleted and its texts are embedded again.

Rows are not all held in memory: a compact index (``qadistill.shardindex``) says which shard holds a text, and rows are
read from their shards when asked for, through a cache of loaded shards bounded in bytes.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import uuid
from pathlib import Path
from typing import Callable, Iterable

from qadistill import paths
from qadistill.integrity import write_recorded

log = logging.getLogger(__name__)


def text_key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def text_keys(texts: list[str]):
    """[n, 32] uint8: the keys of n texts."""
    import numpy as np

    return np.frombuffer(b"".join(text_key(t) for t in texts), dtype=np.uint8).reshape(len(texts), 32)


def _space_array(space: str):
    import numpy as np

    return np.frombuffer(space.encode(), dtype=np.uint8)


def _load(f: Path, space: str | None = None):
    """(keys, rows float32) of one shard, or None when its arrays do not fit together or it names another model space
    than ``space`` (a shard copied from another model's folder: same texts, other embeddings). Shards written before
    they named their space are read as they are."""
    import numpy as np

    with np.load(f, allow_pickle=False) as z:
        keys, emb = z["keys"], z["emb"]
        named = bytes(z["space"]).decode() if "space" in z.files else None
    if space is not None and named is not None and named != space:
        log.warning("%s holds embeddings of another model space (%s); deleted, computed again", f, named)
        return None
    if keys.ndim != 2 or keys.shape[1] != 32 or emb.ndim != 2 or emb.shape[0] != keys.shape[0]:
        return None
    return keys, emb.astype(np.float32, copy=False)


class EmbeddingStore:
    """Embeddings of one model space (``space`` names the model, max length and pooling)."""

    def __init__(self, space: str, root: Path | None = None) -> None:
        from qadistill.shardindex import ShardIndex

        self.space = space
        self.dir = (Path(root) if root else paths.home() / "cache" / "embeddings") / space
        self._index = ShardIndex(self.dir, "shard-*.npz", lambda f: _load(f, space))

    def _refresh(self) -> None:
        """Index the shards this process has not read yet (another process may have added some)."""
        self._index.refresh()

    def missing(self, texts: Iterable[str]) -> list[str]:
        """The distinct texts with no stored embedding, in first-seen order."""
        self._refresh()
        distinct = list(dict.fromkeys(texts))
        if not distinct:
            return []
        found = self._index.lookup(text_keys(distinct))
        return [t for t, f in zip(distinct, found) if not f]

    def add(self, texts: list[str], emb) -> None:
        """Store rows for ``texts`` as one new shard (atomic, unique name)."""
        import numpy as np

        keys = text_keys(texts)
        emb = np.asarray(emb, dtype=np.float32)
        buf = io.BytesIO()
        np.savez(buf, keys=keys, emb=emb, space=_space_array(self.space))  # the shard names its model space
        name = f"shard-{os.getpid()}-{uuid.uuid4().hex[:12]}.npz"
        write_recorded(self.dir / name, buf.getvalue())  # its sha256 beside it: shardindex.load_or_drop checks it
        self._index.add(name, keys, emb)

    def get(self, texts: list[str]):
        """Rows for ``texts`` (every one must be stored), as a [len(texts), dim] array, read from their shards."""
        import numpy as np

        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        out, found = None, np.zeros(len(texts), dtype=bool)
        for sel, rows in self._index.hits(text_keys(texts)):
            if out is None:
                out = np.empty((len(texts), rows.shape[1]), dtype=np.float32)
            out[sel], found[sel] = rows, True
        if not found.all():
            raise KeyError(f"no stored embedding for {texts[int(np.argmin(found))][:60]!r}")
        return out

    def fill(self, texts: list[str], embed: Callable[[list[str]], object], chunk: int, on_chunk: Callable[[int], None] | None = None) -> None:
        """Embed every text not stored yet, ``chunk`` at a time, each finished chunk stored at once (resumable)."""
        todo = self.missing(texts)
        for i in range(0, len(todo), chunk):
            part = todo[i : i + chunk]
            fresh = self.missing(part)  # another process may have embedded some meanwhile
            if fresh:
                self.add(fresh, embed(fresh))
            if on_chunk:
                on_chunk(len(part))
