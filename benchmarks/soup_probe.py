"""A probe, not a feature: average the weights of several ablation students of one lineage (a "model soup": second
passes that continued the same source student, e.g. one without and one with rehearsal, or a source and a pass that
continued it, as in WiSE-FT, arXiv 2109.01903) and score the average as the students are scored (at their max length)
on WikiQA dev, WikiQA test and TREC-QA dev, beside its ingredients.

  python benchmarks/soup_probe.py [--arms two-stage-4t-avg-full-more-a8-rh0,two-stage-4t-avg-full-more-a8-rh05]
                                  [--weights 1,1] [--seeds 1,2,3] [--out soup_probe.json]

Needs each seed's students of every arm built on this machine (benchmarks/mkdm_ablation.py). Refuses ingredients that
are not of one lineage (one common starting point: the same source student, or an ingredient the others continued)
or differ in shape or max length. --weights gives each arm's share (normalised; uniform when left out). The averaged folders go to a temporary folder
and are removed; results/soup_probe.json (or the --out name, one file per set of arms probed) keeps the figures and
the command.
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
REPORT = {"title": "Weight averages of students of one lineage (`benchmarks/soup_probe.py`)", "order": 103, "section": "soup",
          "note": "A probe: per seed, the arms' students (one lineage: passes continued from that seed's source, or a "
                  "source and passes that continued it) averaged weight by weight, uniformly unless each arm's share is "
                  "shown, and scored at their max length; MAP. Not a served recipe."}
MEMBER = {"order": 103.5, "section": "soup"}  # a probe written under another --out name: shown under REPORT's heading
SETS = {"dev": ("wikiqa", "dev"), "test": ("wikiqa", "test"), "trec": ("trecqa", "dev")}
COPIED = ("config.json", "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt")


def student(arm: str, seed: int) -> tuple[Path, dict]:
    from qadistill.paths import artifacts_dir

    folder = artifacts_dir() / f"abl-{arm}-s{seed}"
    if not (folder / "metrics.json").is_file():
        raise SystemExit(f"{folder} is not built here: run `python benchmarks/mkdm_ablation.py --arms {arm} --seeds {seed}` first")
    return folder, json.loads((folder / "metrics.json").read_text())


def soup(folders: list[Path], out: Path, weights: list[float] | None = None) -> None:
    """OUT: the first folder's files with the weighted mean of the folders' weights (uniform when ``weights`` is None;
    normalised to sum to one)."""
    from safetensors.torch import load_file, save_file

    tensors = [load_file(str(f / "model.safetensors")) for f in folders]
    first = tensors[0]
    for f, t in zip(folders[1:], tensors[1:]):
        if t.keys() != first.keys() or any(t[k].shape != first[k].shape for k in first):
            raise SystemExit(f"{folders[0].name} and {f.name} differ in shape: only students of one architecture average")
    out.mkdir(parents=True)
    for name in COPIED:
        shutil.copy(folders[0] / name, out / name)
    w = shares(weights, len(tensors))
    mixed = {k: sum(x * t[k].float() for x, t in zip(w, tensors)).to(first[k].dtype) for k in first}
    save_file(mixed, str(out / "model.safetensors"), metadata={"format": "pt"})


def shares(weights: list[float] | None, n: int) -> list[float]:
    """``weights`` normalised to sum to one (uniform when None); refused unless n, non-negative and not all zero."""
    w = [1.0] * n if weights is None else [float(x) for x in weights]
    if len(w) != n or any(x < 0 for x in w) or sum(w) <= 0:
        raise SystemExit(f"weights {w}: give one non-negative weight per ingredient ({n}), not all zero")
    return [x / sum(w) for x in w]


def lineage_root(names: list[str], inits: list[str | None]) -> str:
    """The one starting point of the ingredients named ``names`` (folder names; ``inits`` the model each started from):
    the starts that are not themselves ingredients must be one and the same. Siblings that continued one source, or a
    source and the passes that continued it, qualify; students of two sources do not."""
    if None in inits:
        raise SystemExit(f"{names[inits.index(None)]} records no starting model: a soup needs one lineage")
    roots = {i for i in inits if i not in names}
    if len(roots) != 1:
        raise SystemExit(f"the students {names} started from {sorted(roots)}: a soup needs one lineage (one common start)")
    return roots.pop()


def score(folder: Path, max_length: int) -> dict:
    return {key: qadistill("eval", str(folder), "--data", data, "--split", split, "--max-length", str(max_length))["rows"][0]["map"]
            for key, (data, split) in SETS.items()}


def line(figures: dict) -> str:
    """``{"a": {"dev": .., "test": .., "trec": ..}, ...}`` as ``a DEV / TEST / TREC | ...``."""
    return " | ".join(f"{k} " + " / ".join(f"{v[x]:.4f}" for x in SETS) for k, v in figures.items())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arms", default="two-stage-4t-avg-full-more-a8-rh0,two-stage-4t-avg-full-more-a8-rh05",
                    help="two or more ablation arms of one lineage (continued from one source arm, or a source arm and arms that continued it), comma-separated")
    ap.add_argument("--weights", default=None, help="each arm's share, comma-separated, normalised (default: uniform)")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--out", default="soup_probe.json", help="result file name under benchmarks/results/")
    a = ap.parse_args()
    arms = [x.strip() for x in a.arms.split(",") if x.strip()]
    if len(set(arms)) < 2 or len(set(arms)) != len(arms):
        raise SystemExit(f"--arms {a.arms}: give two or more different arms")
    if Path(a.out).name != a.out or not a.out.endswith(".json"):
        raise SystemExit(f"--out {a.out}: give a plain file name ending in .json (it is written under {RES})")
    weights = None
    if a.weights is not None:
        try:
            weights = [float(x) for x in a.weights.split(",")]
        except ValueError:
            raise SystemExit(f"--weights {a.weights}: give numbers, comma-separated") from None
        shares(weights, len(arms))  # refused here, before any work
    seeds = [int(s) for s in a.seeds.split(",")]
    built = {s: [student(arm, s) for arm in arms] for s in seeds}  # all checked before any work
    roots = {}
    for s, students in built.items():
        roots[s] = lineage_root([f.name for f, _ in students], [m["student"].get("init", {}).get("model") for _, m in students])
        if len({m["max_length"] for _, m in students}) != 1:
            raise SystemExit(f"seed {s}: the students' max lengths {[m['max_length'] for _, m in students]} differ")
    rows = []
    with tempfile.TemporaryDirectory(prefix="soup-") as tmp:
        for s, students in built.items():
            out = Path(tmp) / f"soup-s{s}"
            soup([f for f, _ in students], out, weights)
            length = students[0][1]["max_length"]
            figures = {arm: score(f, length) for arm, (f, _) in zip(arms, students)}
            figures["soup"] = score(out, length)
            rows.append({"seed": s, "source": roots[s], "max_length": length, **figures})
            print(f"seed {s}: {line(figures)}")
    mean = {k: {x: statistics.mean(r[k][x] for r in rows) for x in SETS} for k in [*arms, "soup"]}
    cmd = "python benchmarks/soup_probe.py " + " ".join(sys.argv[1:])
    out = {"command": cmd.strip(), "arms": arms, **({"weights": weights} if weights else {}), "sets": SETS, "seeds": rows, "mean": mean}
    write_json(RES / a.out, out, REPORT if a.out == "soup_probe.json" else MEMBER)
    print(f"mean (dev / test / trec): {line(mean)}")


if __name__ == "__main__":
    main()
