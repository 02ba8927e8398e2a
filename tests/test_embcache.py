"""Each distinct text is embedded once per model, whatever split, pool or command asked for it first (issue 19)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from conftest import make_tiny_model, tiny_jsonl
import pytest

pytestmark = pytest.mark.integration  # real models, processes or the CLI end to end


def _counting(teacher):
    seen: list[str] = []
    orig = teacher._embed_batchwise

    def embed(texts):
        seen.extend(texts)
        return orig(texts)

    teacher._embed_batchwise = embed
    return seen


def test_a_text_is_embedded_once_across_splits_pools_and_processes(tmp_path):
    from qadistill.data import load_dataset
    from qadistill.teachers import BiEncoderTeacher

    folder = make_tiny_model(tmp_path / "bi", "bi")
    a = load_dataset(str(tiny_jsonl(tmp_path / "a.jsonl", n_queries=6, seed=1)))
    b = load_dataset(str(tiny_jsonl(tmp_path / "b.jsonl", n_queries=6, seed=2)))
    t1 = BiEncoderTeacher("tiny-bi", folder, 32, calibrate=False)
    seen = _counting(t1)
    ea = t1.embed(t1._split_texts(a))
    assert sorted(seen) == sorted(set(t1._split_texts(a)))  # each distinct text once
    seen.clear()
    t1.embed(t1._split_texts(a) + t1._split_texts(b))  # a second split: only its new texts
    assert sorted(seen) == sorted(set(t1._split_texts(b)) - set(t1._split_texts(a)))
    # a new process (a later command) embeds nothing, in any order, and gets the same rows
    t2 = BiEncoderTeacher("tiny-bi", folder, 32, calibrate=False)
    seen2 = _counting(t2)
    again = t2.embed(list(reversed(t2._split_texts(a))))
    assert seen2 == [] and np.allclose(again[::-1], ea, atol=1e-6)
    # another max length is another embedding space
    t3 = BiEncoderTeacher("tiny-bi", folder, 16, calibrate=False)
    seen3 = _counting(t3)
    t3.embed(t3._split_texts(a)[:3])
    assert len(seen3) == 3


def test_a_corrupt_shard_is_dropped_and_recomputed(tmp_path):
    from qadistill.embcache import EmbeddingStore

    s = EmbeddingStore("space", tmp_path)
    s.add(["a", "b"], np.ones((2, 4)))
    shard = next((tmp_path / "space").glob("shard-*.npz"))
    shard.write_bytes(shard.read_bytes()[:40])  # truncated
    fresh = EmbeddingStore("space", tmp_path)
    assert fresh.missing(["a", "b", "c"]) == ["a", "b", "c"] and not shard.exists()


def _rewrite(path, **arrays) -> None:
    """Rewrite a shard as a valid .npz of other values: it loads, the zip's own checks pass."""
    import io

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path.write_bytes(buf.getvalue())


def test_a_shard_rewritten_with_other_values_is_dropped_not_served(tmp_path):
    """A shard file replaced by a valid .npz of the same keys and other rows was read as if written here: the stores
    used its values (a teacher's scores, a bi-encoder's embeddings) with exit 0. The sha256 recorded beside each shard
    when it was written now drops it, so it is computed again; so is a shard without its record (altered, copied in,
    or written before records existed: a cache is derived data, never trusted without one)."""
    from qadistill.embcache import EmbeddingStore, text_keys
    from qadistill.scores import ScoreStore, pair_key

    s = EmbeddingStore("space", tmp_path)
    s.add(["a", "b"], np.ones((2, 4)))
    shard = next((tmp_path / "space").glob("shard-*.npz"))
    assert (shard.parent / (shard.name + ".sha256")).exists()
    _rewrite(shard, keys=text_keys(["a", "b"]), emb=np.full((2, 4), 7.0, dtype=np.float32))
    fresh = EmbeddingStore("space", tmp_path)
    assert fresh.missing(["a", "b"]) == ["a", "b"] and not shard.exists()

    scores = ScoreStore("teacher", tmp_path / "scores")
    keys = np.stack([np.frombuffer(pair_key(f"q{i}", f"p{i}"), dtype=np.uint8) for i in range(3)])
    key = scores.shard_key(keys)
    scores.write(key, keys, np.array([0.1, 0.2, 0.3], dtype=np.float32))
    assert np.allclose(scores.read(key, keys), [0.1, 0.2, 0.3])
    _rewrite(scores.path(key), keys=keys, raw=np.full(3, 0.99, dtype=np.float32))
    assert scores.read(key, keys) is None and not scores.path(key).exists()
    raw, found = ScoreStore("teacher", tmp_path / "scores").lookup(keys)
    assert not found.any()
    _rewrite(scores.path(key), keys=keys, raw=np.full(3, 0.5, dtype=np.float32))  # no record beside it
    assert scores.read(key, keys) is None and not scores.path(key).exists()


WRITER = """
import sys, numpy as np
from qadistill.embcache import EmbeddingStore
s = EmbeddingStore("space", sys.argv[1])
texts = [f"t{i}" for i in range(400)]
s.fill(texts, lambda xs: np.array([[float(x[1:])] * 3 for x in xs]), 7)
"""


def test_two_processes_filling_one_store_at_once_leave_it_whole(tmp_path):
    from qadistill.embcache import EmbeddingStore

    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)]) for _ in range(2)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    s = EmbeddingStore("space", tmp_path)
    texts = [f"t{i}" for i in range(400)]
    assert s.missing(texts) == []
    assert np.array_equal(s.get(texts)[:, 0], np.arange(400, dtype=np.float32))
