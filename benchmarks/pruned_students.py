"""Structured compression of the `quickstart-tmkd` student on the accuracy/speed plane: the source student, its
FFN-pruned recovery (`quickstart-tmkd-ffn768-student`), the FFN-pruned + merged-heads recovery with the tanh GELU
(`quickstart-tmkd-h6-student`) and with ReLU (`quickstart-tmkd-h6-relu-student`), 3 seeds of each recovery pass (the seed moves only the recovery; the source is the
seed-42 `quickstart-tmkd` build). The seed with the best WikiQA dev MAP of each is exported int8 dynamic (per channel),
its int8 MAP compared with fp32 on WikiQA test, and one `qadistill bench` run serves them all (PyTorch fp32 and ONNX
Runtime int8, batch 1 and 32, length 128, 2 threads, MAP on the whole WikiQA test split per backend; plot
results/pruned_students.png with the Pareto-optimal points marked).

  python benchmarks/pruned_students.py [--seeds 42,1,2] [--quantize-options "--per-channel"] [--bench-min-time 3]

Builds what is missing (`qadistill distill quickstart-tmkd`, then each recovery pass: about 3 minutes each on 2 cores).
Writes results/pruned_students.json.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
from pathlib import Path

from _report import write_json
from fair_anchors import folder_of, qadistill

HERE = Path(__file__).resolve().parent
RES = HERE / "results"
REPORT = {"title": "Pruned students on the accuracy/speed plane: FFN pruning, merged heads (`benchmarks/pruned_students.py`)",
          "order": 104, "note": "Seed chosen by WikiQA dev MAP; test MAP is reported (mean ± sd over the recovery seeds)."}
SOURCE = "quickstart-tmkd-mkdm-tmkd-s42"  # what `qadistill distill quickstart-tmkd` builds
RECOVERIES = {"quickstart-tmkd-ffn768-student": "qs-tmkd-ffn768", "quickstart-tmkd-h6-student": "qs-tmkd-h6",
              "quickstart-tmkd-h6-relu-student": "qs-tmkd-h6-relu"}


def built(name: str) -> dict | None:
    try:
        return json.loads((folder_of(name) / "metrics.json").read_text())
    except (SystemExit, Exception):  # not in the zoo yet
        return None


def build(args: list[str], commands: list[str]) -> dict:
    commands.append("qadistill " + " ".join(args))
    print(commands[-1], flush=True)
    return qadistill(*args)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="42,1,2", help="seeds of each recovery pass")
    ap.add_argument("--quantize-options", default="--per-channel")
    ap.add_argument("--bench-min-time", default="3")
    a = ap.parse_args()
    commands: list[str] = []
    if built(SOURCE) is None:
        build(["distill", "quickstart-tmkd"], commands)
    src = built(SOURCE)
    students = {"source": [{"name": SOURCE, "seed": 42, "dev_map": src["dev_map"], "test_map": src["metrics"]["test"]["map"],
                            "parameters": src["parameters"], "command": src.get("command")}]}
    for recipe, prefix in RECOVERIES.items():
        for seed in (int(s) for s in a.seeds.split(",")):
            name = f"{prefix}-s{seed}"
            m = built(name) or build(["distill", "quickstart", "--student", recipe, "--seed", str(seed), "--name", name], commands)
            students.setdefault(recipe, []).append({"name": name, "seed": seed, "dev_map": m["dev_map"],
                                                    "test_map": m["metrics"]["test"]["map"], "parameters": m["parameters"],
                                                    "pruned": m.get("pruned"), "train_seconds": m.get("train_seconds"),
                                                    "command": m.get("command")})
    summary, chosen = {}, {}
    for key, rows in students.items():
        tests = [r["test_map"] for r in rows]
        summary[key] = {"seeds": len(rows), "test_map_mean": statistics.mean(tests),
                        "test_map_sd": statistics.stdev(tests) if len(tests) > 1 else None,
                        "dev_map_mean": statistics.mean(r["dev_map"] for r in rows), "parameters": rows[0]["parameters"]}
        chosen[key] = max(rows, key=lambda r: r["dev_map"])["name"]
        sd = summary[key]["test_map_sd"]
        print(f"{key}: WikiQA test MAP {summary[key]['test_map_mean']:.4f}" + (f" ± {sd:.4f}" if sd is not None else "")
              + f" over {len(rows)} seed(s); served: {chosen[key]}", flush=True)
    int8, parity = {}, {}
    for key, name in chosen.items():
        exported = build(["export", name, "--quantize", "dynamic", *shlex.split(a.quantize_options), "--overwrite"], commands)
        int8[name] = next(r["name"] for r in exported if "int8" in r["name"])
        res = build(["eval", name, int8[name], "--data", "wikiqa", "--split", "test"], commands)
        ms = {r["model"]: r for r in res["rows"]}
        parity[name] = {"fp32_map": ms[name]["map"], "int8_map": ms[int8[name]]["map"],
                        "int8_map_delta_points": 100 * (ms[int8[name]]["map"] - ms[name]["map"])}
        print(f"{name}: WikiQA test fp32 {parity[name]['fp32_map']:.4f}, int8 {parity[name]['int8_map']:.4f} "
              f"({parity[name]['int8_map_delta_points']:+.2f} points)", flush=True)
    args = ["bench", *chosen.values(), "--backends", "torch,ort-int8", "--batch-sizes", "1,32", "--max-length", "128",
            "--threads", "2", "--min-time", a.bench_min_time, "--plot", str(RES / "pruned_students.png")]
    res = build(args, commands)
    rows = [{"model": r["model"], "backend": r["backend"], "batch_size": r["batch_size"], "pairs_per_s": r["throughput_pairs_s"],
             "p50_ms": r["latency_ms"]["p50"], "map": r.get("map"), "size_mb": r.get("size_mb"), "pareto": r.get("pareto")}
            for r in res["rows"]]
    for r in rows:
        print(f"{r['model'][:32]:32s} {r['backend']:9s} batch {r['batch_size']:3d}: {r['pairs_per_s']:7.1f} pairs/s "
              f"p50 {r['p50_ms']:7.2f} ms  MAP {r['map']}  {'Pareto' if r['pareto'] else ''}", flush=True)
    write_json(RES / "pruned_students.json", {
        "command": "python benchmarks/pruned_students.py " + " ".join(f"--{k.replace('_', '-')} {shlex.quote(str(v))}" for k, v in vars(a).items()),
        "summary": summary, "students": students, "served": chosen, "int8": int8, "int8_parity_wikiqa_test": parity,
        "bench": {"command": "qadistill " + " ".join(args), "run_id": res.get("run_id"), "env": res.get("env"), "rows": rows},
        "commands": commands}, REPORT)


if __name__ == "__main__":
    main()
