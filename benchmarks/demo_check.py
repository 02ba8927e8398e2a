"""The acceptance figures of `make demo`, measured after it ran (same QADISTILL_HOME): the demo student's WikiQA test
MAP against (a) its initialisation used zero-shot as the bi-encoder it was trained as (cosine of mean-pooled
embeddings, max length 128) and (b) the ensemble of its demo teachers (`qadistill eval --teachers ...`, mean
calibrated logit), and whether its int8 export passed parity without the near-ties flag.

    python benchmarks/demo_check.py [--artifact quickstart-mkdm-s42] [--pipeline quickstart] [--out results/demo_check.json]

Writes the figures with the command; exits 1 when an acceptance point fails.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _report import write_json  # noqa: E402

REPORT = {"title": "`make demo`: the student against its start and its teachers (WikiQA test)",
          "note": "Measured by benchmarks/demo_check.py after `make demo`, in the same home. Zero-shot: the student's "
                  "initialisation as the bi-encoder it was trained as. Ensemble: mean calibrated logit of the demo teachers.",
          "order": 5}


def zero_shot(student_recipe, reg, ds) -> dict:
    """MAP of the student's initial encoder used as a bi-encoder (how its weights were trained)."""
    from qadistill.metrics import ranking_metrics
    from qadistill.student import build_encoder
    from qadistill.teachers import BiEncoderTeacher

    enc, tok = build_encoder(student_recipe, reg)
    with tempfile.TemporaryDirectory() as tmp:
        enc.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        t = BiEncoderTeacher(f"{student_recipe.name}-init", Path(tmp), 128, calibrate=False)
        s = t.raw_scores(ds)
    return ranking_metrics([p.query_id for p in ds.pairs], s.tolist(), ds.labels())


def ensemble(teachers: list[str], reg) -> dict:
    """WikiQA test MAP of each teacher and of their ensemble (what `qadistill eval --teachers ...` prints)."""
    from qadistill.evaluate import evaluate

    return {r["model"]: r["map"] for r in evaluate(teachers, reg, "wikiqa", "test", ensemble=teachers)["rows"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifact", default="quickstart-mkdm-s42")
    ap.add_argument("--pipeline", default="quickstart")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "demo_check.json")
    a = ap.parse_args()
    from qadistill.compress import ties_reordered
    from qadistill.data import load_dataset
    from qadistill.registry import Registry
    from qadistill.store import Store

    reg = Registry(store=Store.open())
    pipe = reg.recipe(a.pipeline, "pipeline")
    ref = reg.resolve(a.artifact, "name the demo's student artifact", recipes=())
    m = json.loads((ref.folder / "metrics.json").read_text())
    test = m["metrics"]["test"]["map"]
    zs = zero_shot(reg.recipe(pipe.student, "student"), reg, load_dataset("wikiqa", "test"))["map"]
    ens = ensemble(pipe.teachers, reg)
    ens_map = next(v for k, v in ens.items() if k.startswith("ensemble("))
    int8 = ref.built_exports().get("int8-dynamic")
    parity = int8.parity if int8 else None
    out = {"command": "python benchmarks/demo_check.py " + " ".join(sys.argv[1:]), "artifact": a.artifact,
           "student_test_map": test, "student_trecqa_dev_map": (m["metrics"].get("trecqa:dev") or {}).get("map"),
           "init_zero_shot_test_map": zs, "teachers": ens, "ensemble_test_map": ens_map, "ratio_to_ensemble": test / ens_map,
           "int8_parity": parity, "train_seconds": m.get("train_seconds"), "total_seconds": m.get("total_seconds"),
           "recipe": m.get("pipeline")}
    out["pass"] = {"above_init": test > zs, "at_least_95pct_of_ensemble": test >= 0.95 * ens_map,
                   "int8_parity_ok_without_near_ties": bool(parity and parity["ok"]
                                                            and not ties_reordered(parity["max_abs_diff"], parity.get("reference_std")))}
    write_json(a.out, out, REPORT)
    print(json.dumps({k: out[k] for k in ("student_test_map", "init_zero_shot_test_map", "ensemble_test_map", "ratio_to_ensemble", "pass")}, indent=1))
    sys.exit(0 if all(out["pass"].values()) else 1)


if __name__ == "__main__":
    from qadistill.errors import QadistillError

    try:
        main()
    except QadistillError as exc:  # e.g. no demo artifact in this QADISTILL_HOME: one line, not a traceback
        sys.exit(f"demo_check: {exc}")
