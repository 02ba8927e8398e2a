"""Teacher scoring throughput on this CPU and the logit cache's speed-up.

Usage:
  python benchmarks/teacher_scoring.py [--teachers all-minilm-l6-v2,...] [--split test] [--batch-size 32]

For each teacher, in a fresh temporary QADISTILL_HOME (so nothing is cached): score WikiQA <split> once (cold: model
load excluded, embedding/scoring included), then again (from the cache). Reports pairs/s cold, the cached time and the
ratio. Bi-encoders embed each distinct text once, so their pairs/s counts pairs, not forward passes; texts/s is also
given. Writes benchmarks/results/teacher_scoring.json. Quote ratios and medians: the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from _report import write_json

HERE = Path(__file__).resolve().parent
REPORT = {"title": "Teacher scoring throughput and the logit cache", "order": 90}  # benchmarks/_report.py


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--teachers", default="all-minilm-l6-v2,paraphrase-minilm-l3-v2,all-mpnet-base-v2")
    ap.add_argument("--split", default="test")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--extra", default="", help="comma-separated built teachers to include (e.g. minilm-l6-cross-wikiqa)")
    ap.add_argument("--out", default=str(HERE / "results" / "teacher_scoring.json"))
    args = ap.parse_args()
    real_home = os.environ.get("QADISTILL_HOME")

    import torch

    from qadistill.data import load_dataset, unique
    from qadistill.registry import Registry
    from qadistill.store import Store
    from qadistill.teachers import load_scorer

    ds = load_dataset("wikiqa", args.split)
    n_texts = len(unique([p.query for p in ds.pairs] + [p.passage for p in ds.pairs]))
    rows = []
    names = [t for t in args.teachers.split(",") if t] + [t for t in args.extra.split(",") if t]
    for name in names:
        with tempfile.TemporaryDirectory() as tmp:
            # the registry reads built artifacts from the real home; the cache lives in a fresh one
            reg = Registry(store=Store.open(Path(real_home or "") / "qadistill.db") if real_home else Store.open())
            os.environ["QADISTILL_HOME"] = tmp
            scorer = load_scorer(name, reg, batch_size=args.batch_size)
            _ = scorer.model  # load outside the timing
            t = time.perf_counter()
            raw1 = scorer.raw_scores(ds)
            cold = time.perf_counter() - t
            times = []
            for _ in range(5):
                t = time.perf_counter()
                raw2 = scorer.raw_scores(ds)
                times.append(time.perf_counter() - t)
            warm = sorted(times)[len(times) // 2]
            assert (raw1 == raw2).all()
            if real_home:
                os.environ["QADISTILL_HOME"] = real_home
            else:
                os.environ.pop("QADISTILL_HOME", None)
        row = {
            "teacher": name, "architecture": scorer.architecture, "pairs": len(ds), "distinct_texts": n_texts,
            "max_length": scorer.max_length, "batch_size": args.batch_size, "threads": torch.get_num_threads(),
            "cold_seconds": cold, "pairs_per_s": len(ds) / cold,
            "texts_per_s": (n_texts / cold) if scorer.architecture == "bi-encoder" else None,
            "cached_seconds_median": warm, "cache_speedup": cold / warm,
        }
        rows.append(row)
        print(f"{name:28s} {scorer.architecture:13s} cold {cold:7.1f}s  {row['pairs_per_s']:7.1f} pairs/s  "
              f"cached {warm*1000:7.1f} ms  speed-up {row['cache_speedup']:8.0f}x", flush=True)
    cmd = "python benchmarks/teacher_scoring.py " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "out" and v)
    write_json(Path(args.out), {"command": cmd, "split": args.split, "loadavg_1m_at_end": os.getloadavg()[0],
                                "cpu_count": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M"), "rows": rows}, REPORT)


if __name__ == "__main__":
    main()
