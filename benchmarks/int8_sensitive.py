"""How many operators int8 dynamic should leave in fp32, chosen on WikiQA dev (test is reported, never used to choose).

For each student: its fp32 ONNX graph, O2-fused (what `qadistill export --quantize dynamic` quantizes), the per-operator
sensitivity on the dev parity sample (`qadistill.compress.node_sensitivity`: that operator alone int8, mean |Δlogit|),
then int8 dynamic per channel with the K most sensitive operators kept in fp32 (`export --fp32-sensitive K`) for each K,
and with the first attention kept instead (`--fp32-first-attention`, the earlier setting). Each variant is scored with
ONNX Runtime on the full dev and test splits (batch 32, pairs in order of length) against the same student in PyTorch
fp32, at the student's own max length.

  python benchmarks/int8_sensitive.py abl-two-stage-4t-avg-s2 [--ks 0,1,2,3,4,6] [--speed-rounds 5]

With --speed-rounds R it also times every variant and the fp32 fused graph in one process: the same 64 WikiQA test
pairs, scored at batch 1 and at batch 32 (padded to the longest pair of each batch), 2 threads, the variants taken in turn
in each of R rounds; it reports the median pairs/s and the median of the per-round ratios to fp32.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _report import write_json

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("students", nargs="+")
    ap.add_argument("--ks", default="0,1,2,3,4,6")
    ap.add_argument("--out", default="int8_sensitive.json", help="file name under benchmarks/results/")
    ap.add_argument("--speed-rounds", type=int, default=0)
    a = ap.parse_args()
    import numpy as np

    from qadistill.backends import OrtBackend, TorchBackend, score_length_sorted
    from qadistill.compress import ExportRequest, auto_preset, cpu_session, export_onnx, fused_graph, node_sensitivity, \
        parity_sample, quantize_dynamic
    from qadistill.data import load_dataset
    from qadistill.metrics import ranking_metrics
    from qadistill.registry import Registry
    from qadistill.store import Store

    reg = Registry(store=Store.open())
    splits = {s: load_dataset("wikiqa", s) for s in ("dev", "test")}
    preset, session, rows, sens_out, speed = auto_preset(), cpu_session(), [], {}, {}

    def measure(backend) -> dict:
        backend.load()
        try:
            return {s: score_length_sorted(backend, ds.pairs, 32) for s, ds in splits.items()}
        finally:
            backend.close()

    def maps(scores: dict) -> dict:
        return {s: ranking_metrics([p.query_id for p in ds.pairs], scores[s].tolist(), ds.labels())["map"] for s, ds in splits.items()}

    for name in a.students:
        model = reg.resolve(name)
        folder, ml = model.folder, model.max_length or 128
        ref = measure(TorchBackend(folder, ml, threads=2))
        ref_map = maps(ref)
        with tempfile.TemporaryDirectory() as tmp:
            t = Path(tmp)
            export_onnx(folder, t / "onnx")
            graph = fused_graph(t / "onnx", t / "fused", ExportRequest(variant="", optimize="O2"))
            sens = node_sensitivity(graph, parity_sample("wikiqa", "dev"), ml, preset, True, t, session)
            sens_out[name] = sens
            print(name, "sensitivity:", ", ".join(f"{r['node'].split('/')[-2:]}={r['mean_abs_diff']:.4f}" for r in sens), flush=True)
            variants = [(f"K={k}", {"fp32_nodes": [r["node"] for r in sens[:k]]}) for k in (int(x) for x in a.ks.split(","))]
            variants.append(("first attention", {"fp32_first_attention": True}))
            folders = {"fp32 (O2 graph)": graph}
            for label, kw in variants:
                dest = t / label.replace(" ", "-").replace("=", "")
                quantize_dynamic(graph, dest, preset, True, **kw)
                sc = measure(OrtBackend(dest, ml, threads=2, session=session))
                m = maps(sc)
                row = {"student": name, "variant": label, "max_length": ml, "preset": preset, "per_channel": True,
                       "fp32_nodes": kw.get("fp32_nodes"), "size_mb": (dest / "model.onnx").stat().st_size / 1e6}
                for s in splits:
                    row[f"{s}_fp32_map"], row[f"{s}_int8_map"] = ref_map[s], m[s]
                    row[f"{s}_delta_points"] = 100 * (m[s] - ref_map[s])
                    row[f"{s}_mean_abs_diff"] = float(np.abs(sc[s] - ref[s]).mean())
                rows.append(row)
                folders[label] = dest
                print(f"{name:28s} {label:16s} dev Δ {row['dev_delta_points']:+.2f} (|Δlogit| {row['dev_mean_abs_diff']:.4f})  "
                      f"test Δ {row['test_delta_points']:+.2f} (|Δlogit| {row['test_mean_abs_diff']:.4f})  {row['size_mb']:.1f} MB", flush=True)
            if a.speed_rounds:
                speed[name] = timed(folders, splits["test"].pairs[:64], a.speed_rounds, session)
    out = {"command": "python benchmarks/int8_sensitive.py " + " ".join(a.students) + f" --ks {a.ks} --out {a.out}"
                      + (f" --speed-rounds {a.speed_rounds}" if a.speed_rounds else ""),
           "note": "choose K on dev (|Δlogit| and MAP delta); test is reported. Deltas are int8 (ONNX Runtime) minus PyTorch fp32 "
                   "on the same split, same batches (32, in order of length).",
           "sensitivity": sens_out, "rows": rows, **({"speed": speed} if speed else {})}
    write_json(HERE / "results" / a.out, out, {"title": f"int8 dynamic: operators kept in fp32 by sensitivity ({', '.join(a.students)})",
                                               "order": 251})


def timed(folders: dict, pairs: list, rounds: int, session: dict) -> dict:
    """Median pairs/s of each variant at batch 1 and 32 (max length 128), the variants in turn in every round, and the
    median per-round ratio to the first (fp32)."""
    import statistics
    import time

    from qadistill.backends import OrtBackend

    q, p = [x.query for x in pairs], [x.passage for x in pairs]
    bes = {k: OrtBackend(f, 128, threads=2, session=session).load() for k, f in folders.items()}
    per: dict = {(k, b): [] for k in bes for b in (1, 32)}
    for k, be in bes.items():
        be.score(q[:8], p[:8], 8)  # warm-up
    for _ in range(rounds):
        for b in (1, 32):
            for k, be in bes.items():
                t = time.perf_counter()
                be.score(q, p, b)
                per[(k, b)].append(len(q) / (time.perf_counter() - t))
    ref = next(iter(bes))
    out = {}
    for (k, b), v in per.items():
        ratio = statistics.median(x / y for x, y in zip(v, per[(ref, b)]))
        out.setdefault(k, {})[f"batch{b}"] = {"pairs_per_s": statistics.median(v), "x_fp32": ratio}
        print(f"  {k:18s} batch {b:2d}: {statistics.median(v):7.1f} pairs/s  {ratio:.2f}x fp32", flush=True)
    for be in bes.values():
        be.close()
    return out


if __name__ == "__main__":
    main()
