"""A markdown table of the CUDA bench (benchmarks/cuda_bench.sh): the student's rows (accuracy measured per backend)
and the teacher architectures' rows (random weights of the real shapes: speed only), with each row's throughput against
the student's own PyTorch fp32 row and against the mpnet architecture's PyTorch fp32 row at the same batch size.

  python benchmarks/cuda_summary.py bench_cuda_student.json bench_cuda_shapes.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(paths: list[str]) -> None:
    print("\n".join(table(paths)))


def table(paths: list[str]) -> list[str]:
    out: list[str] = []
    rows, env = [], None
    for p in paths:
        if not Path(p).exists() or not Path(p).read_text().strip():
            out.append(f"(missing: {p})")
            continue
        d = json.loads(Path(p).read_text())
        env = env or {**d["env"], "run_id": d.get("run_id")}
        for r in d["rows"]:
            r["_timing_only"] = r["model"].startswith("shapes/")  # random weights of the real shapes
            rows.append(r)
        for e in d.get("errors", []):
            out.append(f"error: {e}")
    if not rows:
        return out
    out.append(f"GPU: {env.get('gpu')} · torch {env['libraries'].get('torch')} · transformers {env['libraries'].get('transformers')} "
          f"· max length {rows[0]['max_length']} (padded) · {env.get('cpu_count')} CPU cores · run {env.get('run_id', '')}")
    out.append("")
    ref = {}
    for r in rows:
        if r["backend"] == "torch" and r["_timing_only"] and "mpnet" in r["model"]:
            ref[("mpnet", r["batch_size"])] = r["throughput_pairs_s"]
        if r["backend"] == "torch" and not r["_timing_only"]:
            ref[("student", r["batch_size"])] = r["throughput_pairs_s"]
    out.append("| model | backend | batch | p50 ms | p90 ms | p99 ms | pairs/s | e2e pairs/s | GPU MB | WikiQA test MAP | × student fp32 | × mpnet fp32 |")
    out.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: (r["batch_size"], r["_timing_only"], r["model"], r["backend"])):
        lat = r["latency_ms"]
        s = ref.get(("student", r["batch_size"]))
        m = ref.get(("mpnet", r["batch_size"]))
        name = Path(r["model"]).name + (" (random weights: speed only)" if r["_timing_only"] else "")
        acc = f"{r['map']:.4f}" if r.get("map") is not None else "-"
        mem = f"{r['gpu_mem_mb']:.0f}" if r.get("gpu_mem_mb") is not None else "-"
        xs = f"{r['throughput_pairs_s'] / s:.2f}" if s else "-"
        xm = f"{r['throughput_pairs_s'] / m:.1f}" if m else "-"
        out.append(f"| {name} | {r['backend']} | {r['batch_size']} | {lat['p50']:.2f} | {lat['p90']:.2f} | {lat['p99']:.2f} | "
              f"{r['throughput_pairs_s']:.0f} | {r['e2e_throughput_pairs_s']:.0f} | {mem} | {acc} | {xs} | {xm} |")
    return out

if __name__ == "__main__":
    main(sys.argv[1:])
