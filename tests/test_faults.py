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
