"""Trustworthy results under bad input and faults (issue 16): held-out evaluation, undefined metrics, safe names,
one run per artifact name, validation before work, Ctrl-C. Each test failed on the code before the fix."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, requires_package, tiny_pairs, write
from test_distill import tiny_zoo  # noqa: F401  (fixture: two tiny teachers + a 12-query file)

pytestmark = pytest.mark.integration  # real models, processes or the CLI end to end

DISTILL = ["distill", "--teachers", "tiny-t0", "--student", "tiny-random-student", "--mode", "single",
           "--max-length", "32", "--batch-size", "8"]


def jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_a_single_file_is_split_by_query_and_test_never_sees_a_train_query(tmp_path):
    from qadistill.splits import resolve_splits

    data = jsonl(tmp_path / "d.jsonl", tiny_pairs(n_queries=40, per_query=4))
    s = resolve_splits(str(data), seed=3)
    q = {k: {p.query_id for p in d.pairs} for k, d in (("train", s.train), ("dev", s.dev), ("test", s.test))}
    assert not (q["train"] & q["test"]) and not (q["train"] & q["dev"]) and not (q["dev"] & q["test"])
    assert sum(len(d) for d in (s.train, s.dev, s.test)) == 160  # no pair lost
    assert (len(q["train"]), len(q["dev"]), len(q["test"])) == (32, 4, 4)
    assert s.info["seed"] == 3 and s.info["how"] == "split-by-query"
    assert resolve_splits(str(data), seed=3).test.pairs == s.test.pairs  # seeded
    assert resolve_splits(str(data), seed=4).test.pairs != s.test.pairs


@requires_package("all-minilm-l6-v2")
def test_distill_on_one_file_reports_held_out_test_metrics_with_their_split(cli, tiny_zoo, isolated_home):  # noqa: F811
    r = cli(*DISTILL, "--data", str(tiny_zoo), "--name", "held", "--format", "json")
    assert r.exit_code == 0, r.output
    assert "split by query (seed 0)" in r.stderr
    res = json.loads(r.stdout)
    assert res["splits"]["how"] == "split-by-query" and res["metrics"]["test"]["data"] == f"{tiny_zoo}:test"
    assert res["train_pairs"] < 48  # the file has 48 pairs: dev and test queries are held out
    test_rows = [r for r in sqlite3.connect(isolated_home / "qadistill.db").execute(
        "SELECT dataset, split FROM results WHERE artifact='held' AND metric='map'")]
    assert test_rows == [(str(tiny_zoo), "test")]


@requires_package("all-minilm-l6-v2")
def test_pointwise_data_without_a_scorable_query_finishes_with_null_map_and_kept_results(cli, tiny_zoo, tmp_path, isolated_home):  # noqa: F811
    rows = [{"query_id": f"q{i}", "query": p["query"], "passage_id": f"p{i}", "passage": p["passage"], "label": i % 2}
            for i, p in enumerate(tiny_pairs(n_queries=30, per_query=1))]  # one candidate per query: MAP undefined
    data = jsonl(tmp_path / "pointwise.jsonl", rows)
    r = cli(*DISTILL, "--data", str(data), "--name", "pw", "--format", "json")
    assert r.exit_code == 0, r.output
    m = json.loads(r.stdout)["metrics"]["test"]
    assert m["map"] is None and "no query with both" in m["undefined"]["map"] and m["accuracy"] is not None
    db = sqlite3.connect(isolated_home / "qadistill.db")
    got = dict(db.execute("SELECT metric, value FROM results WHERE artifact='pw'").fetchall())
    assert got["map"] is None and got["accuracy"] == pytest.approx(m["accuracy"])
    assert db.execute("SELECT status FROM runs WHERE command='distill'").fetchall() == [("ok",)]
    assert "NaN" not in (isolated_home / "artifacts" / "pw" / "metrics.json").read_text()


@pytest.mark.parametrize("name", ["../../escaped", "a/b", ".hidden", "x..y", "/abs"])
def test_unsafe_names_are_refused_before_any_work(cli, tmp_path, isolated_home, name):
    r = cli(*DISTILL, "--data", str(tmp_path / "missing.jsonl"), "--name", name)
    assert r.exit_code == 2 and "is not a valid name" in r.stderr, r.output
    r = cli("zoo", "pull", "org/model", "--name", name)
    assert r.exit_code == 2 and "is not a valid name" in r.stderr, r.output
    assert not (tmp_path / "escaped").exists() and not (isolated_home.parent / "escaped").exists()


@requires_package("all-minilm-l6-v2")
def test_a_second_run_with_the_same_name_fails_at_once(cli, tiny_zoo):  # noqa: F811
    from qadistill.locks import artifact_lock

    with artifact_lock("same"):  # another process building 'same' right now
        t = time.perf_counter()
        r = cli(*DISTILL, "--data", str(tiny_zoo), "--name", "same")
        assert r.exit_code == 1 and "is building the artifact 'same'" in r.stderr, r.output
        assert time.perf_counter() - t < 30
    assert cli(*DISTILL, "--data", str(tiny_zoo), "--name", "same").exit_code == 0


def test_eval_also_data_is_loaded_before_training(cli, tiny_zoo, tmp_path):  # noqa: F811
    r = cli(*DISTILL, "--data", str(tiny_zoo), "--eval-also", str(tmp_path / "nope.jsonl"))
    assert r.exit_code == 2 and "nope.jsonl" in r.stderr and "distill single" not in r.stderr, r.output


def test_dev_without_test_is_refused(cli, tiny_zoo):  # noqa: F811
    r = cli(*DISTILL, "--data", str(tiny_zoo), "--dev", str(tiny_zoo))
    assert r.exit_code == 2 and "'dev' and 'test'" in r.stderr, r.output


@pytest.mark.parametrize("args,needle", [
    (["--batch-sizes", "0"], "distinct positive integers"),
    (["--batch-sizes", "1,1"], "distinct positive integers"),
    (["--batch-sizes", "-3"], "distinct positive integers"),
    (["--backends", ","], "names no backend"),
])
def test_bench_rejects_bad_options_before_any_model_loads(cli, isolated_home, args, needle):
    r = cli("bench", "all-minilm-l6-v2", "--no-accuracy", *args)
    assert r.exit_code == 2 and needle in r.stderr, r.output
    assert not (isolated_home / "qadistill.db").exists() or not sqlite3.connect(isolated_home / "qadistill.db").execute(
        "SELECT 1 FROM bench_runs").fetchall()


def test_bench_with_every_row_failing_exits_1_and_stores_nothing(tmp_path, monkeypatch):
    from qadistill import bench
    from qadistill.errors import QadistillError
    from qadistill.store import Store

    monkeypatch.setattr(bench, "run_target", lambda t, s: {"target": {"model": t.model, "backend": t.backend}, "error": "boom"})
    monkeypatch.setattr(bench, "environment", lambda: {})
    store = Store.open()
    with pytest.raises(QadistillError, match="every benchmark row failed.*boom"):
        bench.run_bench([bench.Target("m", "torch", Path("."), "cross-encoder", 32)], bench.BenchSettings(), store=store)
    assert store.bench_runs() == []


@pytest.mark.parametrize("args", [["--preset", "bogus"], ["--optimize", "O9"], ["--quantize", "int4"], ["--calibration-method", "x"]])
def test_export_rejects_bad_choices_before_any_work(cli, tmp_path, isolated_home, args):
    t = time.perf_counter()
    r = cli("export", str(tmp_path / "no-such-model"), *args)
    assert r.exit_code == 2 and "Invalid value" in r.output, r.output
    assert time.perf_counter() - t < 10 and not (isolated_home / "artifacts").exists()


def test_interrupted_errors_exit_130_and_sigterm_143(cli):
    from qadistill.cli.errors import handle_errors
    from qadistill.errors import InterruptedRunError
    from qadistill.interrupts import Interrupted

    import typer

    for exc, code in ((Interrupted(signal.SIGINT), 130), (Interrupted(signal.SIGTERM), 143), (KeyboardInterrupt(), 130),
                      (InterruptedRunError("x", None, Interrupted(signal.SIGTERM)), 143)):
        def boom(exc=exc):
            raise exc
        with pytest.raises(typer.Exit) as ei:
            handle_errors(boom)()
        assert ei.value.exit_code == code


def test_ctrl_c_stops_the_cli_even_when_started_with_sigint_ignored(tmp_path):
    """A script that starts qadistill in the background leaves SIGINT ignored; `kill -INT` must still stop it (130)."""
    code = ("import sys, time; sys.argv = ['qadistill', 'doctor']\n"
            "import qadistill.cli as c\n"
            "c.app = lambda: (print('ready', flush=True), time.sleep(60))\n"
            "c.main()\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert p.stdout.readline().strip() == b"ready"
    p.send_signal(signal.SIGINT)
    try:
        p.wait(timeout=20)
    finally:
        p.kill()
    assert p.returncode != 0 and b"Interrupted" in p.stderr.read()  # raised (outside handle_errors here), not ignored


@requires_package("all-minilm-l6-v2")
def test_a_rebuilt_artifact_never_shows_the_figures_of_the_one_it_replaced(cli, tiny_zoo, isolated_home):  # noqa: F811
    from qadistill.store import Store

    assert cli(*DISTILL, "--data", str(tiny_zoo), "--name", "again", "--seed", "1").exit_code == 0
    with Store.open() as s:
        s.add_results("again", str(tiny_zoo), "test", {"map": 0.999})  # an old eval of the first model
    r = cli(*DISTILL, "--data", str(tiny_zoo), "--name", "again", "--seed", "2")
    assert r.exit_code == 2 and "already exists" in r.stderr and "--overwrite" in r.stderr, r.output  # never silently
    r = cli(*DISTILL, "--data", str(tiny_zoo), "--name", "again", "--seed", "2", "--format", "json", "--overwrite")
    assert r.exit_code == 0, r.output
    with Store.open() as s:
        maps = [x["value"] for x in s.results("again") if x["metric"] == "map"]
    assert maps == [json.loads(r.stdout)["metrics"]["test"]["map"]]


NOISE = ("Warning", "warn(", "deprecated", "Some weights", "TRAIN this model", "newly initialized", "Collecting tensor",
         "histogram", "Traceback")


def test_the_cli_prints_no_library_noise(tmp_path):
    """Run as a user would (a real process, `python -m qadistill`): export + eval of a tiny model, stderr holds only
    qadistill's own lines."""
    import os

    from conftest import make_tiny_model, tiny_jsonl

    folder = make_tiny_model(tmp_path / "m", "cross")
    data = tiny_jsonl(tmp_path / "d.jsonl", n_queries=16)
    env = {**os.environ, "QADISTILL_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    env.pop("QADISTILL_DEBUG", None)
    for args in (["export", str(folder), "--quantize", "static", "--calibration-pairs", "16", "--data", str(data), "--parity-queries", "8"],
                 ["eval", str(folder), "--data", str(data), "--split", "test"]):
        p = subprocess.run([sys.executable, "-m", "qadistill", *args], capture_output=True, text=True, env=env, timeout=300, cwd=REPO)
        assert p.returncode == 0, p.stderr[-2000:]
        noisy = [line for line in p.stderr.splitlines() if any(n in line for n in NOISE)]
        assert noisy == [], noisy


def test_out_never_replaces_a_folder_of_user_files(cli, tiny_zoo, tmp_path):  # noqa: F811
    mine = tmp_path / "my-documents"
    mine.mkdir()
    (mine / "thesis.txt").write_text("four years of work")
    r = cli(*DISTILL, "--data", str(tiny_zoo), "--out", str(mine))
    assert r.exit_code == 2 and "not a qadistill model folder" in r.stderr, r.output
    assert (mine / "thesis.txt").read_text() == "four years of work"


@requires_package("all-minilm-l6-v2")
def test_named_test_file_labels_its_results_and_training_data_is_never_validation(cli, tiny_zoo, tmp_path, isolated_home):  # noqa: F811
    other = jsonl(tmp_path / "other.jsonl", tiny_pairs(n_queries=6, seed=5))
    r = cli(*DISTILL, "--data", str(tiny_zoo), "--dev", str(other), "--test", str(other), "--name", "lab", "--format", "json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["metrics"]["test"]["data"] == f"{other.resolve()}:all"
    rows = sqlite3.connect(isolated_home / "qadistill.db").execute("SELECT DISTINCT dataset FROM results WHERE artifact='lab'").fetchall()
    assert rows == [(str(other.resolve()),)]
    # an --eval-also file is scored whole: it was labelled "FILE:dev" (its relative path, and a split it is not)
    held = jsonl(tmp_path / "held.jsonl", tiny_pairs(n_queries=8, seed=7))
    monkey_cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        r = cli(*DISTILL, "--data", str(tiny_zoo), "--eval-also", "held.jsonl", "--name", "lab3", "--format", "json")
    finally:
        os.chdir(monkey_cwd)
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)["metrics"]["held.jsonl"]
    assert got["data"] == f"{held.resolve()}:all"
    ev = json.loads(cli("eval", "lab3", "--data", str(held), "--format", "json").stdout)["rows"][0]
    assert ev["map"] == pytest.approx(got["map"], abs=1e-6)  # `eval` of what the label names gives the same figure
    stored = sqlite3.connect(isolated_home / "qadistill.db").execute(
        "SELECT DISTINCT dataset, split FROM results WHERE artifact='lab3' AND dataset LIKE '%held.jsonl'").fetchall()
    assert stored == [(str(held.resolve()), "all")]
    r = cli(*DISTILL, "--data", str(tiny_zoo), "--eval-also", str(tiny_zoo), "--name", "lab2")
    assert r.exit_code == 2 and "shares" in r.stderr and "training data" in r.stderr, r.output
    r = cli(*DISTILL, "--data", str(tiny_zoo), "--name", "tiny-t0")
    assert r.exit_code == 2 and "taken by a user teacher recipe" in r.stderr, r.output


def test_unlabelled_data_is_refused_before_any_teacher_scores(cli, tiny_zoo, tmp_path):  # noqa: F811
    rows = [{k: v for k, v in r.items() if k != "label"} for r in tiny_pairs(n_queries=12)]
    data = jsonl(tmp_path / "unlabelled.jsonl", rows)
    r = cli(*DISTILL, "--data", str(data), "--name", "u1")
    assert r.exit_code == 2 and "have no label" in r.stderr and "distill single" not in r.stderr, r.output


def test_eval_of_a_file_scores_the_whole_file_or_a_named_part_of_its_split(tmp_path):
    from qadistill.splits import load_split, split_by_query
    from qadistill.data import load_dataset
    from qadistill.errors import DataError

    data = jsonl(tmp_path / "d.jsonl", tiny_pairs(n_queries=20))
    assert len(load_split(str(data), None)) == 80 and load_split(str(data), "all").split == "all"
    assert load_split(str(data), "test").pairs == split_by_query(load_dataset(str(data)))[2].pairs
    with pytest.raises(DataError, match="no split of that name"):
        load_split(str(data), "bogus")


def test_a_max_length_beyond_the_model_is_refused_before_scoring(cli, tmp_path):
    from conftest import make_tiny_model

    folder = make_tiny_model(tmp_path / "m", "cross")  # 128 positions
    data = jsonl(tmp_path / "d.jsonl", tiny_pairs(n_queries=4))
    r = cli("eval", str(folder), "--data", str(data), "--max-length", "4000")
    assert r.exit_code == 2 and "128 positions" in r.stderr and "unexpected" not in r.output, r.output
    r = cli("rank", str(folder), "-q", "who?", "-p", str(data), "--max-length", "4000", "--backend", "torch")
    assert r.exit_code == 2 and "128 positions" in r.stderr, r.output


def test_incomplete_model_folders_are_bad_input_not_crashes(cli, tmp_path, monkeypatch):
    import shutil

    from conftest import make_tiny_model

    folder = make_tiny_model(tmp_path / "m", "cross")
    notok = tmp_path / "notok"
    notok.mkdir()
    for f in ("config.json", "model.safetensors"):
        shutil.copy(folder / f, notok / f)
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "notes.txt").write_text("x")
    data = jsonl(tmp_path / "d.jsonl", tiny_pairs(n_queries=4))
    r = cli("eval", str(notok), "--data", str(data))
    assert r.exit_code == 2 and "no tokenizer files" in r.stderr, r.output
    r = cli("bench", str(plain), "--no-accuracy", "--batch-sizes", "1")
    assert r.exit_code == 2 and "no config.json" in r.stderr, r.output
    monkeypatch.setenv("QADISTILL_HOME", str(data))
    r = cli("zoo", "list")
    assert r.exit_code == 1 and "is a file, not a folder" in r.stderr, r.output


@requires_package("all-minilm-l6-v2")
def test_resume_never_replaces_a_built_model_without_overwrite(cli, tiny_zoo, isolated_home):  # noqa: F811
    """--resume continues an unfinished run; it is not permission to rebuild a finished one over itself."""
    assert cli(*DISTILL, "--data", str(tiny_zoo), "--name", "kept", "--seed", "1").exit_code == 0
    weights = isolated_home / "artifacts" / "kept" / "model.safetensors"
    before = weights.read_bytes()
    r = cli(*DISTILL, "--data", str(tiny_zoo), "--name", "kept", "--seed", "2", "--resume")
    assert r.exit_code == 2 and "already exists" in r.stderr and "--overwrite" in r.stderr, r.output
    assert weights.read_bytes() == before
    r = cli(*DISTILL, "--data", str(tiny_zoo), "--name", "kept", "--seed", "2", "--resume", "--overwrite")
    assert r.exit_code == 0, r.output  # nothing to resume: a fresh run, asked for with --overwrite
    assert weights.read_bytes() != before
    again = weights.read_bytes()
    from qadistill.fsutil import _umask

    plain = 0o666 & ~_umask()  # 0644 under the usual umask: model.safetensors as readable as the rest (was 0600)
    assert all((f.stat().st_mode & 0o777) == plain for f in weights.parent.iterdir())
    r = cli(*DISTILL, "--data", str(tiny_zoo), "--name", "other", "--out", str(weights.parent), "--seed", "3")
    assert r.exit_code == 2 and "already holds a model" in r.stderr and weights.read_bytes() == again, r.output


@requires_package("all-minilm-l6-v2")
def test_gold_mode_says_the_teachers_it_was_given_are_not_used(cli, tiny_zoo):  # noqa: F811
    gold = [("gold" if a == "single" else a) for a in DISTILL]
    r = cli(*gold, "--data", str(tiny_zoo), "--name", "g")
    assert r.exit_code == 0 and "teachers (tiny-t0) are not used" in r.stderr, r.output
