"""The best student of the MKDM ablation (the arm with the best mean WikiQA dev MAP; its seed with the best dev MAP;
both measured before any head weights or stage-1 share are fitted on dev, whose dev MAP would be in-sample),
exported to ONNX int8 dynamic and scored as served: PyTorch fp32 against int8 on WikiQA test and TREC-QA dev; with the
same seed's FFN-pruned student where the ablation has a pruned arm of it (`SOURCE-ffnW`), the same for that one; then
one `qadistill bench` run of them all (PyTorch fp32 and ONNX Runtime int8, batch 1 and 32, length 128, 2 threads, MAP on
the whole WikiQA test split per backend, accuracy-vs-speed plot in results/best_student_bench.png).

  python benchmarks/best_student.py [--arm two-stage] [--min-seeds 3] [--quantize-options "--per-channel --fp32-sensitive 4"]

The int8 setting: per-channel weight scales, the 4 operators most sensitive on the dev parity sample kept in fp32 — the
smallest K that halved the mean |Δlogit| on WikiQA dev of each of the three `two-stage-4t-avg` seeds
(benchmarks/int8_sensitive.py; test was not used to choose).

Reads results/mkdm_ablation.jsonl (benchmarks/mkdm_ablation.py), writes results/best_student.json.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
from pathlib import Path

from _report import write_json
from fair_anchors import qadistill  # the one-JSON-result runner
from mkdm_ablation import PRUNED_ARM as PRUNED  # the ablation's pruned arms, SOURCE-ffnW
from mkdm_ablation import RUNS, read_rows
from mkdm_ablation import SAME_RECIPE  # control arms that rerun another arm's recipe: their seeds count for that arm

HERE = Path(__file__).resolve().parent
RES = HERE / "results"
REPORT = {"title": "The best ablation student, served: PyTorch fp32 vs ONNX Runtime int8 (`benchmarks/best_student.py`)",
          "order": 102, "note": "Arm chosen by mean WikiQA dev MAP, seed by its dev MAP, both before head weights are "
                                "fitted on dev (in-sample there); test and TREC-QA only report."}


def selection_dev(row: dict) -> float:
    """A run's dev MAP before anything is fitted on dev: for a run whose stage-1 share was chosen on dev
    (`--stage1-mix dev`: the best of 11 shares on those same questions, so in-sample), its share-0 figure."""
    curve = row.get("mix_curve")
    return curve[0]["dev_map"] if curve and "--stage1-mix dev" in row["command"] else row["dev_map"]


def pooled(rows: list[dict]) -> dict[str, list[dict]]:
    """The runs by arm, a rerun of an arm's recipe under another name (SAME_RECIPE) counted as more seeds of that arm."""
    by_arm: dict[str, list[dict]] = {}
    for r in rows:
        by_arm.setdefault(SAME_RECIPE.get(r["arm"], r["arm"]), []).append(r)
    return by_arm


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arm", default=None, help="default: the unpruned arm with the best mean dev MAP (an arm's reruns under "
                    "another name, mkdm_ablation.SAME_RECIPE, pooled with it)")
    ap.add_argument("--quantize-options", default="--per-channel --fp32-sensitive 4")
    ap.add_argument("--bench-min-time", default="2")
    ap.add_argument("--min-seeds", type=int, default=3, help="only arms run with at least this many seeds compete (a one-seed probe does not)")
    a = ap.parse_args()
    rows = read_rows(RUNS)
    if not rows:
        raise SystemExit(f"no runs in {RUNS}: run benchmarks/mkdm_ablation.py first")
    by_arm = pooled(rows)
    # dev_map: the checkpoint-selection dev MAP of the heads' mean (or the one head), the same measure for every arm;
    # an arm's dev-fitted head weights (dev_map_learned) are fitted on that same dev split, so their dev MAP is in-sample
    dev = {arm: statistics.mean(map(selection_dev, rs)) for arm, rs in by_arm.items()}
    arm = a.arm or max((x for x in dev if not PRUNED.fullmatch(x) and len(by_arm[x]) >= a.min_seeds), key=dev.get)
    best = max(by_arm[arm], key=selection_dev)
    # the same seed's pruned student, where the ablation has a pruned arm of this one (FFN pruning + recovery)
    pruned = [r for x, rs in by_arm.items() if (m := PRUNED.fullmatch(x)) and m["source"] == arm for r in rs if r["seed"] == best["seed"]]
    out = {"arm": arm, "arm_dev_map": dev, "student": best["name"], "seed": best["seed"], "commands": [], "eval": {}, "int8": {}}
    for name in [best["name"], *(r["name"] for r in pruned)]:
        exp = ["export", name, "--quantize", "dynamic", *shlex.split(a.quantize_options), "--overwrite"]
        exported = qadistill(*exp)
        out["commands"].append("qadistill " + " ".join(exp))
        q8 = next(r for r in exported if "int8" in r["name"])
        out["int8"][name] = int8 = q8["name"]
        out.setdefault("int8_settings", {})[name] = q8.get("details")  # fp32 operators and their sensitivity figures included
        for data, split in (("wikiqa", "test"), ("trecqa", "dev")):
            args = ["eval", name, int8, "--data", data, "--split", split]
            res = qadistill(*args)
            out["commands"].append("qadistill " + " ".join(args))
            ms = {r["model"]: r for r in res["rows"]}
            fp32, q = ms[name], ms[int8]
            out["eval"].setdefault(name, {})[f"{data}:{split}"] = {
                "fp32_map": fp32["map"], "int8_map": q["map"], "fp32_mrr": fp32["mrr"], "int8_mrr": q["mrr"],
                "int8_map_delta_points": 100 * (q["map"] - fp32["map"])}
            print(f"{name} {data}:{split}: fp32 MAP {fp32['map']:.4f}  int8 {q['map']:.4f}  delta {100 * (q['map'] - fp32['map']):+.2f} pts")
    out["pruned"] = [r["name"] for r in pruned]
    out["bench"] = bench(list(out["int8"]), a.bench_min_time)
    out["commands"].append(out["bench"]["command"])
    write_json(RES / "best_student.json", out, REPORT)


def bench(models: list[str], min_time: str) -> dict:
    """One `qadistill bench` run of the students, PyTorch fp32 and their int8 export, length 128, 2 threads, MAP on the
    whole WikiQA test split per backend; the accuracy-vs-speed plot beside the result."""
    args = ["bench", *models, "--backends", "torch,ort-int8", "--batch-sizes", "1,32", "--max-length", "128", "--threads", "2",
            "--min-time", min_time, "--plot", str(RES / "best_student_bench.png")]
    res = qadistill(*args)
    rows = [{"model": r["model"], "backend": r["backend"], "batch_size": r["batch_size"], "pairs_per_s": r["throughput_pairs_s"],
             "p50_ms": r["latency_ms"]["p50"], "p90_ms": r["latency_ms"]["p90"], "map": r.get("map"), "mrr": r.get("mrr"),
             "size_mb": r.get("size_mb"), "pareto": r.get("pareto")} for r in res["rows"]]
    for r in rows:
        print(f"{r['model'][:40]:40s} {r['backend']:9s} batch {r['batch_size']:3d}: {r['pairs_per_s']:8.1f} pairs/s "
              f"p50 {r['p50_ms']:6.2f} ms  MAP {r['map']}")
    return {"command": "qadistill " + " ".join(args), "run_id": res.get("run_id"), "env": res.get("env"), "rows": rows}


if __name__ == "__main__":
    main()
