"""The compact key index behind the score and embedding stores (issue 20): keys found across many files by an 8-byte
prefix checked on the full key, values read from the files through a bounded cache, bad files dropped."""

from __future__ import annotations

import io

import numpy as np

from qadistill.shardindex import ShardIndex


def _write(folder, name, keys, values):
    """As the stores write a shard: its sha256 recorded beside it (a shard without the record is not trusted)."""
    from qadistill.integrity import write_recorded

    buf = io.BytesIO()
    np.savez(buf, keys=keys, vals=values)
    write_recorded(folder / name, buf.getvalue())


def _load(path):
    with np.load(path, allow_pickle=False) as z:
        return z["keys"], z["vals"]


def _keys(rng, n):
    return rng.integers(0, 256, size=(n, 32), dtype=np.uint8)


def test_keys_across_many_files_are_found_with_their_values_in_16_bytes_each(tmp_path):
    rng = np.random.default_rng(0)
    files = [(_keys(rng, int(n)), rng.normal(size=(int(n), 3)).astype(np.float32)) for n in rng.integers(1, 60, size=40)]
    for i, (k, v) in enumerate(files):
        _write(tmp_path, f"f{i:03d}.npz", k, v)
    idx = ShardIndex(tmp_path, "*.npz", _load, cache_mb=0.001)  # a cache of ~1 KB: files are read again when asked
    idx.refresh()
    keys = np.concatenate([k for k, _ in files])
    vals = np.concatenate([v for _, v in files])
    assert len(idx) == len(keys) and len(idx._runs) <= 7  # merged as they grew: log2(40 files) runs at most
    assert sum(a.nbytes for r in idx._runs for a in r) == 16 * len(keys)
    assert idx._cached <= 2 * 60 * (32 + 12)  # the bounded cache holds about one file
    order = rng.permutation(len(keys))
    query = np.concatenate([keys[order], _keys(rng, 25)])  # 25 keys never stored
    out = np.zeros((len(query), 3), dtype=np.float32)
    found = idx.lookup(query, out)
    assert found[: len(keys)].all() and not found[len(keys) :].any()
    assert np.array_equal(out[: len(keys)], vals[order])


def test_a_shared_prefix_is_checked_on_the_full_key(tmp_path):
    k = np.zeros((1, 32), dtype=np.uint8)
    _write(tmp_path, "a.npz", k, np.array([1.5], dtype=np.float32))
    idx = ShardIndex(tmp_path, "*.npz", _load)
    idx.refresh()
    other = k.copy()
    other[0, 31] = 7  # the same first 8 bytes, another key
    assert idx.lookup(k).tolist() == [True] and idx.lookup(other).tolist() == [False]


def test_a_bad_file_is_deleted_and_files_added_later_are_picked_up(tmp_path):
    rng = np.random.default_rng(1)
    k1, k2 = _keys(rng, 4), _keys(rng, 4)
    _write(tmp_path, "a.npz", k1, np.arange(4.0))
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 truncated")
    idx = ShardIndex(tmp_path, "*.npz", _load)
    idx.refresh()
    assert not (tmp_path / "bad.npz").exists() and idx.lookup(k1).all()
    _write(tmp_path, "b.npz", k2, np.arange(4.0) + 10)  # another process adds a file
    assert not idx.lookup(k2).any()
    idx.refresh()
    out = np.zeros(4)
    assert idx.lookup(k2, out).all() and out.tolist() == [10, 11, 12, 13]
