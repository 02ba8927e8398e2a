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

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from qadistill.errors import UnknownNameError, UserInputError

BACKENDS = ("auto", "torch", "onnx", "onnx-int8")


@dataclass(frozen=True)
class Ranked:
    """One ranked passage: its position in the input, its id (when given), text and score (a logit; higher is better)."""

    rank: int
    index: int
    score: float
    passage: str
    id: str | None = None


class Reranker:
    """A loaded relevance model. ``score`` and ``rank`` batch, sort by length and truncate internally."""

    def __init__(self, name: str, backend_name: str, backend, batch_size: int = 32) -> None:
        self.name = name
        self.backend_name = backend_name
        self._backend = backend
        self.batch_size = batch_size

    def __repr__(self) -> str:
        return f"Reranker({self.name!r}, backend={self.backend_name!r}, folder={str(self._backend.folder)!r})"

    def score(self, pairs: Iterable[tuple[str, str]]) -> list[float]:
        pairs = list(pairs)
        if not pairs:
            return []
        order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]) + len(pairs[i][1]))
        out = [0.0] * len(pairs)
        for s in range(0, len(order), self.batch_size):
            idx = order[s : s + self.batch_size]
            scores = self._backend.logits([pairs[i][0] for i in idx], [pairs[i][1] for i in idx])
            for i, v in zip(idx, scores):
                out[i] = float(v)
        return out

    def rank(self, query: str, passages: Sequence[str], top_k: int | None = None, ids: Sequence[str] | None = None) -> list[Ranked]:
        if not query or not query.strip():
            raise UserInputError("the query is empty", "pass a question, e.g. --query \"who wrote hamlet?\"")
        if not passages:
            raise UserInputError("no passages to rank", "pass passages one per line (a file or stdin)")
        scores = self.score([(query, p) for p in passages])
        order = sorted(range(len(passages)), key=lambda i: -scores[i])  # stable: ties keep input order
        if top_k is not None:
            order = order[:top_k]
        return [Ranked(r + 1, i, scores[i], passages[i], ids[i] if ids else None) for r, i in enumerate(order)]

    def close(self) -> None:
        self._backend.close()


def parity_trusted(parity: dict) -> bool:
    """Whether `auto` may serve an export: it passed its parity bound, and its logit error is small next to the spread
    of the model's own logits (else it reorders near-ties: the quickstart student's int8 put a wrong passage first)."""
    from qadistill.compress import ties_reordered

    return parity.get("ok", False) and not ties_reordered(parity.get("max_abs_diff", 0.0), parity.get("reference_std"))


def resolve_model(name_or_path: str, backend: str = "auto", registry=None) -> tuple[str, Path, str, int, str]:
    """(label, folder, backend, max_length, architecture) for a name, folder or Hub id."""
    import json

    from qadistill.recipes import HubSource, PrebuiltRecipe, TeacherRecipe
    from qadistill.sources import folder_architecture, resolve_hub, resolve_source

    if backend not in BACKENDS:
        raise UserInputError(f"backend {backend!r} is not one of {', '.join(BACKENDS)}", "use auto, torch, onnx or onnx-int8")
    if registry is None:
        from qadistill.registry import Registry
        from qadistill.store import Store

        registry = Registry(store=Store.open())
    p = Path(name_or_path).expanduser()
    if p.is_dir():
        if not (p / "config.json").exists():
            raise UserInputError(f"{p} is not a model folder (no config.json)", "point at a student, teacher or export folder")
        man = json.loads((p / "qadistill_export.json").read_text()) if (p / "qadistill_export.json").exists() else None
        arch = folder_architecture(p)
        if (p / "model.onnx").exists() and backend != "torch":
            kind = "onnx-int8" if man and man.get("variant", "").startswith("int8") else "onnx"
            return p.name, p, kind, int((man or {}).get("max_length", 128)), arch
        if backend in ("onnx", "onnx-int8"):
            raise UserInputError(f"{p} has no ONNX model", f"run `qadistill export {p} --quantize dynamic` first, or use --backend torch")
        return p.name, p, "torch", 128, arch
    try:
        e = registry.get(name_or_path)
    except UnknownNameError:
        if "/" in name_or_path:  # a Hub id, optionally @revision (validated before any request)
            from qadistill.hub import parse_repo_ref

            repo, rev = parse_repo_ref(name_or_path)
            folder = resolve_hub(HubSource(type="hub", repo_id=repo, revision=rev))
            return name_or_path, folder, "torch", 512, folder_architecture(folder)
        raise
    if e.kind == "export":
        return resolve_model(str(e.path), backend if backend != "auto" else "auto", registry)
    if e.recipe is not None:
        if not isinstance(e.recipe, (TeacherRecipe, PrebuiltRecipe)):
            raise UserInputError(f"'{e.name}' is a {e.kind} recipe, not a model", "use a teacher, a built student or a folder")
        if isinstance(e.recipe, PrebuiltRecipe) or e.recipe.source is not None:
            folder, ml, arch = resolve_source(e.recipe.source), e.recipe.max_length, e.recipe.architecture
        else:
            from qadistill.teachers import built_teacher_folder

            folder, ml, arch = built_teacher_folder(e.name, registry), e.recipe.max_length, "cross-encoder"
    else:
        folder, ml, arch = Path(e.path), int(e.artifact.manifest.get("max_length", 128)), "cross-encoder"
    exports = registry.exports(e.name) if arch == "cross-encoder" else {}
    ok = lambda a: a is not None and parity_trusted(a.manifest.get("parity", {}))  # noqa: E731
    if backend == "auto":
        for v, kind in (("int8-dynamic", "onnx-int8"), ("int8-static", "onnx-int8"), ("onnx", "onnx")):
            if ok(exports.get(v)):
                return e.name, Path(exports[v].path), kind, ml, arch
        return e.name, folder, "torch", ml, arch
    if backend == "torch":
        return e.name, folder, "torch", ml, arch
    want = ("int8-dynamic", "int8-static") if backend == "onnx-int8" else ("onnx", "optimized")
    for v in want:
        if v in exports:
            return e.name, Path(exports[v].path), backend, ml, arch
    raise UserInputError(f"'{e.name}' has no {backend} variant", f"run `qadistill export {e.name} --quantize dynamic`, or use --backend torch")



def load(name_or_path: str, backend: str = "auto", max_length: int | None = None, threads: int | None = None,
         batch_size: int = 32, registry=None) -> Reranker:
    """Load a model for scoring and ranking (see the module docstring)."""
    from qadistill.backends import BiEncoderTorchBackend, OrtBackend, TorchBackend

    label, folder, kind, ml, arch = resolve_model(name_or_path, backend, registry)
    ml = max_length or ml
    if kind.startswith("onnx"):
        be = OrtBackend(folder, ml, threads=threads)
    elif arch == "bi-encoder":
        be = BiEncoderTorchBackend(folder, ml, threads=threads)
    else:
        be = TorchBackend(folder, ml, threads=threads)
    return Reranker(label, kind, be.load(), batch_size)
