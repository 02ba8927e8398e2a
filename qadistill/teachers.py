"""Teachers behind one interface: a dataset of pairs in, one logit per pair out — scored once and cached.

* ``BiEncoderTeacher``: mean-pooled embeddings, cosine similarity, a logistic calibration (a·cos + b) fitted on the
  train split's labels; each distinct text is embedded once.
* ``CrossEncoderTeacher``: a sequence-classification model with one logit (two-logit models use logit1 − logit0).

Every teacher tokenizes with its own tokenizer, and batches are sorted by length to cut padding.

Raw scores live in the content-addressed shard store (``qadistill.scores``): a pair is scored once per teacher and max
length, whichever command (`score`, `distill`, `eval`) asked first, and a run that stops keeps every finished shard.
Inside ``parallel.collective()`` under `torchrun`/`accelerate launch`, each process scores its contiguous share of
the shards and reads the others' files. Whole-data entries of the logit cache written before the shard store are
still read first.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from qadistill import parallel
from qadistill.cache import LogitCache, length_order, make_key
from qadistill.data import QADataset, load_dataset, unique
from qadistill.errors import QadistillError
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
    """Base: subclasses implement ``_score_shard`` (raw, uncalibrated scores) and may implement ``calibration``."""

    name: str
    folder: Path
    max_length: int
    architecture: str

    def __init__(self, name: str, folder: Path, max_length: int, batch_size: int = 32, cache: LogitCache | None = None,
                 device: str = "cpu") -> None:
        from qadistill.sources import check_max_length, check_model_folder

        check_model_folder(folder)
        check_max_length(folder, max_length, f"max length of teacher '{name}'")
        self.name = name
        self.folder = Path(folder)
        self.max_length = max_length
        self.batch_size = batch_size
        self.cache = cache or LogitCache()
        self.device = device  # where the model scores: "cpu", "cuda", "cuda:1"
        self._model = None
        self._tok = None
        self._scores = None

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

    def over_length(self, ds) -> int:
        """How many of ``ds``'s pairs this teacher sees cut at its max length: a cross-encoder's pair longer than it, a
        bi-encoder's pair whose query or passage is (each is embedded alone)."""
        from qadistill.backends import PairTokenizer, count_over_length

        return count_over_length(PairTokenizer(self.folder, self.max_length), self.max_length, [p.query for p in ds.pairs],
                                 [p.passage for p in ds.pairs], each_text=self.architecture.startswith("bi-encoder"))

    # -- scoring --------------------------------------------------------------------------------------------------------
    def score_space(self) -> str:
        """The shard store space of this teacher's raw scores (fingerprint + max length)."""
        return make_key("scores", self.fingerprint(), self.max_length)

    def scores(self):
        """The content-addressed shard store of this teacher's raw scores (``qadistill.scores``)."""
        from qadistill.scores import ScoreStore

        if self._scores is None:
            self._scores = ScoreStore(self.score_space(), self.cache.root.parent / "scores")
        return self._scores

    def raw_scores(self, ds: QADataset, progress: Progress | None = None):
        old = self.cache.get(make_key("raw", self.fingerprint(), ds.fingerprint(), self.max_length))
        if old is not None:  # a whole-data entry from before the shard store
            return old
        return self.pair_scores([p.query for p in ds.pairs], [p.passage for p in ds.pairs], progress, f"{ds.name}/{ds.split}")

    def pair_scores(self, queries: list[str], passages: list[str], progress: Progress | None = None, label: str = "",
                    shard_pairs: int | None = None):
        """Raw scores of the pairs (float32, in their order), shard by shard through the shard store: a shard found
        (by its key, else each of its pairs in any shard of the space) is read, the others are scored and written at
        once. Inside ``parallel.collective()`` each process scores its contiguous share and waits for the rest."""
        import numpy as np

        from qadistill.scores import pair_keys, shard_pairs_default

        store = self.scores()
        shards = store.shards(pair_keys(queries, passages), shard_pairs or shard_pairs_default())
        out = np.empty(len(queries), dtype=np.float32)
        mine = parallel.share(shards)
        todo = _fill_found(store, mine, out)
        if todo:
            task = (progress or NullProgress()).task(f"{self.name}: scoring {label}".strip(), sum(s.pairs for s in todo))
            for s in todo:
                raw = np.asarray(self._score_shard(queries[s.start : s.stop], passages[s.start : s.stop]), dtype=np.float32)
                store.write(s.key, s.keys, raw)
                out[s.start : s.stop] = raw
                task.advance(s.pairs)
            task.done()
        own = {s.index for s in mine}
        pending = [s for s in shards if s.index not in own]  # the other processes' shares
        while pending:
            pending = _fill_found(store, pending, out)
            if pending:
                parallel.wait_until(lambda: any(store.has(s.key) for s in pending), f"{len(pending)} score shard(s) of {self.name}")
        return out

    def _score_shard(self, queries: list[str], passages: list[str]):
        """Raw scores of one shard's pairs, in their order (this process only)."""
        raise NotImplementedError

    def calibration(self, progress: Progress | None = None) -> Calibration | None:
        return None

    def calibration_data(self) -> QADataset | None:
        """The labelled pairs ``calibration()`` still has to score and fit on (None: nothing to fit, or fitted before)."""
        return None

    def logits(self, ds: QADataset, progress: Progress | None = None):
        """One calibrated logit per pair (float32 numpy array, in dataset order)."""
        import numpy as np

        raw = self.raw_scores(ds, progress)
        cal = self.calibration(progress)
        return (cal.apply(raw) if cal else raw).astype(np.float32)



def _fill_found(store, shards: list, out) -> list:
    """Copy the scores of every shard the store already has into ``out``; returns the shards it does not have."""
    missing = []
    for s in shards:
        hit = _found(store, s)
        if hit is None:
            missing.append(s)
        else:
            out[s.start : s.stop] = hit
    return missing


def _found(store, shard):
    """A shard's raw scores from the store: its own file, else every pair found in other shards; None if not all are."""
    hit = store.read(shard.key, shard.keys)
    if hit is None:
        raw, found = store.lookup(shard.keys)
        if found.all():
            hit = raw
    return hit


class BiEncoderTeacher(Teacher):
    architecture = "bi-encoder"

    def __init__(self, *a, pooling: str = "mean", calibrate: bool = True, calib_data: str = "wikiqa", calib_split: str = "train", **kw) -> None:
        super().__init__(*a, **kw)
        self.pooling = pooling
        self.calibrate = calibrate
        self.calib_data = calib_data
        self.calib_split = calib_split
        self._cal: Calibration | None = None
        self._emb = None  # the on-disk, content-addressed embedding store

    def _load(self):
        from qadistill.backends import BiEncoderTorchBackend

        return BiEncoderTorchBackend(self.folder, self.max_length, threads=_threads(), hf_tokenizer=self.tokenizer,
                                     pooling=self.pooling, device=self.device).load()

    def embed(self, texts: list[str], progress: Progress | None = None, label: str = "", share: bool = True):
        """L2-normalised embeddings of ``texts``. Each distinct text is embedded once per model, max length and pooling:
        content-addressed on disk (``qadistill.embcache``), so whatever split, pool or command asked first, and in
        whichever process, a text is never embedded again. Finished chunks are kept: an interrupted run resumes.
        Inside ``parallel.collective()`` (and with ``share``) each process embeds its contiguous share of the new texts
        and waits for the others'."""
        import numpy as np

        store = self._embeddings()
        wanted = unique(texts)  # the same list in every process: each shares it out the same way
        split = share and parallel.sharing()
        todo = store.missing(parallel.share(wanted) if split else wanted)
        if todo:
            task = (progress or NullProgress()).task(f"{self.name}: embedding {label}".strip(), len(todo))
            ordered = [todo[i] for i in self._length_order(todo)]  # similar lengths per batch: little padding
            store.fill(ordered, self._embed_batchwise, CHUNK, task.advance)
            task.done()
        if split:
            parallel.wait_until(lambda: not store.missing(wanted), f"embeddings of {self.name}")
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return store.get(list(texts))  # rows read from the store's shards (a bounded cache), not held per process

    def _embeddings(self):
        from qadistill.embcache import EmbeddingStore

        if self._emb is None:
            self._emb = EmbeddingStore(make_key("emb", self.fingerprint(), self.max_length, self.pooling), self.cache.root.parent / "embeddings")
        return self._emb

    def _split_texts(self, ds: QADataset) -> list[str]:
        return unique([p.query for p in ds.pairs] + [p.passage for p in ds.pairs])

    def _length_order(self, texts: list[str]) -> list[int]:
        """Longest first, to cut padding."""
        return length_order([len(ids) for ids in self.tokenizer(texts, truncation=True, max_length=self.max_length)["input_ids"]])

    def _embed_batchwise(self, texts: list[str]):
        return self.model.embed(texts, self.batch_size)

    def score_space(self) -> str:
        return make_key("scores", self.fingerprint(), self.max_length, self.pooling)

    def _score_shard(self, queries: list[str], passages: list[str]):
        """Cosines of the pairs; their texts go through the embedding store, so a text is embedded once across shards."""
        import numpy as np

        texts = unique(list(queries) + list(passages))
        index = {t: i for i, t in enumerate(texts)}
        emb = self.embed(texts, share=False)  # this process's shard: never waits for the others
        q = emb[[index[t] for t in queries]]
        d = emb[[index[t] for t in passages]]
        return (q * d).sum(axis=1).astype(np.float32)

    def _calib_key(self, train: QADataset) -> str:
        return make_key("calib", self.fingerprint(), train.fingerprint(), self.max_length)

    def calibration_data(self) -> QADataset | None:
        if not self.calibrate or self._cal is not None:
            return None
        train = load_dataset(self.calib_data, self.calib_split)
        return None if self.cache.get(self._calib_key(train)) is not None else train

    def calibration(self, progress: Progress | None = None) -> Calibration | None:
        if not self.calibrate:
            return None
        if self._cal is None:
            import numpy as np

            train = load_dataset(self.calib_data, self.calib_split)
            key = self._calib_key(train)
            hit = self.cache.get(key)
            if hit is None:
                raw = self.raw_scores(train, progress)
                cal = fit_logistic(raw, train.labels())
                hit = np.array([cal.a, cal.b], dtype=np.float64)
                self.cache.put(key, hit, {"teacher": self.name, "kind": "calibration", "data": f"{train.name}/{train.split}"})
            self._cal = Calibration(float(hit[0]), float(hit[1]))
        return self._cal


class CrossEncoderTeacher(Teacher):
    """A cross-encoder. One built by `qadistill teach --folds K` is cross-fitted (``qadistill.crossfit``): a pair
    whose query one fold model held out from its training is scored by that fold model, every other pair by the full
    model (the one served)."""

    architecture = "cross-encoder"

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self._folds: list | None = None
        self._fold_models: dict[int, object] = {}

    def _load(self):
        return self._torch_model(self.folder)

    def _torch_model(self, folder: Path):
        """The PyTorch model in ``folder`` (the full model, or a fold model) loaded for scoring."""
        from qadistill.backends import TorchBackend

        return TorchBackend(folder, self.max_length, threads=_threads(), hf_tokenizer=self.tokenizer, device=self.device).load()

    def score_pairs(self, queries: list[str], passages: list[str]):
        """Logits of the pairs, in batches of ``batch_size`` in their order (``_score_shard`` passes them length-sorted)."""
        return self.model.score(queries, passages, self.batch_size)

    def folds(self) -> list:
        """The fold models of a cross-fitted teacher: (folder, keys of the queries it held out); [] for a plain one."""
        if self._folds is None:
            from qadistill.crossfit import read_folds

            self._folds = read_folds(self.folder)
        return self._folds

    def _fold_scores(self, k: int, queries: list[str], passages: list[str]):
        if k not in self._fold_models:
            self._fold_models[k] = self._torch_model(self._folds[k][0])
        return self._fold_models[k].score(queries, passages, self.batch_size)

    def _score_shard(self, queries: list[str], passages: list[str]):
        import numpy as np

        from qadistill.crossfit import route

        folds = self.folds()
        routes = route(queries, folds) if folds else [-1] * len(queries)
        out = np.empty(len(queries), dtype=np.float32)
        for r in sorted(set(routes)):
            idx = [i for i, x in enumerate(routes) if x == r]
            fn = self.score_pairs if r < 0 else (lambda q, p, k=r: self._fold_scores(k, q, p))
            out[np.asarray(idx, dtype=np.int64)] = self._length_sorted(fn, [queries[i] for i in idx], [passages[i] for i in idx])
        return out

    def _length_sorted(self, fn, queries: list[str], passages: list[str]):
        """``fn``'s scores of the pairs, in their order, computed longest first (little padding per batch)."""
        import numpy as np

        lengths = [len(x) for x in self.tokenizer(list(queries), list(passages), truncation=True, max_length=self.max_length)["input_ids"]]
        order = length_order(lengths)
        out = np.empty(len(order), dtype=np.float32)
        out[np.asarray(order, dtype=np.int64)] = fn([queries[i] for i in order], [passages[i] for i in order])
        return out


def teacher_targets(teachers: list, ds: QADataset, mode: str, progress: Progress):
    """Teacher logits reduced for the mode: mkdm [N, K]; avg [N, 1] (mean); single [N, 1]; gold None."""
    if mode == "gold" or not teachers:
        return None
    return stack_targets([t.logits(ds, progress) for t in teachers], mode)


def stack_targets(cols: list, mode: str):
    """Per-teacher logit columns [N] as the mode's targets: [N, K] (mkdm, single), or their mean [N, 1] (avg)."""
    import numpy as np

    mat = np.stack(cols, axis=1).astype(np.float32)
    return mat.mean(axis=1, keepdims=True) if mode == "avg" else mat


def stage1_layout(teachers: list[str], chosen: list[str] | None) -> list[int | None] | None:
    """Where each head's stage-1 target comes from when only ``chosen`` teachers label the pool: head j reads column i
    of the chosen teachers' logits, or None (the mean of those columns). None: every teacher labels the pool."""
    if not chosen or list(chosen) == list(teachers):
        return None
    return [chosen.index(t) if t in chosen else None for t in teachers]


def spread_targets(cols, layout: list[int | None] | None):
    """Stage-1 targets [N, K] from the chosen teachers' calibrated logits ``cols`` [N, k] (mkdm): each head its own
    teacher's column where that teacher labels the pool, else the chosen teachers' mean. ``layout``: ``stage1_layout``."""
    import numpy as np

    if layout is None:
        return cols
    mean = cols.mean(axis=1)
    return np.stack([mean if i is None else cols[:, i] for i in layout], axis=1).astype(np.float32)


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

    @functools.cached_property
    def batch_dependent(self) -> bool:
        """Dynamic int8 quantizes activations with one scale per batch, so a pair's score moves with the other pairs
        of its batch (WikiQA dev: a student's int8 MAP .641 to .649 across batch sizes 1, 8 and 32). Read once: the
        folder's manifest does not change under a scorer."""
        from qadistill.modelref import Variant, export_manifest

        return export_manifest(self.folder).get("variant") == Variant.int8_dynamic.value

    def score_space(self) -> str:
        """The fp32 variants' space as the base class's; a dynamic int8 one's also keyed on the batch size, so
        `eval --batch-size` scores at that batch size instead of reading another's scores."""
        space = super().score_space()
        return make_key(space, "batch", self.batch_size) if self.batch_dependent else space


def load_scorer(name: str, registry, batch_size: int = 32, max_length: int | None = None) -> Teacher:
    """A zoo teacher, a built artifact (student or teacher folder) or a local model folder, as a scorer."""
    from qadistill.sources import check_max_length

    ref = registry.resolve(name, use="evaluate a teacher, a built student or a folder", model_folders_only=True)
    if max_length and ref.folder is not None:  # the user's --max-length, named as such (also where it overrides a recipe's)
        check_max_length(ref.folder, max_length)
    if ref.kind == "folder":
        own = ref.max_length or 128
        t = _folder_scorer(ref.name, ref.folder, max_length or own, batch_size)
    elif ref.kind == "prebuilt":
        own = ref.max_length
        t = CrossEncoderTeacher(name, ref.folder, max_length or own, batch_size=batch_size)
    elif ref.kind == "teacher":
        t = teacher_from_recipe(ref.recipe, registry, batch_size, folder=ref.folder)
        own = t.max_length
        if max_length:
            t.max_length = max_length
    else:
        own = int(ref.max_length if ref.max_length is not None else 128)
        t = _folder_scorer(name, ref.folder, max_length or own, batch_size)
    t.own_max_length = own  # the length it is served at: a figure at another (--max-length) is not the model's own
    return t


def _folder_scorer(name: str, folder: Path, max_length: int, batch_size: int) -> Teacher:
    if any(Path(folder).glob("*.onnx")):
        return OnnxCrossEncoderTeacher(name, folder, max_length, batch_size=batch_size)
    if folder_architecture(folder) == "cross-encoder":
        return CrossEncoderTeacher(name, folder, max_length, batch_size=batch_size)
    return BiEncoderTeacher(name, folder, max_length, batch_size=batch_size, calibrate=False)
