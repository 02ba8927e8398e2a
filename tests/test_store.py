from __future__ import annotations

import multiprocessing as mp
import os
import sqlite3
from pathlib import Path

import pytest

from qadistill.errors import StoreError
from qadistill.store import MIGRATIONS, Store


def test_fresh_store_has_every_migration(tmp_path):
    with Store(tmp_path / "s.db") as s:
        assert s.applied_migrations() == [m[0] for m in MIGRATIONS]
        assert s.migrate() == []  # idempotent


def test_old_database_is_migrated_and_keeps_its_data(tmp_path):
    db = tmp_path / "old.db"
    # a database as the first release left it: only the first two migrations, with a run and an artifact
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
    for name, sql in MIGRATIONS[:2]:
        conn.executescript(sql)
        conn.execute("INSERT INTO _migrations VALUES (?, 0)", (name,))
    conn.execute("INSERT INTO runs(id, command, status, started_at) VALUES ('r1', 'distill', 'ok', 1.0)")
    conn.execute("INSERT INTO artifacts(name, kind, path, run_id, created_at) VALUES ('stu', 'student-model', '/x', 'r1', 2.0)")
    conn.commit()
    conn.close()

    with Store(db) as s:
        assert s.applied_migrations() == [m[0] for m in MIGRATIONS]
        runs = s.runs()
        assert runs[0]["id"] == "r1" and runs[0]["env"] == {}  # column added by a later migration
        assert s.artifact("stu").path == "/x"
        s.add_results("stu", "wikiqa", "test", {"map": 0.7, "mrr": 0.71}, run_id="r1")
        assert s.best_metric("stu")["value"] == pytest.approx(0.7)


def test_newer_database_is_refused(tmp_path):
    db = tmp_path / "new.db"
    Store(db).close()
    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO _migrations VALUES ('9999_future', 0)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="newer qadistill"):
        Store(db)


def test_corrupt_database_gives_store_error(tmp_path):
    db = tmp_path / "bad.db"
    db.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="unreadable") as ei:
        Store(db)
    assert "mv " in ei.value.hint


def _writer(db: str, tag: str, n: int) -> None:
    s = Store(db)
    for i in range(n):
        rid = s.start_run("distill", recipe=tag, params={"i": i})
        s.add_artifact(f"{tag}-{i}", "student-model", f"/tmp/{tag}/{i}", recipe=tag, run_id=rid)
        s.add_results(f"{tag}-{i}", "wikiqa", "test", {"map": i / n})
        s.finish_run(rid)
    s.close()


def test_two_processes_writing_at_once(tmp_path):
    db = str(tmp_path / "shared.db")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(db, tag, 60)) for tag in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    with Store(db) as s:
        assert len(s.runs(limit=1000)) == 120
        assert len(s.artifacts()) == 120
        assert all(r["status"] == "ok" for r in s.runs(limit=1000))
        assert s.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert s.conn.execute("SELECT COUNT(*) FROM _migrations").fetchone()[0] == len(MIGRATIONS)


# -- a store file that is not a store is refused, never replaced -------------------------------------------------------
def test_empty_store_file_is_refused_not_recreated(tmp_path):
    db = tmp_path / "qadistill.db"
    db.write_bytes(b"")
    with pytest.raises(StoreError, match="empty") as ei:
        Store(db)
    assert str(db) in ei.value.message
    assert f"mv {db} {db}.bak" in ei.value.hint  # keep it: never "delete it"
    assert db.exists() and db.stat().st_size == 0  # untouched: no empty schema written over it


def test_non_sqlite_store_names_the_latest_backup(tmp_path):
    db = tmp_path / "qadistill.db"
    Store(db).close()
    older, newer = tmp_path / "qadistill.db.bak-before-0001_x", tmp_path / "qadistill.db.bak-before-0002_y"
    older.write_bytes(db.read_bytes())
    newer.write_bytes(db.read_bytes())
    os.utime(older, (1, 1))
    db.write_bytes(b"{}\n")
    with pytest.raises(StoreError, match="not a SQLite database") as ei:
        Store(db)
    assert str(newer) in ei.value.hint and str(older) not in ei.value.hint
    assert db.read_bytes() == b"{}\n"


def _read_only_connect(real):
    def connect(path, *a, **kw):
        return real(f"file:{path}?mode=ro", *a, uri=True, **kw)

    return connect


def test_read_only_store_gets_a_permission_hint(tmp_path, monkeypatch):
    db = tmp_path / "qadistill.db"
    with Store(db) as s:
        s.start_run("distill")
    monkeypatch.setattr(sqlite3, "connect", _read_only_connect(sqlite3.connect))
    with Store(db) as s:  # reading works
        assert len(s.runs()) == 1
        with pytest.raises(StoreError) as ei:  # writing says why it cannot
            s.start_run("distill")
    assert str(db) in ei.value.message and "read-only" in ei.value.message
    assert "permission" in ei.value.hint and "mv " not in ei.value.hint


def test_unreadable_store_file_gets_a_permission_hint(tmp_path, monkeypatch):
    db = tmp_path / "qadistill.db"
    Store(db).close()
    real_open = open

    def deny(file, *a, **kw):
        if str(file) == str(db):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *a, **kw)

    monkeypatch.setattr("builtins.open", deny)
    with pytest.raises(StoreError, match="permission denied") as ei:
        Store(db)
    assert "permission" in ei.value.hint and "mv " not in ei.value.hint


def _old_store(db, n_migrations: int = 2) -> None:
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
    for name, sql in MIGRATIONS[:n_migrations]:
        conn.executescript(sql)
        conn.execute("INSERT INTO _migrations VALUES (?, 0)", (name,))
    conn.execute("INSERT INTO runs(id, command, status, started_at) VALUES ('r1', 'distill', 'ok', 1.0)")
    conn.commit()
    conn.close()


def test_migrating_a_store_with_data_backs_it_up_first(tmp_path):
    db = tmp_path / "qadistill.db"
    _old_store(db)
    with Store(db) as s:
        assert s.applied_migrations() == [m[0] for m in MIGRATIONS]
        backups = s.backups()
    assert [b.name for b in backups] == [f"qadistill.db.bak-before-{MIGRATIONS[2][0]}"]
    old = sqlite3.connect(backups[0])
    assert [r[0] for r in old.execute("SELECT name FROM _migrations ORDER BY name")] == [m[0] for m in MIGRATIONS[:2]]
    assert old.execute("SELECT id FROM runs").fetchall() == [("r1",)]
    assert old.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    old.close()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    Store(db).close()  # up to date: no further backup
    assert len(list(tmp_path.glob("qadistill.db.bak-before-*"))) == 1


def test_a_fresh_store_is_not_backed_up(tmp_path):
    Store(tmp_path / "qadistill.db").close()
    assert not list(tmp_path.glob("*.bak-before-*"))


def test_a_model_registered_again_drops_the_exports_of_its_earlier_build(isolated_home):
    with Store.open() as s:
        s.add_artifact("stu", "student-model", isolated_home / "artifacts" / "stu")
        s.add_artifact("stu-onnx", "export", isolated_home / "artifacts" / "stu-onnx", recipe="stu", parent="stu")
        s.add_artifact("other-onnx", "export", isolated_home / "artifacts" / "other-onnx", recipe="other", parent="other")
        s.add_artifact("stu-int8", "export", isolated_home / "artifacts" / "stu-int8", recipe="stu", parent="stu")
        assert {a.name for a in s.artifacts(recipe="stu")} == {"stu-onnx", "stu-int8"}
        s.add_artifact("stu", "student-model", isolated_home / "artifacts" / "stu")  # distill --overwrite, teach again
        assert {a.name for a in s.artifacts()} == {"stu", "other-onnx"}  # before: stu-onnx (old weights) served by rank


# -- artifact paths are stored relative to the home, so a copied or moved home reads its own files --------------------
def test_artifact_paths_are_relative_to_the_home(tmp_path, monkeypatch, isolated_home):
    folder = isolated_home / "artifacts" / "stu"
    folder.mkdir(parents=True)
    elsewhere = tmp_path / "my-out" / "stu2"
    with Store.open() as s:
        s.add_artifact("stu", "student-model", folder)
        s.add_artifact("stu2", "student-model", elsewhere)
        raw = dict(s.conn.execute("SELECT name, path FROM artifacts").fetchall())
        assert s.artifact("stu").path == str(folder)
    assert raw == {"stu": "artifacts/stu", "stu2": str(elsewhere)}
    moved = tmp_path / "moved-home"
    isolated_home.rename(moved)
    monkeypatch.setenv("QADISTILL_HOME", str(moved))
    with Store.open() as s:
        assert s.artifact("stu").path == str(moved / "artifacts" / "stu")
        assert Path(s.artifacts()[0].path).is_dir()
        assert s.artifact("stu2").path == str(elsewhere)  # outside the home: kept as it was


def test_a_relative_out_folder_is_stored_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with Store.open() as s:
        s.add_artifact("stu", "student-model", "out/stu")
        assert s.artifact("stu").path == str(tmp_path / "out" / "stu")


# -- undefined metrics are stored as NULL with the reason; the best metric is per dataset and split --------------------
def test_undefined_metrics_are_null_with_a_note(tmp_path):
    with Store(tmp_path / "s.db") as s:
        s.add_results("stu", "tiny.jsonl", "test", {"map": float("nan"), "mrr": None, "auc": 0.5},
                      notes={"map": "no query with both a correct and a wrong candidate"})
        rows = {r["metric"]: r for r in s.results("stu")}
        assert rows["map"]["value"] is None and rows["map"]["note"] == "no query with both a correct and a wrong candidate"
        assert rows["mrr"]["value"] is None and rows["mrr"]["note"]  # a default reason, never an empty one
        assert rows["auc"]["value"] == 0.5 and rows["auc"]["note"] is None
        assert s.conn.execute("SELECT COUNT(*) FROM results WHERE value != value").fetchone()[0] == 0  # no NaN stored
        assert s.best_metric("stu", dataset="tiny.jsonl") is None  # NULLs are ignored


def test_results_migration_keeps_old_rows(tmp_path):
    db = tmp_path / "old.db"
    _old_store(db, n_migrations=5)
    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO results(run_id, artifact, dataset, split, metric, value, created_at) "
                 "VALUES ('r1', 'stu', 'wikiqa', 'test', 'map', 0.6, 1.0)")
    conn.commit()
    conn.close()
    with Store(db) as s:
        assert [(r["value"], r["note"]) for r in s.results("stu")] == [(0.6, None)]
        s.add_results("stu", "wikiqa", "test", {"map": None})
        assert s.best_metric("stu", dataset="wikiqa")["value"] == pytest.approx(0.6)


def test_results_written_before_ndcg_existed_read_beside_new_ones(tmp_path):
    """The results table is one row per metric: rows of an eval from before MRR@10/NDCG@10 simply lack those metrics."""
    from qadistill.metrics import ranking_metrics, stored

    old = {"map": 0.5, "mrr": 0.6, "p@1": 0.4, "accuracy": 0.7, "f1": 0.2, "auc": 0.8}  # the STORED of before
    with Store(tmp_path / "s.db") as s:
        s.add_results("stu", "wikiqa", "test", old)
        assert s.best_metric("stu", metric="ndcg@10", dataset="wikiqa") is None
        assert s.best_metric("stu", metric="map", dataset="wikiqa")["value"] == pytest.approx(0.5)
        s.add_results("stu", "wikiqa", "test", stored(ranking_metrics(["a", "a", "a"], [3.0, 2.0, 1.0], [0, 0, 1])))
        by = {}
        for r in s.results("stu"):
            by.setdefault(r["metric"], []).append(r["value"])
    assert by["map"] == [pytest.approx(0.5), pytest.approx(1 / 3)] and by["ndcg@10"] == [pytest.approx(0.5)]
    assert by["mrr@10"] == [pytest.approx(1 / 3)] and len(by["auc"]) == 2


def test_best_metric_is_per_dataset_and_split(tmp_path):
    with Store(tmp_path / "s.db") as s:
        rid = s.start_run("distill", recipe="quickstart", params={"data": {"name": "wikiqa", "test_split": "test"}})
        s.add_artifact("stu", "student-model", tmp_path / "stu", recipe="quickstart", run_id=rid)
        s.add_artifact("stu-onnx", "export", tmp_path / "onnx", recipe="stu", parent="stu")
        s.add_results("stu", "wikiqa", "test", {"map": 0.573}, run_id=rid)
        s.add_results("stu", "wikiqa", "dev", {"map": 0.8}, run_id=rid)
        s.add_results("stu", "/data/other.jsonl", "test", {"map": 0.252})  # a later eval on another dataset
        s.add_results("stu", "wikiqa", "test", {"map": 0.51})
        s.add_results("stu", "wikiqa", "test", {"map": float("nan")})
        assert s.training_dataset("stu") == "wikiqa"
        assert s.training_dataset("stu-onnx") == "wikiqa"  # an export inherits its parent's
        assert s.best_metric("stu") == {"dataset": "wikiqa", "split": "test", "value": pytest.approx(0.573)}
        assert s.best_metric("stu", dataset="/data/other.jsonl")["value"] == pytest.approx(0.252)
        assert s.best_metric("stu", split="dev") == {"dataset": "wikiqa", "split": "dev", "value": pytest.approx(0.8)}
        assert s.best_metric("stu", dataset="trecqa") is None
        assert s.best_metric("stu-onnx") is None


# -- runs never stay "running" -----------------------------------------------------------------------------------------
def _dead_pid() -> int:
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_runs_record_their_process_and_stale_ones_are_swept(tmp_path):
    import socket

    db = tmp_path / "s.db"
    with Store(db) as s:
        mine = s.start_run("distill")
        row = s.conn.execute("SELECT pid, hostname FROM runs WHERE id=?", (mine,)).fetchone()
        assert (row["pid"], row["hostname"]) == (os.getpid(), socket.gethostname())
        dead, other_host = s.start_run("teach"), s.start_run("teach")
        s.conn.execute("UPDATE runs SET pid=? WHERE id=?", (_dead_pid(), dead))
        s.conn.execute("UPDATE runs SET pid=1234567, hostname='another-machine' WHERE id=?", (other_host,))
    with Store(db) as s:
        status = {r["id"]: r for r in s.runs()}
    assert status[dead]["status"] == "interrupted" and status[dead]["finished_at"] is not None
    assert "ended without finishing" in status[dead]["reason"]
    assert status[mine]["status"] == "running"  # this process is alive
    assert status[other_host]["status"] == "running"  # another machine's pid says nothing here


def test_a_reused_pid_does_not_keep_a_run_running(tmp_path):
    with Store(tmp_path / "s.db") as s:
        rid = s.start_run("distill")
        # this process's pid, but the run claims to have started long before this process did
        s.conn.execute("UPDATE runs SET started_at=? WHERE id=?", (1.0, rid))
        assert s.sweep_stale_runs() == [rid]
        assert s.runs()[0]["status"] == "interrupted"


def test_fail_run_records_the_reason(tmp_path):
    with Store(tmp_path / "s.db") as s:
        rid = s.start_run("distill")
        s.fail_run(rid, "out of memory")
        r = s.runs()[0]
        assert (r["status"], r["reason"]) == ("failed", "out of memory") and r["finished_at"] is not None
        with pytest.raises(ValueError, match="status"):
            s.finish_run(rid, "done")


def test_removing_a_model_takes_its_exports_and_waits_for_no_running_export(isolated_home):
    """`zoo remove NAME --delete-files` left NAME's exports registered and on disk (a later build of NAME then had
    `rank NAME-int8-dynamic` serve the removed weights), and deleted the folder under a running export."""
    from qadistill.locks import BusyError, artifact_lock
    from qadistill.registry import Registry

    art = isolated_home / "artifacts"
    for n in ("stu", "stu-onnx", "stu-int8", "other-onnx"):
        (art / n).mkdir(parents=True)
        (art / n / "config.json").write_text("{}")
    with Store.open() as s:
        s.add_artifact("stu", "student-model", art / "stu")
        s.add_artifact("stu-onnx", "export", art / "stu-onnx", recipe="stu", parent="stu")
        s.add_artifact("stu-int8", "export", art / "stu-int8", recipe="stu", parent="stu")
        s.add_artifact("other-onnx", "export", art / "other-onnx", recipe="other", parent="other")
        reg = Registry(store=s)
        assert {a.name for a in reg.derived_exports("stu")} == {"stu-onnx", "stu-int8"}
        with artifact_lock("stu.export", "exports of"):  # an export of stu is running
            with pytest.raises(BusyError, match="exports of 'stu'") as e:
                reg.remove("stu", delete_files=True)
            assert "then remove it" in e.value.hint
        assert {a.name for a in s.artifacts()} == {"stu", "stu-onnx", "stu-int8", "other-onnx"} and (art / "stu").is_dir()
        reg.remove("stu", delete_files=True)
        assert {a.name for a in s.artifacts()} == {"other-onnx"}
        assert sorted(p.name for p in art.iterdir()) == ["other-onnx"]


def test_a_store_deleted_or_replaced_under_a_command_is_an_error_not_a_lost_write(tmp_path):
    """The store deleted while distill ran: the run wrote its results and registration into the deleted file, exited 0
    with "saved to", and the zoo never knew the model (the rerun refused: "already holds a model"). A write into a
    store that is no longer the file at its path is an error naming it."""
    import shutil

    from qadistill.errors import StoreError
    from qadistill.store import Store

    path = tmp_path / "home" / "qadistill.db"
    s = Store(path)
    s.add_artifact("a", "student-model", tmp_path / "a")
    for wal in path.parent.glob("qadistill.db*"):
        wal.unlink()
    with pytest.raises(StoreError, match="was deleted or replaced while this command ran") as ei:
        s.add_artifact("b", "student-model", tmp_path / "b")
    assert "--resume" in ei.value.hint and "rerun the same command" in ei.value.hint
    s.close()
    s = Store(path)  # a fresh store at the path works, and so does one replaced by a copy once reopened
    s.add_artifact("c", "student-model", tmp_path / "c")
    shutil.copy(path, tmp_path / "copy.db")
    (tmp_path / "copy.db").replace(path)
    with pytest.raises(StoreError, match="deleted or replaced"):
        s.add_artifact("d", "student-model", tmp_path / "d")
