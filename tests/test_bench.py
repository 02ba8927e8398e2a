from __future__ import annotations

import json
import sys

import pytest

from conftest import make_tiny_model, tiny_jsonl
from qadistill.bench import BenchSettings, Target, check_device, finalize, pareto_flags, percentiles, time_loop
from qadistill.errors import UserInputError

pytestmark = pytest.mark.integration  # real models, processes or the CLI end to end


class FakeClock:
    """A clock advanced by the fake backend: each call 'takes' the next duration from a list."""

    def __init__(self, durations):
        self.t = 0.0
        self.durations = list(durations)
        self.calls = 0

    def __call__(self):
        return self.t

    def work(self):
        self.t += self.durations[self.calls % len(self.durations)]
        self.calls += 1


def test_time_loop_and_percentiles_on_known_timings():
    clock = FakeClock([0.010] * 3 + [0.001 * k for k in range(1, 101)])  # 3 warm-ups, then 1..100 ms
    times = time_loop(clock.work, min_time=0.0, min_runs=100, max_runs=100, warmup=3, clock=clock)
    assert len(times) == 100 and clock.calls == 103
    p = percentiles(times)
    assert p["min"] == pytest.approx(1.0) and p["mean"] == pytest.approx(50.5)
    assert p["p50"] == pytest.approx(50.5) and p["p90"] == pytest.approx(90.1) and p["p99"] == pytest.approx(99.01)


def test_time_loop_runs_until_min_time_and_min_runs():
    clock = FakeClock([0.125])
    times = time_loop(clock.work, min_time=1.0, min_runs=3, max_runs=1000, warmup=0, clock=clock)
    assert len(times) == 8  # 8 × 0.125 s reaches the 1 s minimum
    clock = FakeClock([1.0])
    assert len(time_loop(clock.work, min_time=0.5, min_runs=4, max_runs=1000, warmup=0, clock=clock)) == 4
    clock = FakeClock([0.001])
    assert len(time_loop(clock.work, min_time=100, min_runs=1, max_runs=50, warmup=0, clock=clock)) == 50


def test_pareto_and_speedups():
    assert pareto_flags([(0.8, 10), (0.7, 100), (0.6, 50), (0.8, 5)]) == [True, True, False, False]
    rows = [
        {"model": "big", "backend": "torch", "batch_size": 8, "throughput_pairs_s": 10.0, "map": 0.77, "teacher": True},
        {"model": "small", "backend": "ort-int8", "batch_size": 8, "throughput_pairs_s": 250.0, "map": 0.70, "teacher": False},
        {"model": "small", "backend": "torch", "batch_size": 8, "throughput_pairs_s": 50.0, "map": 0.70, "teacher": False},
    ]
    out = finalize(rows)
    assert [r["speedup"] for r in out] == [1.0, 25.0, 5.0]
    assert [r["pareto"] for r in out] == [True, True, False]
    assert out[0]["baseline"] == "big:torch"
    with pytest.raises(UserInputError, match="not among the measured rows"):
        finalize(rows, baseline="nope:torch")


def test_cuda_missing_is_an_error_listing_what_exists(monkeypatch):
    from qadistill import bench

    monkeypatch.setattr(bench, "cuda_available", lambda: (False, ["AzureExecutionProvider", "CPUExecutionProvider"]))
    with pytest.raises(UserInputError) as ei:
        check_device("cuda", [])
    assert "no CUDA device here (available: cpu (torch), CPUExecutionProvider)" in ei.value.message
    with pytest.raises(UserInputError, match="need --device cuda"):
        check_device("cpu", ["torch-fp16"])
    monkeypatch.setattr(bench, "cuda_available", lambda: (True, ["CPUExecutionProvider"]))
    with pytest.raises(UserInputError, match="no CUDA provider"):
        check_device("cuda", ["ort-fp16"])
    check_device("cuda", ["torch-fp16"])  # torch CUDA is enough for torch backends


def test_worker_backend_selection_per_name():
    """Each backend name maps to its class, dtype and provider (the CUDA paths, checked without a GPU)."""
    from qadistill.backends import BiEncoderTorchBackend, OrtBackend, TorchBackend
    from dataclasses import replace

    from qadistill.bench import BenchSettings, Target
    from qadistill.bench_worker import make_backend

    s = BenchSettings(device="cuda", max_length=64, threads=2)
    cross = Target(model="m", backend="torch", folder="/nowhere", architecture="cross-encoder")
    for name, dtype in [("torch", "fp32"), ("torch-fp16", "fp16"), ("torch-bf16", "bf16"), ("torch-compile", "fp32"),
                        ("torch-fp16-compile", "fp16"), ("torch-bf16-compile", "bf16")]:
        be = make_backend(replace(cross, backend=name), s)
        assert type(be) is TorchBackend and be.dtype == dtype and be.device == "cuda", name
    assert type(make_backend(replace(cross, architecture="bi-encoder", backend="torch-bf16"), s)) is BiEncoderTorchBackend
    assert make_backend(replace(cross, backend="ort-fp16"), s).provider == "CUDAExecutionProvider"
    assert make_backend(replace(cross, backend="ort-trt"), s).provider == "TensorrtExecutionProvider"
    ort_cpu = make_backend(replace(cross, backend="ort-int8", file_name="model_quantized.onnx"), replace(s, device="cpu"))
    assert type(ort_cpu) is OrtBackend and ort_cpu.provider == "CPUExecutionProvider" and ort_cpu.file_name == "model_quantized.onnx"
    with pytest.raises(UserInputError, match="need --device cuda"):
        check_device("cpu", ["torch-bf16-compile"])


def test_cuda_missing_cli_exit_code_2(cli, monkeypatch):
    from qadistill import bench

    monkeypatch.setattr(bench, "cuda_available", lambda: (False, ["CPUExecutionProvider"]))
    r = cli("bench", "all-minilm-l6-v2", "--device", "cuda")
    assert r.exit_code == 2 and "no CUDA device here" in r.stderr and r.stdout == ""


def test_bench_plot_and_threads_are_checked_before_the_benchmark(cli, tiny_bench, tmp_path, monkeypatch):
    import qadistill.bench

    monkeypatch.setattr(qadistill.bench, "run_bench", lambda *a, **k: pytest.fail("the benchmark ran"))
    folder, data = tiny_bench
    for plot, text in ((tmp_path, "is a folder"), (tmp_path / "p.txt", "the plot is a PNG image"),
                       (tmp_path / "no" / "p.png", "does not exist")):
        r = cli("bench", str(folder), "--data", str(data), "--plot", str(plot))
        assert r.exit_code == 2 and text in r.stderr, r.output
    assert not (tmp_path / "no").exists()
    r = cli("bench", str(folder), "--data", str(data), "--threads", "999", "--plot", str(tmp_path))
    assert "warning: --threads 999 is more than this machine's" in r.stderr


def test_an_interrupted_bench_says_it_starts_over_not_that_a_rerun_finishes_it(cli, tiny_bench, monkeypatch):
    """After Ctrl-C bench said "run the same command again to finish it"; the rerun started from zero."""
    import qadistill.bench
    from qadistill.interrupts import Interrupted

    def interrupted(*a, **k):
        raise Interrupted(15)

    monkeypatch.setattr(qadistill.bench, "run_bench", interrupted)
    folder, data = tiny_bench
    r = cli("bench", str(folder), "--data", str(data))
    assert r.exit_code == 143 and "nothing of this one was kept" in r.stderr and "it starts over" in r.stderr
    assert "to finish it" not in r.stderr


def test_a_length_the_model_cannot_read_is_refused_before_any_worker_starts(cli, tiny_bench, monkeypatch):
    """--max-length 600 started the workers and failed in each, its hint blaming "a damaged export"."""
    import qadistill.bench

    monkeypatch.setattr(qadistill.bench, "run_bench", lambda *a, **k: pytest.fail("the benchmark ran"))
    folder, data = tiny_bench
    positions = json.loads((folder / "config.json").read_text())["max_position_embeddings"]
    r = cli("bench", str(folder), "--data", str(data), "--max-length", str(positions + 8))
    assert r.exit_code == 2 and f"--max-length {positions + 8} is longer than the model" in r.stderr, r.output


@pytest.fixture(scope="module")
def tiny_bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    return make_tiny_model(root / "m", "cross"), tiny_jsonl(root / "d.jsonl")


def test_bench_json_schema_store_round_trip_and_compare(cli, tiny_bench, tmp_path):
    folder, data = tiny_bench
    args = ["bench", str(folder), "--data", str(data), "--batch-sizes", "1,4", "--max-length", "32", "--min-time", "0",
            "--min-runs", "3", "--threads", "1"]
    r = cli(*args, "--format", "json", "--plot", str(tmp_path / "p.png"))
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert set(res) >= {"run_id", "env", "settings", "rows", "errors"} and not res["errors"]
    assert set(res["env"]) >= {"cpu", "cpu_features", "libraries", "loadavg_1m", "onnxruntime_providers"}
    assert [x["batch_size"] for x in res["rows"]] == [1, 4]
    for row in res["rows"]:
        assert set(row["latency_ms"]) == {"p50", "p90", "p99", "min", "mean", "runs"} and row["latency_ms"]["runs"] >= 3
        assert row["threads"] == 1 and row["throughput_pairs_s"] > 0 and 0 <= row["map"] <= 1
        assert 0 <= row["mrr@10"] <= row["mrr"] + 1e-9 and 0 <= row["ndcg@10"] <= 1  # the reranking metrics users compare on
        # how the accuracy pass batched, which a dynamic int8 variant's scores depend on
        assert row["accuracy_from"] == "measured (this backend, real lengths, length-sorted batches of 32 pairs)"
        assert row["size_mb"] > 0
    assert (tmp_path / "p.png").stat().st_size > 1000
    from qadistill.store import Store

    stored = Store.open().bench_run(res["run_id"])
    assert stored["rows"] == res["rows"]
    r2 = json.loads(cli(*args, "--format", "json").stdout)
    cmp = cli("bench", "--compare", res["run_id"], "--compare", r2["run_id"], "--format", "json")
    assert cmp.exit_code == 0, cmp.output
    assert len(json.loads(cmp.stdout)["rows"]) == 2
    assert json.loads(cmp.stdout)["differences"] == [] and "differ" not in cmp.stderr
    # runs of other settings: compared, but said (a trial's B/A 6.2 was length 16 on 5 queries against 128 on 237)
    short = json.loads(cli(*[a if a != "32" else "16" for a in args], "--accuracy-queries", "5", "--format", "json").stdout)
    mixed = cli("bench", "--compare", res["run_id"], "--compare", short["run_id"], "--format", "json")
    assert mixed.exit_code == 0 and json.loads(mixed.stdout)["differences"] == ["max_length 32 / 16", "accuracy_limit_queries None / 5"]
    assert "the runs differ in more than the code: max_length 32 / 16" in " ".join(mixed.stderr.split())
    # --accuracy-queries: the MAP is of the first N scorable queries, which the rows and the title say
    limited = cli(*args, "--accuracy-queries", "5")
    assert limited.exit_code == 0 and "(MAP on its first 5 scorable queries)" in " ".join(limited.stdout.split()), limited.output
    assert all(x["accuracy_queries"] == 12 for x in res["rows"])  # every scorable query of the tiny file, unlimited
    csv = cli(*args, "--format", "csv", "--no-accuracy")
    assert csv.stdout.splitlines()[0].startswith("model,backend,device,threads,batch_size")
    bad = cli("bench", "--compare", "nope", "--compare", res["run_id"])
    assert bad.exit_code == 2 and "no stored bench run" in bad.stderr
    as_csv = cli("bench", "--compare", res["run_id"], "--compare", r2["run_id"], "--format", "csv")
    lines = as_csv.stdout.splitlines()
    assert as_csv.exit_code == 0 and lines[0].startswith("model,backend,batch_size,lengths,a_pairs_s") and len(lines) == 3
    both = cli("bench", str(folder), "--compare", res["run_id"], "--compare", r2["run_id"])  # the model would be dropped
    assert both.exit_code == 2 and "would not be benched" in both.stderr
    one = cli("bench", "--compare", res["run_id"])
    assert one.exit_code == 2 and "exactly two run ids" in one.stderr and res["run_id"] in " ".join(one.stderr.split())


@pytest.mark.parametrize("width", [80, 120, 200])
def test_bench_table_fits_the_terminal(cli, tiny_bench, monkeypatch, width):
    """Piped output (80 columns) once squeezed all fifteen columns to nothing; with no teacher in the run the footer
    said "speed-up vs None"."""
    folder, data = tiny_bench
    monkeypatch.setenv("COLUMNS", str(width))
    r = cli("bench", str(folder), "--data", str(data), "--batch-sizes", "2", "--max-length", "32", "--min-time", "0",
            "--min-runs", "3", "--threads", "1", "--backends", "torch")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert max(len(line) for line in lines) <= width
    header = next(line for line in lines if "backend" in line and "batch" in line)
    for col in ("p50 ms", "pairs/s", "speed-up", "MB", "MAP") + (("p99",) if width >= 110 else ()) + (("tok ms", "RSS MB", "MRR") if width >= 170 else ()):
        assert col in header
    err = " ".join(r.stderr.split())  # rich wraps stderr at the width too
    assert ("not shown" in err) == (width < 170)
    assert "None" not in err and "no speed-up: no teacher ran under torch" in err
    assert any("torch" in line and "2" in line for line in lines[3:])


def test_settings_defaults():
    s = BenchSettings()
    assert s.batch_sizes == [1, 8, 32] and s.max_length == 128 and s.device == "cpu"


def test_lengths_mode_is_validated_and_crosses_the_process_boundary():
    from dataclasses import asdict

    from qadistill.bench_worker import read_spec

    with pytest.raises(UserInputError, match="not a mode"):
        BenchSettings(lengths="dynamic")
    t = Target("m", "torch", "/x", "cross-encoder")
    _, s = read_spec(json.dumps({"target": asdict(t), "settings": asdict(BenchSettings(lengths="both", batch_sizes=[2]))}))
    assert isinstance(s, BenchSettings) and s.lengths == "both" and s.batch_sizes == [2]


def test_cycle_counts_the_pairs_of_the_timed_units():
    from qadistill.bench_worker import Cycle

    lists = [(["q"] * n, ["p"] * n) for n in (1, 2, 3)]
    cyc = Cycle(lists)
    times = time_loop(cyc.next, min_time=0, min_runs=4, max_runs=4, warmup=2)
    assert len(times) == 4 and cyc.timed_pairs(times) == [3, 1, 2, 3]  # warm-up took lists 1 and 2


def test_bench_real_lengths_rows_beside_padded(cli, tiny_bench):
    folder, data = tiny_bench
    r = cli("bench", str(folder), "--data", str(data), "--batch-sizes", "1,4", "--max-length", "32", "--min-time", "0",
            "--min-runs", "3", "--threads", "1", "--backends", "torch", "--lengths", "both", "--format", "json")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)["rows"]
    assert [(x["lengths"], x["batch_size"], x["unit"]) for x in rows] == [
        ("padded", 1, "batch"), ("padded", 4, "batch"), ("real", 1, "query list"), ("real", 4, "query list")]
    for x in rows[2:]:
        assert x["pairs_per_unit"] == {"p50": 4, "mean": 4, "max": 4}  # every tiny query has 4 candidates
        assert x["latency_ms"]["runs"] >= 3 and x["e2e_throughput_pairs_s"] > 0 and x["map"] == rows[0]["map"]
    csv = cli("bench", str(folder), "--data", str(data), "--batch-sizes", "2", "--max-length", "32", "--min-time", "0",
              "--min-runs", "3", "--threads", "1", "--backends", "torch", "--lengths", "real", "--no-accuracy", "--format", "csv")
    head, line = csv.stdout.splitlines()[:2]
    assert line.split(",")[head.split(",").index("lengths")] == "real"
    bad = cli("bench", str(folder), "--lengths", "dynamic")
    assert bad.exit_code == 2 and "dynamic" in bad.stderr


def test_speedups_and_pareto_compare_rows_of_the_same_lengths_mode():
    row = lambda m, b, lengths, tput: {"model": m, "backend": b, "batch_size": 8, "lengths": lengths, "teacher": m == "t",  # noqa: E731
                                       "map": 0.7, "throughput_pairs_s": tput}
    rows = finalize([row("t", "torch", "padded", 100.0), row("s", "ort-int8", "padded", 400.0),
                     row("t", "torch", "real", 300.0), row("s", "ort-int8", "real", 1500.0)])
    assert [r["speedup"] for r in rows] == [1.0, 4.0, 1.0, 5.0]
    assert [r["pareto"] for r in rows] == [False, True, False, True]


def test_a_batch_too_large_to_fit_is_refused_before_any_work(cli):
    r = cli("bench", "all-minilm-l6-v2", "--batch-sizes", "1,100000000", "--no-accuracy")
    assert r.exit_code == 2 and "100000000" in r.stderr and "tokens per batch" in r.stderr and r.stdout == "", r.output
    with pytest.raises(UserInputError, match="tokens per batch"):
        BenchSettings(batch_sizes=[8192], max_length=512)
    BenchSettings(batch_sizes=[1024], max_length=512)  # the largest that is allowed at 512


def test_a_worker_killed_by_a_signal_says_so(monkeypatch):
    import signal
    import subprocess

    from qadistill import bench

    done = subprocess.CompletedProcess([], -signal.SIGKILL, stdout="", stderr="")
    monkeypatch.setattr(bench.subprocess, "run", lambda *a, **k: done)
    res = bench.run_target(Target("m", "torch", "/x", "cross-encoder"), BenchSettings(batch_sizes=[1]))
    assert "SIGKILL" in res["error"] and "memory" in res["error"], res


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_bench_worker_dies_with_the_bench_that_started_it(tmp_path):
    """SIGKILL of `bench` left its worker measuring at full CPU for tens of seconds (reparented to pid 1), under the
    timings of the next bench. The worker asks the kernel to kill it when its parent dies."""
    import os
    import signal
    import subprocess
    import time

    pidfile = tmp_path / "child.pid"
    child = (f"import os, time; from qadistill.bench_worker import die_with_parent; die_with_parent(os.getppid()); "
             f"open({str(pidfile)!r}, 'w').write(str(os.getpid())); time.sleep(120)")
    parent = subprocess.Popen([sys.executable, "-c", f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {child!r}]); time.sleep(120)"])
    deadline = time.time() + 60
    while not (pidfile.exists() and pidfile.read_text()) and time.time() < deadline:
        time.sleep(0.1)
    pid = int(pidfile.read_text())
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        # a zombie is not running: reaped by init shortly
        try:
            if open(f"/proc/{pid}/stat").read().split(")")[-1].split()[0] == "Z":
                return
        except FileNotFoundError:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    pytest.fail("the worker outlived its parent")


def test_an_export_named_with_backends_that_leave_it_out_is_refused(tmp_path):
    """`bench s1-int8-dynamic --backends torch,ort` benched one row, `s1 ort-int8`, neither of what was asked."""
    from types import SimpleNamespace

    from qadistill.bench import resolve_targets
    from qadistill.errors import UserInputError

    ref = SimpleNamespace(kind="export", parent="s1", variant="int8-dynamic", folder=tmp_path, architecture="cross-encoder")
    reg = SimpleNamespace(resolve=lambda name, **k: ref)
    with pytest.raises(UserInputError, match="s1-int8-dynamic is an ONNX export, benched as ort-int8") as e:
        resolve_targets(["s1-int8-dynamic"], ["torch", "ort"], reg, "cpu")
    assert "`qadistill bench s1 --backends torch,ort`" in e.value.hint
    assert [t.backend for t in resolve_targets(["s1-int8-dynamic"], ["ort-int8"], reg, "cpu")] == ["ort-int8"]
    assert [t.backend for t in resolve_targets(["s1-int8-dynamic"], None, reg, "cpu")] == ["ort-int8"]  # no --backends


def test_bench_lists_and_baseline_are_checked_before_any_worker(cli, tiny_bench, monkeypatch):
    """`--backends ort,,ort-int8` was read while `--batch-sizes 1,,8` was refused; `bench s1 s1` gave two identical
    rows; a --baseline naming a backend not benched failed after the first rows were measured."""
    import qadistill.bench

    monkeypatch.setattr(qadistill.bench, "run_bench", lambda *a, **k: pytest.fail("the benchmark ran"))
    folder, data = tiny_bench
    r = cli("bench", str(folder), "--data", str(data), "--backends", "torch,,ort")
    assert r.exit_code == 2 and "has an empty item" in r.stderr, r.output
    r = cli("bench", str(folder), str(folder), "--data", str(data))
    assert r.exit_code == 2 and "is named twice" in r.stderr, r.output
    r = cli("bench", str(folder), "--data", str(data), "--backends", "torch", "--baseline", f"{folder}:ort-int8")
    assert r.exit_code == 2 and "names no row this run measures" in r.stderr and f"{folder}:torch" in r.stderr, r.output


def test_bench_csv_says_its_run_and_data(cli, tiny_bench):
    folder, data = tiny_bench
    r = cli("bench", str(folder), "--data", str(data), "--batch-sizes", "1", "--max-length", "32", "--min-time", "0",
            "--min-runs", "2", "--threads", "1", "--backends", "torch", "--format", "csv")
    assert r.exit_code == 0, r.output
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert rows and rows[0]["run_id"].startswith("bench-") and rows[0]["data"] == str(data) and rows[0]["split"] == "all"
    assert rows[0]["accuracy_queries"] == "12"
