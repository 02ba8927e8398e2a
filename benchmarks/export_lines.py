"""`qadistill export --all` (the four CPU variants) of one student on the Hugging Face line this environment has, with
the exporter it picks (Optimum on the pinned line, torch.onnx + the ONNX Runtime optimizer on the current one), and
the parity of each variant against PyTorch: max |Δlogit| and the MAP delta on the scorable WikiQA dev queries (the
export's own gate) and on the whole WikiQA test split.

Run it once per line on the same student folder; each run adds its column to one JSON (keyed by line/exporter) and
keeps its exports under --keep; then `--speed` times int8 against fp32 of both lines side by side, in one process,
rounds interleaved (same ONNX Runtime, same inputs, same threads):

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/export_lines.py FOLDER --keep /tmp/lines          # pinned (Optimum)
    HF_HUB_OFFLINE=1 .venv-current/bin/python benchmarks/export_lines.py FOLDER --keep /tmp/lines  # current (torch.onnx)
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/export_lines.py FOLDER --speed /tmp/lines

The folder's weights hash is recorded, so columns of different students are refused.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _report import _json_object, write_json  # noqa: E402

LIBS = ("torch", "transformers", "huggingface-hub", "tokenizers", "optimum", "optimum-onnx", "onnx", "onnxruntime", "sentence-transformers")
REPORT = {"title": "Export on both Hugging Face lines: parity and int8 speed of the four CPU variants of one student",
          "note": "One trained student (`distill quickstart`, WikiQA test MAP .655) exported with `export --all` settings "
                  "(O2; int8 dynamic, auto preset; int8 static, percentile, 256 train pairs) on the pinned line "
                  "(transformers 4.57 + Optimum) and the current line (transformers 5.24, hub 2.4, no optimum-onnx: "
                  "torch.onnx + ORT optimizer). Parity against the PyTorch logits of the same line: on the export's dev "
                  "sample and on every scorable WikiQA test query. `speed`: int8 over fp32 pairs/s of each line, timed "
                  "side by side in one process (batch 32, length 128, 2 threads, 7 interleaved rounds, medians); "
                  "line_ratio = current / pinned.",
          "order": 125}


def version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def weights_sha(folder: Path) -> str:
    return hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()[:16]


def line_key() -> str:
    from qadistill.onnx_export import active_exporter

    line = "pinned" if int(version("transformers").split(".")[0]) < 5 else "current"
    return f"{line}/{'optimum' if active_exporter().describe().startswith('Optimum') else 'torch.onnx'}"


def test_parity(folder: Path, exported: list, max_length: int) -> dict:
    """Parity of each exported variant against PyTorch on the whole WikiQA test split (what the README reports)."""
    from qadistill.backends import OrtBackend, TorchBackend
    from qadistill.compress import parity, scores_with
    from qadistill.data import load_dataset

    test = load_dataset("wikiqa", "test")
    scorable = {q for q, m in test.query_groups().items() if len({test.pairs[i].label for i in m}) == 2}
    test = type(test)(test.name, "test[scorable]", [p for p in test.pairs if p.query_id in scorable], test.path)
    ref = scores_with(TorchBackend(folder, max_length, threads=None), test)
    out = {}
    for r in exported:
        rep = parity(ref, scores_with(OrtBackend(Path(r.path), max_length), test), test, 0.5)
        out[r.variant] = {"test_max_abs_dlogit": rep.max_abs_diff, "test_map_pytorch": rep.map_reference,
                          "test_map_variant": rep.map_variant, "test_map_delta_points": rep.map_delta_points,
                          "test_within_0.5": rep.ok, "test_ties_flag": rep.unstable, "test_pairs": rep.pairs, "test_queries": rep.queries}
    return out


def run(folder: Path, max_length: int, keep: Path | None) -> dict:
    from qadistill.compress import ExportRequest, default_variants, export_model
    from qadistill.onnx_export import active_exporter

    exporter = active_exporter()
    with tempfile.TemporaryDirectory(prefix="export-lines-") as tmp:
        root = keep / line_key().replace("/", "_") if keep else Path(tmp)
        if keep and root.exists():
            import shutil

            shutil.rmtree(root)
        res = export_model("s", folder, default_variants(cuda=False), ExportRequest(""), max_length=max_length, out_root=root)
        on_test = test_parity(folder, res, max_length)
    variants = {r.variant: {"max_abs_dlogit": r.parity.max_abs_diff, "map_delta_points": r.parity.map_delta_points,
                            "map_pytorch": r.parity.map_reference, "map_variant": r.parity.map_variant, "ok": r.parity.ok,
                            "ties_flag": r.parity.unstable, "size_mb": round(r.size_bytes / 1e6, 1), "pairs": r.parity.pairs,
                            "queries": r.parity.queries, **on_test[r.variant], **r.details} for r in res}
    return {"exporter": exporter.describe(), "libraries": {d: version(d) for d in LIBS}, "variants": variants}


def speed(keep: Path, batch: int, length: int, threads: int, rounds: int, min_time: float) -> dict:
    """pairs/s of fp32 (onnx, optimized) and int8 (dynamic, static) of every line under ``keep``, one process, rounds
    interleaved so drift on a shared machine hits every model alike; medians over rounds, ratios int8 / fp32."""
    import numpy as np

    from qadistill.backends import OrtBackend

    lines = sorted(d.name for d in keep.iterdir() if d.is_dir())
    models = {(ln, v): OrtBackend(keep / ln / f"s-{v}", length, threads=threads).load()
              for ln in lines for v in ("onnx", "optimized", "int8-dynamic", "int8-static")}
    rng = np.random.default_rng(0)
    enc = {"input_ids": rng.integers(1000, 30000, (batch, length)).astype(np.int64),
           "attention_mask": np.ones((batch, length), dtype=np.int64), "token_type_ids": np.zeros((batch, length), dtype=np.int64)}
    enc["token_type_ids"][:, length // 3:] = 1
    per: dict = {k: [] for k in models}
    for _ in range(rounds):
        for k, be in models.items():
            be.run(enc)  # warm
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < min_time:
                be.run(enc)
                n += 1
            per[k].append(n * batch / (time.perf_counter() - t0))
    med = {f"{ln}:{v}": statistics.median(per[(ln, v)]) for ln, v in models}
    out = {"batch": batch, "length": length, "threads": threads, "rounds": rounds, "min_time_s": min_time, "pairs_per_s": med,
           "int8_over_fp32": {}}
    for ln in lines:
        out["int8_over_fp32"][ln] = {f"{q}/{f}": med[f"{ln}:{q}"] / med[f"{ln}:{f}"]
                                     for q in ("int8-dynamic", "int8-static") for f in ("onnx", "optimized")}
    if len(lines) == 2:
        a, b = lines
        out["line_ratio"] = {k: out["int8_over_fp32"][a][k] / out["int8_over_fp32"][b][k] for k in out["int8_over_fp32"][a]}
        out["line_ratio_of"] = f"{a} / {b}"
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path, help="a built student's folder (e.g. $QADISTILL_HOME/artifacts/NAME)")
    ap.add_argument("--exporter", choices=["auto", "optimum", "torch"], default="auto", help="QADISTILL_EXPORTER for this run")
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "export_lines.json")
    ap.add_argument("--keep", type=Path, help="keep the exports under DIR/<line> (for --speed)")
    ap.add_argument("--speed", type=Path, metavar="DIR", help="time int8 vs fp32 of the lines kept under DIR, side by side")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--min-time", type=float, default=1.5)
    a = ap.parse_args()
    if a.speed:
        prev = _json_object(a.out) or {}
        if prev.get("weights_sha256_16") != weights_sha(a.folder):
            sys.exit(f"{a.out} does not hold {a.folder.name}'s parity columns: run the per-line exports first")
        sp = speed(a.speed, a.batch, a.max_length, a.threads, a.rounds, a.min_time)
        sp["command"] = (f"python benchmarks/export_lines.py {a.folder.name} --speed DIR --batch {a.batch} --threads {a.threads} "
                         f"--rounds {a.rounds} --min-time {a.min_time}")
        write_json(a.out, {**prev, "speed": sp}, REPORT)
        print(json.dumps(sp, indent=1))
        return
    os.environ["QADISTILL_EXPORTER"] = a.exporter
    sha = weights_sha(a.folder)
    prev = _json_object(a.out) or {}
    if prev.get("weights_sha256_16") not in (None, sha):
        sys.exit(f"{a.out} holds another student (weights {prev['weights_sha256_16']}, this one {sha}): pass --out")
    col = run(a.folder, a.max_length, a.keep)
    key = line_key()
    cmd = f"python benchmarks/export_lines.py {a.folder.name}" + (f" --exporter {a.exporter}" if a.exporter != "auto" else "")
    runs = {**prev.get("runs", {}), key: {"command": cmd, **col}}
    keep = {k: prev[k] for k in ("speed",) if k in prev and prev.get("weights_sha256_16") == sha}
    write_json(a.out, {"student": a.folder.name, "weights_sha256_16": sha, "max_length": a.max_length, "runs": runs, **keep}, REPORT)
    for v, r in col["variants"].items():
        print(f"{key:20s} {v:13s} max|dlogit| {r['max_abs_dlogit']:.2e}  dev MAP delta {r['map_delta_points']:+.2f}  "
              f"test MAP delta {r['test_map_delta_points']:+.2f} pts")


if __name__ == "__main__":
    main()
