"""A damaged or edited model folder never gives a silently wrong number.

* ``write_checksums`` records the sha256 (and size) of every file of a built or pulled folder in
  ``qadistill_checksums.json`` (the same ``{relative path: sha256}`` map `zoo pull` records in the store);
  ``verify_checksums`` checks it on every load (a user's own folder has no manifest and is not checked).
* ``load_pretrained`` is the one way qadistill loads a transformers model from a folder for scoring or training: it
  verifies the checksums, then refuses weights that disagree with config.json (missing, unexpected or mis-shaped
  tensors) instead of letting transformers initialise or drop them with a warning.
* ``content_digest`` identifies a folder by the sha256 of its files (for cache keys), memoised per process by each
  file's (path, size, mtime, ctime, inode): a file rewritten in place changes its ctime even when size and mtime are
  put back.

Cost: sha256 runs at ~0.8 GB/s here: ~0.11 s for the 88 MB MiniLM-L6 folder (importing torch + transformers takes
several seconds), so every load verifies every file in full.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
from pathlib import Path

from qadistill.errors import ModelFolderError, QadistillError

MANIFEST = "qadistill_checksums.json"
FORMAT = 1
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json", "model.onnx")
SHOW = 3  # names shown per kind of disagreement
# Tensors qadistill adds fresh or drops on purpose, by kind of load (fnmatch patterns, also matched after a prefix):
ENCODER_FOR_STUDENT = {"allow_missing": ("pooler.*",), "allow_unexpected": ("classifier.*", "cls.*")}  # new pooler, own heads
ENCODER_POOLED_BY_US = {"allow_missing": ("pooler.*",), "allow_unexpected": ("pooler.*",)}  # bi-encoders: pooler unused

_digests: dict[tuple, str] = {}


def load_failure(folder: Path, what: str, exc: BaseException) -> ModelFolderError:
    """The error for a file of ``folder`` that a library could not load: ``what`` (e.g. "X: its tokenizer does not
    load") and the first line of the library's message."""
    msg = (str(exc).strip().splitlines() or [""])[0][:200]
    return ModelFolderError(f"{what}: {type(exc).__name__}: {msg}", damaged_hint(folder))


def damaged_hint(folder: Path) -> str:
    """What to do about a damaged folder: an export is made again from its source (or pulled again, where it came from
    the Hub), anything else re-pulled or rebuilt."""
    record = _export_record(folder)
    source, origin = record.get("source_name"), record.get("pulled_from")
    variant = record.get("variant")
    if isinstance(origin, str) and origin and isinstance(source, str) and source:
        return (f"{folder} is damaged or was edited: pull it again (`qadistill zoo pull {origin.partition('@')[0]} --name "
                f"{source}`), or remove it with `qadistill zoo remove {source}-{variant} --delete-files`")
    if isinstance(source, str) and source and isinstance(variant, str) and variant:
        from qadistill.variants import export_flags

        command = " ".join(["qadistill export", source, export_flags(variant, record), "--overwrite"]).replace("  ", " ")
        return (f"{folder} is damaged or was edited: export it again (`{command}`), or remove it with "
                f"`qadistill zoo remove {source}-{variant} --delete-files`")
    return (f"{folder} is damaged or was edited: re-pull it (`qadistill zoo pull ORG/NAME`), rebuild it, "
            "or remove it with `qadistill zoo remove NAME --delete-files`")


def _export_record(folder: Path) -> dict:
    """The folder's export record, or {} (none, or itself unreadable: the hint then stays general)."""
    try:
        record = json.loads((Path(folder) / "qadistill_export.json").read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    return record if isinstance(record, dict) else {}


# ---------------------------------------------------------------------------------------------------------------------
# hashes
# ---------------------------------------------------------------------------------------------------------------------
def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes (symlinks followed), computed once per process while the file is unchanged."""
    st = os.stat(path)
    key = (str(Path(path).absolute()), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)
    hit = _digests.get(key)
    if hit is None:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        hit = _digests[key] = h.hexdigest()
    return hit


SIDECAR_SUFFIX = ".sha256"


def sidecar_path(path: Path) -> Path:
    """Where a single file's sha256 record lives (``NAME.sha256`` beside it): for files outside a folder manifest, a
    training checkpoint or a cache shard."""
    path = Path(path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def sidecar_record(digest: str, path: Path) -> str:
    """The text of a file's sha256 record: the digest and the file's name, as ``sha256sum`` writes them (``sha256sum -c
    NAME.sha256`` checks it). The name makes a file copied in with its record under another name (another cache key)
    fail the check."""
    return f"{digest}  {Path(path).name}\n"


def sidecar_problem(path: Path, required: bool = False) -> str | None:
    """What is wrong with a file against the sha256 recorded beside it when it was written; None when they agree, or
    when there is no record and none is ``required`` (a checkpoint written before records existed). Cache files are
    derived data: they require their record (written before the file itself), so one without it — altered, or copied
    in — is computed again, never trusted. A record that names another file (a file copied or renamed with its record)
    is a problem; a record of the digest alone (written before records named their file) is read as before."""
    path = Path(path)
    side = sidecar_path(path)
    try:
        fields = side.read_text().strip().split(None, 1)
    except FileNotFoundError:
        return f"it has no {side.name} record of its sha256" if required else None
    except (OSError, UnicodeDecodeError) as exc:
        return f"its record {side.name} does not read ({exc})"
    want = fields[0] if fields else ""
    named = fields[1].lstrip("*") if len(fields) > 1 else path.name  # sha256sum's binary mode marks a name with "*"
    if named != path.name:
        return f"its record {side.name} is of another file, {named} (copied or renamed with it)"
    got = file_sha256(path)
    return None if got == want else f"its sha256 {got[:12]}… is not the {want[:12]}… recorded in {side.name} when it was written"


def write_recorded(path: Path, data: bytes) -> str:
    """Write one file atomically with its sha256 recorded beside it first (a stop between the two leaves a record
    without a file, which the next write of that name replaces); returns the sha256. Read back with
    ``sidecar_problem``."""
    from qadistill.fsutil import atomic_write_bytes, atomic_write_text

    digest = hashlib.sha256(data).hexdigest()
    atomic_write_text(sidecar_path(path), sidecar_record(digest, path))
    atomic_write_bytes(path, data)
    return digest


def drop_recorded(path: Path) -> None:
    """Delete a file and its sha256 record."""
    Path(path).unlink(missing_ok=True)
    sidecar_path(path).unlink(missing_ok=True)


def folder_files(folder: Path) -> list[Path]:
    """Every regular file under ``folder`` (sorted), except the checksum manifest itself."""
    folder = Path(folder)
    return [p for p in sorted(folder.rglob("*")) if p.is_file() and p != folder / MANIFEST]


def hash_files(folder: Path) -> dict[str, str]:
    """{relative path: sha256} for every file of ``folder`` except the manifest."""
    return {p.relative_to(folder).as_posix(): file_sha256(p) for p in folder_files(folder)}


def content_digest(folder: Path) -> str:
    """A content identity for a folder: the sha256 over its files' relative paths and sha256s (16 hex digits)."""
    h = hashlib.sha256()
    for rel, digest in hash_files(Path(folder)).items():
        h.update(f"{rel}:{digest}\n".encode())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------------------------------------------------------
# the manifest
# ---------------------------------------------------------------------------------------------------------------------
def write_checksums(folder: Path) -> dict[str, str]:
    """Record the sha256 and size of every file of ``folder`` in its manifest (atomically); returns {path: sha256}."""
    from qadistill.fsutil import atomic_write_text

    folder = Path(folder)
    files = hash_files(folder)
    sizes = {rel: (folder / rel).stat().st_size for rel in files}
    atomic_write_text(folder / MANIFEST, json.dumps({"format": FORMAT, "algorithm": "sha256", "files": files, "sizes": sizes}, indent=1))
    return files


def read_checksums(folder: Path) -> dict | None:
    """The manifest of ``folder``, None when it has none; a folder error when it is unreadable."""
    path = Path(folder) / MANIFEST
    if not path.exists():
        return None
    try:
        man = json.loads(path.read_text())
        if not isinstance(man.get("files"), dict) or man.get("algorithm") != "sha256":
            raise ValueError("no sha256 file list")
    except (ValueError, UnicodeDecodeError, AttributeError) as exc:
        raise ModelFolderError(f"{path} is unreadable ({exc})", damaged_hint(folder)) from None
    return man


def verify_checksums(folder: Path, hashes: bool = True) -> None:
    """Raise ``ModelFolderError`` naming the first recorded file that is missing, resized or whose sha256 differs
    (``hashes=False``: missing or resized only, without reading the files). Files the manifest does not list are not
    checked; a folder without a manifest (a user's own) passes."""
    folder = Path(folder)
    man = read_checksums(folder)
    if man is None:
        return
    sizes = man.get("sizes") or {}
    for rel, want in man["files"].items():
        p = folder / rel
        if not p.is_file():
            what = "is a folder where a file was recorded" if p.is_dir() else "is missing"
            raise ModelFolderError(f"{folder}: {rel} {what} (listed in {MANIFEST})", damaged_hint(folder))
        size = p.stat().st_size
        if rel in sizes and size != sizes[rel]:
            raise ModelFolderError(f"{folder}: {rel} is {size} bytes, {sizes[rel]} when recorded in {MANIFEST}", damaged_hint(folder))
        if not hashes:
            continue
        got = file_sha256(p)
        if got != want:
            raise ModelFolderError(f"{folder}: {rel} does not match its recorded sha256 ({got[:12]}… ≠ {want[:12]}…, {MANIFEST})",
                                   damaged_hint(folder))


def folder_problem(folder: Path, hashes: bool = True) -> str | None:
    """What is wrong with a recorded folder (``verify_checksums``'s message), None when nothing is."""
    try:
        verify_checksums(folder, hashes)
    except ModelFolderError as exc:
        return exc.message
    return None


# ---------------------------------------------------------------------------------------------------------------------
# loading transformers models
# ---------------------------------------------------------------------------------------------------------------------
def weights_file(folder: Path) -> str:
    return next((n for n in WEIGHT_FILES if (Path(folder) / n).exists()), "the weights file")


def _allowed(key: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(key, p) or fnmatch.fnmatchcase(key, "*." + p) for p in patterns)


def _names(keys: list[str]) -> str:
    return ", ".join(keys[:SHOW]) + (f", … ({len(keys)} in all)" if len(keys) > SHOW else "")


def safetensors_shapes(path: Path) -> dict[str, tuple]:
    """{tensor name: shape} from a safetensors file's header (8-byte length, then JSON), without reading the tensors."""
    import struct

    try:
        with open(path, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
    except (OSError, ValueError, struct.error):
        return {}
    return {k: tuple(v["shape"]) for k, v in header.items() if isinstance(v, dict) and "shape" in v}


def _mismatch(folder: Path, item, model_shapes: dict) -> str:
    """One shape disagreement: older transformers report (name, checkpoint shape, model shape), newer only the name."""
    if isinstance(item, (tuple, list)) and len(item) == 3:
        key, ckpt, want = item[0], tuple(item[1]), tuple(item[2])
    else:
        key, ckpt, want = str(item), safetensors_shapes(Path(folder) / "model.safetensors").get(str(item), "?"), model_shapes.get(str(item), "?")
    return f"{key} is {ckpt} in {weights_file(folder)} but {want} per config.json"


def loading_problems(folder: Path, info: dict, allow_missing: tuple[str, ...] = (), allow_unexpected: tuple[str, ...] = (),
                     model_shapes: dict | None = None) -> list[str]:
    """What disagrees between config.json and the weights, from ``from_pretrained``'s loading info."""
    w = weights_file(folder)
    # lists in transformers 4, sets in 5: sorted, so the message is the same on every run
    missing = sorted(k for k in info.get("missing_keys") or [] if not _allowed(k, allow_missing))
    unexpected = sorted(k for k in info.get("unexpected_keys") or [] if not _allowed(k, allow_unexpected))
    out = []
    if missing:
        out.append(f"missing from {w} (config.json expects them; they would be random): {_names(missing)}")
    if unexpected:
        out.append(f"unexpected in {w} (config.json has no place for them; they would be dropped): {_names(unexpected)}")
    mism = sorted(info.get("mismatched_keys") or [], key=str)
    if mism:
        shown = "; ".join(_mismatch(folder, m, model_shapes or {}) for m in mism[:SHOW])
        out.append(f"shape mismatch: {shown}" + (f" (… {len(mism)} in all)" if len(mism) > SHOW else ""))
    out += [str(m).splitlines()[0] for m in info.get("error_msgs") or [] if str(m).strip()]
    return out


class QuietTransformers:
    """transformers' own 'newly initialized' / 'not used' warnings and its per-load progress bars (transformers 5's
    "Loading weights" / "Writing model shards") are silenced: ``load_pretrained`` decides and reports."""

    def __enter__(self) -> None:
        from transformers.utils import logging

        self._level = logging.get_verbosity()
        self._bars = logging.is_progress_bar_enabled()
        logging.set_verbosity_error()
        logging.disable_progress_bar()

    def __exit__(self, *exc) -> None:
        from transformers.utils import logging

        logging.set_verbosity(self._level)
        if self._bars:
            logging.enable_progress_bar()


def load_pretrained(model_cls, folder: Path, allow_missing: tuple[str, ...] = (), allow_unexpected: tuple[str, ...] = (), **kwargs):
    """``model_cls.from_pretrained(folder, **kwargs)`` that raises ``ModelFolderError`` when the folder's checksums
    fail or its weights disagree with config.json. ``allow_missing`` / ``allow_unexpected``: fnmatch patterns (e.g.
    ``pooler.*``) of tensors qadistill initialises fresh or drops on purpose."""
    folder = Path(folder)
    verify_checksums(folder)
    try:
        with QuietTransformers():
            model, info = model_cls.from_pretrained(str(folder), output_loading_info=True, ignore_mismatched_sizes=True, **kwargs)
    except (QadistillError, ImportError, MemoryError):  # not the folder's fault
        raise
    except Exception as exc:  # a truncated or unreadable weights file, a config transformers cannot read
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ModelFolderError(f"{folder}: config.json and {weights_file(folder)} do not load: {type(exc).__name__}: {msg}",
                               damaged_hint(folder)) from None
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()} if info.get("mismatched_keys") else {}
    problems = loading_problems(folder, info, allow_missing, allow_unexpected, shapes)
    if problems:
        raise ModelFolderError(f"{folder}: config.json and {weights_file(folder)} disagree: " + " | ".join(problems), damaged_hint(folder))
    return model
