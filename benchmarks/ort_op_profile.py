"""Where the time goes inside ONNX Runtime: per-operator share of the kernel time for each exported variant of a
model, at one batch size and length (ORT's built-in profiler). Explains speed-ups (or their absence) in `bench`.

Usage: python benchmarks/ort_op_profile.py VARIANT_DIR [VARIANT_DIR ...] [--batch-size 32] [--max-length 128] [--threads 2]
                                          [--out ort_op_profile.json]
Writes benchmarks/results/ort_op_profile.json (or --out).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import tempfile
from pathlib import Path

from _report import write_json

REPORT = {"title": "Where ONNX Runtime spends its time (per-operator share of kernel time)", "order": 140}  # benchmarks/_report.py


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dirs", nargs="+")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=6)
    ap.add_argument("--out", default="ort_op_profile.json", help="file name under benchmarks/results/")
    args = ap.parse_args()

    import onnxruntime as ort

    from qadistill.backends import OrtBackend
    from qadistill.data import load_dataset

    pairs = load_dataset("wikiqa", "dev").pairs[: args.batch_size]
    out = {"command": "python benchmarks/ort_op_profile.py " + " ".join(args.dirs) + f" --batch-size {args.batch_size} "
                      f"--max-length {args.max_length} --threads {args.threads}" + (f" --out {args.out}" if args.out != "ort_op_profile.json" else ""), "loadavg_1m": os.getloadavg()[0], "models": []}
    for d in args.dirs:
        be = OrtBackend(Path(d), args.max_length, threads=args.threads).load()
        enc = be.encode([p.query for p in pairs], [p.passage for p in pairs], pad_to_max=True)
        with tempfile.TemporaryDirectory() as tmp:
            so, disabled = be.session_options()  # run the variant as OrtBackend does, profiled
            so.enable_profiling = True
            so.profile_file_prefix = str(Path(tmp) / "prof")
            s = ort.InferenceSession(str(Path(d) / be.file_name), so, providers=["CPUExecutionProvider"], disabled_optimizers=disabled)
            feeds = {i.name: enc[i.name].astype("int64") for i in s.get_inputs()}
            s.run(None, feeds)  # warm-up (also profiled; same ops)
            for _ in range(args.runs):
                s.run(None, feeds)
            events = json.loads(Path(s.end_profiling()).read_text())
        per_op: collections.Counter = collections.Counter()
        for e in events:
            if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
                per_op[e["args"]["op_name"]] += e["dur"]
        total = sum(per_op.values())
        row = {"model": d, "kernel_ms_per_run": total / (args.runs + 1) / 1000,
               "share": {op: round(t / total, 4) for op, t in per_op.most_common()}}
        out["models"].append(row)
        print(f"{d}: {row['kernel_ms_per_run']:.0f} ms of kernels per run; "
              + ", ".join(f"{op} {100 * sh:.0f}%" for op, sh in list(row["share"].items())[:6]), flush=True)
    dest = Path(__file__).resolve().parent / "results" / args.out
    write_json(dest, out, REPORT)


if __name__ == "__main__":
    main()
