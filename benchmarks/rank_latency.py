"""`rank` of WikiQA test questions' full candidate lists, end to end (tokenization, scoring and sorting), at the pairs'
real lengths against padded to max_length (128), for each backend of one model, in one process, the modes alternating
list by list (their order swapped every round) so that the machine's load falls on them alike.

Modes (all in batches of at most --batch-size pairs):
  padded   every batch padded to max_length (what a fixed-shape server does; bench's padded rows)
  dynamic  the pairs in their given order, each batch padded to its longest: `rank` before real-length batching
  real     `Reranker.rank`: pairs tokenized once, sorted by token length, each batch padded to its longest
  real-bN  the same in batches of at most N pairs (--small-batch), when given

A timed unit is one question's whole candidate list; a list's time is the median of its --rounds timings. Reported per
backend and mode: the median / p90 / p99 over lists, pairs/s (all pairs over the sum of the lists' times), the median
per-list speed-up against padded, the max |score - padded score| over every pair and, for an ONNX backend, the max
|score - PyTorch fp32 real-length score|. `one_list` does the same for the test question with the most candidates,
timed --single-runs times (its percentiles are over those runs).

  python benchmarks/rank_latency.py rl-student [--backends onnx-int8,torch] [--threads 1] [--rounds 3] [--out FILE]
Writes benchmarks/results/rank_latency.json (or --out). (Start-up and model load are not in these times: see cli_startup.json.)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from _report import write_json

REPORT = {"title": "`rank` latency: real lengths against padded to 128", "order": 310}


def pct(xs: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(xs), q))


def modes(model, batch_size: int, small: int | None) -> dict:
    """Mode name -> fn(query, passages) -> scores in the passages' order."""
    be = model._backend

    def fixed(query, passages, pad_to_max):
        import numpy as np

        out = []
        for i in range(0, len(passages), batch_size):
            ps = passages[i : i + batch_size]
            out.append(be.run(be.encode([query] * len(ps), ps, pad_to_max=pad_to_max)))
        return np.concatenate(out)

    def real(query, passages):  # what `qadistill rank` runs
        return [r.score for r in sorted(model.rank(query, passages), key=lambda r: r.index)]

    out = {"padded": lambda q, ps: fixed(q, ps, True), "dynamic": lambda q, ps: fixed(q, ps, False), "real": real}
    if small:
        out[f"real-b{small}"] = lambda q, ps: be.score_real_lengths([q] * len(ps), ps, small)
    return out


def time_lists(fns: dict, lists: list, rounds: int) -> tuple[dict, dict, dict]:
    """({mode: [median seconds per list]}, {mode: [scores per list]}, {mode: [[seconds of each round] per list]}):
    every list under every mode, ``rounds`` times, the mode order reversed every other round; an untimed warm-up
    pass over the first lists first."""
    names = list(fns)
    for q, ps in lists[:5]:
        for n in names:
            fns[n](q, ps)
    times = {n: [[] for _ in lists] for n in names}
    scores = {n: [None] * len(lists) for n in names}
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]
        for i, (q, ps) in enumerate(lists):
            for n in order:
                t = time.perf_counter()
                s = fns[n](q, ps)
                times[n][i].append(time.perf_counter() - t)
                scores[n][i] = [float(x) for x in s]
    return {n: [statistics.median(ts) for ts in times[n]] for n in names}, scores, times


def summary(med: dict, scores: dict, sizes: list[int], spread: dict | None = None) -> dict:
    """Per mode: percentiles over the lists' median times (over ``spread``'s runs instead: one list's every run)."""
    out = {}
    for n, ts in med.items():
        ms = [t * 1000 for t in (spread[n] if spread else ts)]
        diff = max(abs(a - b) for sa, sb in zip(scores[n], scores["padded"]) for a, b in zip(sa, sb))
        out[n] = {"median_ms": statistics.median(ms), "p90_ms": pct(ms, 90), "p99_ms": pct(ms, 99),
                  "pairs_s": sum(sizes) / sum(ts),
                  "speedup_vs_padded_median": statistics.median(p / t for p, t in zip(med["padded"], ts)),
                  "max_abs_score_diff_vs_padded": diff}
    return out


def bench_backend(name: str, backend: str, args, lists: list) -> tuple[dict, dict]:
    """(the backend's result, its scores per mode and list on all lists)."""
    from qadistill import load

    model = load(name, backend=backend, threads=args.threads, batch_size=args.batch_size, max_length=args.max_length)
    fns = modes(model, args.batch_size, args.small_batch)
    sizes = [len(ps) for _, ps in lists]
    t0 = time.perf_counter()
    med, scores, _ = time_lists(fns, lists, args.rounds)
    one = max(range(len(lists)), key=lambda i: sizes[i])
    med1, scores1, runs1 = time_lists(fns, [lists[one]], args.single_runs)
    res = {"backend": model.backend_name, "folder": str(model._backend.folder), "lists": len(lists), "pairs": sum(sizes),
           "seconds": time.perf_counter() - t0, "all_lists": summary(med, scores, sizes),
           "one_list": {"query": lists[one][0], "candidates": sizes[one], "runs": args.single_runs,
                        **summary(med1, scores1, [sizes[one]], {n: r[0] for n, r in runs1.items()})}}
    model.close()
    return res, scores


def against_torch(results: list[dict], scores: list[dict]) -> None:
    """Each ONNX mode's max |score - PyTorch fp32 real-length score|: how far int8 sits from fp32 either way."""
    ref = next((s["real"] for r, s in zip(results, scores) if r["backend"] == "torch"), None)
    for r, s in zip(results, scores):
        if ref is not None and r["backend"] != "torch":
            for mode, per_list in s.items():
                r["all_lists"][mode]["max_abs_score_diff_vs_torch_fp32"] = max(
                    abs(a - b) for sa, sb in zip(per_list, ref) for a, b in zip(sa, sb))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--backends", default="onnx-int8,torch")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--small-batch", type=int, default=None)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--single-runs", type=int, default=30)
    ap.add_argument("--limit-queries", type=int, default=None)
    ap.add_argument("--out", default="rank_latency.json", help="file name under benchmarks/results/")
    args = ap.parse_args()
    from qadistill.backends import PairTokenizer
    from qadistill.bench import environment
    from qadistill.bench_worker import query_lists
    from qadistill.data import load_dataset

    ds = load_dataset("wikiqa", "test")
    lists = [(qs[0], ps) for qs, ps in query_lists(ds)][: args.limit_queries]
    env = environment()
    results, scores = zip(*[bench_backend(args.model, b, args, lists) for b in args.backends.split(",")])
    against_torch(list(results), list(scores))
    tok = PairTokenizer(Path(results[0]["folder"]), args.max_length)
    lengths = sorted(len(e.ids) for q, ps in lists for e in tok.unpadded([q] * len(ps), ps))
    env["loadavg_1m_end"] = os.getloadavg()[0]
    res = {"command": "python benchmarks/" + " ".join([Path(__file__).name, *sys.argv[1:]]), "model": args.model,
           "data": "wikiqa/test", "threads": args.threads, "batch_size": args.batch_size, "max_length": args.max_length,
           "rounds": args.rounds, "tokens_per_pair": {"median": statistics.median(lengths), "p90": pct(lengths, 90),
                                                     "max": lengths[-1]},
           "results": list(results), "env": env}
    print(json.dumps(res, indent=2))
    write_json(Path(__file__).resolve().parent / "results" / args.out, res, REPORT)


if __name__ == "__main__":
    main()
