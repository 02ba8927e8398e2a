"""Teachers and their ensemble on WikiQA test and on TREC-QA dev (a second domain, validation only).

Usage: python benchmarks/teachers_eval.py [--teachers all-mpnet-base-v2,all-minilm-l6-v2,...]
Runs `qadistill eval --teachers ... --format json` on both and writes benchmarks/results/teachers_eval.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from _report import write_json

RES = Path(__file__).resolve().parent / "results"


def run(teachers: str, data: str, split: str) -> tuple[dict, str]:
    return qadistill_eval(["--teachers", teachers, "--data", data, "--split", split])


def qadistill_eval(args: list[str]) -> tuple[dict, str]:
    """`qadistill eval ARGS --format json`: its result and the command (without --format)."""
    args = ["eval", *args]
    out = subprocess.run([sys.executable, "-m", "qadistill", *args, "--format", "json"], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(out.stderr[-2000:])
    return json.loads(out.stdout), "qadistill " + " ".join(args)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--teachers", default="all-mpnet-base-v2,all-minilm-l6-v2")
    ap.add_argument("--name", default="teachers_eval")
    args = ap.parse_args()
    w, wcmd = run(args.teachers, "wikiqa", "test")
    t, tcmd = run(args.teachers, "trecqa", "dev")
    rows = []
    for a, b in zip(w["rows"], t["rows"]):
        rows.append({"model": a["model"], "wikiqa_map": a["map"], "wikiqa_mrr": a["mrr"], "trec_map": b["map"], "trec_mrr": b["mrr"],
                     "command": f"{wcmd} ; {tcmd}"})
        print(f"{a['model']:60s} WikiQA test MAP {a['map']:.4f} MRR {a['mrr']:.4f} | TREC-QA dev MAP {b['map']:.4f} MRR {b['mrr']:.4f}")
    report = {"title": f"Teachers {args.teachers.replace(',', ', ')} and their ensemble (mean calibrated logit)", "order": 30}
    write_json(RES / f"{args.name}.json", {"rows": rows, "wikiqa": w, "trecqa": t}, report)


if __name__ == "__main__":
    main()
