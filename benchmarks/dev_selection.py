"""What choosing on WikiQA dev picks: per teacher set, every MKDM-ablation arm run with at least --min-seeds seeds (an
arm's reruns under another name pooled with it, pruned arms left out, as in best_student.py), its mean selection dev
MAP (before anything is fitted on dev), WikiQA test and TREC-QA dev MAP against its teachers' ensemble, and the rank
correlations between the three over the arms (sets with --min-arms arms or more). Reads results/mkdm_ablation.jsonl; trains nothing.

  python benchmarks/dev_selection.py [--min-seeds 3] [--min-arms 5]

Writes results/dev_selection.md (its command in its first line).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from _report import set_report, write_text
from best_student import pooled, selection_dev
from mkdm_ablation import PRUNED_ARM, RUNS, arm_teachers, ensemble, known, read_rows

HERE = Path(__file__).resolve().parent
RES = HERE / "results"
REPORT = {"title": "What WikiQA dev selects among the ablation's arms (`benchmarks/dev_selection.py`)", "order": 102.2,
          "note": "Per teacher set: each arm's mean over its seeds; dev = the dev MAP before any head "
                  "weights or stage-1 share are fitted on dev (best_student.py's selection measure). rho: Spearman rank "
                  "correlation over the arms. Bars: the teachers' ensemble MAP on WikiQA test and on TREC-QA dev."}


def ranks(xs: list[float]) -> list[float]:
    """Ranks 1..n, ties given their mean rank."""
    order = sorted(range(len(xs)), key=xs.__getitem__)
    r = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            r[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return r


def spearman(a: list[float], b: list[float]) -> float:
    return statistics.correlation(ranks(a), ranks(b))


def arm_means(rows: list[dict], min_seeds: int) -> dict[str, dict]:
    return {arm: {"teachers": arm_teachers(arm), "seeds": len(rs), "dev": statistics.mean(map(selection_dev, rs)),
                  "test": statistics.mean(r["test_map"] for r in rs), "trec": statistics.mean(r["trec_map"] for r in rs)}
            for arm, rs in pooled(rows).items() if len(rs) >= min_seeds and known(arm) and not PRUNED_ARM.fullmatch(arm)}


def report(means: dict[str, dict], bars, min_arms: int) -> list[str]:
    """The page's lines after its command: dev's pick over every teacher set against its own teachers' ensemble, then per
    teacher set its bars, rank correlations (sets of min_arms arms or more), the arms at or above both bars, dev's pick
    and the arms by dev. bars(teachers) -> (WikiQA test MAP, TREC-QA MAP) of that set's ensemble."""
    out = []
    top = max(means, key=lambda x: means[x]["dev"])
    bar_t, bar_q = bars(means[top]["teachers"])
    out += [f"Over every teacher set, dev's pick is `{top}` (teachers {means[top]['teachers']}; dev {means[top]['dev']:.4f}): "
            f"WikiQA test {100 * means[top]['test'] / bar_t:.1f}% and TREC-QA {100 * means[top]['trec'] / bar_q:.1f}% "
            "of its own teachers' ensemble.", ""]
    for teachers in dict.fromkeys(m["teachers"] for m in means.values()):
        arms = sorted((x for x, m in means.items() if m["teachers"] == teachers), key=lambda x: -means[x]["dev"])
        bar_t, bar_q = bars(teachers)
        col = {k: [means[x][k] for x in arms] for k in ("dev", "test", "trec")}
        both = [x for x in arms if means[x]["test"] >= bar_t and means[x]["trec"] >= bar_q]
        rho = (f"rho(dev, test) = {spearman(col['dev'], col['test']):+.2f}, rho(dev, TREC-QA) = "
               f"{spearman(col['dev'], col['trec']):+.2f}, rho(test, TREC-QA) = {spearman(col['test'], col['trec']):+.2f}"
               if len(arms) >= min_arms else f"No rank correlations (fewer than {min_arms} arms)")
        out += [f"**Teachers {teachers}** ({len(arms)} arm{'s' * (len(arms) != 1)}; ensemble WikiQA test {bar_t:.4f}, "
                f"TREC-QA {bar_q:.4f}). {rho}. "
                f"Arms at or above both bars: {', '.join(f'`{x}`' for x in both) or 'none'}; dev's pick: `{arms[0]}`.", "",
                "| arm (by dev) | seeds | dev MAP | WikiQA test MAP | % | TREC-QA MAP | % |", "|---|---|---|---|---|---|---|"]
        out += [f"| `{x}` | {means[x]['seeds']} | {means[x]['dev']:.4f} | {means[x]['test']:.4f} | {100 * means[x]['test'] / bar_t:.1f}% | "
                f"{means[x]['trec']:.4f} | {100 * means[x]['trec'] / bar_q:.1f}% |" for x in arms]
        out.append("")
    return out


def bars(teachers: str) -> tuple[float, float]:
    """The ensemble of these teachers: its WikiQA test MAP and TREC-QA MAP (one read of its results file)."""
    e = ensemble(teachers)["ensemble"]
    return e["wikiqa_map"], e["trec_map"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--min-seeds", type=int, default=3)
    ap.add_argument("--min-arms", type=int, default=5, help="teacher sets with fewer arms get their table, no correlation")
    a = ap.parse_args()
    rows = read_rows(RUNS)
    if not rows:
        raise SystemExit(f"no runs in {RUNS}: run benchmarks/mkdm_ablation.py first")
    means = arm_means(rows, a.min_seeds)
    command = "python benchmarks/dev_selection.py" + "".join(f" {x}" for x in sys.argv[1:])
    out = [f"`{command}` (from `results/mkdm_ablation.jsonl`; {a.min_seeds}+ seeds per arm)", ""]
    out += report(means, bars, a.min_arms)
    path = RES / "dev_selection.md"
    write_text(path, "\n".join(out), REPORT)
    set_report(path, REPORT)
    print("\n".join(out))


if __name__ == "__main__":
    main()
