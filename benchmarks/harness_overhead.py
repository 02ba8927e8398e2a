"""Harness overhead: bench's timing loop versus a bare `InferenceSession.run` loop, same ONNX model, same batch, same
process, interleaved rounds so machine noise hits both alike.

Usage: python benchmarks/harness_overhead.py MODEL_DIR [--batch-size 8] [--max-length 128] [--rounds 7] [--threads 2]
Writes benchmarks/results/harness_overhead.json. Acceptance: bench's median within 5% of the bare loop's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from _report import write_json

REPORT = {"title": "Harness overhead", "order": 300}  # how RESULTS.md shows the file (benchmarks/_report.py)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    from qadistill.backends import OrtBackend
    from qadistill.bench import percentiles, time_loop
    from qadistill.data import load_dataset

    ds = load_dataset("wikiqa", "test")
    pairs = ds.pairs[: args.batch_size]
    be = OrtBackend(Path(args.model_dir), args.max_length, threads=args.threads).load()
    enc = be.encode([p.query for p in pairs], [p.passage for p in pairs], pad_to_max=True)
    feeds = {k: enc[k] for k in be.inputs}
    sess = be.session

    def bare() -> list[float]:
        for _ in range(3):
            sess.run(None, feeds)
        out = []
        for _ in range(args.runs):
            t = time.perf_counter()
            sess.run(None, feeds)
            out.append(time.perf_counter() - t)
        return out

    def harness() -> list[float]:
        return time_loop(lambda: be.run(enc), min_time=0.0, min_runs=args.runs, max_runs=args.runs, warmup=3)

    # Rounds alternate which loop goes first, and the estimate is the median of per-round ratios: the machine's load
    # drifts between rounds (medians moved 35 -> 51 ms within one run here), much less within one.
    b_med, h_med = [], []
    for r in range(args.rounds):
        if r % 2:
            h_med.append(percentiles(harness())["p50"])
            b_med.append(percentiles(bare())["p50"])
        else:
            b_med.append(percentiles(bare())["p50"])
            h_med.append(percentiles(harness())["p50"])
    b, h = statistics.median(b_med), statistics.median(h_med)
    ratio = statistics.median(hh / bb for hh, bb in zip(h_med, b_med))
    res = {"command": "python benchmarks/harness_overhead.py " + " ".join(f"--{k.replace('_', '-')} {v}" if k != "model_dir" else str(v) for k, v in vars(args).items()),
           "bare_p50_ms_median_of_rounds": b, "bench_p50_ms_median_of_rounds": h, "overhead_ratio_median_of_round_ratios": ratio,
           "within_5_percent": abs(ratio - 1) <= 0.05, "loadavg_1m": os.getloadavg()[0], "rounds_bare": b_med, "rounds_bench": h_med}
    print(json.dumps(res, indent=2))
    out = Path(__file__).resolve().parent / "results" / "harness_overhead.json"
    write_json(out, res, REPORT)


if __name__ == "__main__":
    main()
