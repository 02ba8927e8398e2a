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
    # tied scores: the expected value over the orders of the tied candidates (it read 0.5, the file order's)
    assert reciprocal_rank([1, 1, 1], [0, 1, 0]) == pytest.approx((1 + 1 / 2 + 1 / 3) / 3)


def _brute(scores, labels, k=10):
    """Each metric averaged over every order of the tied candidates, from plain ranked-list definitions."""
    import itertools

    def ap(r):
        hits = [i for i, y in enumerate(r, 1) if y == 1]
        return sum((n + 1) / i for n, i in enumerate(hits)) / len(hits)

    def rr(r, cut=None):
        return next((1 / i for i, y in enumerate(r[:cut] if cut else r, 1) if y == 1), 0.0)

    def nd(r):
        ideal = sum(1 / math.log2(i + 1) for i in range(1, min(k, sum(r)) + 1))
        return sum(1 / math.log2(i + 1) for i, y in enumerate(r[:k], 1) if y == 1) / ideal

    levels = sorted(set(scores), reverse=True)
    blocks = [[y for s, y in zip(scores, labels) if s == v] for v in levels]
    orders = [list(itertools.chain(*p)) for p in itertools.product(*[list(itertools.permutations(b)) for b in blocks])]
    mean = lambda f: sum(f(r) for r in orders) / len(orders)  # noqa: E731
    return {"map": mean(ap), "mrr": mean(rr), "p@1": mean(lambda r: float(r[0] == 1)), "mrr@10": mean(lambda r: rr(r, k)),
            "ndcg@10": mean(nd)}


def test_tied_scores_give_the_expected_value_over_their_orders_whatever_the_row_order():
    """A model that scored candidates alike got the file order's MAP: WikiQA lists a paragraph's sentences in order and
    the answer is often the first, so a collapsed model scoring every pair the same read as a fair ranker. Tied
    candidates now count as their expected value over every order (McSherry & Najork), checked here against averaging
    the plain definitions over every permutation, with ties across the cut-off at 10."""
    import random

    rng = random.Random(7)
    for _ in range(60):
        n = rng.randint(2, 8) if _ % 3 else rng.randint(9, 12)
        scores = [float(rng.randint(0, 3)) for _ in range(n)]
        labels = [rng.randint(0, 1) for _ in range(n)]
        if 1 not in labels or 0 not in labels or math.prod(  # keep the permutation count small
                math.factorial(scores.count(v)) for v in set(scores)) > 50_000:
            continue
        got = ranking_metrics(["q"] * n, scores, labels)
        want = _brute(scores, labels)
        for key, value in want.items():
            assert got[key] == pytest.approx(value, abs=1e-12), (key, scores, labels)
        order = list(range(n))
        rng.shuffle(order)
        again = ranking_metrics(["q"] * n, [scores[i] for i in order], [labels[i] for i in order])
        assert all(again[key] == pytest.approx(got[key], abs=1e-12) for key in want)


def test_a_model_that_scores_every_candidate_alike_gets_a_random_rankings_value():
    labels = [1] + [0] * 9  # the answer first in the file, as WikiQA's first sentences often are
    m = ranking_metrics(["q"] * 10, [0.3] * 10, labels)
    assert m["map"] == pytest.approx(sum(1 / i for i in range(1, 11)) / 10)  # H_10 / 10 = 0.2929, not 1.0
    assert m["p@1"] == pytest.approx(0.1) and m["mrr"] == pytest.approx(m["map"])


def test_auc_by_hand():
    # positives 0.8, 0.1, 0.3 vs negatives 0.9, 0.2: wins 0.8>0.2, 0.3>0.2 -> 2 of 6
    assert roc_auc([0.9, 0.8, 0.1, 0.3, 0.2], [0, 1, 1, 1, 0]) == pytest.approx(2 / 6)
    assert roc_auc([1.0, 1.0], [1, 0]) == pytest.approx(0.5)  # a tie counts half
    assert roc_auc([2.0, 1.0, 0.0], [1, 1, 0]) == pytest.approx(1.0)
    assert roc_auc([1.0, 2.0], [1, 1]) is None  # undefined: None, never NaN (issue 16)


def test_length_mismatch():
    with pytest.raises(ValueError):
        ranking_metrics(["a"], [1.0, 2.0], [1])


# --- MRR@10 and NDCG@10 (binary gains, log2 discount: a correct candidate at rank i adds 1 / log2(i + 1)) -------------

def _one_correct_at(rank: int, n: int = 12) -> tuple[list[float], list[int]]:
    """n candidates scored n..1, the correct one at ``rank``."""
    return [float(n - i) for i in range(n)], [1 if i == rank - 1 else 0 for i in range(n)]


def test_mrr_at_10_and_ndcg_at_10_of_one_correct_candidate():
    from qadistill.metrics import ndcg

    s, y = _one_correct_at(1)
    assert reciprocal_rank(s, y, k=10) == 1.0 and ndcg(s, y) == 1.0
    s, y = _one_correct_at(3)
    assert reciprocal_rank(s, y, k=10) == pytest.approx(1 / 3)
    assert ndcg(s, y) == pytest.approx(0.5)  # DCG 1/log2(4) = 0.5, ideal 1/log2(2) = 1
    s, y = _one_correct_at(10)
    assert reciprocal_rank(s, y, k=10) == pytest.approx(0.1) and ndcg(s, y) == pytest.approx(1 / math.log2(11))
    s, y = _one_correct_at(11)  # below the cut-off: zero on both, while the uncut MRR still counts it
    assert reciprocal_rank(s, y, k=10) == 0.0 and ndcg(s, y) == 0.0
    assert reciprocal_rank(s, y) == pytest.approx(1 / 11)


def test_ndcg_with_several_correct_candidates():
    from qadistill.metrics import ndcg

    # ranked 1,0,1,0,0: DCG = 1 + 1/log2(4) = 1.5; ideal 1,1,0,0,0: 1 + 1/log2(3) = 1.6309 -> 0.91972
    assert ndcg([5, 4, 3, 2, 1], [1, 0, 1, 0, 0]) == pytest.approx(0.919720, abs=1e-6)
    # ranked 0,1,0,...,0,1 (12): only rank 2 is inside the top 10, but the ideal counts both correct candidates:
    # DCG = 1/log2(3) = 0.63093; ideal = 1 + 1/log2(3) = 1.63093 -> 0.386853
    s = [float(12 - i) for i in range(12)]
    y = [0, 1] + [0] * 9 + [1]
    assert ndcg(s, y) == pytest.approx(0.386853, abs=1e-6)
    assert reciprocal_rank(s, y, k=10) == pytest.approx(0.5)
    # more correct candidates than k: the ideal is the top 10 all correct; one wrong candidate first shifts them down
    s, y = [float(13 - i) for i in range(13)], [0] + [1] * 12
    dcg = sum(1 / math.log2(i + 1) for i in range(2, 11))
    ideal = sum(1 / math.log2(i + 1) for i in range(1, 11))
    assert ndcg(s, y) == pytest.approx(dcg / ideal)
    assert ndcg([3, 2, 1], [1, 1, 0]) == 1.0  # every correct candidate first
    assert ndcg([3, 2, 1], [0, 0, 0]) == 0.0  # no correct candidate: 0 (ranking_metrics leaves such a query out)


def test_ties_count_as_their_expected_value_for_mrr_at_10_and_ndcg():
    from qadistill.metrics import ndcg

    # all scores equal: the correct candidate is at rank 1, 2 or 3 alike (it read rank 2, the input order's)
    assert reciprocal_rank([1, 1, 1], [0, 1, 0], k=10) == pytest.approx((1 + 1 / 2 + 1 / 3) / 3)
    assert ndcg([1, 1, 1], [0, 1, 0]) == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(4)) / 3)
    # a tie between the correct candidate and a wrong one: ranks 1 and 2 alike, whichever the file lists first
    half = (1 + 1 / math.log2(3)) / 2
    assert ndcg([2, 2, 1], [0, 1, 0]) == pytest.approx(half) and ndcg([2, 2, 1], [1, 0, 0]) == pytest.approx(half)
    # a tie across the cut-off: ranks 10 and 11 alike, so half of rank 10's value
    s, y = [float(12 - i) for i in range(9)] + [1.0, 1.0], [0] * 9 + [1, 0]
    assert reciprocal_rank(s, y, k=10) == pytest.approx(0.05) and reciprocal_rank(s, y) == pytest.approx((1 / 10 + 1 / 11) / 2)


def test_ranking_metrics_mrr_at_10_and_ndcg_at_10_skip_what_map_skips():
    # a: correct at rank 1; b: at rank 3; c: at rank 11; d: no correct candidate; e: no wrong one (both left out)
    qids, scores, labels = [], [], []
    for q, rank in (("a", 1), ("b", 3), ("c", 11)):
        s, y = _one_correct_at(rank)
        qids += [q] * len(s)
        scores += s
        labels += y
    qids += ["d", "d", "e", "e"]
    scores += [0.5, 0.4, 0.3, 0.2]
    labels += [0, 0, 1, 1]
    m = ranking_metrics(qids, scores, labels)
    assert m["queries"] == 3
    assert m["mrr@10"] == pytest.approx((1 + 1 / 3 + 0) / 3)
    assert m["ndcg@10"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert m["mrr"] == pytest.approx((1 + 1 / 3 + 1 / 11) / 3)  # the uncut MRR counts rank 11
    assert "undefined" not in m


def test_mrr_at_10_and_ndcg_at_10_are_undefined_without_a_scorable_query():
    from qadistill.metrics import NO_SCORABLE_QUERY, RANKING, STORED

    m = ranking_metrics(["q1", "q1", "q2"], [0.1, 0.2, 0.3], [1, 1, 0])  # all correct, one candidate
    assert m["queries"] == 0 and m["mrr@10"] is None and m["ndcg@10"] is None
    assert m["undefined"]["mrr@10"] == m["undefined"]["ndcg@10"] == NO_SCORABLE_QUERY
    assert {"mrr@10", "ndcg@10"} <= set(RANKING) <= set(STORED)


def test_stored_leaves_out_a_metric_the_dict_does_not_hold():
    """A metrics dict from before NDCG@10 existed is stored without it, not with an 'undefined' NDCG@10."""
    from qadistill.metrics import stored

    old = {"map": 0.5, "mrr": 0.6, "p@1": 0.4, "accuracy": 0.7, "f1": 0.2, "auc": None, "queries": 3}
    assert stored(old) == {"map": 0.5, "mrr": 0.6, "p@1": 0.4, "accuracy": 0.7, "f1": 0.2, "auc": None}
    new = ranking_metrics(["a", "a"], [1.0, 0.0], [1, 0])
    assert set(stored(new)) == {"map", "mrr", "p@1", "mrr@10", "ndcg@10", "accuracy", "f1", "auc"}


def test_f1_without_a_correct_pair_is_undefined_with_its_reason_not_zero():
    m = ranking_metrics(["q", "q", "r"], [1.0, -1.0, 2.0], [0, 0, 0])
    assert m["f1"] is None and "recall (and F1) is 0/0" in m["undefined"]["f1"]
    m = ranking_metrics(["q", "q"], [-1.0, -2.0], [1, 0])  # a correct pair, none predicted: F1 is 0, defined
    assert m["f1"] == 0.0 and "f1" not in m.get("undefined", {})
