"""One bench target in its own process: JSON spec on stdin, one JSON line of results on stdout."""

from __future__ import annotations

import json
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from qadistill.bench import BenchSettings, Target


def _size_mb(folder: Path, file_name: str | None) -> float:
    if file_name and (folder / file_name).exists():
        return (folder / file_name).stat().st_size / 1e6
    return sum(f.stat().st_size for f in folder.iterdir() if f.suffix in (".safetensors", ".bin", ".onnx")) / 1e6


def read_spec(text: str) -> "tuple[Target, BenchSettings]":
    """The (Target, BenchSettings) that ``bench.run_target`` sent as JSON, typed again on this side."""
    from qadistill.bench import BenchSettings, Target

    spec = json.loads(text)
    return Target(**spec["target"]), BenchSettings(**spec["settings"])


def make_backend(t: "Target", s: "BenchSettings", threads: int | None = None):
    from qadistill.backends import BiEncoderTorchBackend, OrtBackend, TorchBackend

    b, dev = t.backend, s.device
    kw = dict(max_length=s.max_length, threads=threads or s.threads, device=dev)
    if b.startswith("torch"):
        dtype = "fp16" if "fp16" in b else "bf16" if "bf16" in b else "fp32"
        cls = BiEncoderTorchBackend if t.architecture == "bi-encoder" else TorchBackend
        return cls(t.folder, dtype=dtype, **kw)
    provider = {"ort-trt": "TensorrtExecutionProvider"}.get(b, "CUDAExecutionProvider" if dev == "cuda" else "CPUExecutionProvider")
    return OrtBackend(t.folder, file_name=t.file_name or "model.onnx", provider=provider, **kw)


def make_pool(t: "Target", s: "BenchSettings", sessions: int):
    """``sessions`` ONNX Runtime sessions sharing --threads (``backends.SessionPool``), unloaded."""
    from qadistill.backends import SessionPool

    return SessionPool(lambda threads: make_backend(t, s, threads), sessions, s.threads)


def _time_batch(be, t: "Target", s: "BenchSettings", pairs, bs: int, sync) -> dict:
    """Latency of the model alone, of tokenization alone and of both, on one fixed batch of ``bs`` pairs; with a
    SessionPool of N sessions a timed unit is N such batches run at once, one per session (tokenization: one batch)."""
    batch = [pairs[i % len(pairs)] for i in range(bs)]
    qs, ps = [p.query for p in batch], [p.passage for p in batch]

    def enc_fixed():
        return be.encode(qs, ps, pad_to_max=True)

    enc = enc_fixed()
    loop = dict(min_time=s.min_time, min_runs=s.min_runs, max_runs=s.max_runs, warmup=s.warmup)
    from qadistill.bench import time_loop

    n = getattr(be, "sessions", 1)
    if n > 1:
        model_t = time_loop(lambda: be.run_many([enc] * n), **loop)
        e2e_t = time_loop(lambda: be.parallel(lambda _: be.run(enc_fixed()), range(n)), **loop)
    else:
        model_t = time_loop(lambda: be.run(enc), sync=sync, **loop)
        e2e_t = time_loop(lambda: be.run(enc_fixed()), sync=sync, **loop)
    tok_t = time_loop(enc_fixed, **loop)
    return {"model": model_t, "tokenize": tok_t, "e2e": e2e_t}


def query_lists(ds) -> list[tuple[list[str], list[str]]]:
    """(queries, passages) of each query's full candidate list, in the dataset's order: the units of real-length mode."""
    return [([ds.pairs[i].query for i in idx], [ds.pairs[i].passage for i in idx]) for idx in ds.query_groups().values()]


class Cycle:
    """The lists in turn, forever, counting the pairs of each one handed out (``time_loop`` times every call after its
    warm-up ones, so the last len(times) counts are the timed units' pairs)."""

    def __init__(self, lists: list) -> None:
        self.lists, self.i, self.pairs = lists, 0, []

    def next(self):
        item = self.lists[self.i % len(self.lists)]
        self.i += 1
        self.pairs.append(len(item[0]))
        return item

    def timed_pairs(self, times: list[float]) -> list[int]:
        return self.pairs[len(self.pairs) - len(times):]


def _time_lists(be, s: "BenchSettings", lists, bs: int, sync) -> dict:
    """Real-length mode: latency of one query's candidate list (batches of at most ``bs`` pairs, each padded to its
    longest): the model alone on the lists tokenized beforehand, tokenization alone and both (``score_real_lengths``,
    end to end). Each loop cycles through the lists from the first; the timed units' pair counts come back with it."""
    from qadistill.bench import time_loop

    loop = dict(min_time=s.min_time, min_runs=s.min_runs, max_runs=s.max_runs, warmup=s.warmup)
    pre = [(lst[0], be.real_length_batches(*lst, bs)) for lst in lists]  # (its queries, its model inputs)
    out, pairs = {}, {}
    for key, fn, items in (("model", lambda x: be.run_many([enc for _, enc in x[1]]), pre),
                           ("tokenize", lambda x: be.real_length_batches(*x, bs), lists),
                           ("e2e", lambda x: be.score_real_lengths(*x, bs), lists)):
        cyc = Cycle(items)
        out[key] = time_loop(lambda: fn(cyc.next()), sync=sync if key != "tokenize" else None, **loop)
        pairs[key] = cyc.timed_pairs(out[key])
    return {**out, "pairs": pairs}


def _row(t: "Target", s: "BenchSettings", bs: int, times, threads: int, load_s: float, gpu_mem_mb, lengths: str = "padded",
         sessions: int = 1) -> dict:
    """One row. Padded: a timed unit is one batch of ``bs`` pairs at max_length (``sessions`` batches at once with a
    pool), pairs/s = sessions * bs / p50. Real: a unit is one query's candidate list at its real lengths, pairs/s = the
    timed pairs / the time they took (all units)."""
    from qadistill.bench import percentiles

    lat = percentiles(times["model"])
    e2e = percentiles(times["e2e"])
    if lengths == "real":
        rate = {k: sum(times["pairs"][k]) / sum(times[k]) for k in ("model", "e2e")}
        n = times["pairs"]["e2e"]
        unit = {"unit": "query list", "pairs_per_unit": {"p50": statistics.median(n), "mean": statistics.fmean(n), "max": max(n)}}
    else:
        rate = {"model": sessions * bs / (lat["p50"] / 1000), "e2e": sessions * bs / (e2e["p50"] / 1000)}
        unit = {"unit": "batch" if sessions == 1 else f"{sessions} batches at once"}
    return {
        "model": t.model, "backend": t.backend, "device": s.device, "threads": threads, "sessions": sessions, "batch_size": bs,
        "max_length": s.max_length, "lengths": lengths, **unit, "latency_ms": lat,
        "tokenize_ms": percentiles(times["tokenize"]), "e2e_ms": e2e,
        "throughput_pairs_s": rate["model"], "e2e_throughput_pairs_s": rate["e2e"], "load_s": load_s, "gpu_mem_mb": gpu_mem_mb,
        "size_mb": _size_mb(Path(t.folder), t.file_name if t.backend.startswith("ort") else None),
        "teacher": t.teacher, "architecture": t.architecture, "folder": t.folder,
    }


ACCURACY_BATCH = 32  # pairs per batch of the accuracy pass


def _accuracy(be, t: "Target", s: "BenchSettings", ds):
    """(metrics, where they came from) on the eval set, or (None, None) when accuracy is off."""
    from qadistill.metrics import ranking_metrics

    if not s.accuracy:
        return None, None
    eds = ds.subset_queries(s.accuracy_limit_queries, scorable=True) if s.accuracy_limit_queries else ds
    if t.accuracy_from_cache:  # content-addressed: a subset reuses every text already embedded
        from qadistill.registry import Registry
        from qadistill.store import Store
        from qadistill.teachers import load_scorer

        scores = load_scorer(t.accuracy_from_cache, Registry(store=Store.open()), max_length=s.max_length).logits(eds)
        source = "cache (same model, fp32)"
    else:
        from qadistill.backends import score_length_sorted

        scores = score_length_sorted(be, eds.pairs, ACCURACY_BATCH)
        # the batching said: a dynamic int8 variant's scores move with it (eval batches in its own order)
        source = f"measured (this backend, real lengths, length-sorted batches of {ACCURACY_BATCH} pairs)"
    return ranking_metrics([p.query_id for p in eds.pairs], scores.tolist(), eds.labels()), source


def _load(t: "Target", s: "BenchSettings"):
    """(loaded backend, seconds it took), torch.compile'd for a ``*compile`` backend."""
    import torch

    t0 = time.perf_counter()
    be = make_backend(t, s).load()
    if t.backend.endswith("compile"):
        be.model = torch.compile(be.model)
    return be, time.perf_counter() - t0


def die_with_parent(parent: int | None) -> None:
    """Linux: this process is killed when ``parent`` (the bench that started it) dies, even by SIGKILL: an orphaned
    worker went on measuring at full CPU for tens of seconds, under the next bench's timings. Elsewhere: nothing."""
    if not parent or not sys.platform.startswith("linux"):
        return
    import ctypes
    import os
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it died before the request took effect
        os._exit(1)


def main() -> None:
    from qadistill.splits import load_split

    import os

    die_with_parent(int(os.environ.get("QADISTILL_BENCH_PARENT", "0") or 0))
    t, s = read_spec(sys.stdin.read())
    import torch

    if s.threads:
        torch.set_num_threads(s.threads)
    threads = s.threads or torch.get_num_threads()
    cuda = s.device == "cuda"
    sync = torch.cuda.synchronize if cuda and t.backend.startswith("torch") else None
    be, load_s = _load(t, s)
    ds = load_split(s.data, s.split)
    rows = []
    lists = query_lists(ds) if s.lengths != "padded" else None
    counts = sorted(s.sessions) if t.backend.startswith("ort") else [1]  # PyTorch targets: one session
    for n in counts:
        unit = be
        if n > 1:
            unit = make_pool(t, s, n).load()
        for mode in (("padded", "real") if s.lengths == "both" else (s.lengths,)):
            for bs in s.batch_sizes:
                if cuda:
                    torch.cuda.reset_peak_memory_stats()
                times = _time_batch(unit, t, s, ds.pairs, bs, sync) if mode == "padded" else _time_lists(unit, s, lists, bs, sync)
                rows.append(_row(t, s, bs, times, threads, load_s, (torch.cuda.max_memory_allocated() / 1e6) if cuda else None,
                                 mode, n))
        if unit is not be:
            unit.close()
    metrics, source = _accuracy(be, t, s, ds)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for r in rows:
        r["peak_rss_mb"] = peak
        r["accuracy_from"] = source
        r["accuracy_queries"] = metrics.get("queries") if metrics else None  # the scorable queries the MAP covers
        for k in ("map", "mrr", "mrr@10", "ndcg@10", "accuracy", "auc"):
            r[k] = metrics.get(k) if metrics else None
    be.close()
    print(json.dumps({"rows": rows}))


if __name__ == "__main__":
    main()
