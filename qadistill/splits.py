"""Train / dev / test data for a run, never measured on what it trained on unless asked by name.

* A named dataset (``wikiqa``, ``hf:REPO``) has its own splits.
* A file with ``dev`` and ``test`` files given: those are used as they are (the user named them).
* A single file alone is split **by query** (a query's candidates never straddle two splits), seeded, stratified so
  that dev and test get their share of the queries MAP can score; the seed, fractions and sizes are recorded.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from qadistill.data import NAMED, QADataset, ambiguity_note, graded_columns, load_dataset, named_default_split
from qadistill.errors import DataError

DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)
WHOLE = "all"  # the split name of a whole file
FILE_SPLITS = ("train", "dev", "test")


@dataclass(frozen=True)
class Splits:
    train: QADataset
    dev: QADataset
    test: QADataset
    info: dict = field(default_factory=dict)  # how the splits were made, written to metrics.json and the model card

    def label(self, which: str) -> str:
        """'wikiqa:test'; 'FILE:test' for the by-query split of a file (the seed is in ``info``); a named --dev/--test
        file is labelled with its own path."""
        if self.info["how"] == "files" and which in ("dev", "test"):
            return f"{self.info[which]}:{WHOLE}"
        return f"{self.info['dataset']}:{which}"

    def describe(self) -> str:
        if self.info["how"] != "split-by-query":
            return ""
        q, f = self.info["queries"], self.info["fractions"]
        return (f"{self.info['dataset']} split by query (seed {self.info['seed']}): "
                + ", ".join(f"{k} {f[i]:.0%} ({q[k]} quer{'y' if q[k] == 1 else 'ies'})" for i, k in enumerate(("train", "dev", "test"))))


def is_named(spec: str) -> bool:
    return spec in NAMED or spec.startswith("hf:")


def dataset_label(spec: str) -> str:
    """How results name their data: the dataset name, or a file's absolute path (so `x.jsonl` and `/abs/x.jsonl`
    are one dataset)."""
    return spec if is_named(spec) else str(Path(spec).expanduser().resolve())


def default_split(spec: str) -> str:
    """The split eval/bench read when none is given: a named dataset's test split (TREC-QA: dev, the one it ships
    here, kept for validation), a file's whole content."""
    return named_default_split(spec) if is_named(spec) else WHOLE


def load_split(spec: str, split: str | None, seed: int = 0) -> QADataset:
    """One split for eval/bench: a named dataset's own split (default test); for a file the whole file (``all``, the
    default) or the train/dev/test part of its by-query split (seed 0: the split `distill --data FILE` makes)."""
    if is_named(spec):
        return load_dataset(spec, split or default_split(spec))
    full = load_dataset(spec, WHOLE)
    if split in (None, WHOLE):
        return full
    if split not in FILE_SPLITS:
        raise DataError(f"--split {split!r}: a data file has no split of that name",
                        f"use --split {WHOLE} (the whole file) or train, dev, test (its by-query split, as distill makes it)")
    return dict(zip(FILE_SPLITS, split_by_query(full, seed)))[split]


def require_labelled(ds: QADataset, what: str) -> None:
    """Metrics (and gold training) need labels: name the first unlabelled pair otherwise."""
    first = next((p for p in ds.pairs if p.label is None), None)
    if first is not None:
        n = sum(p.label is None for p in ds.pairs)
        where = f"{ds.path}:{first.line}: " if ds.path and first.line else ""
        hint = "give labelled data (label 0 or 1 on every row)"
        graded = graded_columns(ds.columns)
        if n == len(ds) and (twice := ambiguity_note(list(ds.columns or ()), ["label"])):
            hint = twice + "or add a label column of 0/1"
        elif graded and n == len(ds):
            hint = (f"its column {graded[0]!r} is not read as a label (a graded or score-like name): add a label column "
                    f"of 0/1, e.g. 1 where {graded[0]} is at or above the grade you count as relevant")
        raise DataError(f"{where}{what}: {n} of {len(ds)} pairs have no label (first: query_id={first.query_id}, "
                        f"passage_id={first.passage_id}); metrics need labels", hint)


def _subset(ds: QADataset, split: str, qids: set[str]) -> QADataset:
    return QADataset(ds.name, split, [p for p in ds.pairs if p.query_id in qids], ds.path, columns=ds.columns)


def split_by_query(ds: QADataset, seed: int = 0, fractions: tuple[float, float, float] = DEFAULT_FRACTIONS) -> tuple[QADataset, QADataset, QADataset]:
    """Seeded split of ``ds`` by query into train/dev/test. Queries with both a correct and a wrong candidate (the ones
    MAP counts) and the others are shuffled and split apart, so each split gets its share of both."""
    groups = ds.query_groups()
    if len(groups) < 3:
        raise DataError(f"{ds.path or ds.name}: {len(groups)} queries are too few to split into train, dev and test",
                        "add queries, or pass --dev FILE --test FILE")
    rng = random.Random(seed)
    # sorted: which split a query lands in depends on the seed and the set of queries, not on the order of the rows
    scorable = sorted(q for q, idx in groups.items() if {ds.pairs[i].label for i in idx} >= {0, 1})
    rest = sorted(set(groups) - set(scorable))
    out: list[set[str]] = [set(), set(), set()]
    for pool in (scorable, rest):
        rng.shuffle(pool)
        n_dev, n_test = round(fractions[1] * len(pool)), round(fractions[2] * len(pool))
        out[1] |= set(pool[:n_dev])
        out[2] |= set(pool[n_dev : n_dev + n_test])
        out[0] |= set(pool[n_dev + n_test :])
    for i in (1, 2, 0):  # tiny files: every split gets at least one query, taken from the largest
        if not out[i]:
            donor = max(range(3), key=lambda j: len(out[j]))
            out[i].add(sorted(out[donor])[0])
            out[donor] -= out[i]
    return tuple(_subset(ds, name, q) for name, q in zip(("train", "dev", "test"), out))  # type: ignore[return-value]


def resolve_splits(spec: str, train_split: str = "train", dev_split: str = "dev", test_split: str = "test",
                   dev: str | None = None, test: str | None = None, seed: int = 0,
                   fractions: tuple[float, float, float] = DEFAULT_FRACTIONS) -> Splits:
    """Load the train/dev/test data of a run (see the module docstring). Everything is loaded and checked here, before
    any expensive work."""
    if (dev is None) != (test is None):
        raise DataError("give both --dev and --test (files), or neither (the data file is then split by query)",
                        "e.g. --data train.jsonl --dev dev.jsonl --test test.jsonl")
    if dev is not None and test is not None:
        tr, dv, te = load_dataset(spec, train_split), load_dataset(dev, dev_split), load_dataset(test, test_split)
        label = {k: dataset_label(v) for k, v in (("dataset", spec), ("dev", dev), ("test", test))}
        return Splits(tr, dv, te, {"how": "files", **label, "same_file": len(set(label.values())) < 3})
    if is_named(spec):
        tr, dv, te = (load_dataset(spec, s) for s in (train_split, dev_split, test_split))
        return Splits(tr, dv, te, {"how": "named", "dataset": spec, "splits": [train_split, dev_split, test_split]})
    full = load_dataset(spec, train_split)
    tr, dv, te = split_by_query(full, seed, fractions)
    info = {"how": "split-by-query", "dataset": dataset_label(spec), "seed": seed, "fractions": list(fractions),
            "queries": {d.split: len(d.query_groups()) for d in (tr, dv, te)}, "pairs": {d.split: len(d) for d in (tr, dv, te)}}
    return Splits(tr, dv, te, info)
