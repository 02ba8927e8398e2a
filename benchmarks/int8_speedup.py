"""int8 dynamic against ONNX Runtime fp32 (the plain export, and the O2-optimized one) for one student, at several
lengths, repeated: each repeat is one `qadistill bench` run with the three variants (each in its own process, same
thread count), and the speed-up is taken inside that run; the summary is the median over repeats (this machine is
shared, so single runs drift).

  python benchmarks/int8_speedup.py bench-l6f3-two-stage-s1 [--lengths 64,128] [--repeats 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from _report import write_json

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("student")
    ap.add_argument("--lengths", default="64,128")
    ap.add_argument("--batch-sizes", default="1,32")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", default="2")
    ap.add_argument("--min-time", default="3")
    ap.add_argument("--out", default="int8_speedup.json", help="file name under benchmarks/results/")
    args = ap.parse_args()
    runs, summary = [], []
    for length in [int(x) for x in args.lengths.split(",")]:
        ratios: dict[int, list[float]] = {}
        vs_opt: dict[int, list[float]] = {}
        for rep in range(args.repeats):
            cmd = [sys.executable, "-m", "qadistill", "bench", f"{args.student}-onnx", f"{args.student}-optimized", f"{args.student}-int8-dynamic",
                   "--batch-sizes", args.batch_sizes, "--max-length", str(length), "--threads", args.threads,
                   "--min-time", args.min_time, "--no-accuracy", "--format", "json"]
            d = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
            by = {(r["backend"], r["batch_size"]): r for r in d["rows"]}
            for bs in sorted({r["batch_size"] for r in d["rows"]}):
                f, o, q = by[("ort", bs)], by[("ort-optimized", bs)], by[("ort-int8", bs)]
                ratio = f["latency_ms"]["p50"] / q["latency_ms"]["p50"]
                ratios.setdefault(bs, []).append(ratio)
                vs_opt.setdefault(bs, []).append(o["latency_ms"]["p50"] / q["latency_ms"]["p50"])
                runs.append({"run_id": d["run_id"], "max_length": length, "batch_size": bs, "fp32_p50_ms": f["latency_ms"]["p50"],
                             "int8_p50_ms": q["latency_ms"]["p50"], "fp32_min_ms": f["latency_ms"]["min"], "int8_min_ms": q["latency_ms"]["min"],
                             "optimized_p50_ms": o["latency_ms"]["p50"], "speedup_p50": ratio, "speedup_vs_optimized_p50": vs_opt[bs][-1], "speedup_min": f["latency_ms"]["min"] / q["latency_ms"]["min"],
                             "loadavg_1m": d["env"]["loadavg_1m"], "loadavg_1m_end": d["env"].get("loadavg_1m_end")})
                print(f"length {length:4d} batch {bs:3d} run {rep + 1}: fp32 {f['latency_ms']['p50']:.1f} ms, int8 "
                      f"{q['latency_ms']['p50']:.1f} ms -> {ratio:.2f}x (fp32 O2 {o['latency_ms']['p50']:.1f} ms -> {vs_opt[bs][-1]:.2f}x) (load {d['env']['loadavg_1m']:.2f})", flush=True)
        for bs, rs in ratios.items():
            summary.append({"max_length": length, "batch_size": bs, "speedup_median": statistics.median(rs), "speedups": rs,
                            "speedup_vs_optimized_median": statistics.median(vs_opt[bs]), "speedups_vs_optimized": vs_opt[bs]})
    out = {"command": "python benchmarks/int8_speedup.py " + " ".join(sys.argv[1:]), "student": args.student,
           "threads": int(args.threads), "summary": summary, "runs": runs}
    report = {"title": f"int8 dynamic vs ONNX Runtime fp32, repeated runs: {args.student}, lengths {args.lengths}", "order": 160,
              "note": "each ratio is taken inside one `qadistill bench` run, padded to the length; the spread between runs is "
                      "this machine's noise"}
    write_json(HERE / "results" / args.out, out, report)
    for s in summary:
        print(f"length {s['max_length']:4d} batch {s['batch_size']:3d}: median speed-up {s['speedup_median']:.2f}x "
              f"({', '.join(f'{x:.2f}' for x in s['speedups'])}); vs fp32 O2 {s['speedup_vs_optimized_median']:.2f}x")


if __name__ == "__main__":
    main()
