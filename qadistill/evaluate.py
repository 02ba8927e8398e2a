"""`qadistill eval`: metrics of teachers, students, folders, or an ensemble of teachers on a dataset split."""

from __future__ import annotations

import time
from typing import Sequence

from qadistill.metrics import ranking_metrics, stored
from qadistill.progress import NullProgress, Progress


def evaluate(
    models: list[str],
    registry,
    data: str = "wikiqa",
    split: str | None = None,
    ensemble: Sequence[str] = (),
    batch_size: int = 32,
    max_length: int | None = None,
    progress: Progress | None = None,
    store=None,
) -> dict:
    """Score ``data/split`` with each model (cached) and compute metrics. ``ensemble``: the models (two or more, among
    ``models``) whose calibrated logits are also averaged into an ensemble row; the others are scored alone. Returns {"data", "split", "stats", "rows": [{"model", metrics..., "seconds"}]}."""
    import numpy as np

    from qadistill.splits import dataset_label, default_split, is_named, load_split, require_labelled

    progress = progress or NullProgress()
    ds = load_split(data, split)
    split = split or default_split(data)
    require_labelled(ds, f"{data} ({split})" if is_named(data) else f"split {split}")  # a file's path leads the message
    label = dataset_label(data)
    qids = [p.query_id for p in ds.pairs]
    labels = ds.labels()
    rows, all_logits, fitted_here = [], {}, []
    from qadistill.teachers import load_scorer

    for name in models:
        scorer = load_scorer(name, registry, batch_size=batch_size, max_length=max_length)
        t = time.perf_counter()
        logits = scorer.logits(ds, progress)
        secs = time.perf_counter() - t
        all_logits[name] = logits
        if name in ensemble and getattr(scorer, "calibrate", False) and (scorer.calib_data, scorer.calib_split) == (data, split):
            fitted_here.append(name)  # its calibration was fitted on these labels
        m = ranking_metrics(qids, logits.tolist(), labels)
        own = getattr(scorer, "own_max_length", scorer.max_length)
        rows.append({"model": name, **m, "seconds": secs, "max_length": scorer.max_length, "over_length": scorer.over_length(ds)})
        if getattr(scorer, "batch_dependent", False):
            rows[-1]["batch_size"] = scorer.batch_size  # its scores depend on the batch (dynamic int8)
        if scorer.max_length != own:  # the store keeps a model's figures as it is served: not one at another length
            rows[-1]["unrecorded"] = f"scored at max length {scorer.max_length}, not its own {own}"
        elif store is not None:
            store.add_results(name, label, split, stored(m), notes=m.get("undefined"))
    members = [n for n in models if n in ensemble]
    if len(members) > 1:
        mean = np.mean(np.stack([all_logits[n] for n in members]), axis=0)
        m = ranking_metrics(qids, mean.tolist(), labels)
        rows.append({"model": "ensemble(" + "+".join(members) + ")", **m,
                     "seconds": sum(r["seconds"] for r in rows if r["model"] in members)})
        if fitted_here:  # the mean of calibrated logits is weighted by fits made on this split's labels
            rows[-1]["calibrated_on_this_split"] = fitted_here
    return {"data": data, "split": split, "fingerprint": ds.fingerprint(), "stats": ds.stats(), "rows": rows}
