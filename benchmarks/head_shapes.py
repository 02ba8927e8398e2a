"""Does the head geometry alone change ONNX Runtime's int8 speed? The same 3-layer, 384-wide student shape
(feed-forward 768, the pruned `quickstart-tmkd` shape) with random weights (seed 0) and 12, 6 or 4 attention heads —
the same parameters and the same multiply-adds — and the GELU (erf, ONNX Runtime BiasGelu), its tanh approximation
(FastGelu) or ReLU, each exported the way `qadistill export --quantize dynamic --per-channel` does (O2-fused graph, int8
dynamic), then timed in alternating processes (one process per shape and round, so drift on a shared machine hits all
shapes) on real WikiQA dev pairs padded to the length, with qadistill's CPU session settings.

  python benchmarks/head_shapes.py [--heads 12,6,4] [--batch-sizes 1,32] [--rounds 5] [--threads 2] [--out head_shapes.json]

Writes benchmarks/results/head_shapes.json (or --out). Speed only: random weights say nothing about accuracy
(benchmarks/pruned_students.py measures the trained students).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _report import write_json
from fair_anchors import folder_of
from ort_session_ab import CPU_DEFAULT

HERE = Path(__file__).resolve().parent
REPORT = {"title": "Attention head geometry and activation: int8 speed of one student shape (random weights)", "order": 152}
SHAPE = dict(hidden_size=384, num_hidden_layers=3, intermediate_size=768)


def build(dest: Path, heads: int, act: str, tokenizer_from: Path) -> None:
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from qadistill import compress
    from qadistill.compress import ExportRequest

    torch.manual_seed(0)
    cfg = BertConfig(**SHAPE, num_attention_heads=heads, hidden_act=act, num_labels=1)
    BertForSequenceClassification(cfg).save_pretrained(dest / "hf")
    AutoTokenizer.from_pretrained(str(tokenizer_from)).save_pretrained(dest / "hf")
    compress.export_onnx(dest / "hf", dest / "onnx")
    graph = compress.fused_graph(dest / "onnx", dest / "fused", ExportRequest(variant="int8-dynamic"))
    compress.quantize_dynamic(graph, dest / "int8", compress.auto_preset(), per_channel=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--heads", default="12,6,4")
    ap.add_argument("--batch-sizes", default="1,32")
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="head_shapes.json")
    a = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    tok = folder_of("all-minilm-l6-v2")
    shapes = [(int(h), act) for h in a.heads.split(",") for act in ("gelu", "gelu_new", "relu")]
    times: dict[tuple, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="head-shapes-") as tmp:
        for h, act in shapes:
            build(Path(tmp) / f"h{h}-{act}", h, act, tok)
        for _ in range(a.rounds):
            for bs in (int(b) for b in a.batch_sizes.split(",")):
                for h, act in shapes:
                    # ort_session_ab's worker: p50 of real dev pairs padded to the length, qadistill's CPU settings
                    out = subprocess.run([sys.executable, str(HERE / "ort_session_ab.py"), "--worker", str(Path(tmp) / f"h{h}-{act}" / "int8"),
                                          CPU_DEFAULT, str(bs), "--max-length", str(a.max_length), "--threads", str(a.threads)],
                                         capture_output=True, text=True)
                    if out.returncode:
                        raise SystemExit(out.stderr[-3000:])
                    times.setdefault((h, act, bs), []).append(json.loads(out.stdout.strip().splitlines()[-1])["p50_ms"])
    rows = []
    for (h, act, bs), ts in times.items():
        base = statistics.median(times[(12, "gelu", bs)]) if (12, "gelu", bs) in times else None
        p50 = statistics.median(ts)
        rows.append({"heads": h, "head_size": SHAPE["hidden_size"] // h, "activation": act, "batch_size": bs,
                     "p50_ms_median": p50, "pairs_per_s": bs * 1000 / p50, "speedup_vs_12_heads_gelu": base / p50 if base else None,
                     "p50_ms_rounds": ts})
        print(f"{h:2d} heads x {SHAPE['hidden_size'] // h:3d}, {act:8s} batch {bs:3d}: median p50 {p50:7.2f} ms, "
              f"{bs * 1000 / p50:6.1f} pairs/s" + (f", {base / p50:.2f}x 12 heads gelu" if base else ""), flush=True)
    write_json(HERE / "results" / a.out, {
        "command": "python benchmarks/head_shapes.py " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(a).items()),
        "shape": SHAPE, "loadavg_1m": os.getloadavg()[0], "rows": rows}, REPORT)


if __name__ == "__main__":
    main()
