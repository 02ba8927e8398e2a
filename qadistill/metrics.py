"""Ranking and classification metrics for query–passage relevance.

Ranking metrics follow the WikiQA convention: only queries with at least one correct and one wrong candidate count.
Candidates are ranked by score, highest first; ties keep the input order (a stable sort), so results are deterministic.
Relevance is binary: label 1 is a correct candidate, any other label a wrong one.
"""

from __future__ import annotations

import math
from typing import Sequence


def _ranked_labels(scores: Sequence[float], labels: Sequence[int]) -> list[int]:
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    return [labels[i] for i in order]


def average_precision(scores: Sequence[float], labels: Sequence[int]) -> float:
    return _ap(_ranked_labels(scores, labels))


def _ap(ranked: list[int]) -> float:
    hits, total = 0, 0.0
    for rank, y in enumerate(ranked, start=1):
        if y == 1:
            hits += 1
            total += hits / rank
    return total / hits if hits else 0.0


def reciprocal_rank(scores: Sequence[float], labels: Sequence[int], k: int | None = None) -> float:
    """1 / rank of the first correct candidate; 0 when there is none, or (with ``k``) when it ranks below k."""
    return _rr(_ranked_labels(scores, labels), k)


def ndcg(scores: Sequence[float], labels: Sequence[int], k: int = 10) -> float:
    """NDCG@k with binary gains and a log2 discount: DCG@k = sum over the top k of rel_i / log2(i + 1) (rank i from 1),
    divided by the DCG@k of the ideal order of the same labels (every correct candidate first). 0 without a correct one."""
    return _ndcg(_ranked_labels(scores, labels), k)


def _rr(ranked: list[int], k: int | None = None) -> float:
    for rank, y in enumerate(ranked if k is None else ranked[:k], start=1):
        if y == 1:
            return 1.0 / rank
    return 0.0


def _ndcg(ranked: list[int], k: int) -> float:
    ideal = sum(1.0 / math.log2(i + 1) for i in range(1, min(k, sum(1 for y in ranked if y == 1)) + 1))
    if ideal == 0.0:
        return 0.0
    return sum(1.0 / math.log2(i + 1) for i, y in enumerate(ranked[:k], start=1) if y == 1) / ideal


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
        ranked = _ranked_labels([scores[i] for i in idx], ys)
        aps.append(_ap(ranked))
        rr = _rr(ranked)
        rrs.append(rr)
        p1.append(1.0 if rr == 1.0 else 0.0)
        rrs_k.append(_rr(ranked, CUTOFF))
        ndcgs.append(_ndcg(ranked, CUTOFF))
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
