"""`rank` (Python API, per question) against `eval` (whole split) on WikiQA test, same model and backend:
the same order within every question and the same MAP.

Usage: python benchmarks/rank_vs_eval.py MODEL [--backend torch]
Writes benchmarks/results/rank_vs_eval_BACKEND.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _report import write_json


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--backend", default="torch")
    args = ap.parse_args()
    from qadistill import load
    from qadistill.data import load_dataset
    from qadistill.metrics import ranking_metrics
    from qadistill.registry import Registry
    from qadistill.store import Store
    from qadistill.teachers import load_scorer

    ds = load_dataset("wikiqa", "test")
    model = load(args.model, backend=args.backend)
    q, y, s_rank = [], [], []
    for qid, idx in ds.query_groups().items():
        ranked = model.rank(ds.pairs[idx[0]].query, [ds.pairs[i].passage for i in idx])
        by = {r.index: r.score for r in ranked}
        q += [qid] * len(idx)
        y += [ds.pairs[i].label for i in idx]
        s_rank += [by[j] for j in range(len(idx))]
    m_rank = ranking_metrics(q, s_rank, y)
    res = {"model": args.model, "backend": model.backend_name, "rank_api_map": m_rank["map"], "rank_api_mrr": m_rank["mrr"]}
    if args.backend == "torch":
        sc = load_scorer(args.model, Registry(store=Store.open()))
        ev = sc.logits(ds)
        order = [i for idx in ds.query_groups().values() for i in idx]
        m_eval = ranking_metrics([ds.pairs[i].query_id for i in order], [float(ev[i]) for i in order], [ds.pairs[i].label for i in order])
        diff = max(abs(a - float(ev[i])) for a, i in zip(s_rank, order))
        res.update(eval_map=m_eval["map"], eval_mrr=m_eval["mrr"], max_abs_score_diff=diff)
    print(json.dumps(res, indent=2))
    write_json(Path(__file__).resolve().parent / "results" / f"rank_vs_eval_{args.backend}.json", res,
               {"title": f"rank vs eval ({args.backend}) on WikiQA test", "order": 320})


if __name__ == "__main__":
    main()
