"""Cross-fitted teachers: a taught cross-encoder's labels on its own training queries, without its memory of them.

A teacher fine-tuned on the same labelled questions a student later learns from gives near-gold logits on exactly
those questions: it has seen their answers. Distilled from, it teaches the student its memory instead of its
judgement. `qadistill teach --folds K` therefore also trains K fold models: fold model k learns every training query
except those dealt to fold k (early stopping on fold k, its held-out part), and the teacher scores a pair whose query
fold k held out with fold model k. Every other pair (dev, test, other data, training queries that were filtered out
of training) is scored by the full model, which is also what `rank`, `export`, `bench` and the Python API serve.

Layout inside the teacher's folder (a plain Hugging Face model at its top level)::

    folds/folds.json          {"format": 1, "k": K, "seed": S, "key": "sha256 of the query text",
                               "folds": [{"folder": "fold-0", "held_out": [query key, ...]}, ...]}
    folds/fold-0/ ...         a plain model folder per fold

Queries are dealt by their text (every pair of one text stays in one fold), in an order set by a seeded hash, so the
folds are balanced and do not depend on the file's row order.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from qadistill.data import QADataset
from qadistill.errors import QadistillError, UserInputError

FOLDS_DIR = "folds"
FOLDS_FILE = "folds.json"
FORMAT = 1


def query_key(text: str) -> str:
    """The key a fold records for a query: the sha256 of its text (the texts themselves are not copied)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def assign_folds(ds: QADataset, k: int, seed: int) -> list[QADataset]:
    """``ds`` dealt into ``k`` folds by query text: sorted by a seeded hash of the text, then dealt round-robin."""
    texts = sorted({p.query for p in ds.pairs}, key=lambda t: hashlib.sha256(f"{seed}\0{t}".encode("utf-8")).hexdigest())
    if k < 2:
        raise UserInputError(f"--folds {k}: cross-fitting needs at least 2 folds", "use --folds 2 or more, or leave it out")
    if len(texts) < k:
        raise UserInputError(f"--folds {k}: the training data has only {len(texts)} distinct queries",
                             f"use --folds {max(2, len(texts))} or less" if len(texts) >= 2 else "give more training queries")
    fold_of = {t: i % k for i, t in enumerate(texts)}
    return [QADataset(ds.name, f"{ds.split}[fold {i + 1}/{k}]", [p for p in ds.pairs if fold_of[p.query] == i], ds.path)
            for i in range(k)]


def write_folds(folder: Path, folds: list[QADataset], seed: int) -> None:
    """``folder``/folds/folds.json for fold models already saved under ``folder``/folds/fold-I."""
    from qadistill.fsutil import atomic_write_text

    doc = {"format": FORMAT, "k": len(folds), "seed": seed, "key": "sha256 of the query text",
           "folds": [{"folder": f"fold-{i}", "held_out": sorted({query_key(p.query) for p in f.pairs})} for i, f in enumerate(folds)]}
    atomic_write_text(Path(folder) / FOLDS_DIR / FOLDS_FILE, json.dumps(doc, indent=0))


def read_folds(folder: Path) -> list[tuple[Path, frozenset[str]]]:
    """The fold models of a teacher folder: (model folder, keys of the queries it held out); [] when it has none.
    A folds file that cannot be used is an error naming it (never a silent fall-back to the memorising full model)."""
    path = Path(folder) / FOLDS_DIR / FOLDS_FILE
    if not path.exists():
        return []
    bad = f"rebuild the teacher with `qadistill teach NAME --folds K`, or delete {path.parent} to use the full model only"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ValueError(f"format {doc.get('format') if isinstance(doc, dict) else None!r} is not {FORMAT}")
        out = []
        for i, f in enumerate(doc["folds"]):
            sub = path.parent / str(f["folder"])
            if not isinstance(f["held_out"], list) or not all(isinstance(x, str) for x in f["held_out"]):
                raise ValueError(f"folds[{i}].held_out is not a list of query keys")
            if sub.parent != path.parent or not (sub / "config.json").exists():
                raise ValueError(f"folds[{i}].folder {f['folder']!r} is not a model folder beside it")
            out.append((sub, frozenset(f["held_out"])))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise QadistillError(f"{path}: unusable fold list ({exc})", bad) from None
    if len(out) < 2:
        raise QadistillError(f"{path}: {len(out)} fold(s); a cross-fitted teacher has at least 2", bad)
    return out


def route(queries: list[str], folds: list[tuple[Path, frozenset[str]]]) -> list[int]:
    """Which model scores each query: the index of the fold that held it out, or -1 (the full model)."""
    owner = {key: i for i, (_, held) in enumerate(folds) for key in held}
    return [owner.get(query_key(q), -1) for q in queries]
