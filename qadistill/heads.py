"""How a multi-head student's K heads become one served score: per-head logits of a split, and convex weights fitted on
the dev split (``head_combine = "learned"``), reported against the plain mean on the same run.

The fit is a search over a grid on the simplex (step 1/``steps``), maximising dev MAP; among equal MAPs the point
nearest the mean wins, so the weights move only where dev says so. They are kept only where they beat the mean on dev.
"""

from __future__ import annotations

from itertools import combinations

from qadistill.data import QAPair


def head_logits(model, tokenizer, pairs: list[QAPair], max_length: int, batch_size: int = 64):
    """[N, K] float32 logits of every head for ``pairs`` (in their order), length-sorted batches, eval mode: what
    ``train.score_pairs`` scores, before the heads are combined."""
    from qadistill.backends import StudentBackend
    from qadistill.train import length_order

    qs, ps = [p.query for p in pairs], [p.passage for p in pairs]
    be = StudentBackend(model, tokenizer, max_length, heads=True)
    return be.score(qs, ps, batch_size, length_order(tokenizer, qs, ps, max_length))


def simplex_grid(k: int, steps: int):
    """Every point of the simplex in K dimensions whose coordinates are multiples of 1/steps, as an [M, K] array."""
    import numpy as np

    if k < 1 or steps < 1:
        raise ValueError("k and steps must be positive")
    pts = []
    for bars in combinations(range(steps + k - 1), k - 1):  # stars and bars
        edges = (-1, *bars, steps + k - 1)
        pts.append([edges[i + 1] - edges[i] - 1 for i in range(k)])
    return np.asarray(pts, dtype=np.float64) / steps


def steps_for(k: int, max_points: int = 2000) -> int:
    """The finest grid step (up to 1/20) whose simplex grid has at most ``max_points`` points."""
    from math import comb

    steps = 20
    while steps > 1 and comb(steps + k - 1, k - 1) > max_points:
        steps -= 1
    return steps


def fit_head_weights(logits, query_ids: list[str], labels: list[int], steps: int | None = None) -> dict:
    """Convex head weights maximising MAP of ``logits`` [N, K] against ``labels`` grouped by ``query_ids``.

    Returns {"weights", "map_learned", "map_mean", "kept"}: ``kept`` is whether the weights beat the mean's MAP (else
    ``weights`` is the mean). Ties go to the point nearest the mean."""
    import numpy as np

    from qadistill.metrics import ranking_metrics

    logits = np.asarray(logits, dtype=np.float64)
    k = logits.shape[1]
    mean = np.full(k, 1.0 / k)
    map_mean = ranking_metrics(query_ids, (logits @ mean).tolist(), labels)["map"]
    if k == 1:
        return {"weights": [1.0], "map_learned": map_mean, "map_mean": map_mean, "kept": False}
    best, best_map, best_dist = mean, map_mean, 0.0
    for w in simplex_grid(k, steps or steps_for(k)):
        m = ranking_metrics(query_ids, (logits @ w).tolist(), labels)["map"]
        dist = float(np.abs(w - mean).sum())
        if m > best_map + 1e-12 or (abs(m - best_map) <= 1e-12 and dist < best_dist):
            best, best_map, best_dist = w, m, dist
    kept = best_map > map_mean + 1e-12
    return {"weights": [float(x) for x in (best if kept else mean)], "map_learned": best_map, "map_mean": map_mean, "kept": kept}


def combined_metrics(logits, ds, weights) -> dict:
    """Ranking metrics of ``ds`` scored by ``logits`` [N, K] combined with ``weights`` [K]."""
    import numpy as np

    from qadistill.metrics import ranking_metrics

    s = np.asarray(logits, dtype=np.float64) @ np.asarray(weights, dtype=np.float64)
    return ranking_metrics([p.query_id for p in ds.pairs], s.tolist(), ds.labels())
