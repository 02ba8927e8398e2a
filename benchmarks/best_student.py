"""The best student of the MKDM ablation (the arm with the best mean WikiQA dev MAP; its seed with the best dev MAP),
exported to ONNX int8 dynamic and scored as served: PyTorch fp32 against int8 on WikiQA test and TREC-QA dev.

  python benchmarks/best_student.py [--arm two-stage] [--quantize-options "--per-channel --fp32-first-attention"]

Reads results/mkdm_ablation.jsonl (benchmarks/mkdm_ablation.py), writes results/best_student.json.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
from pathlib import Path

from _report import write_json
from fair_anchors import qadistill  # the one-JSON-result runner

HERE = Path(__file__).resolve().parent
RES = HERE / "results"
REPORT = {"title": "The best ablation student, served: PyTorch fp32 vs ONNX Runtime int8 (`benchmarks/best_student.py`)",
          "order": 102, "note": "Arm chosen by mean WikiQA dev MAP, seed by its dev MAP; test and TREC-QA only report."}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arm", default=None, help="default: the arm with the best mean dev MAP")
    ap.add_argument("--quantize-options", default="--per-channel --fp32-first-attention")
    a = ap.parse_args()
    rows = [json.loads(x) for x in (RES / "mkdm_ablation.jsonl").read_text().splitlines() if x.strip()]
    by_arm: dict[str, list[dict]] = {}
    for r in rows:
        by_arm.setdefault(r["arm"], []).append(r)
    dev = {arm: statistics.mean(r.get("dev_map_learned") or r["dev_map"] for r in rs) for arm, rs in by_arm.items()}
    arm = a.arm or max(dev, key=dev.get)
    best = max(by_arm[arm], key=lambda r: r.get("dev_map_learned") or r["dev_map"])
    name = best["name"]
    exp = ["export", name, "--quantize", "dynamic", *shlex.split(a.quantize_options)]
    exported = qadistill(*exp)
    int8 = next(r["name"] for r in exported if "int8" in r["name"])
    out = {"arm": arm, "arm_dev_map": dev, "student": name, "seed": best["seed"], "int8": int8,
           "commands": ["qadistill " + " ".join(exp)], "eval": {}}
    for data, split in (("wikiqa", "test"), ("trecqa", "dev")):
        args = ["eval", name, int8, "--data", data, "--split", split]
        res = qadistill(*args)
        out["commands"].append("qadistill " + " ".join(args))
        ms = {r["model"]: r for r in res["rows"]}
        fp32, q = ms[name], ms[int8]
        out["eval"][f"{data}:{split}"] = {"fp32_map": fp32["map"], "int8_map": q["map"], "fp32_mrr": fp32["mrr"],
                                          "int8_mrr": q["mrr"], "int8_map_delta_points": 100 * (q["map"] - fp32["map"])}
        print(f"{data}:{split}: fp32 MAP {fp32['map']:.4f}  int8 {q['map']:.4f}  delta {100 * (q['map'] - fp32['map']):+.2f} pts")
    write_json(RES / "best_student.json", out, REPORT)


if __name__ == "__main__":
    main()
