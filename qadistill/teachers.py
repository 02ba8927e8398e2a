"""Teachers behind one interface: a dataset of pairs in, one logit per pair out — scored once and cached.

* ``BiEncoderTeacher``: mean-pooled embeddings, cosine similarity, a logistic calibration (a·cos + b) fitted on the
  train split's labels; each distinct text is embedded once.
* ``CrossEncoderTeacher``: a sequence-classification model with one logit (two-logit models use logit1 − logit0).

Every teacher tokenizes with its own tokenizer, and batches are sorted by length to cut padding.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from qadistill.cache import LogitCache, length_order, make_key
from qadistill.data import QADataset, load_dataset, unique
from qadistill.errors import QadistillError, UserInputError
from qadistill.progress import NullProgress, Progress
from qadistill.recipes import TeacherRecipe
from qadistill.sources import folder_architecture, folder_fingerprint, resolve_source

CHUNK = 1024  # items per cached chunk (resume granularity)


def _threads() -> int | None:
    """QADISTILL_THREADS: the torch thread count teachers score with (None: torch's default)."""
    import os

    n = os.environ.get("QADISTILL_THREADS")
    return int(n) if n else None


@dataclass
class Calibration:
    a: float
    b: float

    def apply(self, x):
        return self.a * x + self.b


def fit_logistic(x, y, l2: float = 1e-4, iters: int = 50) -> Calibration:
    """1-D logistic regression y ~ sigmoid(a*x + b) by Newton's method (small L2 on a for stability)."""
    import numpy as np

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    X = np.stack([x, np.ones_like(x)], axis=1)
    w = np.zeros(2)
    for _ in range(iters):
        p = 1 / (1 + np.exp(-(X @ w)))
        g = X.T @ (p - y) + l2 * np.array([w[0], 0.0])
        H = (X * (p * (1 - p))[:, None]).T @ X + l2 * np.diag([1.0, 0.0]) + 1e-9 * np.eye(2)
        step = np.linalg.solve(H, g)
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    return Calibration(float(w[0]), float(w[1]))


class Teacher:
    """Base: subclasses implement ``_raw_scores`` (uncalibrated) and may implement ``calibration``."""

    name: str
    folder: Path
    max_length: int
    architecture: str

    def __init__(self, name: str, folder: Path, max_length: int, batch_size: int = 32, cache: LogitCache | None = None) -> None:
        from qadistill.sources import check_max_length, check_model_folder

        check_model_folder(folder)
        check_max_length(folder, max_length, f"max length of teacher '{name}'")
        self.name = name
        self.folder = Path(folder)
        self.max_length = max_length
        self.batch_size = batch_size
        self.cache = cache or LogitCache()
        self._model = None
        self._tok = None

    def fingerprint(self) -> str:
        return make_key(self.architecture, self.name, folder_fingerprint(self.folder))

    # -- model ----------------------------------------------------------------------------------------------------------
    def _load(self):
        """The loaded backend (``qadistill.backends``) this teacher scores through."""
        raise NotImplementedError

    @property
    def tokenizer(self):
        if self._tok is None:
            from transformers import AutoTokenizer

            self._tok = AutoTokenizer.from_pretrained(str(self.folder))
        return self._tok

    @property
    def model(self):
        if self._model is None:
            self._model = self._load()
        return self._model

    # -- scoring --------------------------------------------------------------------------------------------------------
    def raw_scores(self, ds: QADataset, progress: Progress | None = None):
        key = make_key("raw", self.fingerprint(), ds.fingerprint(), self.max_length)
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        arr = self._raw_scores(ds, progress or NullProgress())
        self.cache.put(key, arr, {"teacher": self.name, "data": f"{ds.name}/{ds.split}", "kind": "raw", "max_length": self.max_length})
        return arr

    def calibration(self, progress: Progress | None = None) -> Calibration | None:
        return None

    def logits(self, ds: QADataset, progress: Progress | None = None):
        """One calibrated logit per pair (float32 numpy array, in dataset order)."""
        import numpy as np

        raw = self.raw_scores(ds, progress)
        cal = self.calibration(progress)
        return (cal.apply(raw) if cal else raw).astype(np.float32)

    def _raw_scores(self, ds: QADataset, progress: Progress):
        raise NotImplementedError


class BiEncoderTeacher(Teacher):
    architecture = "bi-encoder"

    def __init__(self, *a, pooling: str = "mean", calibrate: bool = True, calib_data: str = "wikiqa", calib_split: str = "train", **kw) -> None:
        super().__init__(*a, **kw)
        self.pooling = pooling
        self.calibrate = calibrate
        self.calib_data = calib_data
        self.calib_split = calib_split
        self._cal: Calibration | None = None
        self._memo: dict = {}  # text -> embedding row, filled by every embed() in this process
        self._emb = None  # the on-disk, content-addressed embedding store

    def _load(self):
        from qadistill.backends import BiEncoderTorchBackend

        return BiEncoderTorchBackend(self.folder, self.max_length, threads=_threads(), hf_tokenizer=self.tokenizer,
                                     pooling=self.pooling).load()

    def embed(self, texts: list[str], progress: Progress | None = None, label: str = ""):
        """L2-normalised embeddings of ``texts``. Each distinct text is embedded once per model, max length and pooling:
        content-addressed on disk (``qadistill.embcache``), so whatever split, pool or command asked first, and in
        whichever process, a text is never embedded again. Finished chunks are kept: an interrupted run resumes."""
        import numpy as np

        missing = unique(t for t in texts if t not in self._memo)
        if missing:
            store = self._embeddings()
            todo = store.missing(missing)
            if todo:
                task = (progress or NullProgress()).task(f"{self.name}: embedding {label}".strip(), len(todo))
                ordered = [todo[i] for i in self._length_order(todo)]  # similar lengths per batch: little padding
                store.fill(ordered, self._embed_batchwise, CHUNK, task.advance)
                task.done()
            self._remember(missing, store.get(missing))
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([self._memo[t] for t in texts])

    def _embeddings(self):
        from qadistill.embcache import EmbeddingStore

        if self._emb is None:
            self._emb = EmbeddingStore(make_key("emb", self.fingerprint(), self.max_length, self.pooling), self.cache.root.parent / "embeddings")
        return self._emb

    def _remember(self, texts: list[str], emb) -> None:
        for t, row in zip(texts, emb):
            self._memo[t] = row

    def _split_texts(self, ds: QADataset) -> list[str]:
        return unique([p.query for p in ds.pairs] + [p.passage for p in ds.pairs])

    def _length_order(self, texts: list[str]) -> list[int]:
        """Longest first, to cut padding."""
        return length_order([len(ids) for ids in self.tokenizer(texts, truncation=True, max_length=self.max_length)["input_ids"]])

    def _embed_batchwise(self, texts: list[str]):
        return self.model.embed(texts, self.batch_size)

    def _raw_scores(self, ds: QADataset, progress: Progress):
        import numpy as np

        texts = self._split_texts(ds)
        index = {t: i for i, t in enumerate(texts)}
        emb = self.embed(texts, progress, f"{ds.name}/{ds.split}")
        q = emb[[index[p.query] for p in ds.pairs]]
        d = emb[[index[p.passage] for p in ds.pairs]]
        return (q * d).sum(axis=1).astype(np.float32)

    def calibration(self, progress: Progress | None = None) -> Calibration | None:
        if not self.calibrate:
            return None
        if self._cal is None:
            import numpy as np

            train = load_dataset(self.calib_data, self.calib_split)
            key = make_key("calib", self.fingerprint(), train.fingerprint(), self.max_length)
            hit = self.cache.get(key)
            if hit is None:
                raw = self.raw_scores(train, progress)
                cal = fit_logistic(raw, train.labels())
                hit = np.array([cal.a, cal.b], dtype=np.float64)
                self.cache.put(key, hit, {"teacher": self.name, "kind": "calibration", "data": f"{train.name}/{train.split}"})
            self._cal = Calibration(float(hit[0]), float(hit[1]))
        return self._cal


class CrossEncoderTeacher(Teacher):
    architecture = "cross-encoder"

    def _load(self):
        from qadistill.backends import TorchBackend

        return TorchBackend(self.folder, self.max_length, threads=_threads(), hf_tokenizer=self.tokenizer).load()

    def score_pairs(self, queries: list[str], passages: list[str]):
        """Logits of the pairs, in batches of ``batch_size`` in their order (``_raw_scores`` passes them length-sorted)."""
        return self.model.score(queries, passages, self.batch_size)

    def _raw_scores(self, ds: QADataset, progress: Progress):
        import numpy as np

        qs = [p.query for p in ds.pairs]
        ps = [p.passage for p in ds.pairs]
        lengths = [len(x) for x in self.tokenizer(qs, ps, truncation=True, max_length=self.max_length)["input_ids"]]
        order = length_order(lengths)
        task = progress.task(f"{self.name}: scoring {ds.name}/{ds.split}", len(order))
        key = make_key("xenc-sorted", self.fingerprint(), ds.fingerprint(), self.max_length)

        def fn(start: int, stop: int):
            idx = order[start:stop]
            return self.score_pairs([qs[i] for i in idx], [ps[i] for i in idx])

        sorted_scores = self.cache.compute(key, len(order), CHUNK, fn, {"teacher": self.name, "kind": "partial"}, task.advance)
        task.done()
        out = np.empty(len(order), dtype=np.float32)
        out[np.asarray(order, dtype=np.int64)] = sorted_scores
        return out


def teacher_targets(teachers: list, ds: QADataset, mode: str, progress: Progress):
    """Teacher logits reduced for the mode: mkdm [N, K]; avg [N, 1] (mean); single [N, 1]; gold None."""
    import numpy as np

    if mode == "gold" or not teachers:
        return None
    cols = [t.logits(ds, progress) for t in teachers]
    mat = np.stack(cols, axis=1).astype(np.float32)
    if mode == "avg":
        return mat.mean(axis=1, keepdims=True)
    return mat


# ---------------------------------------------------------------------------------------------------------------------
def teacher_from_recipe(recipe: TeacherRecipe, registry=None, batch_size: int = 32, cache: LogitCache | None = None,
                        folder: Path | None = None) -> Teacher:
    """The scorer of a teacher recipe; ``folder``: its weights when already resolved (else from its source, or the
    folder `teach` built)."""
    if folder is not None:
        pass
    elif recipe.source is not None:
        folder = resolve_source(recipe.source)
    else:
        folder = built_teacher_folder(recipe.name, registry)
    if recipe.architecture == "bi-encoder":
        cal = recipe.calibration
        return BiEncoderTeacher(
            recipe.name, folder, recipe.max_length, batch_size=batch_size, cache=cache, pooling=recipe.pooling,
            calibrate=cal is not None and cal.method == "logistic", calib_split=cal.split if cal else "train",
        )
    return CrossEncoderTeacher(recipe.name, folder, recipe.max_length, batch_size=batch_size, cache=cache)


def built_teacher_folder(name: str, registry) -> Path:
    """The folder `qadistill teach NAME` built (see ``Registry.built_teacher``)."""
    if registry is None:
        raise QadistillError(f"teacher '{name}' has not been built yet", f"run `qadistill teach {name} --data wikiqa`")
    return registry.built_teacher(name)


class OnnxCrossEncoderTeacher(CrossEncoderTeacher):
    """An exported cross-encoder (ONNX fp32 / optimized / int8) scored with ONNX Runtime on the CPU, so `eval` measures
    the variant itself; the cache key includes the variant's file, so it never shares scores with the PyTorch model."""

    architecture = "cross-encoder-onnx"

    def _load(self):
        from qadistill.backends import OrtBackend, variant_file

        return OrtBackend(self.folder, max_length=self.max_length, file_name=variant_file(self.folder)).load()

    def score_pairs(self, queries: list[str], passages: list[str]):
        return self.model.score(queries, passages, self.batch_size)


def load_scorer(name: str, registry, batch_size: int = 32, max_length: int | None = None) -> Teacher:
    """A zoo teacher, a built artifact (student or teacher folder) or a local model folder, as a scorer."""
    ref = registry.resolve(name, use="evaluate a teacher, a built student or a folder", model_folders_only=True)
    if ref.kind == "folder":
        return _folder_scorer(ref.name, ref.folder, max_length or 128, batch_size)
    if ref.kind == "prebuilt":
        return CrossEncoderTeacher(name, ref.folder, max_length or ref.max_length, batch_size=batch_size)
    if ref.kind == "teacher":
        t = teacher_from_recipe(ref.recipe, registry, batch_size, folder=ref.folder)
        if max_length:
            t.max_length = max_length
        return t
    return _folder_scorer(name, ref.folder, max_length or int(ref.max_length if ref.max_length is not None else 128), batch_size)


def _folder_scorer(name: str, folder: Path, max_length: int, batch_size: int) -> Teacher:
    if any(Path(folder).glob("*.onnx")):
        return OnnxCrossEncoderTeacher(name, folder, max_length, batch_size=batch_size)
    if folder_architecture(folder) == "cross-encoder":
        return CrossEncoderTeacher(name, folder, max_length, batch_size=batch_size)
    return BiEncoderTeacher(name, folder, max_length, batch_size=batch_size, calibrate=False)
