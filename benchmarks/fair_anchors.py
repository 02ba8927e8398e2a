"""Fair anchors: the student against its teachers as a user would otherwise serve them, in one `qadistill bench` run.

A BERT-base-sized cross-encoder (the realistic MKDM teacher: 12 layers, hidden 768; random weights, so its rows are
speed only) and, optionally, a real cross-encoder teacher of the zoo, each exported to ONNX fp32 and int8 (dynamic,
per-channel) and benched on PyTorch fp32, ONNX Runtime fp32 and ONNX Runtime int8 beside the student's own variants,
all padded to one length, same threads, each model x backend in its own process. Speed-ups of the student's int8 row
are given against each anchor as trained (PyTorch fp32) and at its best backend. Each row also gets its arithmetic
(GOPS: matrix-multiply operations per pair from the model's config, times pairs/s) and its share of this CPU's int8
GEMM peak, measured in the same run with ONNX Runtime MatMulInteger on 2048x2048x2048 at the same thread count.

  python benchmarks/fair_anchors.py STUDENT [--teacher minilm-l6-cross-wikiqa] [--batch-sizes 1,32] [--threads 2]
                                    [--sessions 1,2] [--max-length 128] [--min-time 3] [--out fair_anchors.json]

--sessions 1,2 also serves every ONNX Runtime row with 2 sessions sharing the threads (`qadistill bench --sessions`);
speed-ups then compare the student and each anchor at the same session count, and at their best.

STUDENT is a built student with its `-onnx` and `-int8-dynamic` exports (`qadistill export STUDENT --quantize dynamic
--per-channel`, as benchmarks/pruned_students.py exports them).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _report import write_json

HERE = Path(__file__).resolve().parent
BERT_BASE = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)


def qadistill(*args: str) -> dict | list:
    out = subprocess.run([sys.executable, "-m", "qadistill", *args, "--format", "json"], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"qadistill {' '.join(args)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout)


def folder_of(name: str) -> Path:
    """Where a zoo name's weights are (resolved by the registry, as every command does)."""
    sys.path.insert(0, str(HERE.parent))
    from qadistill.registry import Registry
    from qadistill.store import Store

    return Registry(store=Store.open()).resolve(name, use="anchor the bench").folder


def make_bert_base(student_folder: Path) -> Path:
    """A BERT-base cross-encoder with random weights (seed 0) and the student's (BERT uncased) tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from qadistill import paths

    folder = paths.home() / "bench-shapes" / "bert-base-cross"
    if (folder / "model.safetensors").exists():
        return folder
    tok = AutoTokenizer.from_pretrained(str(student_folder))
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tok.vocab_size, num_labels=1, architectures=["BertForSequenceClassification"], **BERT_BASE)
    tmp = folder.with_name(folder.name + ".tmp")
    BertForSequenceClassification(cfg).save_pretrained(str(tmp))
    tok.save_pretrained(str(tmp))
    tmp.rename(folder)
    return folder


def export(name: str) -> list[str]:
    """ONNX fp32 + int8 dynamic per-channel; the registered names of both (parity on a few dev queries: for a random
    model it only checks that the export runs)."""
    res = qadistill("export", name, "--quantize", "dynamic", "--per-channel", "--parity-queries", "10", "--overwrite")
    return [r["name"] for r in res]


def ops_per_pair(folder: Path, length: int) -> float:
    """Matrix-multiply operations (2 per multiply-add) of one padded pair: the projections and FFN of every layer,
    attention scores and context; embeddings, softmax, norms and the head are left out."""
    cfg = json.loads((folder / "config.json").read_text())
    h, f, n = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    return 2.0 * n * (length * (4 * h * h + 2 * h * f) + 2 * length * length * h)


def int8_gemm(threads: int, size: int = 2048):
    """(run, operations): one ONNX Runtime MatMulInteger (uint8 x int8 -> int32) on size^3 at ``threads`` threads, as
    a call that runs it once, and the operations it does (2 per multiply-add): the int8 GEMM rate this CPU reaches."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper

    a = helper.make_tensor_value_info("a", TensorProto.UINT8, [size, size])
    b = helper.make_tensor_value_info("b", TensorProto.INT8, [size, size])
    y = helper.make_tensor_value_info("y", TensorProto.INT32, [size, size])
    graph = helper.make_graph([helper.make_node("MatMulInteger", ["a", "b"], ["y"])], "gemm", [a, b], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feed = {"a": rng.integers(0, 255, (size, size), dtype=np.uint8), "b": rng.integers(-127, 127, (size, size), dtype=np.int8)}
    return (lambda: sess.run(None, feed)), 2.0 * size**3


def gemm_peak_gops(threads: int, size: int = 2048, repeats: int = 10) -> float:
    """The int8 GEMM rate (GOPS) of :func:`int8_gemm`: the median of ``repeats`` timed runs after one untimed."""
    run, ops = int8_gemm(threads, size)
    return ops / median_seconds(run, repeats) / 1e9


def median_seconds(fn, runs: int) -> float:
    """The median wall time of ``runs`` timed calls of ``fn`` after one untimed call."""
    fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("student")
    ap.add_argument("--teacher", default=None, help="a real cross-encoder teacher of the zoo to anchor on as well")
    ap.add_argument("--batch-sizes", default="1,32")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sessions", default="1", help="ONNX Runtime session counts to bench (e.g. 1,2)")
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--min-time", default="3")
    ap.add_argument("--out", default="fair_anchors.json", help="file name under benchmarks/results/")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    bert = make_bert_base(folder_of(args.student))
    anchors = {"bert-base-cross (random weights)": [str(bert), *export(str(bert))]}
    if args.teacher:
        anchors[args.teacher] = [args.teacher, *export(args.teacher)]
    models = [m for group in anchors.values() for m in group] + [args.student]
    peak_before = gemm_peak_gops(args.threads)
    bench = qadistill("bench", *models, "--backends", "torch,ort,ort-int8", "--batch-sizes", args.batch_sizes,
                      "--max-length", str(args.max_length), "--threads", str(args.threads), "--min-time", args.min_time,
                      "--sessions", args.sessions, "--no-accuracy", "--baseline", str(bert))
    peak = statistics.mean([peak_before, gemm_peak_gops(args.threads)])
    rows = summarise(bench["rows"], anchors, args, peak)
    out = {"command": "python benchmarks/fair_anchors.py " + " ".join(sys.argv[1:]), "student": args.student,
           "threads": args.threads, "sessions": args.sessions, "max_length": args.max_length, "int8_gemm_peak_gops": round(peak, 1),
           "bench_run": bench["run_id"], "env": bench["env"], "rows": rows, "speedups": speedups(rows, anchors)}
    report = {"title": f"Fair anchors: {args.student} against its teachers at their best backend (length {args.max_length}, "
                       f"{args.threads} threads)", "order": 150,
              "note": "one `qadistill bench` run; the BERT-base cross-encoder has random weights (speed only); GOPS counts "
                      "matrix-multiply operations per padded pair from the config; peak = ONNX Runtime MatMulInteger 2048^3, "
                      "same threads, measured before and after the bench"}
    write_json(HERE / "results" / args.out, out, report)
    for r in rows:
        print(f"{r['model'][:44]:44s} {r['backend']:9s} x{r['sessions']} batch {r['batch_size']:3d}: {r['pairs_per_s']:8.1f} pairs/s "
              f"p50 {r['p50_ms']:7.1f} ms  {r['gops']:6.0f} GOPS ({r['share_of_int8_peak']:.0%} of int8 peak)")
    for s in out["speedups"]:
        print(f"student int8 x{s['sessions']} vs {s['anchor']} at batch {s['batch_size']}: {s['vs_as_trained']:.1f}x as trained "
              f"(torch fp32), {s['vs_int8_same_sessions'] or 0:.1f}x its int8 x{s['sessions']}, {s['vs_best']:.1f}x at its best "
              f"({s['best_backend']} x{s['best_sessions']})")


def anchor_of(model: str, anchors: dict, student: str) -> str:
    """Which anchor a bench row belongs to: bench names a folder's rows by its path (torch) or by its folder's name (its
    exports), so both spellings of every anchor member count; a row of no anchor and not the student is an error."""
    for a, ms in anchors.items():
        if model in ms or model in {Path(m).name for m in ms}:
            return a
    if model == student:
        return "student"
    raise SystemExit(f"bench row {model!r} belongs to no anchor and is not the student {student!r}")


def summarise(bench_rows: list[dict], anchors: dict, args, peak: float) -> list[dict]:
    out = []
    for r in bench_rows:
        ops = ops_per_pair(Path(r["folder"]), args.max_length)
        gops = ops * r["throughput_pairs_s"] / 1e9
        out.append({"model": r["model"], "anchor": anchor_of(r["model"], anchors, args.student), "backend": r["backend"],
                    "sessions": r.get("sessions", 1), "batch_size": r["batch_size"], "pairs_per_s": r["throughput_pairs_s"], "p50_ms": r["latency_ms"]["p50"],
                    "gops": round(gops, 1), "share_of_int8_peak": round(gops / peak, 3),
                    "size_mb": r["size_mb"], "speedup_vs_bert_base_torch": r.get("speedup"), "folder": r["folder"]})
    return out


def speedups(rows: list[dict], anchors: dict) -> list[dict]:
    """Per anchor, batch size and session count n: the student's int8 served with n sessions against the anchor as
    trained (PyTorch fp32, one session), against its int8 with the same n (same settings) and against its best row."""
    out = []
    for anchor in anchors:
        for bs in sorted({r["batch_size"] for r in rows}):
            mine = [r for r in rows if r["anchor"] == anchor and r["batch_size"] == bs]
            torch_rows = [r for r in mine if r["backend"] == "torch"]
            if not mine or not torch_rows:
                continue
            best = max(mine, key=lambda r: r["pairs_per_s"])
            for stu in [r for r in rows if r["anchor"] == "student" and r["batch_size"] == bs and r["backend"] == "ort-int8"]:
                same = [r for r in mine if r["backend"] == "ort-int8" and r["sessions"] == stu["sessions"]]
                out.append({"anchor": anchor, "batch_size": bs, "sessions": stu["sessions"], "student_pairs_per_s": stu["pairs_per_s"],
                            "vs_as_trained": stu["pairs_per_s"] / torch_rows[0]["pairs_per_s"],
                            "vs_int8_same_sessions": stu["pairs_per_s"] / same[0]["pairs_per_s"] if same else None,
                            "vs_best": stu["pairs_per_s"] / best["pairs_per_s"], "best_backend": best["backend"],
                            "best_sessions": best["sessions"]})
    return out


if __name__ == "__main__":
    main()
