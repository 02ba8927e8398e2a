"""Ranking and classification metrics for query–passage relevance.

Ranking metrics follow the WikiQA convention: only queries with at least one correct and one wrong candidate count.
Candidates are ranked by score, highest first. Tied scores are scored as their expected value over every order of the
tied candidates (McSherry & Najork, ECIR 2008, "Computing information retrieval performance measures efficiently in the
presence of tied scores"): a metric never depends on the order of the rows in the file, and a model that scores every
candidate alike gets a random ranking's value, not the file order's. Without ties this is the usual value.
Relevance is binary: label 1 is a correct candidate, any other label a wrong one.
"""

from __future__ import annotations

import math
from typing import Sequence


def _tie_groups(scores: Sequence[float], labels: Sequence[int]) -> list[tuple[int, int]]:
    """(candidates, correct ones) of each set of equal scores, highest score first."""
    groups: dict[float, list[int]] = {}
    for s, y in zip(scores, labels):
        g = groups.setdefault(float(s), [0, 0])
        g[0] += 1
        g[1] += 1 if y == 1 else 0
    return [(groups[s][0], groups[s][1]) for s in sorted(groups, reverse=True)]


def average_precision(scores: Sequence[float], labels: Sequence[int]) -> float:
    return _ap(_tie_groups(scores, labels))


def _ap(groups: list[tuple[int, int]]) -> float:
    """Expected AP over the orders of tied candidates. A tie group at ranks s+1..s+n holding c correct candidates,
    with h correct above it: position i holds a correct one with probability c/n, and then the group's other i-1
    positions hold (i-1)(c-1)/(n-1) correct ones on average, so it adds c/n * sum_i (h + 1 + (i-1)(c-1)/(n-1)) / (s+i)."""
    total, h, s = 0.0, 0, 0
    for n, c in groups:
        if c:
            if n == 1:
                total += (h + 1) / (s + 1)
            else:
                total += c / n * sum((h + 1 + (i - 1) * (c - 1) / (n - 1)) / (s + i) for i in range(1, n + 1))
        h, s = h + c, s + n
    return total / h if h else 0.0


def reciprocal_rank(scores: Sequence[float], labels: Sequence[int], k: int | None = None) -> float:
    """1 / rank of the first correct candidate; 0 when there is none, or (with ``k``) when it ranks below k."""
    return _rr(_tie_groups(scores, labels), k)


def ndcg(scores: Sequence[float], labels: Sequence[int], k: int = 10) -> float:
    """NDCG@k with binary gains and a log2 discount: DCG@k = sum over the top k of rel_i / log2(i + 1) (rank i from 1),
    divided by the DCG@k of the ideal order of the same labels (every correct candidate first). 0 without a correct one."""
    return _ndcg(_tie_groups(scores, labels), k)


def _rr(groups: list[tuple[int, int]], k: int | None = None) -> float:
    """Expected 1 / rank of the first correct candidate (0 past ``k``): in the first group with c correct of n, at
    ranks s+1.., the first correct one is at s+j with probability C(n-j, c-1) / C(n, c)."""
    s = 0
    for n, c in groups:
        if c:
            total, prob = 0.0, c / n  # P(j = 1)
            for j in range(1, n - c + 2):
                if k is not None and s + j > k:
                    break
                total += prob / (s + j)
                prob *= (n - j - c + 1) / (n - j) if n > j else 0.0  # P(j + 1) / P(j)
            return total
        s += n
    return 0.0


def _p1(groups: list[tuple[int, int]]) -> float:
    """Expected precision at 1: the share of correct candidates among those tied at the top."""
    return groups[0][1] / groups[0][0] if groups else 0.0


def _ndcg(groups: list[tuple[int, int]], k: int) -> float:
    """Expected NDCG@k: each position of a tie group holds a correct candidate with probability c/n."""
    ideal = sum(1.0 / math.log2(i + 1) for i in range(1, min(k, sum(c for _, c in groups)) + 1))
    if ideal == 0.0:
        return 0.0
    dcg, s = 0.0, 0
    for n, c in groups:
        if s >= k:
            break
        if c:
            dcg += c / n * sum(1.0 / math.log2(p + 1) for p in range(s + 1, min(s + n, k) + 1))
        s += n
    return dcg / ideal


def roc_auc(scores: Sequence[float], labels: Sequence[int]) -> float | None:
    """Probability that a random positive scores above a random negative (ties count half); None without both."""
    pairs = sorted(zip(scores, labels))
    n_pos = sum(1 for _, y in pairs if y == 1)
    n_neg = len(pairs) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    rank_sum, i = 0.0, 0
    while i < len(pairs):
        j = i
        while j + 1 < len(pairs) and pairs[j + 1][0] == pairs[i][0]:
            j += 1
        avg_rank = (i + j) / 2 + 1  # ranks are 1-based; ties share the mean rank
        rank_sum += avg_rank * sum(1 for k in range(i, j + 1) if pairs[k][1] == 1)
        i = j + 1
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


NO_SCORABLE_QUERY = "no query with both a correct and a wrong candidate"
NO_CORRECT_PAIR = "no pair is labelled correct, so recall (and F1) is 0/0"
ONE_CLASS = "the labels hold one class only"
CUTOFF = 10  # the k of MRR@k and NDCG@k
MRR_K, NDCG_K = f"mrr@{CUTOFF}", f"ndcg@{CUTOFF}"
RANKING = ("map", "mrr", "p@1", MRR_K, NDCG_K)
STORED = (*RANKING, "accuracy", "f1", "auc")  # the metrics written to the store


def ranking_metrics(query_ids: Sequence[str], scores: Sequence[float], labels: Sequence[int], threshold: float = 0.0) -> dict:
    """MAP, MRR, P@1, MRR@10 and NDCG@10 over queries with both a correct and a wrong candidate; accuracy, F1 at
    ``threshold`` and ROC-AUC over all pairs. Scores are logits (threshold 0 = probability 0.5).

    Like MAP and MRR, MRR@10 and NDCG@10 leave out a query without a correct candidate (its NDCG has no ideal to divide
    by) or without a wrong one (every order is perfect), and average over the rest. A query whose first correct
    candidate ranks below 10 scores 0 on both (MRR still counts it, as 1/rank); NDCG@10's ideal is computed from the
    query's labels, so correct candidates below the cut-off still lower it.

    A metric that the data cannot define is ``None`` (never NaN), and ``undefined`` maps it to the reason: with no
    scorable query (every query all-correct, all-wrong or with one candidate — e.g. a pointwise relevance set) the
    ranking metrics (``RANKING``) are undefined while accuracy, F1 and ROC-AUC still are."""
    if not (len(query_ids) == len(scores) == len(labels)):
        raise ValueError("query_ids, scores and labels must have the same length")
    bad = [s for s in scores if not math.isfinite(float(s))]
    if bad:
        from qadistill.errors import ScoreError

        raise ScoreError(f"{len(bad)} of {len(scores)} scores are not finite (first: {bad[0]}): the model produced NaN or inf",
                         "the weights are damaged or diverged: rebuild the model (lower --lr), or re-pull it")
    groups: dict[str, list[int]] = {}
    for i, q in enumerate(query_ids):
        groups.setdefault(q, []).append(i)
    aps, rrs, p1, rrs_k, ndcgs = [], [], [], [], []
    for idx in groups.values():
        ys = [labels[i] for i in idx]
        if 1 not in ys or 0 not in ys:
            continue
        groups = _tie_groups([scores[i] for i in idx], ys)
        aps.append(_ap(groups))
        rrs.append(_rr(groups))
        p1.append(_p1(groups))
        rrs_k.append(_rr(groups, CUTOFF))
        ndcgs.append(_ndcg(groups, CUTOFF))
    pred = [1 if s > threshold else 0 for s in scores]
    tp = sum(1 for p, y in zip(pred, labels) if p == 1 and y == 1)
    fp = sum(1 for p, y in zip(pred, labels) if p == 1 and y == 0)
    fn = sum(1 for p, y in zip(pred, labels) if p == 0 and y == 1)
    n = len(aps)
    out = {
        "map": sum(aps) / n if n else None,
        "mrr": sum(rrs) / n if n else None,
        "p@1": sum(p1) / n if n else None,
        MRR_K: sum(rrs_k) / n if n else None,
        NDCG_K: sum(ndcgs) / n if n else None,
        "accuracy": sum(1 for p, y in zip(pred, labels) if p == y) / len(labels) if labels else None,
        "f1": (2 * tp / (2 * tp + fp + fn) if tp else 0.0) if 1 in labels else None,  # no correct pair: recall is 0/0
        "auc": roc_auc(scores, labels),
        "predicted_correct": sum(pred),  # pairs over the threshold: none, and F1 is 0 whatever the ranking
        "queries": n,
        "pairs": len(labels),
    }
    undefined = {k: NO_SCORABLE_QUERY for k in RANKING if out[k] is None}
    if out["auc"] is None and labels:
        undefined["auc"] = ONE_CLASS
    if out["f1"] is None and labels:
        undefined["f1"] = NO_CORRECT_PAIR
    if undefined:
        out["undefined"] = undefined
    return out


def fmt(value: float | None, digits: int = 4) -> str:
    """A metric for a table: 4 decimals, or '-' when it is undefined."""
    return "-" if value is None else f"{value:.{digits}f}"


def stored(metrics: dict) -> dict:
    """The metrics written to the store, with None for the undefined ones (the store keeps the reason). A metric the
    dict does not hold at all (one computed before it existed, e.g. NDCG@10) is left out, not stored as undefined."""
    return {k: metrics[k] for k in STORED if k in metrics}
