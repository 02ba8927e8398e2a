import math

import pytest

from qadistill.metrics import average_precision, ranking_metrics, reciprocal_rank, roc_auc


def test_hand_computed_ranking():
    # q1: ranked labels 0,1,1 -> AP=(1/2+2/3)/2, RR=1/2, P@1=0
    # q2: ranked labels 1,0   -> AP=1, RR=1, P@1=1
    # q3 (no positive) and q4 (no negative) do not count for MAP/MRR/P@1
    qids = ["q1", "q1", "q1", "q2", "q2", "q3", "q3", "q4"]
    scores = [0.9, 0.8, 0.1, 0.3, 0.2, 0.5, 0.4, 0.7]
    labels = [0, 1, 1, 1, 0, 0, 0, 1]
    m = ranking_metrics(qids, scores, labels, threshold=0.45)
    assert m["queries"] == 2
    assert m["map"] == pytest.approx(((0.5 + 2 / 3) / 2 + 1) / 2)
    assert m["mrr"] == pytest.approx(0.75)
    assert m["p@1"] == pytest.approx(0.5)
    # threshold 0.45: predicted positive = 0.9, 0.8, 0.5, 0.7 -> tp=2 (0.8, 0.7), fp=2, fn=2 (0.1, 0.3)
    assert m["accuracy"] == pytest.approx(4 / 8)
    assert m["f1"] == pytest.approx(2 * 2 / (2 * 2 + 2 + 2))


def test_ap_rr_single():
    assert average_precision([3, 2, 1], [1, 0, 1]) == pytest.approx((1 + 2 / 3) / 2)
    assert reciprocal_rank([3, 2, 1], [0, 0, 1]) == pytest.approx(1 / 3)
    # ties keep input order (stable) -> deterministic
    assert reciprocal_rank([1, 1, 1], [0, 1, 0]) == pytest.approx(0.5)


def test_auc_by_hand():
    # positives 0.8, 0.1, 0.3 vs negatives 0.9, 0.2: wins 0.8>0.2, 0.3>0.2 -> 2 of 6
    assert roc_auc([0.9, 0.8, 0.1, 0.3, 0.2], [0, 1, 1, 1, 0]) == pytest.approx(2 / 6)
    assert roc_auc([1.0, 1.0], [1, 0]) == pytest.approx(0.5)  # a tie counts half
    assert roc_auc([2.0, 1.0, 0.0], [1, 1, 0]) == pytest.approx(1.0)
    assert roc_auc([1.0, 2.0], [1, 1]) is None  # undefined: None, never NaN (issue 16)


def test_length_mismatch():
    with pytest.raises(ValueError):
        ranking_metrics(["a"], [1.0, 2.0], [1])
