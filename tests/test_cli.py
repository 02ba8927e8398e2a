from __future__ import annotations

import json
import re

import pytest

from conftest import write
from qadistill import __version__
from test_registry import BUILTINS, MY_TEACHER


def test_version(cli):
    r = cli("--version")
    assert r.exit_code == 0 and r.stdout.strip() == f"qadistill {__version__}"


def test_help_lists_nouns(cli):
    r = cli("--help")
    assert r.exit_code == 0
    assert "zoo" in r.stdout and "doctor" in r.stdout


def test_zoo_list_json_has_every_builtin(cli):
    r = cli("zoo", "list", "--format", "json")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    names = {x["name"] for x in rows}
    assert BUILTINS <= names
    by = {x["name"]: x for x in rows}
    assert by["bge-reranker-base"]["availability"] == "needs-hub" and by["bge-reranker-base"]["available"] is False
    assert by["minilm-l6-cross-wikiqa"]["availability"] in ("needs-build", "missing-package")
    assert by["all-minilm-l6-v2"]["parameters"] == 22_713_216
    assert by["quickstart"]["kind"] == "pipeline"
    assert set(rows[0]) >= {"name", "kind", "parameters", "source", "availability", "built", "best_map"}


def test_zoo_list_table_and_kind_filter(cli):
    r = cli("zoo", "list", "--kind", "student")
    assert r.exit_code == 0
    assert "minilm-l3-student" in r.stdout and "all-mpnet-base-v2 " not in r.stdout
    assert "zoo show NAME" in r.stderr  # hints go to stderr, data to stdout


@pytest.mark.parametrize("width", [80, 200])
def test_zoo_list_fits_the_terminal_and_keeps_its_key_columns(cli, monkeypatch, width):
    """An 80-column terminal once squeezed the source/built/best-MAP columns to nothing."""
    monkeypatch.setenv("COLUMNS", str(width))
    r = cli("zoo", "list")
    assert r.exit_code == 0
    lines = r.stdout.splitlines()
    assert max(len(line) for line in lines) <= width
    header = next(line for line in lines if "name" in line and "kind" in line)
    for col in ("params", "availability", "best MAP") + (("source", "built", "published") if width >= 160 else ()):
        assert col in header
    assert any("minilm-l3-student" in line for line in lines)


def test_zoo_show_json_of_a_hub_model_without_cache(cli):
    r = cli("zoo", "show", "ms-marco-minilm-l6-v2", "--format", "json")
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert info["recipe"]["source"]["repo_id"] == "cross-encoder/ms-marco-MiniLM-L-6-v2"
    assert info["availability"] == "needs-hub" and "resolved" not in info


def test_zoo_show_packaged_teacher_resolves(cli):
    from conftest import packaged_installed

    if not packaged_installed("all-minilm-l6-v2"):
        pytest.skip("all-minilm-l6-v2 package not installed")
    r = cli("zoo", "show", "all-minilm-l6-v2", "--format", "json")
    info = json.loads(r.stdout)
    assert "config.json" in info["files"] and "tokenizer.json" in info["files"]
    r = cli("zoo", "show", "all-minilm-l6-v2")
    assert r.exit_code == 0 and "resolved" in r.stdout and 'name = "all-minilm-l6-v2"' in r.stdout


def test_unknown_name_is_one_line_with_did_you_mean(cli):
    r = cli("zoo", "show", "all-minilm-l6")
    assert r.exit_code == 2
    assert "error: unknown model 'all-minilm-l6' (did you mean 'all-minilm-l6-v2'" in r.stderr
    assert "hint: run `qadistill zoo list`" in r.stderr
    assert "Traceback" not in r.output and r.stdout == ""


def test_zoo_add_invalid_names_file_and_field_and_writes_nothing(cli, tmp_path, isolated_home):
    f = write(tmp_path / "bad.toml", MY_TEACHER.replace('"cross-encoder"', '"tri-encoder"'))
    r = cli("zoo", "add", str(f))
    assert r.exit_code == 2
    assert "bad.toml: field 'architecture': 'tri-encoder' is not allowed" in r.stderr
    assert not (isolated_home / "zoo").exists()


def test_zoo_add_checks_the_teachers_a_fine_tune_distils_from(cli, tmp_path, isolated_home):
    """`[finetune] distill_from = ["nosuch"]` was accepted and `teach` failed seconds in with "unknown teacher 'nosuch'",
    naming neither the file nor the field (a pipeline's teachers were checked at `zoo add`)."""
    f = write(tmp_path / "ft.toml", 'kind = "teacher"\nname = "my-ft"\narchitecture = "cross-encoder"\n'
              'finetune_from = "all-minilm-l6-v2"\n[finetune]\ndistill_from = ["all-minilm-l6-v2", "nosuch"]\n')
    r = cli("zoo", "add", str(f))
    assert r.exit_code == 2 and "ft.toml: field 'finetune.distill_from[1]'" in r.stderr and "nosuch" in r.stderr, r.output
    assert not (isolated_home / "zoo").exists()


def test_zoo_add_force_never_changes_a_recipes_kind(cli, tmp_path, isolated_home):
    """`zoo add --force` replaced a pipeline `myp` with a student recipe of that name without a word."""
    pipe = write(tmp_path / "p.toml", 'kind = "pipeline"\nname = "myp"\nteachers = ["all-minilm-l6-v2"]\nstudent = "minilm-l3-student"\n')
    stu = write(tmp_path / "s.toml", 'kind = "student"\nname = "myp"\ninit = { type = "truncate", model = "all-minilm-l6-v2", layers = 2 }\n')
    assert cli("zoo", "add", str(pipe)).exit_code == 0
    r = cli("zoo", "add", str(stu), "--force")
    assert r.exit_code == 2 and "'myp' is a pipeline recipe in your zoo and this file is a student" in r.stderr, r.output
    assert "qadistill zoo remove myp" in r.stderr
    assert cli("zoo", "add", str(pipe), "--force").exit_code == 0  # the same kind: replaced


def test_zoo_add_show_remove(cli, tmp_path, isolated_home):
    f = write(tmp_path / "mine.toml", MY_TEACHER)
    r = cli("zoo", "add", str(f))
    assert r.exit_code == 0, r.output
    assert (isolated_home / "zoo" / "my-teacher.toml").exists()
    rows = json.loads(cli("zoo", "list", "--format", "json").stdout)
    mine = next(x for x in rows if x["name"] == "my-teacher")
    assert mine["origin"] == "user" and mine["availability"] == "missing-folder"
    assert cli("zoo", "add", str(f)).exit_code == 2
    r = cli("zoo", "remove", "my-teacher")
    assert r.exit_code == 0 and not (isolated_home / "zoo" / "my-teacher.toml").exists()
    assert cli("zoo", "remove", "quickstart").exit_code == 2


def test_debug_shows_traceback(cli, monkeypatch):
    monkeypatch.setenv("QADISTILL_DEBUG", "1")
    r = cli("zoo", "show", "nope-nope")
    assert r.exit_code != 0 and r.exception is not None and type(r.exception).__name__ == "UnknownNameError"


def test_unexpected_error_is_one_line(cli, monkeypatch):
    import qadistill.catalog as catalog

    def boom(*a, **k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(catalog, "zoo_rows", boom)
    r = cli("zoo", "list")
    assert r.exit_code == 1
    assert "unexpected RuntimeError: disk on fire" in r.stderr and "QADISTILL_DEBUG=1" in r.stderr
    assert "Traceback" not in r.output


def test_doctor_json(cli):
    r = cli("doctor", "--format", "json")
    rep = json.loads(r.stdout)
    names = {c["name"] for c in rep["checks"]}
    assert {"lib:torch", "lib:transformers", "lib:optimum", "lib:onnxruntime", "cuda", "exporter"} <= names
    optional = {c["name"] for c in rep["checks"] if not c["required"]}
    assert {"lib:optimum", "lib:optimum-onnx", "lib:sentence-transformers"} <= optional  # export works without Optimum
    assert "CPUExecutionProvider" in rep["info"]["onnxruntime_providers"]
    assert set(rep["info"]["cpu_features"]) >= {"avx2", "avx512f", "avx512_vnni", "arm64_dotprod"}
    assert rep["info"]["hf_offline"] is True
    assert r.exit_code == (0 if rep["ok"] else 1)


def test_doctor_fails_when_a_required_piece_is_missing(cli, monkeypatch):
    from qadistill import doctor as core

    real = core._version
    monkeypatch.setattr(core, "_version", lambda d: None if d == "onnx" else real(d))
    r = cli("doctor")
    assert r.exit_code == 1
    assert "failed: lib:onnx" in r.stderr and "make venv" in r.stderr


def test_doctor_says_which_exporter_is_active_and_why(cli, monkeypatch):
    from qadistill import onnx_export

    monkeypatch.setenv("QADISTILL_EXPORTER", "torch")
    rep = json.loads(cli("doctor", "--format", "json").stdout)
    row = next(c for c in rep["checks"] if c["name"] == "exporter")
    assert row["ok"] and row["value"] == "torch.onnx + ORT optimizer (QADISTILL_EXPORTER=torch)"
    monkeypatch.delenv("QADISTILL_EXPORTER")
    monkeypatch.setattr(onnx_export, "_optimum_status", lambda: "optimum-onnx not installed")
    row = next(c for c in json.loads(cli("doctor", "--format", "json").stdout)["checks"] if c["name"] == "exporter")
    assert row["value"] == "torch.onnx + ORT optimizer (optimum-onnx not installed)"
    assert "exporter" in cli("doctor").stdout  # the table shows the row too
    monkeypatch.setenv("QADISTILL_EXPORTER", "optimum")  # asked for, but not there: a failed required check
    r = cli("doctor", "--format", "json")
    row = next(c for c in json.loads(r.stdout)["checks"] if c["name"] == "exporter")
    assert r.exit_code == 1 and not row["ok"] and "optimum-onnx not installed" in row["value"] and "qadistill[optimum]" in row["fix"]


def test_progress_in_a_pipe_is_a_few_plain_lines_with_an_eta(capsys):
    """Piped (`make demo > log`), rich's live bars printed nothing until the very end; now each task says when it
    starts, each quarter with elapsed time and ETA, and when it is done."""
    from qadistill.progress import RichProgress

    with RichProgress() as prog:  # pytest's captured stderr is not a terminal
        t = prog.task("distill mkdm", 100)
        for _ in range(100):
            t.advance(1, loss=0.5)
        t.done()
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert lines[0] == "distill mkdm: 100 to do"
    assert [line.split(" (")[1].split(")")[0] for line in lines[1:4]] == ["25%", "50%", "75%"]
    assert all("ETA" in line and "loss=0.5" in line for line in lines[1:4])
    assert lines[4].startswith("distill mkdm: done in") and len(lines) == 5


def test_a_resumed_task_in_a_pipe_counts_its_rate_from_where_it_resumed(capsys, monkeypatch):
    """A resumed run's progress started at 0 and then jumped to the resumed step, so its first ETA line read ~0s."""
    import time

    from qadistill.progress import RichProgress

    clock = iter(range(0, 10_000_000, 1000))
    monkeypatch.setattr(time, "perf_counter", lambda: float(next(clock)))
    monkeypatch.setattr("qadistill.progress.HEARTBEAT_S", 1e12)  # quarters only here (the heartbeat has its own test)
    with RichProgress() as prog:
        t = prog.task("distill mkdm", 100, done=60)
        for _ in range(40):
            t.advance(1)
        t.done()
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert lines[0] == "distill mkdm: 40 of 100 to do (60 done before)"
    assert len(lines) == 3 and lines[1].startswith("distill mkdm: 75/100 (75%)")
    el, eta = (float(x) for x in re.findall(r"(\d+)s elapsed, ETA (\d+)s", lines[1])[0])
    assert eta == pytest.approx(1000 * 25, abs=1)  # 1000 s a step after the first (start-up) step, 25 to go


def test_units_found_done_fill_the_bar_but_not_the_rate(capsys, monkeypatch):
    """A resumed `score` found half its shards stored: they were counted as scored at the speed of reading a file, so
    its rate and ETA were those of the reused shards. Reused units (skip) fill the bar and are named, not timed."""
    import time

    from qadistill.progress import RichProgress

    now = [0.0]
    monkeypatch.setattr(time, "perf_counter", lambda: now[0])
    monkeypatch.setattr("qadistill.progress.HEARTBEAT_S", 1e12)
    with RichProgress() as prog:
        t = prog.task("t0: scoring pool", 100)
        t.skip(50)  # half the data stored: at once
        for _ in range(50):
            now[0] += 2.0  # 2 s a unit scored
            t.advance(1)
        t.done()
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    q3 = next(x for x in lines if "(75%)" in x)
    assert "(50 already done, reused)" in q3 and lines[-1].endswith("(50 already done, reused)")
    assert float(re.findall(r"ETA (\d+)s", q3)[0]) == pytest.approx(2 * 25, abs=1)  # not 25 units at 100 units / 50 s
    assert "(50%)" in lines[1] and "ETA unknown" in lines[1]  # the quarter the reused units filled: no rate yet


def test_the_start_up_before_the_first_step_does_not_inflate_the_eta(capsys, monkeypatch):
    """Right after a --resume the first step carries the start-up (models, checkpoint): its ETA read 580 s for a
    run of seconds. The rate is taken from the steps after the first."""
    import time

    from qadistill.progress import RichProgress

    times = iter([0.0, 300.0] + [300.0 + k for k in range(1, 200)])  # created at 0; first step at 300 (start-up); then 1 s a step
    monkeypatch.setattr(time, "perf_counter", lambda: next(times))
    monkeypatch.setattr("qadistill.progress.HEARTBEAT_S", 1e12)
    with RichProgress() as prog:
        t = prog.task("distill", 100, done=60)
        for _ in range(40):
            t.advance(1)
    line = next(x for x in capsys.readouterr().err.splitlines() if "(75%)" in x)
    assert float(re.findall(r"ETA (\d+)s", line)[0]) == pytest.approx(25, abs=1)  # not (300 + 14) / 15 * 25 = 523


def test_a_long_first_quarter_in_a_pipe_is_not_silence(capsys, monkeypatch):
    """Piped, a 203,600-pair eval printed nothing for 8 minutes (its first quarter): a plain task now also prints a
    line at the next step after HEARTBEAT_S seconds without one."""
    import time

    from qadistill.progress import HEARTBEAT_S, RichProgress

    now = [0.0]
    monkeypatch.setattr(time, "perf_counter", lambda: now[0])
    with RichProgress() as prog:
        t = prog.task("scoring", 1000)
        for _ in range(10):  # 10 steps, each HEARTBEAT_S / 2 apart: a line at every second step, all in the first quarter
            now[0] += HEARTBEAT_S / 2
            t.advance(1)
        t.done()
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert [line.split(": ")[1].split(" ")[0] for line in lines[1:-1]] == ["2/1000", "4/1000", "6/1000", "8/1000", "10/1000"]
    assert all("ETA" in line for line in lines[1:-1]) and lines[-1].startswith("scoring: done in")


def test_zoo_push_json_reports_what_it_staged_and_uploaded(cli, tmp_path, monkeypatch):
    """The command passes the artifact to the core functions and prints their result as JSON (core patched)."""
    import qadistill.hub as hub
    from qadistill.store import Store

    folder = tmp_path / "student"
    folder.mkdir()
    Store.open().add_artifact("my-student", "student-model", folder, recipe="x", manifest={"max_length": 48})
    seen = {}

    def stage(name, path, exports, dest, repo_id, own_dest=False):
        seen.update(name=name, path=path, repo=repo_id)
        write(dest / "README.md", "card")
        write(dest / "onnx" / "model.onnx", "x")
        return dest

    monkeypatch.setattr(hub, "stage_for_push", stage)
    monkeypatch.setattr(hub, "push", lambda staged, repo, private, token: f"https://hub.test/{repo}")
    out = tmp_path / "staged"
    r = cli("zoo", "push", "my-student", "me/s", "--dry-run", "--out", str(out), "--format", "json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d == {"name": "my-student", "repo": "me/s", "private": False, "dry_run": True, "folder": str(out),
                 "files": ["README.md", "onnx/model.onnx"], "url": None}
    assert seen["name"] == "my-student" and seen["repo"] == "me/s"
    r = cli("zoo", "push", "my-student", "me/s", "--out", str(out), "--private", "-f", "json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["url"] == "https://hub.test/me/s" and d["private"] is True and d["dry_run"] is False


EVAL_RES = {"data": "wikiqa", "split": "test", "fingerprint": "f", "stats": {"pairs": 2341}, "rows": [
    {"model": "quickstart-mkdm-s42", "map": 0.6626, "mrr": 0.6791, "p@1": 0.5432, "mrr@10": 0.6788, "ndcg@10": 0.7412,
     "accuracy": 0.9012, "f1": 0.4321, "auc": 0.8123, "queries": 237, "pairs": 2341, "seconds": 12.3},
    {"model": "ensemble(all-minilm-l6-v2+all-mpnet-base-v2)", "map": None, "mrr": None, "p@1": None, "mrr@10": None,
     "ndcg@10": None, "accuracy": 0.5, "f1": 0.0, "auc": None, "queries": 0, "pairs": 2341, "seconds": 30.0}]}


@pytest.mark.parametrize("width", [80, 200])
def test_eval_table_shows_mrr10_and_ndcg10_and_fits_the_terminal(cli, monkeypatch, width):
    import qadistill.evaluate

    seen = {}

    def fake(names, registry, data, split, **kw):
        seen.update(names=names, data=data, split=split)
        return EVAL_RES

    monkeypatch.setattr(qadistill.evaluate, "evaluate", fake)
    monkeypatch.setenv("COLUMNS", str(width))
    r = cli("eval", "quickstart-mkdm-s42", "--data", "wikiqa", "--split", "test")
    assert r.exit_code == 0, r.output
    assert seen == {"names": ["quickstart-mkdm-s42"], "data": "wikiqa", "split": "test"}
    lines = r.stdout.splitlines()
    assert max(len(line) for line in lines) <= width
    header = next(line for line in lines if "MAP" in line)
    for col in ("MAP", "MRR", "MRR@10", "NDCG@10", "P@1", "queries") + (("acc", "F1", "AUC", "seconds") if width >= 120 else ()):
        assert re.search(rf"(^|\s){re.escape(col)}(\s|$)", header), (col, header)
    assert "0.7412" in r.stdout and "0.6788" in r.stdout and "0.6626" in r.stdout
    assert any("quickstart-mkdm-s42" in line for line in lines)  # the model name is not cut at 80 columns either
    assert ("acc, F1, AUC, seconds not shown" in r.stderr) == (width < 120)
    j = cli("eval", "quickstart-mkdm-s42", "--format", "json")
    assert json.loads(j.stdout)["rows"][0]["ndcg@10"] == 0.7412


@pytest.mark.parametrize("width", [80, 200])
def test_distill_table_shows_mrr10_and_ndcg10(cli, monkeypatch, width):
    import qadistill.distill
    from qadistill.distill import DistillResult

    m = {k: v for k, v in EVAL_RES["rows"][0].items() if k not in ("model", "seconds")}
    metrics = {"metrics": {"test": {"data": "wikiqa:test", **m},
                           "trecqa:dev": {"data": "trecqa:dev", **{k: v for k, v in m.items() if k not in ("mrr@10", "ndcg@10")}}},
               "parameters": 17_400_000, "train_seconds": 60.0, "total_seconds": 90.0}
    monkeypatch.setattr(qadistill.distill, "run_distill", lambda recipe, reg, store, **kw: DistillResult("stu", "/tmp/stu", metrics))
    monkeypatch.setenv("COLUMNS", str(width))
    r = cli("distill", "quickstart", "--name", "stu")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert max(len(line) for line in lines) <= width
    header = next(line for line in lines if "MAP" in line)
    assert all(c in header for c in ("MRR@10", "NDCG@10", "P@1", "AUC", "queries"))
    test_row = next(line for line in lines if "wikiqa:test" in line)
    assert "0.6788" in test_row and "0.7412" in test_row
    trec = next(line for line in lines if "trecqa" in line)
    assert trec.count(" - ") >= 2  # a metrics.json from before MRR@10/NDCG@10 shows '-' there


def test_a_bad_option_is_blamed_on_the_option_not_on_a_recipe_file(cli):
    r = cli("distill", "--student", "tiny-random-student", "--teachers", "all-minilm-l6-v2", "--temperature", "-1")
    assert r.exit_code == 2 and "command line: field 'distill.temperature'" in r.stderr and "fix that option" in r.stderr
    r = cli("distill", "quickstart", "--temperature", "-1")
    assert r.exit_code == 2 and "pipeline 'quickstart' + options" in r.stderr and "fix that option, or the recipe" in r.stderr


def test_doctor_fails_when_the_home_is_not_writable(cli, isolated_home, monkeypatch):
    import tempfile

    def read_only(*a, **k):
        raise PermissionError(13, "Permission denied")

    isolated_home.mkdir(parents=True, exist_ok=True)
    with monkeypatch.context() as m:
        m.setattr(tempfile, "NamedTemporaryFile", read_only)  # root ignores chmod: stand in for a read-only mount
        r = cli("doctor", "--format", "json")
    home = {c["name"]: c for c in json.loads(r.stdout)["checks"]}["qadistill_home"]
    assert r.exit_code == 1 and not home["ok"] and "not writable" in home["value"] and "QADISTILL_HOME" in home["fix"]
    r = cli("doctor", "--format", "json")
    assert {c["name"]: c for c in json.loads(r.stdout)["checks"]}["qadistill_home"]["ok"]


def test_doctor_reports_a_home_that_is_a_file_and_creates_no_home(cli, tmp_path, monkeypatch):
    """With QADISTILL_HOME a file, `doctor --format json` printed nothing to stdout (an error on stderr only), so a
    script reading its JSON got an empty string; and doctor created a missing home with its parents."""
    f = tmp_path / "home-file"
    f.write_text("x")
    monkeypatch.setenv("QADISTILL_HOME", str(f))
    r = cli("doctor", "--format", "json")
    checks = {c["name"]: c for c in json.loads(r.stdout)["checks"]}
    assert r.exit_code == 1 and not checks["qadistill_home"]["ok"] and "is a file, not a folder" in checks["qadistill_home"]["value"]
    missing = tmp_path / "no" / "such" / "home"
    monkeypatch.setenv("QADISTILL_HOME", str(missing))
    r = cli("doctor", "--format", "json")
    home = {c["name"]: c for c in json.loads(r.stdout)["checks"]}["qadistill_home"]
    assert home["ok"] and "not created yet" in home["value"] and not (tmp_path / "no").exists()


def test_an_interrupted_command_says_how_to_finish(capsys):
    import typer

    from qadistill.cli.errors import handle_errors

    @handle_errors
    def command():
        raise KeyboardInterrupt

    with pytest.raises(typer.Exit) as exc:
        command()
    err = capsys.readouterr().err
    # nothing here says what was kept, so the hint promises no finishing (a rerun of bench or eval starts over)
    assert exc.value.exit_code == 130 and "error: interrupted" in err and "hint: run the same command again\n" in err


def test_a_file_where_qadistill_keeps_a_folder_is_named_with_what_to_do(cli, tmp_path, isolated_home):
    isolated_home.mkdir(parents=True, exist_ok=True)
    (isolated_home / "zoo").write_text("not a folder")
    r = cli("zoo", "add", str(write(tmp_path / "mine.toml", MY_TEACHER)))
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert f"{isolated_home / 'zoo'}: a file stands where a folder is needed" in r.stderr
    assert "move it out of the way" in r.stderr and (isolated_home / "zoo").read_text() == "not a folder"


def test_doctor_reads_the_whole_store_and_names_a_damaged_page(cli, isolated_home):
    """A garbled page of a table no command read yet went unnoticed; doctor reads every page (PRAGMA quick_check)."""
    from qadistill.store import Store

    with Store.open() as store:
        for i in range(300):
            store.start_run(f"run {i} " + "x" * 200)
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages = [r[0] for r in store.conn.execute("SELECT pageno FROM dbstat WHERE name = 'runs' AND pagetype = 'leaf'")]
    r = cli("doctor", "--format", "json")
    assert [c for c in json.loads(r.stdout)["checks"] if c["name"] == "store"][0]["ok"]
    db = isolated_home / "qadistill.db"
    with open(db, "r+b") as fh:
        fh.seek((pages[len(pages) // 2] - 1) * 4096 + 8)
        fh.write(b"\xff" * 64)
    r = cli("doctor", "--format", "json")
    check = [c for c in json.loads(r.stdout)["checks"] if c["name"] == "store"][0]
    assert r.exit_code == 1 and not check["ok"] and "is unreadable" in check["value"] and "move it aside" in check["fix"]
    assert "failed: store" in r.stderr


def test_eval_says_which_questions_the_ranking_metrics_score_and_how_many_passages_repeat():
    from qadistill.cli.evaluate import data_notes

    notes = data_notes({"pairs": 2733, "queries": 296, "positives": 140, "queries_with_pos_and_neg": 122, "repeated_passages": 1})
    assert notes[0].startswith("queries: the 122 of 296 with both a correct and a wrong candidate")
    assert notes[1].startswith("1 passage repeated for the same query")
    assert data_notes({"queries": 5, "queries_with_pos_and_neg": 5, "repeated_passages": 0}) == []


def test_eval_says_why_f1_is_0_when_no_pair_crosses_the_threshold(cli, monkeypatch):
    """A zero-shot bi-encoder's calibrated probabilities stay under 0.5 at WikiQA's 12% positives: F1 0.0000 stood in
    the table beside a MAP of .77 with nothing said. The metrics count the pairs over the threshold; eval says it."""
    import qadistill.evaluate
    from qadistill.metrics import ranking_metrics

    q, y = ["a"] * 4 + ["b"] * 4, [1, 0, 0, 0, 0, 1, 0, 0]
    ranks_well = ranking_metrics(q, [-0.5, -3.0, -2.0, -4.0, -2.5, -0.2, -3.0, -0.1], y)  # every score under logit 0
    assert ranks_well["map"] == pytest.approx((1 + 0.5) / 2) and ranks_well["f1"] == 0.0
    assert ranks_well["predicted_correct"] == 0
    classifies = ranking_metrics(q, [2.0, -3.0, -2.0, -4.0, -2.5, 1.0, -3.0, 0.5], y)
    assert classifies["predicted_correct"] == 3 and classifies["f1"] == pytest.approx(0.8)
    res = {"data": "wikiqa", "split": "test", "fingerprint": "f", "stats": {"pairs": 8},
           "rows": [{"model": "zero-shot-bi", **ranks_well, "seconds": 1.0}, {"model": "cross", **classifies, "seconds": 1.0}]}
    monkeypatch.setattr(qadistill.evaluate, "evaluate", lambda *a, **k: res)
    monkeypatch.setenv("COLUMNS", "200")
    r = cli("eval", "zero-shot-bi,cross", "--data", "wikiqa", "--split", "test")
    assert r.exit_code == 0, r.output
    assert "F1 0 for zero-shot-bi: no pair scores over probability 0.5" in " ".join(r.stderr.split())
    assert "cross:" not in r.stderr
    # a script reading --format json gets the same sentences, not only the count the table's note is made of
    r = cli("eval", "zero-shot-bi,cross", "--data", "wikiqa", "--split", "test", "--format", "json")
    assert r.exit_code == 0, r.output
    notes = json.loads(r.stdout)["notes"]
    assert any(n.startswith("F1 0 for zero-shot-bi: no pair scores over probability 0.5") for n in notes)
    assert not any(n.startswith("cross") for n in notes)
