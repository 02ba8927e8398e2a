"""Wall time of `qadistill rank MODEL -q ... -p 20passages.txt` as a user runs it (a new process each time, start-up,
model load, tokenization and scoring included). Median and min of N runs, after one untimed run.

Usage: python benchmarks/rank_latency.py MODEL [--runs 10] [--passages 20]
Writes benchmarks/results/rank_latency.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _report import write_json

REPORT = {"title": "`qadistill rank` wall time", "order": 310}  # how RESULTS.md shows the file (benchmarks/_report.py)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--passages", type=int, default=20)
    ap.add_argument("--backend", default="auto")
    args = ap.parse_args()
    from qadistill.data import load_dataset

    ds = load_dataset("wikiqa", "test")
    groups = ds.query_groups()
    qid = next(q for q, idx in groups.items() if len(idx) >= 8)
    query = ds.pairs[groups[qid][0]].query
    passages = [p.passage for p in ds.pairs][: args.passages]
    tmp = Path(tempfile.mkdtemp())
    pf = tmp / "passages.txt"
    pf.write_text("\n".join(passages) + "\n")
    exe = shutil.which("qadistill", path=str(Path(sys.executable).parent)) or "qadistill"
    cmd = [exe, "rank", args.model, "-q", query, "-p", str(pf), "-k", "3", "--backend", args.backend, "--format", "json"]
    first = subprocess.run(cmd, capture_output=True, text=True)
    if first.returncode:
        raise SystemExit(first.stderr)
    backend = json.loads(first.stdout)["backend"]
    times = []
    for _ in range(args.runs):
        t = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        times.append(time.perf_counter() - t)
    res = {"command": " ".join(["qadistill", "rank", args.model, "-q", repr(query), "-p", f"{args.passages}-passages.txt", "-k", "3", "--backend", args.backend]),
           "backend": backend, "passages": args.passages, "median_s": statistics.median(times), "min_s": min(times),
           "max_s": max(times), "runs": len(times), "loadavg_1m": os.getloadavg()[0], "cpu_count": os.cpu_count()}
    print(json.dumps(res, indent=2))
    write_json(Path(__file__).resolve().parent / "results" / "rank_latency.json", res, REPORT)
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
