"""How int8 dynamic treats the embedding tables, and how large a parity sample must be to judge it: a built student's
int8 export with the word/position/type embeddings (a) quantized by ONNX Runtime's Gather support (one scale per table:
the presets' default), (b) kept fp32, (c) int8 with one scale per row (what `qadistill export` does), each per tensor
and per channel, against PyTorch on the first 60 scorable WikiQA dev queries and on all of them.

    python benchmarks/int8_embeddings.py [--artifact quickstart-mkdm-s42 ...] [--out results/int8_embeddings.json]

Run it after `make demo` (same QADISTILL_HOME) or name any built students; the MatMul settings are the export's own.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _report import write_json  # noqa: E402

REPORT = {"title": "int8 dynamic: embedding tables per table, fp32 or per row; parity on 60 vs all dev queries",
          "note": "MAP delta in points against PyTorch, WikiQA dev; ties: max |Δlogit| at least half the logit spread. "
                  "A 60-query sample moves the delta by about a point between near-identical exports, so `export` "
                  "checks parity on up to 200 queries (all 122 scorable WikiQA dev queries).",
          "order": 40}
PRESET_OPS = ["Conv", "MatMul", "Attention", "LSTM", "Gather", "Transpose", "EmbedLayerNormalization"]


def quantize(fused: Path, dest: Path, embeddings: str, per_channel: bool) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from qadistill import compress

    if embeddings == "per-row":
        compress.quantize_dynamic(fused, dest, compress.auto_preset(), per_channel)
        return
    compress._copy_side_files(fused, dest)
    ops = PRESET_OPS if embeddings == "per-table" else [o for o in PRESET_OPS if o != "Gather"]
    quantize_dynamic(str(fused / "model.onnx"), str(dest / "model.onnx"), op_types_to_quantize=ops, per_channel=per_channel,
                     weight_type=QuantType.QInt8, extra_options={"WeightSymmetric": True, "ActivationSymmetric": False,
                                                                  "MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT})


def measure(name: str, reg) -> list[dict]:
    from qadistill import compress
    from qadistill.backends import OrtBackend, TorchBackend
    from qadistill.integrity import write_checksums

    ref = reg.resolve(name, "name a built student", recipes=())
    ml = int(ref.max_length or 128)
    samples = {"dev[60q]": compress.parity_sample("wikiqa", "dev", 60), "dev[all scorable]": compress.parity_sample("wikiqa", "dev", 10**6)}
    refs = {k: compress.scores_with(TorchBackend(ref.folder, ml, threads=None), ds) for k, ds in samples.items()}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        compress.export_onnx(ref.folder, tmp / "onnx")
        fused = compress.fused_graph(tmp / "onnx", tmp / "fused", compress.ExportRequest("int8-dynamic"))
        for emb in ("per-table", "fp32", "per-row"):
            for pc in (False, True):
                dest = tmp / f"{emb}-{pc}"
                quantize(fused, dest, emb, pc)
                write_checksums(dest)
                row = {"artifact": name, "embeddings": emb, "per_channel": pc, "mb": round(compress.folder_size(dest) / 1e6, 1)}
                for k, ds in samples.items():
                    vs = compress.scores_with(OrtBackend(dest, ml, session=compress.cpu_session()), ds)
                    r = compress.parity(refs[k], vs, ds, 1.0)
                    row[k] = {"queries": r.queries, "map_delta_points": round(r.map_delta_points, 2), "max_abs_diff": round(r.max_abs_diff, 3),
                              "logit_std": round(r.reference_std, 3), "near_ties": r.unstable}
                print(json.dumps(row), flush=True)
                rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifact", nargs="+", default=["quickstart-mkdm-s42"])
    ap.add_argument("--out", type=Path, default=HERE / "results" / "int8_embeddings.json")
    a = ap.parse_args()
    from qadistill.registry import Registry
    from qadistill.store import Store

    reg = Registry(store=Store.open())
    rows = [r for name in a.artifact for r in measure(name, reg)]
    write_json(a.out, {"command": "python benchmarks/int8_embeddings.py " + " ".join(sys.argv[1:]), "rows": rows}, REPORT)


if __name__ == "__main__":
    main()
