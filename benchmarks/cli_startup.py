"""Wall time of `qadistill --help` and `qadistill zoo list` (warm: one untimed run first), as a user sees it.

Usage: python benchmarks/cli_startup.py [--runs 20]
Writes benchmarks/results/cli_startup.json and prints a summary. The machine is shared and noisy: we report the
median and the minimum of many runs, and the 1-minute load average at the start.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _report import write_json

HERE = Path(__file__).resolve().parent
REPORT = {"title": "CLI start-up", "order": 10}  # how RESULTS.md shows the file (benchmarks/_report.py)


def time_cmd(argv: list[str], runs: int, env: dict) -> list[float]:
    subprocess.run(argv, capture_output=True, env=env, check=True)  # warm the page cache / .pyc files
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(argv, capture_output=True, env=env, check=True)
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    exe = shutil.which("qadistill", path=str(Path(sys.executable).parent)) or shutil.which("qadistill")
    home = tempfile.mkdtemp(prefix="qadistill-bench-")
    env = {**os.environ, "QADISTILL_HOME": home, "HF_HUB_OFFLINE": "1"}
    load = os.getloadavg()[0]
    results = {}
    for label, argv in {
        "qadistill --help": [exe, "--help"],
        "qadistill zoo list": [exe, "zoo", "list"],
        "python -c pass (interpreter floor)": [sys.executable, "-c", "pass"],
    }.items():
        ts = time_cmd(argv, args.runs, env)
        results[label] = {"median_s": statistics.median(ts), "min_s": min(ts), "max_s": max(ts), "runs": len(ts)}
        print(f"{label:40s} median {statistics.median(ts)*1000:7.1f} ms   min {min(ts)*1000:7.1f} ms   (n={len(ts)})")
    print(f"load average (1 min) at start: {load:.2f} on {os.cpu_count()} cores")
    out = HERE / "results" / "cli_startup.json"
    write_json(out, {"command": "python benchmarks/cli_startup.py --runs %d" % args.runs, "loadavg_1m": load,
                     "cpu_count": os.cpu_count(), "date": time.strftime("%Y-%m-%d"), "results": results}, REPORT)
    shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
