"""The logit cache never silently drops entries, never leaves temp files, and computes a key once across processes."""

from __future__ import annotations

import errno
import json
import multiprocessing as mp
import os
import threading
import time

import numpy as np
import pytest

from qadistill.cache import LogitCache
from qadistill.errors import DiskFullError
from qadistill.fsutil import atomic_write_bytes


def test_a_corrupt_manifest_is_moved_aside_and_rebuilt_from_the_files(tmp_path, capsys):
    c = LogitCache(tmp_path / "c")
    a, b = np.arange(10, dtype=np.float32), np.ones((3, 4), dtype=np.float32)
    c.put("ka", a, {"teacher": "t"})
    c.put("kb", b)
    before = c.entries()
    c.path("kbad").write_bytes(b"not an npy file")
    c.manifest_path.write_text('{"ka": {"sha256": ')  # cut off mid-write by an older qadistill
    assert np.array_equal(c.get("ka"), a)
    entries = c.entries()
    assert set(entries) == {"ka", "kb"}
    assert all(entries[k]["sha256"] == before[k]["sha256"] and entries[k]["shape"] == before[k]["shape"] for k in entries)
    aside = list((tmp_path / "c").glob("manifest.json.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_text() == '{"ka": {"sha256": '
    assert not c.path("kbad").exists()  # a file that does not load is dropped
    c.put("kc", a)
    assert set(c.entries()) == {"ka", "kb", "kc"} and np.array_equal(c.get("kb"), b)
    assert capsys.readouterr().out == ""


def test_a_corrupt_manifest_and_an_edited_file_at_once_drop_that_file(tmp_path):
    """Two faults together: the rebuild must not vouch for a file whose bytes changed since it was written."""
    c = LogitCache(tmp_path / "c")
    a, b = np.arange(10, dtype=np.float32), np.ones(4, dtype=np.float32)
    c.put("ka", a)
    c.put("kb", b)
    np.save(c.path("kb"), b * 7)  # still a valid .npy of the same shape, other values
    c.manifest_path.write_text("{")
    assert c.get("kb") is None and not c.path("kb").exists()
    assert np.array_equal(c.get("ka"), a) and set(c.entries()) == {"ka"}
    unrecorded = c.path("kold")  # a file without its record (copied in, or from before records): computed again
    np.save(unrecorded, a * 3)
    c.manifest_path.write_text("{")
    assert c.get("kold") is None and not unrecorded.exists()


def test_a_file_copied_with_its_record_under_another_key_is_not_vouched_for(tmp_path):
    """A rebuilt manifest vouched for a file and its record copied in under another key's name (the record named only
    the bytes): that key then served the other key's logits. The record names its file: ``sha256sum -c`` reads it."""
    import shutil
    import subprocess

    c = LogitCache(tmp_path / "c")
    a = np.arange(10, dtype=np.float32)
    c.put("ka", a)
    side = c.path("ka").with_name(c.path("ka").name + ".sha256")
    assert side.read_text().split() == [c.entries()["ka"]["sha256"], c.path("ka").name]
    if shutil.which("sha256sum"):
        assert subprocess.run(["sha256sum", "--quiet", "-c", side.name], cwd=tmp_path / "c").returncode == 0
    shutil.copy(c.path("ka"), c.path("kb"))
    shutil.copy(side, c.path("kb").with_name(c.path("kb").name + ".sha256"))
    c.manifest_path.write_text("{")
    assert c.get("kb") is None and not c.path("kb").exists()
    assert np.array_equal(c.get("ka"), a) and set(c.entries()) == {"ka"}


def test_a_record_of_the_digest_alone_written_before_names_were_recorded_still_vouches(tmp_path):
    from qadistill.integrity import file_sha256, sidecar_path, sidecar_problem

    f = tmp_path / "old.npy"
    np.save(f, np.ones(3))
    sidecar_path(f).write_text(file_sha256(f) + "\n")
    assert sidecar_problem(f, required=True) is None


def test_an_edited_chunk_is_computed_again_on_resume(tmp_path):
    c = LogitCache(tmp_path / "c")
    calls = []

    def fn(a, b):
        calls.append(a)
        if len(calls) == 2:
            raise KeyboardInterrupt  # stopped after the first chunk
        return np.arange(a, b, dtype=np.float32)

    with pytest.raises(KeyboardInterrupt):
        c.compute("k", 20, 10, fn)
    chunk = tmp_path / "c" / "k.parts" / "000000000-000000010.npy"
    np.save(chunk, np.full(10, 99, dtype=np.float32))  # valid, right shape, wrong values
    calls.clear()
    got = c.compute("k", 20, 10, lambda a, b: (calls.append(a), np.arange(a, b, dtype=np.float32))[1])
    assert np.array_equal(got, np.arange(20, dtype=np.float32)) and calls == [0, 10]


def test_a_manifest_that_is_not_an_object_is_recovered_too(tmp_path):
    c = LogitCache(tmp_path / "c")
    c.put("ka", np.zeros(4))
    c.manifest_path.write_text("[]")
    assert c.get("ka") is not None and set(c.entries()) == {"ka"}


def _enospc_on_call(monkeypatch, n: int) -> None:
    """Make the n-th fsync (1-based) fail as a full disk does."""
    import qadistill.fsutil as fsutil

    calls = []
    real = os.fsync

    def fsync(fd):
        calls.append(fd)
        if len(calls) == n:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd)

    monkeypatch.setattr(fsutil.os, "fsync", fsync)


def test_disk_full_is_a_qadistill_error_naming_the_file(tmp_path, monkeypatch):
    _enospc_on_call(monkeypatch, 1)
    target = tmp_path / "out" / "model.bin"
    with pytest.raises(DiskFullError) as ei:
        atomic_write_bytes(target, b"x" * 100)
    assert str(target) in ei.value.message and ei.value.exit_code == 1
    assert "QADISTILL_HOME" in ei.value.hint and "free" in ei.value.hint
    assert isinstance(ei.value.__cause__, OSError)
    assert list((tmp_path / "out").iterdir()) == []  # no temp file left


def test_put_leaves_nothing_behind_when_the_manifest_cannot_be_written(tmp_path, monkeypatch):
    c = LogitCache(tmp_path / "c")
    c.put("old", np.zeros(3))
    _enospc_on_call(monkeypatch, 3)  # the .npy and its record are written, the manifest update hits a full disk
    with pytest.raises(DiskFullError, match="manifest.json"):
        c.put("new", np.arange(5))
    names = sorted(p.name for p in (tmp_path / "c").iterdir())
    assert names == [".lock", "manifest.json", "old.npy", "old.npy.sha256"]
    assert set(c.entries()) == {"old"}


def test_compute_on_a_full_disk_keeps_finished_chunks_and_no_temp_files(tmp_path, monkeypatch):
    c = LogitCache(tmp_path / "c")
    _enospc_on_call(monkeypatch, 4)  # the second chunk cannot be written (each chunk: its record, then the file)
    with pytest.raises(DiskFullError):
        c.compute("k", 30, 10, lambda a, b: np.arange(a, b, dtype=np.float32))
    root = tmp_path / "c"
    assert not [p for p in root.rglob("*") if p.name.endswith(".tmp")]
    assert sorted(p.name for p in (root / "k.parts").iterdir() if p.suffix == ".npy") == ["000000000-000000010.npy"]  # resumable


def test_cli_reports_a_full_disk_in_one_line(cli, monkeypatch):
    import qadistill.catalog as catalog

    def boom(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", "/home/x/.qadistill/artifacts/stu/model.safetensors")

    monkeypatch.setattr(catalog, "zoo_rows", boom)
    r = cli("zoo", "list")
    assert r.exit_code == 1
    assert "no space left" in r.stderr and "model.safetensors" in r.stderr and "QADISTILL_HOME" in r.stderr
    assert "unexpected" not in r.stderr


def _slow_chunks(counter: str):
    def fn(a, b):
        with open(counter, "a") as fh:
            fh.write(f"{a}\n")
        time.sleep(0.3)
        return np.arange(a, b, dtype=np.float32)

    return fn


def test_two_threads_computing_one_key_do_the_work_once(tmp_path):
    counter = str(tmp_path / "calls.txt")
    out: list = []
    threads = [threading.Thread(target=lambda: out.append(LogitCache(tmp_path / "c").compute("k", 30, 10, _slow_chunks(counter))))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert open(counter).read().split() == ["0", "10", "20"]
    assert len(out) == 2 and all(np.array_equal(o, np.arange(30, dtype=np.float32)) for o in out)


def _compute_in_process(root: str, counter: str, out: str) -> None:
    arr = LogitCache(root).compute("k", 30, 10, _slow_chunks(counter))
    np.save(out, arr)


def test_two_processes_computing_one_key_do_the_work_once(tmp_path):
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_compute_in_process, args=(str(tmp_path / "c"), str(tmp_path / "calls.txt"), str(tmp_path / f"out{i}.npy")))
             for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert open(tmp_path / "calls.txt").read().split() == ["0", "10", "20"]
    for i in range(2):
        assert np.array_equal(np.load(tmp_path / f"out{i}.npy"), np.arange(30, dtype=np.float32))
    assert json.loads((tmp_path / "c" / "manifest.json").read_text())["k"]["shape"] == [30]


def test_atomic_writes_get_the_mode_of_a_plain_write(tmp_path):
    import os

    from qadistill.fsutil import atomic_write_text

    atomic_write_text(tmp_path / "a.json", "{}")
    (tmp_path / "b.json").write_text("{}")
    assert os.stat(tmp_path / "a.json").st_mode == os.stat(tmp_path / "b.json").st_mode
