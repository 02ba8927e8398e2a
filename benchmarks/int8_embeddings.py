"""Where int8 dynamic loses a student's ranking, and how large a parity sample must be to see it: a built student's
int8 export with the word/position/type embeddings (a) quantized by ONNX Runtime's Gather support (one scale per table:
the presets' default), (b) kept fp32, (c) int8 with one scale per row (what `qadistill export` does), each per tensor
and per channel, and (c) per channel with the first layer's attention kept fp32 (`--fp32-first-attention`), against
PyTorch on the first 60 scorable WikiQA dev queries and on all of them; then the speed of (c) per channel with and
without the fp32 first attention (ONNX Runtime, 2 threads, length 128, alternating calls, median ms).

    python benchmarks/int8_embeddings.py [--artifact quickstart-mkdm-s42 FOLDER ...] [--max-length 64] [--out results/int8_embeddings.json]

Run it after `make demo` (same QADISTILL_HOME) or name any built students or their folders; the MatMul settings are the
export's own.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _report import write_json  # noqa: E402

REPORT = {"title": "int8 dynamic: embedding tables per table, fp32 or per row; the first attention in fp32; parity on 60 vs all dev queries",
          "note": "MAP delta in points against PyTorch, WikiQA dev; ties: max |Δlogit| at least half the logit spread. "
                  "A 60-query sample moves the delta by about a point between near-identical exports, so `export` "
                  "checks parity on up to 200 queries (all 122 scorable WikiQA dev queries). Three quickstart "
                  "students: the `make demo` one (bf16-trained) and two earlier fp32-trained ones (folders).",
          "order": 40}
PRESET_OPS = ["Conv", "MatMul", "Attention", "LSTM", "Gather", "Transpose", "EmbedLayerNormalization"]


VARIANTS = [("per-table", False, False), ("per-table", True, False), ("fp32", False, False), ("fp32", True, False),
            ("per-row", False, False), ("per-row", True, False), ("per-row", True, True)]


def quantize(fused: Path, dest: Path, embeddings: str, per_channel: bool, fp32_first_attention: bool = False) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from qadistill import compress
    from qadistill.onnx_export import copy_side_files

    if embeddings == "per-row":
        compress.quantize_dynamic(fused, dest, compress.auto_preset(), per_channel, fp32_first_attention)
        return
    copy_side_files(fused, dest)
    ops = PRESET_OPS if embeddings == "per-table" else [o for o in PRESET_OPS if o != "Gather"]
    quantize_dynamic(str(fused / "model.onnx"), str(dest / "model.onnx"), op_types_to_quantize=ops, per_channel=per_channel,
                     weight_type=QuantType.QInt8, extra_options={"WeightSymmetric": True, "ActivationSymmetric": False,
                                                                  "MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT})


def measure(name: str, reg, max_length: int | None) -> tuple[list[dict], dict]:
    from qadistill import compress
    from qadistill.backends import OrtBackend, TorchBackend
    from qadistill.integrity import write_checksums

    ref = reg.resolve(name, "name a built student", recipes=())
    ml = int(max_length or ref.max_length or 128)
    samples = {"dev[60q]": compress.parity_sample("wikiqa", "dev", 60), "dev[all scorable]": compress.parity_sample("wikiqa", "dev", 10**6)}
    refs = {k: compress.scores_with(TorchBackend(ref.folder, ml, threads=None), ds) for k, ds in samples.items()}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        compress.export_onnx(ref.folder, tmp / "onnx")
        fused = compress.fused_graph(tmp / "onnx", tmp / "fused", compress.ExportRequest("int8-dynamic"))
        for emb, pc, first in VARIANTS:
            dest = tmp / f"{emb}-{pc}-{first}"
            quantize(fused, dest, emb, pc, first)
            write_checksums(dest)
            row = {"artifact": str(name), "max_length": ml, "embeddings": emb, "per_channel": pc, "fp32_first_attention": first,
                   "mb": round(compress.folder_size(dest) / 1e6, 1)}
            for k, ds in samples.items():
                vs = compress.scores_with(OrtBackend(dest, ml, session=compress.cpu_session()), ds)
                r = compress.parity(refs[k], vs, ds, 1.0)
                row[k] = {"queries": r.queries, "map_delta_points": round(r.map_delta_points, 2), "max_abs_diff": round(r.max_abs_diff, 3),
                          "mean_abs_diff": round(float(abs(refs[k] - vs).mean()), 4), "logit_std": round(r.reference_std, 3),
                          "near_ties": r.unstable}
            print(json.dumps(row), flush=True)
            rows.append(row)
        speed = timings({"int8 per channel": tmp / "per-row-True-False", "int8 per channel, fp32 first attention": tmp / "per-row-True-True"})
    print(json.dumps(speed), flush=True)
    return rows, {"artifact": str(name), **speed}


def timings(folders: dict, length: int = 128, reps: dict | None = None) -> dict:
    """Median ms per call of each ONNX folder at batch 1 and 32, length ``length``, 2 threads, the calls alternating."""
    import numpy as np
    import onnxruntime as ort

    from qadistill import compress

    sessions = {}
    for k, f in folders.items():
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = 2, 1
        cfg = compress.cpu_session()
        for key, v in cfg["config"].items():
            so.add_session_config_entry(key, v)
        sessions[k] = ort.InferenceSession(str(f / "model.onnx"), so, providers=["CPUExecutionProvider"], disabled_optimizers=cfg["disabled_optimizers"])
    rng, out = np.random.default_rng(0), {}
    for batch, n in (reps or {1: 200, 32: 15}).items():
        feeds = {"input_ids": rng.integers(1000, 20000, (batch, length)), "attention_mask": np.ones((batch, length), np.int64),
                 "token_type_ids": np.zeros((batch, length), np.int64)}
        times: dict = {k: [] for k in sessions}
        for _ in range(n):
            for k, s in sessions.items():
                names = {i.name for i in s.get_inputs()}
                t = time.perf_counter()
                s.run(None, {a: v.astype(np.int64) for a, v in feeds.items() if a in names})
                times[k].append((time.perf_counter() - t) * 1000)
        out[f"batch {batch}, length {length}: median ms"] = {k: round(float(np.median(v)), 2) for k, v in times.items()}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifact", nargs="+", default=["quickstart-mkdm-s42"])
    ap.add_argument("--max-length", type=int, default=None, help="default: the artifact's (a bare folder: 128)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "int8_embeddings.json")
    a = ap.parse_args()
    from qadistill.registry import Registry
    from qadistill.store import Store

    reg = Registry(store=Store.open())
    rows, speed = [], []
    for name in a.artifact:
        r, t = measure(name, reg, a.max_length)
        rows += r
        speed.append(t)
    write_json(a.out, {"command": "python benchmarks/int8_embeddings.py " + " ".join(sys.argv[1:]), "rows": rows, "speed": speed}, REPORT)


if __name__ == "__main__":
    main()
