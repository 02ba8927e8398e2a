"""`qadistill bench`: accuracy versus speed across models, backends and devices.

Each (model × backend) runs in its own process (``python -m qadistill.bench_worker``) so one backend's threads, caches
and allocator never colour another's numbers. Within a process: load (timed), then for each batch size a warm-up and
timed runs until both a minimum time and a minimum count are reached; tokenization is timed apart from the model and
together with it (end to end). On CUDA, torch timings use CUDA events with synchronize. Accuracy (MAP/MRR/accuracy/AUC)
is measured in the same run on the chosen split, so every row is a point on the accuracy/speed plane.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from qadistill.errors import UserInputError
from qadistill.modelref import Variant

TORCH_BACKENDS = ("torch", "torch-fp16", "torch-bf16", "torch-compile", "torch-fp16-compile", "torch-bf16-compile")
ORT_BACKENDS = tuple(v.bench_backend for v in Variant) + ("ort-trt",)  # ort, ort-optimized, ort-int8, ort-int8-static, ort-fp16
ALL_BACKENDS = TORCH_BACKENDS + ORT_BACKENDS
CUDA_ONLY = ("torch-fp16", "torch-bf16", "torch-fp16-compile", "torch-bf16-compile", "ort-fp16", "ort-trt")
VARIANT_OF = {**{v.bench_backend: v.value for v in Variant}, "ort-trt": Variant.onnx.value}  # TensorRT runs the fp32 ONNX


@dataclass
class Target:
    """One row family to measure: a model folder under one backend."""

    model: str  # the name the user gave (or the teacher/student it came from)
    backend: str  # one of ALL_BACKENDS
    folder: str
    architecture: str  # cross-encoder | bi-encoder
    teacher: bool = False
    file_name: str = "model.onnx"
    accuracy_from_cache: str | None = None  # a zoo name whose cached scores give the accuracy (fp32 torch only)


LENGTHS = ("padded", "real", "both")
MAX_BATCH_TOKENS = 2**19  # padded tokens in one timed batch: 4,096 pairs of 128 (a BERT-base batch of this takes ~10 GB)


@dataclass
class BenchSettings:
    """``lengths``: padded (a timed unit is one batch of ``batch_size`` pairs padded to max_length), real (one query's
    full candidate list, tokenized to its real lengths, batches of at most ``batch_size`` pairs each padded to its
    longest) or both (the padded rows, then the real ones). ``sessions``: for ONNX Runtime targets, also measure N
    sessions sharing ``threads`` (``backends.SessionPool``; a padded unit is then N batches at once, one per session);
    PyTorch targets run one session."""

    device: str = "cpu"
    batch_sizes: list[int] = field(default_factory=lambda: [1, 8, 32])
    max_length: int = 128
    threads: int | None = None
    data: str = "wikiqa"
    split: str = "test"
    min_time: float = 2.0
    min_runs: int = 10
    max_runs: int = 500
    warmup: int = 3
    accuracy: bool = True
    accuracy_limit_queries: int | None = None
    lengths: str = "padded"
    sessions: list[int] = field(default_factory=lambda: [1])

    def __post_init__(self) -> None:
        if self.lengths not in LENGTHS:
            raise UserInputError(f"lengths {self.lengths!r} is not a mode", f"use one of {', '.join(LENGTHS)}")
        check_batch_tokens(self.batch_sizes, self.max_length)
        if not self.sessions or any(not isinstance(n, int) or n < 1 for n in self.sessions) or len(set(self.sessions)) != len(self.sessions):
            raise UserInputError(f"sessions {self.sessions!r}: give distinct whole numbers of at least 1", "e.g. --sessions 1,2")


def check_batch_tokens(batch_sizes: list[int], max_length: int) -> None:
    """A timed batch must fit in memory: at most MAX_BATCH_TOKENS padded tokens (checked before any model loads)."""
    big = [b for b in batch_sizes if b * max_length > MAX_BATCH_TOKENS]
    if big:
        raise UserInputError(f"--batch-sizes {big[0]} at --max-length {max_length} is {big[0] * max_length:,} tokens per "
                             f"batch: more than bench runs ({MAX_BATCH_TOKENS:,}; it would run out of memory)",
                             f"use batch sizes up to {MAX_BATCH_TOKENS // max_length} at this length"
                             + (" (and check --max-length: BERT-size models read at most 512 positions)" if max_length > 512 else ""))


def percentiles(times_s: list[float]) -> dict:
    import numpy as np

    a = np.asarray(times_s) * 1000.0
    return {"p50": float(np.percentile(a, 50)), "p90": float(np.percentile(a, 90)), "p99": float(np.percentile(a, 99)),
            "min": float(a.min()), "mean": float(a.mean()), "runs": int(a.size)}


def time_loop(fn, min_time: float, min_runs: int, max_runs: int, warmup: int, clock=time.perf_counter, sync=None) -> list[float]:
    """Call ``fn`` ``warmup`` times untimed, then time each call until ``min_time`` seconds and ``min_runs`` calls have
    passed (at most ``max_runs``). ``sync`` (e.g. torch.cuda.synchronize) is called before reading the clock."""
    for _ in range(warmup):
        fn()
    if sync:
        sync()
    times: list[float] = []
    start = clock()
    while len(times) < max_runs and (len(times) < min_runs or clock() - start < min_time):
        t = clock()
        fn()
        if sync:
            sync()
        times.append(clock() - t)
    return times


def cuda_available() -> tuple[bool, list[str]]:
    """(torch CUDA available, ONNX Runtime providers) without failing when either library is missing."""
    have = False
    try:
        import torch

        have = torch.cuda.is_available()
    except Exception:
        pass
    providers: list[str] = []
    try:
        import onnxruntime as ort

        providers = list(ort.get_available_providers())
    except Exception:
        pass
    return have, providers


def check_device(device: str, backends: list[str]) -> None:
    """--device cuda without CUDA is an error listing what is available: never a silent fall back to the CPU."""
    if device not in ("cpu", "cuda"):
        raise UserInputError(f"--device {device!r} is not a device", "use cpu or cuda")
    torch_cuda, providers = cuda_available()
    if device == "cuda":
        if not torch_cuda and not ("CUDAExecutionProvider" in providers):
            avail = ["cpu (torch)"] + [p for p in providers if p != "AzureExecutionProvider"]
            raise UserInputError(f"--device cuda: no CUDA device here (available: {', '.join(avail)})",
                                 "run with --device cpu, or on a machine with a GPU (see `qadistill doctor`)")
        ort_wanted = [b for b in backends if b.startswith("ort")]
        if ort_wanted and "CUDAExecutionProvider" not in providers:
            raise UserInputError(f"--device cuda: ONNX Runtime has no CUDA provider (have: {', '.join(providers)})",
                                 "pip install 'qadistill[gpu]' (onnxruntime-gpu instead of onnxruntime), or drop the ort backends")
    else:
        bad = [b for b in backends if b in CUDA_ONLY]
        if bad:
            raise UserInputError(f"backend(s) {', '.join(bad)} need --device cuda", "drop them or use --device cuda")


def resolve_targets(models: list[str], backends: list[str] | None, registry, device: str) -> list[Target]:
    """Expand model names into (model × backend) targets. A student/teacher expands into its torch backends and its
    exported variants (artifacts whose parent it is); an export artifact is one ORT target."""
    cpu_variants = [v.bench_backend for v in Variant if v is not Variant.fp16]
    wanted = backends or (["torch", *cpu_variants] if device == "cpu" else
                          ["torch", "torch-fp16", "torch-bf16", Variant.onnx.bench_backend, Variant.fp16.bench_backend])
    for b in wanted:
        if b not in ALL_BACKENDS:
            raise UserInputError(f"unknown backend {b!r}", f"use any of {', '.join(ALL_BACKENDS)}")
    out: list[Target] = []
    for name in models:
        ref = registry.resolve(name, use="bench teachers, built students or their exports", recipes=("teacher",))
        ts = _targets(name, ref, wanted)
        off = [t for t in ts if backends and t.backend not in wanted]  # an export runs as its own variant only
        if off:
            raise UserInputError(f"{name} is an ONNX export, benched as {off[0].backend}, which --backends {','.join(backends)} "
                                 "leaves out", f"add {off[0].backend} to --backends, or bench the model it came from: "
                                 f"`qadistill bench {off[0].model} --backends {','.join(backends)}`")
        out += ts
    if not out:
        raise UserInputError("nothing to benchmark for these models and backends",
                             "export variants first (`qadistill export NAME --all`) or pick other --backends")
    return out


def _ort_backend(variant: str | None) -> str:
    return next((b for b, v in VARIANT_OF.items() if v == variant), "ort")


def _targets(name: str, ref, wanted: list[str]) -> list[Target]:
    """The targets of one resolved model: a folder as it is, an export as one ORT target, a model as its torch
    backends and the built variants of the ORT ones."""
    if ref.kind == "folder":
        arch = ref.architecture
        if (ref.folder / "model.onnx").exists():
            return [Target(ref.parent or name, _ort_backend(ref.variant), str(ref.folder), arch)]
        return [Target(name, b, str(ref.folder), arch) for b in wanted if b in TORCH_BACKENDS]
    if ref.kind == "export":
        return [Target(ref.parent or name, _ort_backend(ref.variant), str(ref.folder), "cross-encoder")]
    arch, teacher = ref.architecture, ref.is_teacher
    out = [Target(name, b, str(ref.folder), arch, teacher, accuracy_from_cache=name if b == "torch" else None)
           for b in wanted if b in TORCH_BACKENDS]
    exports = ref.latest_exports()
    for b in wanted:
        v = VARIANT_OF.get(b)
        if b.startswith("ort") and v in exports and exports[v].exists:
            out.append(Target(name, b, str(exports[v].folder), arch, teacher))
    return out


def environment() -> dict:
    from importlib import metadata

    from qadistill.doctor import cpu_features, cpu_model

    def v(d: str) -> str | None:
        try:
            return metadata.version(d)
        except metadata.PackageNotFoundError:
            return None

    gpu = None
    torch_cuda, providers = cuda_available()
    if torch_cuda:
        import torch

        gpu = torch.cuda.get_device_name(0)
    return {
        "cpu": cpu_model(), "cpu_count": os.cpu_count(), "cpu_features": cpu_features(), "gpu": gpu,
        "platform": platform.platform(), "python": platform.python_version(),
        "libraries": {d: v(d) for d in ("qadistill", "torch", "transformers", "optimum", "optimum-onnx", "onnxruntime", "onnxruntime-gpu")},
        "onnxruntime_providers": providers, "loadavg_1m": os.getloadavg()[0],
    }


def run_target(target: Target, settings: BenchSettings, timeout: float = 3600) -> dict:
    """Measure one target in a fresh process; returns its rows (one per batch size) plus shared fields."""
    spec = json.dumps({"target": asdict(target), "settings": asdict(settings)})
    env = {**os.environ, "QADISTILL_BENCH_PARENT": str(os.getpid())}  # the worker dies with this process
    proc = subprocess.run([sys.executable, "-m", "qadistill.bench_worker"], input=spec, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode < 0:  # killed: no traceback to show, so say what killed it
        import signal

        sig = signal.Signals(-proc.returncode).name
        why = " (out of memory? try smaller --batch-sizes or --max-length)" if sig == "SIGKILL" else ""
        return {"error": f"the worker was killed by {sig}{why}", "target": asdict(target)}
    if proc.returncode != 0:
        import re

        tail = (proc.stderr.strip().splitlines() or [f"the worker exited with {proc.returncode} and no message"])[-1]
        m = re.match(r"qadistill\.errors\.(\w+): (.*)", tail)  # our own error: its message, and its kind for the exit code
        return {"error": m.group(2) if m else tail, "error_type": m.group(1) if m else None, "target": asdict(target)}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def pareto_flags(points: list[tuple[float, float]]) -> list[bool]:
    """For (accuracy, throughput) points: True where no other point is at least as good in both and better in one."""
    flags = []
    for i, (a, t) in enumerate(points):
        dominated = any((a2 >= a and t2 >= t) and (a2 > a or t2 > t) for j, (a2, t2) in enumerate(points) if j != i)
        flags.append(not dominated)
    return flags


def finalize(rows: list[dict], baseline: str | None = None) -> list[dict]:
    """Add speed-ups against a baseline row family (default: the teacher with the best MAP under torch fp32) measured
    in the same run, and Pareto flags, per batch size and lengths mode."""
    fams = {(r["model"], r["backend"]) for r in rows if "error" not in r}
    if baseline:
        m, _, b = baseline.partition(":")
        base = (m, b or "torch")
        if base not in fams:
            raise UserInputError(f"baseline {baseline!r} is not among the measured rows", "use MODEL[:BACKEND] from this run")
    else:
        cands = [r for r in rows if r.get("teacher") and r["backend"] == "torch" and r.get("map") is not None]
        base = (max(cands, key=lambda r: r["map"])["model"], "torch") if cands else None
    by_bs: dict[tuple[int, str], list[dict]] = {}  # rows compare at the same batch size and the same lengths mode
    for r in rows:
        if "error" in r:
            continue
        by_bs.setdefault((r["batch_size"], r.get("lengths", "padded")), []).append(r)
    for rs in by_bs.values():
        ref = next((r for r in rs if base and (r["model"], r["backend"]) == base and r.get("sessions", 1) == 1), None)
        for r in rs:
            r["baseline"] = f"{base[0]}:{base[1]}" if base else None
            r["speedup"] = (r["throughput_pairs_s"] / ref["throughput_pairs_s"]) if ref else None
        scored = [r for r in rs if r.get("map") is not None]
        for r, f in zip(scored, pareto_flags([(r["map"], r["throughput_pairs_s"]) for r in scored])):
            r["pareto"] = f
    return rows


def run_bench(targets: list[Target], settings: BenchSettings, baseline: str | None = None, progress=None, store=None) -> dict:
    from qadistill.progress import NullProgress

    progress = progress or NullProgress()
    task = progress.task("bench", len(targets))
    rows: list[dict] = []
    errors: list[dict] = []
    env = environment()
    for t in targets:
        res = run_target(t, settings)
        if "error" in res:
            errors.append(res)
        else:
            rows += res["rows"]
        task.advance(1, last=f"{t.model}:{t.backend}")
    if targets and not rows:  # nothing measured: an error, and no empty run in the store
        from qadistill import errors as qerrors

        first = errors[0]
        message = (f"every benchmark row failed ({len(errors)} target(s)); first: "
                   f"{first['target']['model']}:{first['target']['backend']}: {first['error']}")
        kind = getattr(qerrors, first.get("error_type") or "", None)
        if isinstance(kind, type) and issubclass(kind, qerrors.UserInputError):  # a damaged folder, a bad input: exit 2
            raise qerrors.UserInputError(message, "fix or rebuild what it names (a damaged export: `qadistill export NAME "
                                         "--overwrite`), or bench another backend")
        raise qerrors.QadistillError(message, "run `qadistill doctor`, or bench one model with one backend to see why")
    rows = finalize(rows, baseline)
    env["loadavg_1m_end"] = os.getloadavg()[0]
    run_id = "bench-" + time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:4]
    result = {"run_id": run_id, "created": time.time(), "env": env, "settings": asdict(settings), "rows": rows, "errors": errors}
    if store is not None:
        store.add_bench_run(run_id, env, asdict(settings), rows)
    return result


def to_csv(rows: list[dict], run: dict | None = None) -> str:
    """The rows as CSV; with ``run``, each row also says its run and the data its MAP is of (run_id, data, split,
    accuracy_queries)."""
    import csv
    import io

    buf = io.StringIO()
    cols = ["model", "backend", "device", "threads", "batch_size", "max_length", "lengths", "p50_ms", "p90_ms", "p99_ms", "min_ms",
            "tokenize_p50_ms", "e2e_p50_ms", "throughput_pairs_s", "e2e_throughput_pairs_s", "load_s", "peak_rss_mb",
            "gpu_mem_mb", "size_mb", "map", "mrr", "mrr@10", "ndcg@10", "accuracy", "auc", "speedup", "pareto", "sessions",
            "run_id", "data", "split", "accuracy_queries"]  # new columns go last: scripts read by position
    run = run or {}
    settings = run.get("settings") or {}
    w = csv.DictWriter(buf, fieldnames=cols)
    w.writeheader()
    for r in rows:
        w.writerow({**{k: r.get(k) for k in cols}, "run_id": run.get("run_id"), "data": settings.get("data"),
                    "split": settings.get("split"), "lengths": r.get("lengths", "padded"), "sessions": r.get("sessions", 1), "p50_ms": r["latency_ms"]["p50"], "p90_ms": r["latency_ms"]["p90"],
                    "p99_ms": r["latency_ms"]["p99"], "min_ms": r["latency_ms"]["min"], "tokenize_p50_ms": r["tokenize_ms"]["p50"],
                    "e2e_p50_ms": r["e2e_ms"]["p50"]})
    return buf.getvalue()


def plot(rows: list[dict], path: Path, batch_size: int | None = None) -> Path:
    """Accuracy (MAP) against throughput (log scale), one marker per row, Pareto front drawn; one lengths mode (the
    first row's: padded when a run has both), as Pareto flags are per mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rs = [r for r in rows if r.get("map") is not None]
    bs = batch_size or max(r["batch_size"] for r in rs)
    mode = rs[0].get("lengths", "padded") if rs else "padded"
    rs = [r for r in rs if r["batch_size"] == bs and r.get("lengths", "padded") == mode]
    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=120)
    # colour = model, marker = backend; a legend instead of labels, which overlap when variants sit close together
    models = list(dict.fromkeys(r["model"] for r in rs))
    backends = list(dict.fromkeys(r["backend"] for r in rs))
    colours = plt.get_cmap("tab10")
    markers = ["o", "s", "^", "D", "v", "P", "X", "<", ">", "h"]
    for r in rs:
        ax.scatter(r["throughput_pairs_s"], r["map"], s=70, color=colours(models.index(r["model"]) % 10),
                   marker=markers[backends.index(r["backend"]) % len(markers)], zorder=3,
                   edgecolors="black" if r.get("pareto") else "none", linewidths=1.2,
                   label=f"{r['model']} · {r['backend']}" + (" ★" if r.get("pareto") else ""))
    front = sorted((r for r in rs if r.get("pareto")), key=lambda r: r["throughput_pairs_s"])
    if len(front) > 1:
        ax.plot([r["throughput_pairs_s"] for r in front], [r["map"] for r in front], "--", color="gray", zorder=2)
    ax.set_xscale("log")
    lo, hi = min(r["map"] for r in rs), max(r["map"] for r in rs)
    if hi - lo < 0.02:  # at least 2 MAP points tall: rounding-level differences must not look like a gap
        mid = (hi + lo) / 2
        ax.set_ylim(mid - 0.01, mid + 0.01)
    size = f"padded to {rs[0]['max_length'] if rs else '?'}" if mode == "padded" else f"real lengths up to {rs[0]['max_length']}"
    ax.set_xlabel(f"throughput, pairs/s (batch {bs}, {size}; log scale)")
    ax.set_ylabel("MAP")
    ax.set_title("qadistill bench: accuracy vs speed (★, black edge = Pareto-optimal)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    import io

    from qadistill.fsutil import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(Path(path), buf.getvalue())  # a full disk never leaves half a PNG
    return Path(path)
