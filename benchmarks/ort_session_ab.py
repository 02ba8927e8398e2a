"""Which ONNX Runtime session settings make an exported variant fast on this CPU: each setting runs in its own process
(denormal flushing is per thread, so settings must not share one), settings alternate round by round so that drift on a
shared machine hits all of them, and the summary is each setting's median over rounds. Real WikiQA dev pairs, padded to
the length (as `qadistill bench` does).

  python benchmarks/ort_session_ab.py VARIANT_DIR [VARIANT_DIR ...] [--batch-sizes 1,32] [--rounds 3] [--threads 2]
                                    [--candidates] [--out ort_session_ab.json]
Writes benchmarks/results/ort_session_ab.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from _report import write_json

HERE = Path(__file__).resolve().parent
REPORT = {"title": "ONNX Runtime session settings on the CPU (alternating processes)", "order": 230}  # benchmarks/_report.py
CPU_DEFAULT = "both (qadistill's CPU default)"  # the setting that is compress.cpu_session(), what `qadistill export` records


def settings(candidates: bool = False) -> dict[str, dict]:
    """ORT's defaults, each of qadistill's two CPU session settings alone, and both (what `qadistill export` records);
    with ``candidates``, also the default plus each thread-pool setting that might pay on a small model: dynamic block
    sizes for the intra-op pool (`session.dynamic_block_base`) and no spin-waiting between ops."""
    from qadistill.compress import cpu_session

    both = cpu_session()
    out = {"ORT defaults": {}, "flush denormals": cpu_session(fuse_skip_layernorm=True),
           "SkipLayerNorm unfused": {"disabled_optimizers": both["disabled_optimizers"]}, CPU_DEFAULT: both}
    if candidates:
        for name, key, value in (("default + dynamic block base 4", "session.dynamic_block_base", "4"),
                                 ("default + no spinning", "session.intra_op.allow_spinning", "0")):
            out[name] = {**both, "config": {**both.get("config", {}), key: value}}
    return out


def worker(folder: str, setting: str, batch_size: int, max_length: int, threads: int) -> None:
    from qadistill.backends import OrtBackend
    from qadistill.bench import time_loop
    from qadistill.data import load_dataset

    pairs = load_dataset("wikiqa", "dev").pairs[:batch_size]
    be = OrtBackend(Path(folder), max_length, threads=threads, session=settings(True)[setting]).load()
    enc = be.encode([p.query for p in pairs], [p.passage for p in pairs], pad_to_max=True)
    ts = time_loop(lambda: be.run(enc), min_time=2.0, min_runs=10, max_runs=10**6, warmup=3)
    print(json.dumps({"p50_ms": statistics.median(ts) * 1000, "runs": len(ts)}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dirs", nargs="*")
    ap.add_argument("--batch-sizes", default="1,32")
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--candidates", action="store_true", help="also time the thread-pool settings that are not defaults")
    ap.add_argument("--out", default="ort_session_ab.json", help="file name under benchmarks/results/")
    ap.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker[0], args.worker[1], int(args.worker[2]), args.max_length, args.threads)
        return
    rows = []
    for d in args.dirs:
        for bs in [int(b) for b in args.batch_sizes.split(",")]:
            names = list(settings(args.candidates))
            times: dict[str, list[float]] = {s: [] for s in names}
            for r in range(args.rounds):
                order = names if r % 2 == 0 else names[::-1]
                for s in order:
                    cmd = [sys.executable, __file__, "--worker", d, s, str(bs), "--max-length", str(args.max_length), "--threads", str(args.threads)]
                    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                    times[s].append(json.loads(out.strip().splitlines()[-1])["p50_ms"])
            base = statistics.median(times["ORT defaults"])
            for s, t in times.items():
                rows.append({"variant": Path(d).name, "batch_size": bs, "setting": s, "p50_ms_median": statistics.median(t),
                             "p50_ms_rounds": t, "speedup_vs_defaults": base / statistics.median(t)})
                print(f"{Path(d).name:40s} batch {bs:3d} {s:32s} {statistics.median(t):8.2f} ms ({', '.join(f'{x:.1f}' for x in t)}) "
                      f"{base / statistics.median(t):.2f}x", flush=True)
    out = {"command": "python benchmarks/ort_session_ab.py " + " ".join(sys.argv[1:]), "threads": args.threads,
           "max_length": args.max_length, "loadavg_1m_end": os.getloadavg()[0], "rows": rows}
    write_json(HERE / "results" / args.out, out, REPORT)


if __name__ == "__main__":
    main()
