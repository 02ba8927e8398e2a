"""`qadistill export --all` (the four CPU variants) of one student on the Hugging Face line this environment has, with
the exporter it picks (Optimum on the pinned line, torch.onnx + the ONNX Runtime optimizer on the current one), and
the parity of each variant against PyTorch (max |Δlogit| and the MAP delta on the scorable WikiQA dev queries).

Run it once per line on the same student folder; each run adds its column to one JSON (keyed by line/exporter):

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/export_lines.py FOLDER           # pinned line (Optimum)
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/export_lines.py FOLDER --exporter torch
    HF_HUB_OFFLINE=1 .venv-current/bin/python benchmarks/export_lines.py FOLDER   # current line (no optimum-onnx)

The folder's weights hash is recorded, so columns of different students are refused.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _report import _json_object, write_json  # noqa: E402

LIBS = ("torch", "transformers", "huggingface-hub", "tokenizers", "optimum", "optimum-onnx", "onnx", "onnxruntime", "sentence-transformers")
REPORT = {"title": "Export on both Hugging Face lines: parity of the four CPU variants of one student",
          "note": "One student folder (`distill quickstart --limit-train-queries 60 --epochs 1`, built on the current "
                  "line) exported with `export --all` settings (O2; int8 dynamic, auto preset; int8 static, percentile, "
                  "256 train pairs) on the pinned line (transformers 4.57 + Optimum) and the current line (transformers "
                  "5.24, hub 2.4, no optimum-onnx: torch.onnx + ORT optimizer). Parity against the PyTorch logits of the "
                  "same line on the 122 scorable WikiQA dev queries. The fp32 variants agree to 6e-8 on both lines; "
                  "this weak 60-query student's logits barely spread, so both int8 variants carry the ties flag and "
                  "their MAP deltas (dynamic -7.31 on both lines, static -6.53 / -6.38) say little about int8 itself.",
          "order": 125}


def version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def weights_sha(folder: Path) -> str:
    return hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()[:16]


def run(folder: Path, max_length: int) -> dict:
    from qadistill.compress import ExportRequest, default_variants, export_model
    from qadistill.onnx_export import active_exporter

    exporter = active_exporter()
    with tempfile.TemporaryDirectory(prefix="export-lines-") as tmp:
        res = export_model("s", folder, default_variants(cuda=False), ExportRequest(""), max_length=max_length, out_root=Path(tmp))
    variants = {r.variant: {"max_abs_dlogit": r.parity.max_abs_diff, "map_delta_points": r.parity.map_delta_points,
                            "map_pytorch": r.parity.map_reference, "map_variant": r.parity.map_variant, "ok": r.parity.ok,
                            "ties_flag": r.parity.unstable, "size_mb": round(r.size_bytes / 1e6, 1), "pairs": r.parity.pairs,
                            "queries": r.parity.queries, **r.details} for r in res}
    return {"exporter": exporter.describe(), "libraries": {d: version(d) for d in LIBS}, "variants": variants}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path, help="a built student's folder (e.g. $QADISTILL_HOME/artifacts/NAME)")
    ap.add_argument("--exporter", choices=["auto", "optimum", "torch"], default="auto", help="QADISTILL_EXPORTER for this run")
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "export_lines.json")
    a = ap.parse_args()
    os.environ["QADISTILL_EXPORTER"] = a.exporter
    sha = weights_sha(a.folder)
    prev = _json_object(a.out) or {}
    if prev.get("weights_sha256_16") not in (None, sha):
        sys.exit(f"{a.out} holds another student (weights {prev['weights_sha256_16']}, this one {sha}): pass --out")
    col = run(a.folder, a.max_length)
    line = "pinned" if int(col["libraries"]["transformers"].split(".")[0]) < 5 else "current"
    key = f"{line}/{'optimum' if col['exporter'].startswith('Optimum') else 'torch.onnx'}"
    cmd = f"python benchmarks/export_lines.py {a.folder.name}" + (f" --exporter {a.exporter}" if a.exporter != "auto" else "")
    runs = {**prev.get("runs", {}), key: {"command": cmd, **col}}
    write_json(a.out, {"student": a.folder.name, "weights_sha256_16": sha, "max_length": a.max_length, "runs": runs}, REPORT)
    for v, r in col["variants"].items():
        print(f"{key:20s} {v:13s} max|dlogit| {r['max_abs_dlogit']:.2e}  MAP delta {r['map_delta_points']:+.2f} pts")


if __name__ == "__main__":
    main()
