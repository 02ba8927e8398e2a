"""The Python API: ``from qadistill import load``.

    model = load("quickstart-mkdm-s42", backend="auto")
    model.score([("who wrote hamlet?", "Hamlet is a tragedy by William Shakespeare.")])
    model.rank("who wrote hamlet?", passages, top_k=3)

``load`` takes a zoo name, a built artifact (student, teacher or export), a local folder or a Hub id (``org/name``,
``org/name@revision``). ``backend="auto"`` picks the fastest built variant that runs here: the int8 ONNX export when
it exists and passed its parity check, else the fp32 ONNX export, else PyTorch. torch is imported only when the
PyTorch backend is used.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from qadistill.errors import UnknownNameError, UserInputError

BACKENDS = ("auto", "torch", "onnx", "onnx-int8")


@dataclass(frozen=True)
class Ranked:
    """One ranked passage: its position in the input, its id (when given), text and score (higher is better: a
    logit, or a bi-encoder's cosine similarity; the model's ``score_kind`` says which)."""

    rank: int
    index: int
    score: float
    passage: str
    id: str | None = None


class Reranker:
    """A loaded relevance model. ``score`` and ``rank`` tokenize to the pairs' real lengths (truncated to max_length),
    sort them by length into batches of at most ``batch_size`` pairs (and ``batch_tokens`` padded tokens, when given),
    pad each batch to its longest pair only, and return the scores in the caller's order."""

    def __init__(self, name: str, backend_name: str, backend, batch_size: int = 32, batch_tokens: int | None = None) -> None:
        self.name = name
        self.backend_name = backend_name
        self._backend = backend
        self.batch_size = batch_size
        self.batch_tokens = batch_tokens
        self._closed = False
        # "logit", or "cosine" for a bi-encoder: its raw cosine similarity, which eval calibrates into a logit (a fit
        # on WikiQA dev) before it averages teachers, so scores of two models here are not on one scale
        self.score_kind: str = getattr(backend, "score_kind", "logit")

    def __repr__(self) -> str:
        return f"Reranker({self.name!r}, backend={self.backend_name!r}, folder={str(self._backend.folder)!r})"

    def score(self, pairs: Iterable[tuple[str, str]]) -> list[float]:
        """Scores of (query, passage) pairs, in their order (``score_kind``: logits, or a bi-encoder's cosines); a pair
        that is not two non-empty strings is an error, and so is a score that is not finite (a damaged or diverged
        model: never a NaN that would reorder a ranking)."""
        self._check_open()
        if isinstance(pairs, (str, bytes)):
            raise UserInputError("pairs: expected (query, passage) pairs, not one string", "e.g. score([(\"who?\", \"a passage\")])")
        _check_iterable(pairs, "pairs", "e.g. score([(\"who?\", \"a passage\")])")
        pairs = list(pairs)
        for i, pair in enumerate(pairs):
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise UserInputError(f"pair {i}: expected a (query, passage) pair of strings, got {_a(pair)}",
                                     "e.g. score([(\"who?\", \"a passage\")])")
            for what, text in zip(("query", "passage"), pair):
                _check_text(text, f"pair {i}: the {what}")
        if not pairs:
            return []
        qs, ps = [q for q, _ in pairs], [p for _, p in pairs]
        scores = self._backend.score_real_lengths(qs, ps, self.batch_size, self.batch_tokens).tolist()
        bad = next((i for i, x in enumerate(scores) if not math.isfinite(x)), None)
        if bad is not None:
            from qadistill.errors import ScoreError

            n = sum(not math.isfinite(x) for x in scores)
            raise ScoreError(f"{self.name} gave a non-finite score ({scores[bad]}) for pair {bad} ({n} of {len(scores)} pairs): "
                             "its output would reorder the whole ranking", "the weights are damaged or diverged: rebuild or re-pull "
                             "the model (a folder qadistill built is checked against its checksum record)")
        return scores

    def rank(self, query: str, passages: Sequence[str], top_k: int | None = None, ids: Sequence[str] | None = None) -> list[Ranked]:
        self._check_open()
        if not isinstance(query, str) or not query.strip():
            raise UserInputError("the query is empty" if isinstance(query, str) else f"the query is {_a(query)}, not text",
                                 "pass a question, e.g. --query \"who wrote hamlet?\"")
        if isinstance(passages, (str, bytes)):
            raise UserInputError("passages: expected a list of passages, not one string", "wrap it: rank(query, [passage])")
        _check_iterable(passages, "passages", "pass a list of passages, e.g. rank(query, [\"a passage\"])")
        passages = list(passages)
        if not passages:
            raise UserInputError("no passages to rank", "pass passages one per line (a file or stdin)")
        for i, p in enumerate(passages):
            _check_text(p, f"passage {i}")
        _check_whole("top_k", top_k, 1, "e.g. top_k=3 (or None for all)", optional=True)
        if ids is not None:
            if isinstance(ids, (str, bytes)) or not hasattr(ids, "__len__") or not hasattr(ids, "__getitem__"):
                raise UserInputError(f"ids is {_a(ids)}, not a list of ids", "pass one id per passage, e.g. ids=['a', 'b'], or none")
            if len(ids) != len(passages):
                raise UserInputError(f"{len(passages)} passages but {len(ids)} ids", "give one id per passage, or none")
        scores = self.score([(query, p) for p in passages])
        order = sorted(range(len(passages)), key=lambda i: -scores[i])  # stable: ties keep input order
        if top_k is not None:
            order = order[:top_k]
        return [Ranked(r + 1, i, scores[i], passages[i], ids[i] if ids else None) for r, i in enumerate(order)]

    @property
    def max_length(self) -> int:
        """The tokens a pair (a bi-encoder: each text) is cut to."""
        return self._backend.max_length

    def over_length(self, query: str, passages: Sequence[str]) -> int:
        """How many of ``passages`` this model sees cut at ``max_length`` with ``query`` (longest first; a bi-encoder
        embeds each text alone, so a passage or query longer than it)."""
        from qadistill.backends import count_over_length

        self._check_open()
        passages = list(passages)
        return count_over_length(self._backend.tokenizer, self.max_length, [query] * len(passages), passages,
                                 each_text=self.score_kind == "cosine")

    def close(self) -> None:
        """Free the model; a later ``score`` or ``rank`` is an error (load it again)."""
        self._backend.close()
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise UserInputError(f"{self.name} was closed", f"load it again: qadistill.load({self.name!r})")


def _a(value) -> str:
    """'an int', 'a NoneType': the type of a value, with its article (as data files' errors word it)."""
    from qadistill.data import _a as article

    return article(type(value).__name__)


def _check_whole(what: str, value, least: int, hint: str, optional: bool = False) -> None:
    """A whole-number setting of ``load`` (bool is not one), at least ``least``; None only where ``optional``."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise UserInputError(f"{what} {value!r}: must be a whole number of at least {least}", hint)


def _check_iterable(value, what: str, hint: str) -> None:
    if value is None or not hasattr(value, "__iter__"):
        raise UserInputError(f"{what} is {_a(value)}, not a list", hint)


def _check_text(text, what: str) -> None:
    if not isinstance(text, str):
        raise UserInputError(f"{what} is {_a(text)}, not text", "pass strings")
    if not text.strip():
        raise UserInputError(f"{what} is empty", "give every passage some text (drop the empty ones)")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (text decoded with surrogateescape): the tokenizer cannot take it
        raise UserInputError(f"{what} holds a character that is not Unicode text (a lone surrogate)",
                             "decode the text as UTF-8 (errors='replace'), or drop that passage") from None


def parity_trusted(parity: dict) -> bool:
    """Whether `auto` may serve an export: it passed its parity bound on at least ``MIN_TRUSTED_PARITY_QUERIES`` queries
    (one query's MAP bounds nothing), and its logit error is small next to the spread of the model's own logits (else it
    reorders near-ties: the quickstart student's int8 put a wrong passage first)."""
    from qadistill.compress import ties_reordered
    from qadistill.modelref import MIN_TRUSTED_PARITY_QUERIES

    enough = (parity.get("queries") or MIN_TRUSTED_PARITY_QUERIES) >= MIN_TRUSTED_PARITY_QUERIES
    return parity.get("ok", False) and enough and not ties_reordered(parity.get("max_abs_diff", 0.0), parity.get("reference_std"))


def resolve_model(name_or_path: str, backend: str = "auto", registry=None) -> tuple[str, Path, str, int, str]:
    """(label, folder, backend, max_length, architecture) for a name, folder or Hub id."""
    if backend not in BACKENDS:
        raise UserInputError(f"backend {backend!r} is not one of {', '.join(BACKENDS)}", "use auto, torch, onnx or onnx-int8")
    if registry is None:
        from qadistill.registry import Registry
        from qadistill.store import Store

        registry = Registry(store=Store.open())
    ref = registry.resolve(name_or_path, use="use a teacher, a built student or a folder", hub=True)
    if ref.kind == "folder":
        return _folder_backend(ref, backend)
    if ref.kind == "export":
        return resolve_model(str(ref.folder), backend, registry)
    ml = int(ref.max_length) if ref.max_length is not None else (512 if ref.kind == "hub" else 128)
    folder, kind = _pick_variant(ref, backend)
    return ref.name, folder, kind, ml, ref.architecture


def _folder_backend(ref, backend: str) -> tuple[str, Path, str, int, str]:
    """A folder given as is: its ONNX model unless --backend torch, else PyTorch."""
    p = ref.folder
    if not (p / "config.json").exists():
        raise UserInputError(f"{p} is not a model folder (no config.json)", "point at a student, teacher or export folder")
    arch = ref.architecture
    if (p / "model.onnx").exists() and backend != "torch":
        from qadistill.modelref import Variant

        kind = Variant(ref.variant).api_backend if ref.variant in Variant._value2member_map_ else "onnx"
        return p.name, p, kind, int(ref.max_length or 128), arch
    if backend in ("onnx", "onnx-int8"):
        raise UserInputError(f"{p} has no ONNX model", f"run `qadistill export {p} --quantize dynamic` first, or use --backend torch")
    if (p / "model.onnx").exists() and not any((p / w).exists() for w in ("model.safetensors", "pytorch_model.bin")):
        source = _export_source(p)
        raise UserInputError(f"{p} is an ONNX export: it has no PyTorch weights for backend torch",
                             f"load its source model{f' {source!r}' if source else ''} for torch, or drop backend torch")
    return p.name, p, "torch", int(ref.max_length or 128), arch


def ref_has_onnx(name: str, registry=None) -> bool:
    """Whether the zoo holds an ONNX export of ``name`` (so `backend torch` was a choice, not a lack)."""
    try:
        return any(resolve_model(name, b, registry)[2].startswith("onnx") for b in ("onnx-int8", "onnx"))
    except UserInputError:
        return False


def _export_source(folder: Path) -> str | None:
    """The model an export folder was made from, as its manifest names it (None when it does not)."""
    from qadistill.modelref import export_manifest

    man = export_manifest(folder)
    src = man.get("source_name") or man.get("source")
    return src if isinstance(src, str) else None


def _pick_variant(ref, backend: str) -> tuple[Path, str]:
    """(folder, backend) to serve: ``auto`` the first trusted export in AUTO_ORDER, else PyTorch; a named onnx family
    the first of its variants that was built, else an error."""
    from qadistill.modelref import API_FAMILY, AUTO_ORDER

    exports = ref.built_exports()
    if backend == "auto":
        for v in AUTO_ORDER:
            x = exports.get(v.value)
            if x is not None and parity_trusted(x.parity):
                return x.folder, v.api_backend
        return ref.folder, "torch"
    if backend == "torch":
        return ref.folder, "torch"
    for v in API_FAMILY[backend]:
        if v.value in exports:
            return exports[v.value].folder, backend
    raise UserInputError(f"'{ref.name}' has no {backend} variant", f"run `qadistill export {ref.name} --quantize dynamic`, or use --backend torch")


def load(name_or_path: str, backend: str = "auto", max_length: int | None = None, threads: int | None = None,
         batch_size: int = 32, registry=None, batch_tokens: int | None = None, sessions: int = 1) -> Reranker:
    """Load a model for scoring and ranking (see the module docstring). ``batch_tokens``: at most this many tokens per
    batch once padded (with ``batch_size`` pairs at most); default: ``batch_size`` alone bounds a batch.
    ``sessions``: N > 1 serves an ONNX model with N sessions sharing ``threads`` (default: one thread each), the
    batches of one call spread over them (``backends.SessionPool``: the same batches, so the same scores; more
    throughput on long candidate lists where that wins: see the README's figures)."""
    from qadistill.backends import BiEncoderTorchBackend, OrtBackend, SessionPool, TorchBackend

    if not isinstance(name_or_path, (str, Path)):
        raise UserInputError(f"the model is {_a(name_or_path)}, not a name", "pass a zoo name, a built artifact, a model folder or a Hub id")
    if not str(name_or_path).strip():
        raise UserInputError("the model name is empty", "pass a zoo name, a built artifact, a model folder or a Hub id")
    _check_whole("batch_size", batch_size, 1, "e.g. batch_size=32")
    _check_whole("batch_tokens", batch_tokens, 1, "e.g. batch_tokens=4096 (or None)", optional=True)
    _check_whole("sessions", sessions, 1, "e.g. sessions=2 (one per core)")
    _check_whole("max_length", max_length, 8, "e.g. max_length=128 (or None: the model's own), as the CLI's --max-length", optional=True)
    _check_whole("threads", threads, 1, "e.g. threads=2 (or None: the library default)", optional=True)
    if threads is not None and threads > (os.cpu_count() or 1):
        warnings.warn(f"threads={threads} is more than this machine's {os.cpu_count()} CPUs: the threads share cores "
                      "(as `qadistill bench --threads` warns)", stacklevel=2)

    label, folder, kind, ml, arch = resolve_model(str(name_or_path), backend, registry)
    if max_length is not None:
        from qadistill.sources import check_max_length

        check_max_length(folder, max_length, "max_length")
        ml = max_length
    if sessions > 1:
        if not kind.startswith("onnx"):
            how = ("drop backend torch (auto serves its export) or use sessions=1" if backend == "torch" and ref_has_onnx(label, registry)
                   else f"export it first (`qadistill export {label} --quantize dynamic`) or use sessions=1")
            raise UserInputError(f"sessions={sessions} needs an ONNX model; '{label}' would run on PyTorch", how)
        pool = SessionPool(lambda t: OrtBackend(folder, ml, threads=t), sessions, threads)
        return Reranker(label, kind, pool.load(), batch_size, batch_tokens)
    if kind.startswith("onnx"):
        be = OrtBackend(folder, ml, threads=threads)
    elif arch == "bi-encoder":
        be = BiEncoderTorchBackend(folder, ml, threads=threads)
    else:
        be = TorchBackend(folder, ml, threads=threads)
    return Reranker(label, kind, be.load(), batch_size, batch_tokens)
