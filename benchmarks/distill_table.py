"""The distillation benchmark: every teacher, the teacher ensemble, and the student trained gold / single / avg / mkdm /
two-stage (TMKD stage 1 + mkdm), with MAP and MRR on WikiQA test and on TREC-QA dev (validation only, never trained on).

Usage (one command on a CPU or a GPU machine; Accelerate picks the device):
  python benchmarks/distill_table.py [--seeds 1,2,3] [--arms gold,single,avg,mkdm,two-stage] [--epochs 1]
      [--teachers all-mpnet-base-v2,all-minilm-l6-v2] [--student minilm-l3-student] [--max-length 64]

Each arm runs as its own `qadistill distill` process; results go to benchmarks/results/distill_runs.jsonl (appended as
each arm finishes, so a long run can be stopped and continued with --skip-done) and the table to
benchmarks/results/distill_table.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _report import ensure_sidecar, write_text

HERE = Path(__file__).resolve().parent
RES = HERE / "results"
# how RESULTS.md shows the two files (benchmarks/_report.py); a file that has a report keeps it
TABLE_REPORT = {"title": "Distillation (WikiQA train → student)", "order": 100,
                "note": "Mean ± std over seeds where several; each row's command says how it was trained."}
RUNS_REPORT = {"title": "Distillation runs, one line per arm and seed (`benchmarks/distill_table.py`)",
               "note": "The rows distill_table.md is made from; the page shows that table.", "order": None}


def qadistill(*args: str) -> dict:
    cmd = [sys.executable, "-m", "qadistill", *args, "--format", "json"]
    t = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{out.stderr[-3000:]}")
    res = json.loads(out.stdout)
    res["_wall_seconds"] = time.perf_counter() - t
    res["_command"] = "qadistill " + " ".join(args)
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--arms", default="gold,mkdm,single,avg,two-stage")
    ap.add_argument("--teachers", default="all-mpnet-base-v2,all-minilm-l6-v2")
    ap.add_argument("--student", default="minilm-l3-student")
    ap.add_argument("--epochs", default="1")
    ap.add_argument("--max-length", default="64")
    ap.add_argument("--lr", default="1e-4")
    ap.add_argument("--single-seed-arms", default="single,avg,two-stage", help="arms run with the first seed only")
    ap.add_argument("--skip-done", action="store_true")
    ap.add_argument("--tag", default="")
    args = ap.parse_args()
    RES.mkdir(exist_ok=True)
    runs_path = RES / "distill_runs.jsonl"
    done = set()
    if args.skip_done and runs_path.exists():
        done = {json.loads(line)["name"] for line in runs_path.read_text().splitlines() if line.strip()}
    teachers = args.teachers.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    one_seed = set(args.single_seed_arms.split(","))
    common = ["--student", args.student, "--data", "wikiqa", "--epochs", args.epochs, "--max-length", args.max_length,
              "--lr", args.lr, "--eval-also", "trecqa:dev"]
    for arm in args.arms.split(","):
        for seed in seeds[:1] if arm in one_seed else seeds:
            name = f"bench{args.tag}-{arm}-s{seed}"
            if name in done:
                continue
            extra = {
                "gold": ["--mode", "gold"],
                "single": ["--mode", "single", "--teachers", teachers[0]],
                "avg": ["--mode", "avg", "--teachers", ",".join(teachers)],
                "mkdm": ["--mode", "mkdm", "--teachers", ",".join(teachers)],
                "two-stage": ["--mode", "mkdm", "--teachers", ",".join(teachers), "--pretrain-unlabelled"],
            }[arm]
            res = qadistill("distill", *common, *extra, "--seed", str(seed), "--name", name)
            label = arm if args.student == "minilm-l3-student" else f"{arm} ({args.student})"
            row = {"name": name, "arm": label, "seed": seed, "test_map": res["metrics"]["test"]["map"], "test_mrr": res["metrics"]["test"]["mrr"],
                   "trec_map": res["metrics"]["trecqa:dev"].get("map"), "trec_mrr": res["metrics"]["trecqa:dev"].get("mrr"),
                   "dev_map": res["dev_map"], "parameters": res["parameters"], "train_seconds": res["train_seconds"],
                   "teacher_scoring_seconds": res["teacher_scoring_seconds"], "wall_seconds": res["_wall_seconds"],
                   "command": res["_command"], "threads": res["threads"], "stage1": res.get("stage1")}
            with runs_path.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            ensure_sidecar(runs_path, RUNS_REPORT)
            print(f"{name:28s} test MAP {row['test_map']:.4f} MRR {row['test_mrr']:.4f} | TREC MAP {row['trec_map']:.4f} "
                  f"| train {row['train_seconds']:.0f}s", flush=True)
    write_table(runs_path, teachers)


def write_table(runs_path: Path, teachers: list[str]) -> None:
    """The table: the students' own teachers and their ensemble (teachers_eval_pair.json), then every arm, with each
    student's MAP as a share of that ensemble's."""
    rows = [json.loads(line) for line in runs_path.read_text().splitlines() if line.strip()]
    tpath = RES / "teachers_eval_pair.json"
    lines = ["| model | seeds | WikiQA test MAP | MRR | TREC-QA dev MAP | MRR | % of ensemble MAP (WikiQA / TREC) | params | train s (median) | command |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    ens = None
    if tpath.exists():
        trows = json.loads(tpath.read_text())["rows"]
        ens = next((r for r in trows if r["model"].startswith("ensemble(")), None)
        from qadistill.recipes import load_recipe

        zoo = HERE.parent / "zoo"
        for r in trows:
            toml = zoo / f"{r['model']}.toml"
            params = (getattr(load_recipe(toml), "parameters", None) if toml.exists() else None) or "-"
            lines.append(f"| {r['model']} | - | {r['wikiqa_map']:.4f} | {r['wikiqa_mrr']:.4f} | {r['trec_map']:.4f} | {r['trec_mrr']:.4f} | - | "
                         f"{params} | - | `{r['command']}` |")
    arms: dict[str, list[dict]] = {}
    for r in rows:
        arms.setdefault(r["arm"], []).append(r)

    def ms(v: list[float]) -> str:
        return f"{statistics.mean(v):.4f} ± {statistics.stdev(v):.4f}" if len(v) > 1 else f"{v[0]:.4f}"

    for arm, rs in arms.items():
        share = "-"
        if ens:
            share = (f"{100 * statistics.mean(r['test_map'] for r in rs) / ens['wikiqa_map']:.1f}% / "
                     f"{100 * statistics.mean(r['trec_map'] for r in rs) / ens['trec_map']:.1f}%")
        lines.append(
            f"| student `{arm}` | {len(rs)} | {ms([r['test_map'] for r in rs])} | {ms([r['test_mrr'] for r in rs])} | "
            f"{ms([r['trec_map'] for r in rs])} | {ms([r['trec_mrr'] for r in rs])} | {share} | {rs[0]['parameters']} | "
            f"{statistics.median(r['train_seconds'] for r in rs):.0f} | `{rs[0]['command']}` |"
        )
    write_text(RES / "distill_table.md", "\n".join(lines) + "\n", TABLE_REPORT)
    print("\n".join(lines))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--table-only":
        write_table(RES / "distill_runs.jsonl", [])
    else:
        main()
