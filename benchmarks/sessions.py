"""Where several single-thread ONNX Runtime sessions win: one `qadistill bench` run of a student's int8 export served by
one session of --threads threads and by --threads sessions of one thread each (`--sessions 1,N`), padded to the length
and at real lengths (one WikiQA test question's full candidate list per timed unit), at each batch size. Reports the
throughput ratio N sessions / 1 session per (lengths mode, batch size), from the same run.

  python benchmarks/sessions.py STUDENT [--threads 2] [--batch-sizes 1,8,32] [--max-length 128] [--min-time 3]
                                [--out sessions.json]

STUDENT is a built student with an `-int8-dynamic` export (`qadistill export STUDENT --quantize dynamic`).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from _report import write_json
from fair_anchors import qadistill

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("student")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-sizes", default="1,8,32")
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--min-time", default="3")
    ap.add_argument("--out", default="sessions.json", help="file name under benchmarks/results/")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cmd = ["bench", args.student, "--backends", "ort-int8", "--threads", str(args.threads), "--sessions", f"1,{args.threads}",
           "--lengths", "both", "--batch-sizes", args.batch_sizes, "--max-length", str(args.max_length),
           "--min-time", args.min_time, "--no-accuracy"]
    bench = qadistill(*cmd)
    rows = [{"lengths": r["lengths"], "batch_size": r["batch_size"], "sessions": r["sessions"], "threads": r["threads"],
             "p50_ms": r["latency_ms"]["p50"], "p99_ms": r["latency_ms"]["p99"], "pairs_per_s": r["throughput_pairs_s"],
             "e2e_pairs_per_s": r["e2e_throughput_pairs_s"]} for r in bench["rows"]]
    ratios = []
    for mode in ("padded", "real"):
        for bs in sorted({r["batch_size"] for r in rows}):
            one = [r for r in rows if (r["lengths"], r["batch_size"], r["sessions"]) == (mode, bs, 1)]
            many = [r for r in rows if (r["lengths"], r["batch_size"]) == (mode, bs) and r["sessions"] > 1]
            if one and many:
                ratios.append({"lengths": mode, "batch_size": bs, "sessions": many[0]["sessions"],
                               "throughput_ratio": many[0]["pairs_per_s"] / one[0]["pairs_per_s"],
                               "e2e_throughput_ratio": many[0]["e2e_pairs_per_s"] / one[0]["e2e_pairs_per_s"],
                               "p50_ratio": many[0]["p50_ms"] / one[0]["p50_ms"]})
    out = {"command": "python benchmarks/sessions.py " + " ".join(sys.argv[1:]), "bench_command": "qadistill " + " ".join(cmd) + " --format json",
           "student": args.student, "bench_run": bench["run_id"], "env": bench["env"], "rows": rows, "ratios": ratios}
    report = {"title": f"Several single-thread sessions against one {args.threads}-thread session ({args.student} int8, "
                       f"length {args.max_length})", "order": 152,
              "note": "one `qadistill bench` run; padded: a timed unit is N batches at once (one per session), pairs/s "
                      "counts all; real: a unit is one WikiQA test question's whole candidate list, its batches spread "
                      "over the sessions; ratio > 1: the sessions win"}
    write_json(HERE / "results" / args.out, out, report)
    for r in ratios:
        print(f"{r['lengths']:6s} batch {r['batch_size']:3d}: {r['sessions']} sessions / 1 = {r['throughput_ratio']:.2f}x pairs/s "
              f"(end to end {r['e2e_throughput_ratio']:.2f}x; p50 per unit {r['p50_ratio']:.2f}x)")


if __name__ == "__main__":
    main()
