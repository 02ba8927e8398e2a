"""Is ONNX Runtime's fused SkipLayerNormalization fast on this CPU? Times the fused contrib op against the Add + Add +
LayerNormalization it replaces, on a student-sized activation (batch x length rows of hidden units), in one process,
alternating the two graphs so that drift on a shared machine hits both. `qadistill export` keeps the two apart on the
CPU by default (they were 3x slower fused here); `--fuse-skip-layernorm` keeps the fusion where this script says the
fused kernel wins.

  python benchmarks/skip_layernorm.py [--rows 4096,128] [--hidden 384] [--threads 2] [--repeats 7]
Writes benchmarks/results/skip_layernorm.txt.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

from _report import write_text

HERE = Path(__file__).resolve().parent
REPORT = {"title": "Fused SkipLayerNormalization vs Add + Add + LayerNormalization (ONNX Runtime CPU kernels)", "order": 240}  # benchmarks/_report.py


def graphs(rows: int, hidden: int) -> dict[str, bytes]:
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [rows, hidden]) for n in ("x", "skip")]
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal(hidden).astype(np.float32), n) for n in ("gamma", "beta", "bias")]
    out = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [rows, hidden])]

    def model(nodes):
        g = helper.make_graph(nodes, "g", inputs, out, inits)
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]).SerializeToString()

    return {
        "SkipLayerNormalization (fused)": model([helper.make_node("SkipLayerNormalization", ["x", "skip", "gamma", "beta", "bias"], ["y"],
                                                                  domain="com.microsoft", epsilon=1e-12)]),
        "Add + Add + LayerNormalization": model([helper.make_node("Add", ["x", "bias"], ["xb"]), helper.make_node("Add", ["xb", "skip"], ["s"]),
                                                 helper.make_node("LayerNormalization", ["s", "gamma", "beta"], ["y"], axis=-1, epsilon=1e-12)]),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", default="4096,128", help="batch x length: 32 x 128 and 1 x 128")
    ap.add_argument("--hidden", type=int, default=384)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--calls", type=int, default=30, help="calls per repeat at 4096 rows (more for fewer rows)")
    ap.add_argument("--out", default="skip_layernorm.txt", help="file name under benchmarks/results/")
    args = ap.parse_args()
    lines = [f"command: python benchmarks/skip_layernorm.py --rows {args.rows} --hidden {args.hidden} --threads {args.threads} "
             f"--repeats {args.repeats} --calls {args.calls}"]
    for rows in [int(r) for r in args.rows.split(",")]:
        lines += measure(rows, args.hidden, args.threads, args.repeats, max(args.calls, args.calls * 4096 // rows // 10))
    text = "\n".join(lines) + "\n"
    print(text, end="")
    write_text(HERE / "results" / args.out, text, REPORT)


def measure(rows: int, hidden: int, threads: int, repeats: int, calls: int) -> list[str]:
    import numpy as np
    import onnxruntime as ort

    rng = np.random.default_rng(1)
    feeds = {n: rng.standard_normal((rows, hidden)).astype(np.float32) for n in ("x", "skip")}
    sessions, outs = {}, {}
    for name, m in graphs(rows, hidden).items():
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # time the graphs as written
        sessions[name] = ort.InferenceSession(m, so, providers=["CPUExecutionProvider"])
        outs[name] = sessions[name].run(None, feeds)[0]
    a, b = outs.values()
    times: dict[str, list[float]] = {n: [] for n in sessions}
    for _ in range(repeats):
        for name, s in sessions.items():
            for _ in range(3):
                s.run(None, feeds)
            t0 = time.perf_counter()
            for _ in range(calls):
                s.run(None, feeds)
            times[name].append((time.perf_counter() - t0) / calls * 1000)
    fused, split = (statistics.median(t) for t in times.values())
    lines = [f"{rows} rows x {hidden}: onnxruntime {ort.__version__}, {platform.machine()}, {threads} threads, load average "
             f"{os.getloadavg()[0]:.2f}; max |difference| of outputs {float(np.abs(a - b).max()):.2e}; {calls} calls per repeat"]
    for name, t in times.items():
        lines.append(f"  {name:32s} median {statistics.median(t):7.3f} ms per call (repeats: {', '.join(f'{x:.2f}' for x in t)})")
    lines.append(f"  fused / unfused time: {fused / split:.2f}x  ->  {'keep them apart (the default)' if fused > split else 'use --fuse-skip-layernorm'}")
    return lines


if __name__ == "__main__":
    main()
