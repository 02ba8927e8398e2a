"""What a cross-fitted teacher tells a student about its own training questions: the built teacher scored as
distillation scores it (each WikiQA train question by the fold model that held it out) against its full model alone
(the same weights without the fold models: every train question from memory), on WikiQA train and dev.

  python benchmarks/crossfit_check.py [--teacher minilm-l6-cross-wikiqa]

Build the teacher first (`qadistill teach minilm-l6-cross-wikiqa --data wikiqa --epochs 4 --eval-every 271
--distill-from ""`; its recipe has folds = 2). Writes results/crossfit_check.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from _report import write_json
from teachers_eval import qadistill_eval

RES = Path(__file__).resolve().parent / "results"
REPORT = {"title": "A cross-fitted teacher on its own training questions (`benchmarks/crossfit_check.py`)", "order": 31,
          "note": "The teacher as distillation scores it (WikiQA train questions by the fold model that held each out) "
                  "against its full model alone (every train question from memory). Dev: both are the full model."}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--teacher", default="minilm-l6-cross-wikiqa")
    a = ap.parse_args()
    from qadistill.crossfit import FOLDS_DIR
    from qadistill.integrity import write_checksums
    from qadistill.registry import Registry
    from qadistill.store import Store

    folder = Registry(store=Store.open()).built_teacher(a.teacher)
    metrics = json.loads((folder / "metrics.json").read_text())
    if not metrics.get("folds"):
        raise SystemExit(f"{a.teacher} has no fold models: build it with `qadistill teach {a.teacher} --folds 2`")
    rows, commands = [], []
    with tempfile.TemporaryDirectory() as tmp:
        full = Path(tmp) / f"{a.teacher}-full-model"
        shutil.copytree(folder, full, ignore=shutil.ignore_patterns(FOLDS_DIR))
        write_checksums(full)  # the copy's own manifest (the teacher's lists the fold files)
        for split in ("train", "dev"):
            res, cmd = qadistill_eval([a.teacher, str(full), "--data", "wikiqa", "--split", split])
            commands.append(cmd.replace(str(full), f"<{a.teacher} without {FOLDS_DIR}/>"))
            for r, how in zip(res["rows"], ("cross-fitted (as distilled)", "full model only")):
                rows.append({"model": how, "split": f"wikiqa:{split}", "map": r["map"], "mrr": r["mrr"], "queries": r.get("queries")})
                print(f"{how:28s} wikiqa:{split:5s} MAP {r['map']:.4f} MRR {r['mrr']:.4f}")
    write_json(RES / "crossfit_check.json", {"teacher": a.teacher, "rows": rows, "fold_held_out_map": metrics["folds"]["held_out_map"],
                                            "full_model_dev_map": metrics["dev_map"], "dev_selection": dev_selection(metrics),
                                            "commands": commands}, REPORT)


def dev_selection(metrics: dict) -> dict:
    """How much the full model's early stopping on WikiQA dev flatters its dev MAP (and so the dev MAP of students
    distilled from it): its dev-best evaluation against its last one, and where the fold models, early-stopped on
    their held-out folds instead of dev, put their best step within their run (a dev-free choice of the length)."""
    last = metrics["history"][-1]
    folds = [{"best_step": f["best_step"], "steps": f["steps"]} for f in metrics["folds"]["fold"]]
    out = {"best_step": metrics["best_step"], "best_dev_map": metrics["dev_map"], "last_step": last["step"],
           "last_dev_map": last["dev_map"], "dev_map_gain_from_selection": metrics["dev_map"] - last["dev_map"],
           "folds": folds, "folds_chose_last_step": all(f["best_step"] == f["steps"] for f in folds)}
    print(f"full model: dev-best step {out['best_step']} MAP {out['best_dev_map']:.4f}; last step {out['last_step']} MAP "
          f"{out['last_dev_map']:.4f}; fold models chose their last step: {out['folds_chose_last_step']}")
    return out


if __name__ == "__main__":
    main()
