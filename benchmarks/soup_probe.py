"""A probe, not a feature: average the weights of two ablation students that continued the same source student (a
"model soup" of two second passes, e.g. one without and one with rehearsal) and score the average as the students
are scored (at their max length) on WikiQA dev, WikiQA test and TREC-QA dev, beside its two ingredients.

  python benchmarks/soup_probe.py [--a two-stage-4t-avg-full-more-a8-rh0] [--b two-stage-4t-avg-full-more-a8-rh05]
                                  [--seeds 1,2,3] [--weight 0.5]

Needs each seed's students of both arms built on this machine (benchmarks/mkdm_ablation.py). Refuses a pair that did
not start from the same student or differs in shape or max length. The averaged folders go to a temporary folder and
are removed; results/soup_probe.json keeps the figures and the command.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from _report import write_json
from fair_anchors import qadistill  # the one-JSON-result runner

HERE = Path(__file__).resolve().parent
RES = HERE / "results"
REPORT = {"title": "Weight average of two second passes from one source student (`benchmarks/soup_probe.py`)", "order": 103,
          "note": "A probe: per seed, the two arms' students (both continued from that seed's source) averaged weight by "
                  "weight, scored at their max length; MAP. Not a served recipe."}
SETS = {"dev": ("wikiqa", "dev"), "test": ("wikiqa", "test"), "trec": ("trecqa", "dev")}
COPIED = ("config.json", "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt")


def student(arm: str, seed: int) -> tuple[Path, dict]:
    from qadistill.paths import artifacts_dir

    folder = artifacts_dir() / f"abl-{arm}-s{seed}"
    if not (folder / "metrics.json").is_file():
        raise SystemExit(f"{folder} is not built here: run `python benchmarks/mkdm_ablation.py --arms {arm} --seeds {seed}` first")
    return folder, json.loads((folder / "metrics.json").read_text())


def soup(a: Path, b: Path, weight: float, out: Path) -> None:
    """OUT: A's files with weights (1 - weight) * A + weight * B."""
    from safetensors.torch import load_file, save_file

    x, y = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    if x.keys() != y.keys() or any(x[k].shape != y[k].shape for k in x):
        raise SystemExit(f"{a.name} and {b.name} differ in shape: only students of one architecture average")
    out.mkdir(parents=True)
    for f in COPIED:
        shutil.copy(a / f, out / f)
    mixed = {k: ((1 - weight) * x[k].float() + weight * y[k].float()).to(x[k].dtype) for k in x}
    save_file(mixed, str(out / "model.safetensors"), metadata={"format": "pt"})


def score(folder: Path, max_length: int) -> dict:
    return {key: qadistill("eval", str(folder), "--data", data, "--split", split, "--max-length", str(max_length))["rows"][0]["map"]
            for key, (data, split) in SETS.items()}


def line(figures: dict) -> str:
    """``{"a": {"dev": .., "test": .., "trec": ..}, ...}`` as ``a DEV / TEST / TREC | ...``."""
    return " | ".join(f"{k} " + " / ".join(f"{v[x]:.4f}" for x in SETS) for k, v in figures.items())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--a", default="two-stage-4t-avg-full-more-a8-rh0")
    ap.add_argument("--b", default="two-stage-4t-avg-full-more-a8-rh05")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--weight", type=float, default=0.5, help="B's share of each weight (0..1)")
    a = ap.parse_args()
    if not 0 <= a.weight <= 1:
        raise SystemExit(f"--weight {a.weight}: give a share between 0 and 1")
    seeds = [int(s) for s in a.seeds.split(",")]
    pairs = {s: (student(a.a, s), student(a.b, s)) for s in seeds}  # all checked before any work
    for s, ((_, ma), (_, mb)) in pairs.items():
        src = [m["student"].get("init", {}).get("model") for m in (ma, mb)]
        if src[0] is None or src[0] != src[1]:
            raise SystemExit(f"seed {s}: the students started from {src[0]!r} and {src[1]!r}: a soup needs one source")
        if ma["max_length"] != mb["max_length"]:
            raise SystemExit(f"seed {s}: max lengths {ma['max_length']} and {mb['max_length']} differ")
    rows = []
    with tempfile.TemporaryDirectory(prefix="soup-") as tmp:
        for s, ((fa, ma), (fb, _)) in pairs.items():
            out = Path(tmp) / f"soup-s{s}"
            soup(fa, fb, a.weight, out)
            figures = {"a": score(fa, ma["max_length"]), "b": score(fb, ma["max_length"]), "soup": score(out, ma["max_length"])}
            rows.append({"seed": s, "source": ma["student"]["init"]["model"], "max_length": ma["max_length"], **figures})
            print(f"seed {s}: {line(figures)}")
    mean = {k: {x: statistics.mean(r[k][x] for r in rows) for x in SETS} for k in ("a", "b", "soup")}
    cmd = "python benchmarks/soup_probe.py " + " ".join(sys.argv[1:])
    write_json(RES / "soup_probe.json", {"command": cmd.strip(), "a": a.a, "b": a.b, "weight": a.weight, "sets": SETS,
                                         "seeds": rows, "mean": mean}, REPORT)
    print(f"mean (dev / test / trec): {line(mean)}")


if __name__ == "__main__":
    main()
