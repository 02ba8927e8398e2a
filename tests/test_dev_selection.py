"""benchmarks/dev_selection.py: Spearman's rho with tied ranks, and arms pooled and filtered as best_student.py does.
Fast: hand-made rows, nothing trained."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import dev_selection  # noqa: E402
from mkdm_ablation import SAME_RECIPE  # noqa: E402


def test_ranks_give_ties_their_mean_rank() -> None:
    assert dev_selection.ranks([0.3, 0.1, 0.3, 0.2]) == [3.5, 1.0, 3.5, 2.0]


def test_spearman_on_known_orders() -> None:
    assert dev_selection.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert dev_selection.spearman([1, 2, 3, 4], [9, 7, 5, 1]) == pytest.approx(-1.0)
    # one swap among four: 1 - 6 * 2 / (4 * 15) = 0.8
    assert dev_selection.spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)


def _row(arm: str, seed: int, dev: float, test: float = 0.7, trec: float = 0.8) -> dict:
    return {"arm": arm, "seed": seed, "dev_map": dev, "test_map": test, "trec_map": trec, "command": "qadistill distill ..."}


def test_arm_means_pool_reruns_and_drop_thin_and_pruned_arms() -> None:
    rerun, arm = next(iter(SAME_RECIPE.items()))
    rows = [_row(arm, 1, 0.70), _row(arm, 2, 0.72), _row(rerun, 3, 0.74), _row("two-stage", 1, 0.5),
            *(_row("two-stage-3t-ffn768", s, 0.9) for s in (1, 2, 3))]
    means = dev_selection.arm_means(rows, min_seeds=3)
    assert list(means) == [arm]  # the rerun counts for its arm; one seed is too few; a pruned arm does not compete
    assert means[arm]["seeds"] == 3 and means[arm]["dev"] == pytest.approx(0.72)


def test_report_names_the_overall_pick_against_its_own_bars_and_tables_small_sets_without_rho() -> None:
    m = lambda t, dev, test, trec: {"teachers": t, "seeds": 3, "dev": dev, "test": test, "trec": trec}  # noqa: E731
    means = {"a1": m("A", 0.70, 0.72, 0.80), "a2": m("A", 0.74, 0.71, 0.82), "a3": m("A", 0.72, 0.70, 0.84),
             "b1": m("B", 0.76, 0.75, 0.78)}
    bars = {"A": (0.70, 0.81), "B": (0.80, 0.80)}.__getitem__
    out = dev_selection.report(means, bars, min_arms=3)
    # the highest dev over every set is b1, measured against B's bars: 0.75/0.80, 0.78/0.80
    assert out[0].startswith("Over every teacher set, dev's pick is `b1` (teachers B; dev 0.7600): WikiQA test 93.8% and TREC-QA 97.5%")
    head_a = next(x for x in out if x.startswith("**Teachers A**"))
    assert "(3 arms;" in head_a and "rho(dev, test) = -0.50" in head_a and "rho(dev, TREC-QA) = +0.50" in head_a
    assert "Arms at or above both bars: `a2`, `a3`; dev's pick: `a2`." in head_a  # a1 misses TREC-QA's bar
    head_b = next(x for x in out if x.startswith("**Teachers B**"))
    assert "(1 arm;" in head_b and "No rank correlations (fewer than 3 arms)" in head_b and "both bars: none" in head_b
    assert [x.split("`")[1] for x in out if x.startswith("| `a")] == ["a2", "a3", "a1"]  # by dev
