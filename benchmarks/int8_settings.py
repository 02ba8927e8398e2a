"""Which int8 dynamic setting to ship, chosen on the WikiQA dev split (test is reported, never used to choose).

For each student: its ONNX fp32 export (NAME-onnx, from `qadistill export NAME`) and int8 dynamic variants quantized
from it — the plain graph, and the O2-fused graph (what `qadistill export` quantizes) with per-tensor and per-channel
weight scales — each scored with ONNX Runtime on the full dev and test splits.

  python benchmarks/int8_settings.py bench-two-stage-s1 bench-l6f3-two-stage-s1 [--max-length 128]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _report import write_json

HERE = Path(__file__).resolve().parent


def score(folder: Path, ds, max_length: int, batch_size: int) -> dict:
    from qadistill.backends import OrtBackend, score_length_sorted
    from qadistill.compress import cpu_session
    from qadistill.metrics import ranking_metrics

    be = OrtBackend(folder, max_length=max_length, threads=2, session=cpu_session()).load()
    out = score_length_sorted(be, ds.pairs, batch_size)
    m = ranking_metrics([p.query_id for p in ds.pairs], out.tolist(), ds.labels())
    return {"map": m["map"], "mrr": m["mrr"], "scores": out}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("students", nargs="+")
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--out", default="int8_settings.json", help="file name under benchmarks/results/")
    ap.add_argument("--batch-sizes", default="1,32", help="int8 dynamic scales activations per batch, so its scores depend "
                    "on which pairs share a batch (padding included); fp32 does not (scored once, batch 32)")
    args = ap.parse_args()
    import numpy as np

    from qadistill.compress import ExportRequest, auto_preset, fused_graph, quantize_dynamic
    from qadistill.data import load_dataset
    from qadistill.registry import Registry
    from qadistill.store import Store

    reg = Registry(store=Store.open())
    splits = {s: load_dataset("wikiqa", s) for s in ("dev", "test")}
    preset = auto_preset()
    rows = []
    for name in args.students:
        base = Path(reg.get(f"{name}-onnx").path)
        with tempfile.TemporaryDirectory() as tmp:
            variants = {"fp32": base}
            fused = fused_graph(base, Path(tmp) / "fused", ExportRequest(variant="", optimize="O2"))
            for label, graph, pc in [("int8 plain per-tensor", base, False), ("int8 O2 per-tensor", fused, False),
                                     ("int8 O2 per-channel", fused, True)]:
                dest = Path(tmp) / label.replace(" ", "-")
                quantize_dynamic(graph, dest, preset, per_channel=pc)
                variants[label] = dest
            ref = {}
            for label, folder, bs in [(lb, f, b) for lb, f in variants.items()
                                      for b in ([32] if lb == "fp32" else [int(x) for x in args.batch_sizes.split(",")])]:
                row = {"student": name, "variant": label, "batch_size": bs, "preset": preset, "max_length": args.max_length,
                       "size_mb": (folder / "model.onnx").stat().st_size / 1e6}
                for s, ds in splits.items():
                    t0 = time.perf_counter()
                    r = score(folder, ds, args.max_length, bs)
                    row[f"{s}_map"], row[f"{s}_mrr"] = r["map"], r["mrr"]
                    if label == "fp32":
                        ref[s] = r["scores"]
                    else:
                        row[f"{s}_max_abs_diff"] = float(np.abs(r["scores"] - ref[s]).max())
                    row[f"{s}_seconds"] = time.perf_counter() - t0
                rows.append(row)
                print(f"{name:28s} {label:18s} batch {bs:3d} dev MAP {row['dev_map']:.4f}  test MAP {row['test_map']:.4f}  {row['size_mb']:.1f} MB", flush=True)
    out = {"command": "python benchmarks/int8_settings.py " + " ".join(args.students) + f" --max-length {args.max_length} --batch-sizes {args.batch_sizes} --out {args.out}",
           "note": "choose on dev; test is reported. Batches are formed in order of length (pairs sorted by characters).",
           "rows": rows}
    write_json(HERE / "results" / args.out, out, {"title": f"int8 settings on dev (chosen there) and test: {', '.join(args.students)}", "order": 250})


if __name__ == "__main__":
    main()
