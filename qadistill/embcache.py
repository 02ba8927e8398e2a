"""Content-addressed text embeddings: each distinct text is embedded once per (model, max length, pooling), whatever
split, pool or command asked for it first, and whichever process did it.

Layout: ``$QADISTILL_HOME/cache/embeddings/<space>/shard-*.npz``, one shard per finished chunk, each holding the
sha256 of its texts and their rows. Shards are written atomically under unique names and never rewritten, so two
processes can add to one space at once without a shared manifest to corrupt; an interrupted run keeps every finished
chunk; a shard that does not load (truncated, corrupt) is deleted and its texts are embedded again.
"""

from __future__ import annotations

import hashlib
import io
import os
import uuid
from pathlib import Path
from typing import Callable, Iterable

from qadistill import paths
from qadistill.fsutil import atomic_write_bytes


def text_key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


class EmbeddingStore:
    """Embeddings of one model space (``space`` names the model, max length and pooling)."""

    def __init__(self, space: str, root: Path | None = None) -> None:
        self.dir = (Path(root) if root else paths.home() / "cache" / "embeddings") / space
        self._rows: dict[bytes, object] = {}
        self._seen: set[str] = set()

    def _refresh(self) -> None:
        """Read the shards this process has not read yet (another process may have added some)."""
        import numpy as np

        if not self.dir.is_dir():
            return
        for f in sorted(self.dir.glob("shard-*.npz")):
            if f.name in self._seen:
                continue
            try:
                with np.load(f, allow_pickle=False) as z:
                    keys, emb = z["keys"], z["emb"]
                if keys.ndim != 2 or keys.shape[1] != 32 or emb.shape[0] != keys.shape[0]:
                    raise ValueError("bad shapes")
            except Exception:  # a truncated or corrupt shard: drop it, its texts are embedded again
                f.unlink(missing_ok=True)
                continue
            self._seen.add(f.name)
            for k, row in zip(keys, emb):
                self._rows[k.tobytes()] = row

    def missing(self, texts: Iterable[str]) -> list[str]:
        """The distinct texts with no stored embedding, in first-seen order."""
        self._refresh()
        return list(dict.fromkeys(t for t in texts if text_key(t) not in self._rows))

    def add(self, texts: list[str], emb) -> None:
        """Store rows for ``texts`` as one new shard (atomic, unique name)."""
        import numpy as np

        keys = np.frombuffer(b"".join(text_key(t) for t in texts), dtype=np.uint8).reshape(len(texts), 32)
        buf = io.BytesIO()
        np.savez(buf, keys=keys, emb=np.asarray(emb, dtype=np.float32))
        name = f"shard-{os.getpid()}-{uuid.uuid4().hex[:12]}.npz"
        atomic_write_bytes(self.dir / name, buf.getvalue())
        self._seen.add(name)
        for k, row in zip(keys, np.asarray(emb, dtype=np.float32)):
            self._rows[k.tobytes()] = row

    def get(self, texts: list[str]):
        """Rows for ``texts`` (every one must be stored), as a [len(texts), dim] array."""
        import numpy as np

        return np.stack([self._rows[text_key(t)] for t in texts]) if texts else np.zeros((0, 0), dtype=np.float32)

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
