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
