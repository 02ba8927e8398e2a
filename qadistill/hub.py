"""Prebuilt students from and to the Hugging Face Hub: `zoo pull` and `zoo push`.

Security: safetensors only (a pickle ``.bin`` is never downloaded unless ``allow_pickle``), ``trust_remote_code`` is
never enabled, tokens are never printed or logged, and repo ids and revisions are validated before any request.
The endpoint follows ``HF_ENDPOINT`` at call time (so tests can point it at a local server) and offline mode follows
``HF_HUB_OFFLINE``: a repo in the local HF cache is pulled without the network.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from qadistill import __version__, paths
from qadistill.errors import ModelFolderError, QadistillError, SourceError, UserInputError
from qadistill.fsutil import atomic_write_text, replace_dir
from qadistill.integrity import MANIFEST, file_sha256, hash_files, write_checksums
from qadistill.modelref import Variant, export_manifest
from qadistill.cards import push_card  # noqa: F401  (re-exported)
from qadistill.recipes import validate_repo_id, validate_revision

SAFE_PATTERNS = ["*.json", "*.safetensors", "*.txt", "tokenizer*", "README.md", "*.model", "onnx/*.onnx", "onnx/*.json", "*.onnx", "recipe.toml"]


def parse_repo_ref(ref: str) -> tuple[str, str]:
    """'org/name[@revision]' → (repo_id, revision), validated before any request."""
    repo, at, rev = ref.partition("@")
    if at and not rev.strip():  # "org/name@": a revision was meant and is missing, not "main"
        raise UserInputError(f"'{ref}' names no revision after '@'", "use ORG/NAME (the main branch) or ORG/NAME@REVISION (a branch, tag or commit)")
    try:
        validate_repo_id(repo)
        validate_revision(rev or "main")
    except ValueError as exc:
        raise UserInputError(str(exc), "use ORG/NAME or ORG/NAME@REVISION (a branch, tag or commit)") from None
    if "/" not in repo:
        raise UserInputError(f"'{repo}' has no namespace", "use ORG/NAME, e.g. cross-encoder/ms-marco-MiniLM-L-6-v2")
    return repo, rev or "main"


def endpoint() -> str | None:
    return os.environ.get("HF_ENDPOINT") or None


def sync_hf_env() -> None:
    """huggingface_hub reads HF_HUB_OFFLINE once, at import; follow the environment as it is now, so a long-lived
    process (or a test) that changes it is obeyed. The cache folder and endpoint are passed explicitly instead."""
    from huggingface_hub import constants

    constants.HF_HUB_OFFLINE = paths.hf_offline()


def git_blob_sha1(p: Path) -> str:
    """Git's id of a file's content: what the HF cache names a small (non-LFS) file's blob after."""
    h = hashlib.sha1(f"blob {p.stat().st_size}\0".encode())
    with open(p, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_cache_blobs(folder: Path, files: dict[str, str]) -> None:
    """The HF cache names each blob after its content (sha256 for LFS files, the git sha1 for others): a snapshot file
    whose content no longer matches its blob's name was changed after download, and must not be recorded as good."""
    for rel, digest in files.items():
        p = Path(folder) / rel
        if not p.is_symlink():
            continue
        blob = Path(os.path.realpath(p)).name
        if not all(c in "0123456789abcdef" for c in blob) or len(blob) not in (40, 64):
            continue
        got = digest if len(blob) == 64 else git_blob_sha1(p)
        if got != blob:
            raise ModelFolderError(f"{folder}: {rel} no longer matches its HF cache blob {blob[:12]}… (changed after download)",
                                   f"delete {Path(os.path.realpath(p)).parent.parent} and pull again with the Hub reachable")


def artifact_name_for(repo_id: str) -> str:
    return repo_id.split("/")[-1].lower().replace("_", "-")


@dataclass
class PullResult:
    name: str
    repo_id: str
    revision: str
    commit: str | None
    path: str
    files: dict  # relative path -> sha256
    card_metrics: list[dict]
    offline: bool


def pull(ref: str, allow_pickle: bool = False, token: str | None = None) -> PullResult:
    """Download (or find in the local HF cache) a model repo, verify that it loads, hash every file."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    repo_id, revision = parse_repo_ref(ref)
    sync_hf_env()
    offline = paths.hf_offline()
    patterns = SAFE_PATTERNS + (["*.bin"] if allow_pickle else [])
    try:
        folder = Path(snapshot_download(repo_id, revision=revision, allow_patterns=patterns, local_files_only=offline,
                                        endpoint=endpoint(), token=token, cache_dir=str(paths.hf_hub_cache())))
    except LocalEntryNotFoundError:
        from qadistill.sources import hub_unreachable

        raise hub_unreachable(repo_id, revision, "or copy the model into the HF cache") from None
    except RepositoryNotFoundError:
        raise UserInputError(f"{repo_id} does not exist on the Hub, or is private/gated", "check the id; log in with `hf auth login` for private repos") from None
    except RevisionNotFoundError:
        raise UserInputError(f"{repo_id} has no revision '{revision}'", "use an existing branch, tag or commit") from None
    except Exception as exc:
        raise SourceError(f"cannot download {repo_id}@{revision}: {type(exc).__name__}", "check your network and try again; downloads resume") from None
    weights = list(folder.glob("*.safetensors")) + list(folder.rglob("*.onnx"))
    if not weights:
        if allow_pickle and list(folder.glob("*.bin")):
            weights = list(folder.glob("*.bin"))
        else:
            raise UserInputError(f"{repo_id}@{revision} has no safetensors or ONNX weights",
                                 "qadistill never unpickles Hub files by default; pass --allow-pickle if you trust this repo")
    verify_folder(folder)
    files = hash_files(folder)
    check_cache_blobs(folder, files)
    try:
        write_checksums(folder)  # verified on every load from now on
    except OSError:  # a read-only shared cache: the store's manifest still holds the hashes
        pass
    commit = folder.name if len(folder.name) == 40 else None
    return PullResult(artifact_name_for(repo_id), repo_id, revision, commit, str(folder), files, card_metrics(folder), offline)


def pulled_name(registry, repo_id: str, name: str | None = None) -> tuple[str, str | None]:
    """(zoo name, prebuilt recipe) a pull of ``repo_id`` registers: ``name``, else RECIPE-pulled when a prebuilt recipe
    points at this repo, else the repo's own name. A name the zoo already gives to something else (a recipe, a built
    model, a pull of another repo) is refused before any download: a pull never takes a name over."""
    from qadistill.errors import UnknownNameError
    from qadistill.recipes import PrebuiltRecipe

    recipe = next((e.name for e in registry.entries() if isinstance(e.recipe, PrebuiltRecipe)
                   and e.recipe.source.repo_id.lower() == repo_id.lower()), None)
    art = name or (f"{recipe}-pulled" if recipe else artifact_name_for(repo_id))
    try:
        e = registry.get(art)
    except UnknownNameError:
        return art, recipe
    art_manifest = getattr(e.artifact, "manifest", None) or {}
    if str(art_manifest.get("repo_id", "")).lower() == repo_id.lower():
        return art, recipe  # pulled from this repo before: an update
    what = f"a {e.origin} {e.kind} recipe" if e.artifact is None else f"the {e.kind} in {e.path}"
    raise UserInputError(f"'{art}' is already {what}: pulling {repo_id} under that name would replace it",
                         f"pass --name NEW to register the pull under another name, e.g. --name {art}-hub")


def register_pulled(registry, res: PullResult, name: str | None = None) -> "PulledModel":
    """Register a pulled repo in the zoo as a student-model artifact (its files' digests, revision, commit, card
    metrics, max length: the one it was built for where its metrics.json records it, as a qadistill push uploads it,
    else its config.json's positions up to 512), and each ONNX variant a qadistill push uploaded with its export record
    as an export of it (``pulled_variants``, ``register_pulled_variants``); returns what it registered (``PulledModel``;
    the name: ``pulled_name``)."""
    from qadistill.modelref import recorded_max_length

    art, recipe = pulled_name(registry, res.repo_id, name)
    # registering the model again unregisters its exports (the store's rule: they may hold other weights); the copies
    # an earlier pull made go with their folders, the exports made here stay when the commit is the same
    before = registry.store.artifact(art) if registry.store is not None else None
    exports_before = registry.derived_exports(art) if before is not None else []
    copies_before = [a for a in exports_before if (a.manifest or {}).get("pulled_from")]
    local_before = [a for a in exports_before if not (a.manifest or {}).get("pulled_from")]
    folder = Path(res.path)
    origin = f"{res.repo_id}@{res.commit or res.revision}"
    found = pulled_variants(registry, art, folder, origin)  # refused here: nothing registered yet
    cfg = json.loads((folder / "config.json").read_text())
    max_length = recorded_max_length(folder, {}) or min(int(cfg.get("max_position_embeddings", 512)), 512)
    registry.add_artifact(art, "student-model", res.path, recipe=recipe, manifest={
        "repo_id": res.repo_id, "revision": res.revision, "commit": res.commit, "sha256": res.files,
        "max_length": max_length, "card_metrics": res.card_metrics, "parameters": _parameters(folder),
        "description": f"pulled from {res.repo_id}@{res.revision}"})
    variants = register_pulled_variants(registry, art, found, origin, max_length)
    for a in copies_before:  # a copy not made again goes
        if a.name not in variants and Path(a.path).is_dir() and paths.under_home(Path(a.path)):
            shutil.rmtree(a.path, ignore_errors=True)
    same = before is not None and res.commit is not None and (before.manifest or {}).get("commit") == res.commit
    dropped = []
    for a in local_before:
        if a.name in variants:
            continue
        if same and Path(a.path).exists():  # the same weights: an export made from them still is one
            registry.store.add_artifact(a.name, a.kind, a.path, recipe=a.recipe, parent=a.parent, run_id=a.run_id,
                                        manifest=a.manifest)
        else:
            dropped.append(a)
    from qadistill.variants import export_flags

    again = list(dict.fromkeys(" ".join(["qadistill export", art, export_flags((a.manifest or {}).get("variant", ""), a.manifest or {}),
                                         "--overwrite"]).replace("  ", " ") for a in dropped))
    bare = f"qadistill export {art} --overwrite"
    if len(again) > 1 and bare in again:  # every export makes the plain ONNX variant too
        again.remove(bare)
    return PulledModel(art, variants, [a.name for a in dropped], again)


@dataclass(frozen=True)
class PulledModel:
    """What a pull registered: the model's zoo name, its ONNX variants', and the exports made here from the weights
    it replaced (another revision's), which are unregistered and should be exported again."""

    name: str
    variants: list[str]
    unregistered: list[str]
    export_again: list[str]  # the commands that make them again from the new weights


def _parameters(folder: Path) -> int | None:
    """The parameter count of a folder's model.safetensors, from its header (None without one): what `zoo list`
    shows for a pulled model, which has no recipe to say it."""
    import math

    from qadistill.integrity import safetensors_shapes

    weights = folder / "model.safetensors"
    if not weights.is_file():
        return None
    try:
        shapes = safetensors_shapes(weights)  # {} when the header does not read
        return sum(math.prod(shape) for shape in shapes.values()) or None
    except (TypeError, ValueError):  # a header of odd shapes: the count is unknown, not an error of the pull
        return None


# A pushed variant's export record sits beside its file under onnx/: model_int8_dynamic.onnx ->
# model_int8_dynamic.qadistill_export.json (its parity, max length and ONNX Runtime settings, as export measured them)
EXPORT_RECORD_SUFFIX = ".qadistill_export.json"
# the ONNX Runtime session entries a record may set (those export writes): a downloaded record sets nothing else
HUB_SESSION_KEYS = {"session.set_denormal_as_zero"}
HUB_DISABLED_OPTIMIZERS = {"SkipLayerNormFusion"}


def hub_record_name(v: Variant) -> str:
    return v.hub_file[: -len(".onnx")] + EXPORT_RECORD_SUFFIX


def pulled_variants(registry, art: str, folder: Path, origin: str) -> list[tuple[Variant, Path, dict]]:
    """(variant, its ONNX file, its export record) of each variant under the pulled ``folder``'s onnx/ that has its
    export record (another tool's ONNX files, without one, are left to the folder); a record that does not read is a
    SourceError, and a name ART-VARIANT the zoo gives to a model that is not ``art``'s export is refused, before
    anything is registered or copied."""
    onnx = folder / "onnx"
    found = []
    for v in Variant:
        rec_file, model = onnx / hub_record_name(v), onnx / v.hub_file
        if not rec_file.is_file():
            continue
        if not model.is_file():
            raise SourceError(f"{origin}: {rec_file.name} records a variant whose file onnx/{v.hub_file} is not in the repo",
                              "the repo is damaged: ask its publisher to push it again")
        try:
            rec = json.loads(rec_file.read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            raise SourceError(f"{origin}: {rec_file.name} is not a JSON export record ({exc})",
                              "the repo is damaged: ask its publisher to push it again") from None
        if not isinstance(rec, dict) or not isinstance(rec.get("parity"), dict):
            raise SourceError(f"{origin}: {rec_file.name} has no parity record", "the repo is damaged: ask its publisher to push it again")
        if "file_sha256" in rec and rec["file_sha256"] != file_sha256(model):
            raise SourceError(f"{origin}: onnx/{v.hub_file} is not the file its export record was made for (sha256 differs: "
                              "truncated or replaced)", "the repo is damaged: ask its publisher to push it again")
        other = registry.store.artifact(f"{art}-{v.value}") if registry.store is not None else None
        if other is not None and other.parent != art:
            raise UserInputError(f"'{art}-{v.value}' is already the {other.kind} in {other.path}: the pull's {v.value} "
                                 "variant would replace it", "pass --name NEW to register the pull under another name")
        found.append((v, model, rec))
    return found


def register_pulled_variants(registry, art: str, found: list[tuple[Variant, Path, dict]], origin: str,
                             max_length: int) -> list[str]:
    """Each of ``found`` (``pulled_variants``) is put in an export folder of its own under the artifacts folder
    (model.onnx, the config and tokenizer files beside it, its record) and registered as ART-VARIANT, an export of
    ``art``: served as a local export is (``auto`` by its recorded parity, measured by the publisher)."""
    from qadistill.compress import _mkdir, folder_size
    from qadistill.modelref import EXPORT_MANIFEST

    names = []
    for v, model, rec in found:
        session = rec.get("ort_session") if isinstance(rec.get("ort_session"), dict) else {}
        session = {"config": {k: str(x) for k, x in (session.get("config") or {}).items() if k in HUB_SESSION_KEYS},
                   "disabled_optimizers": [o for o in session.get("disabled_optimizers") or [] if o in HUB_DISABLED_OPTIMIZERS]}
        name = f"{art}-{v.value}"
        final = paths.artifacts_dir() / name
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=_mkdir(final.parent)))
        try:
            shutil.copy2(model, tmp / "model.onnx")
            for f in model.parent.iterdir():  # the config and tokenizer files push put beside the variants
                if f.is_file() and f.suffix != ".onnx" and not f.name.endswith(EXPORT_RECORD_SUFFIX) and f.name != MANIFEST:
                    shutil.copy2(f, tmp / f.name)
            man = {"qadistill_version": rec.get("qadistill_version"), "source_name": art, "variant": v.value,
                   "file_name": "model.onnx", "max_length": max_length, "parity": rec["parity"], "pulled_from": origin,
                   **({"ort_session": session} if session["config"] or session["disabled_optimizers"] else {})}
            man["size_bytes"] = folder_size(tmp)
            atomic_write_text(tmp / EXPORT_MANIFEST, json.dumps(man, indent=2))
            write_checksums(tmp)
            replace_dir(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        registry.add_artifact(name, "export", final, recipe=art, parent=art, manifest={
            "variant": v.value, "size_bytes": man["size_bytes"], "parity": man["parity"], "max_length": max_length,
            "pulled_from": origin})
        names.append(name)
    return names


def verify_folder(folder: Path) -> None:
    """Config and tokenizer load with transformers (trust_remote_code off)."""
    from transformers import AutoConfig, AutoTokenizer

    try:
        AutoConfig.from_pretrained(str(folder), trust_remote_code=False)
        AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)
    except Exception as exc:
        raise SourceError(f"{folder} does not load: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                          "the repo needs a config.json and tokenizer files; custom code is never run") from None


def card_metrics(folder: Path) -> list[dict]:
    """Metrics from the model card's model-index (as published by the authors, not measured here)."""
    readme = Path(folder) / "README.md"
    if not readme.exists():
        return []
    from huggingface_hub import ModelCard

    try:
        card = ModelCard.load(str(readme))
    except Exception:
        return []
    out = []
    for res in getattr(card.data, "eval_results", None) or []:
        out.append({"dataset": res.dataset_name or res.dataset_type, "split": res.dataset_split, "metric": res.metric_type,
                    "value": res.metric_value, "source": "model card (published)"})
    return out


# ---------------------------------------------------------------------------------------------------------------------
# push
# ---------------------------------------------------------------------------------------------------------------------
ONNX_NAMES = {v.value: v.hub_file for v in Variant}


STAGED = ".qadistill-staged"  # marks a folder stage_for_push wrote (never uploaded): the only kind it replaces


def check_push_dest(dest: Path, own: bool = False) -> None:
    """The staging folder must be new, empty, or one an earlier push staged: anything else (a user's folder, the
    qadistill home, a built model) is refused before any file moves, never replaced. ``own``: the default folder under
    $QADISTILL_HOME/push, which only push writes (also before the marker existed)."""
    from qadistill.fsutil import check_can_create

    dest = Path(dest)
    check_can_create(dest, "--out", "pick a new or empty folder you can write to")
    if not own and dest.is_dir() and any(dest.iterdir()) and not (dest / STAGED).is_file():
        raise UserInputError(f"--out {dest} holds files push did not stage there: staging would replace them",
                             "pick a new or empty folder")


def check_pushable(name: str, folder: Path, exports: list) -> None:
    """The model and each ONNX variant match the checksums recorded when they were built: a damaged file is named
    here, never uploaded with fresh checksums that would hide the damage."""
    from qadistill.integrity import verify_checksums

    for what in [Path(folder), *(Path(a.path) for a in exports)]:
        verify_checksums(what)
    if not (Path(folder) / "metrics.json").is_file():
        raise ModelFolderError(f"{folder}: metrics.json is missing, so the card would have no measured results",
                               f"rebuild '{name}' (its folder is damaged), then push it")


def stage_for_push(name: str, folder: Path, exports: list, dest: Path, repo_id: str, own_dest: bool = False) -> Path:
    """Write the exact folder that would be uploaded: the PyTorch model at the root, ONNX variants under onnx/, a model
    card with Hub metadata (library, pipeline_tag, datasets, base models, model-index), metrics.json and recipe.toml."""
    folder = Path(folder)
    check_push_dest(dest, own_dest)
    check_pushable(name, folder, exports)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=_mk(dest.parent)))
    try:
        for f in folder.iterdir():
            if f.is_file() and f.suffix != ".bin" and f.name not in ("README.md", MANIFEST):
                shutil.copy2(f, tmp / f.name)
        variants = []
        if exports:
            (tmp / "onnx").mkdir()
            for a in exports:
                v = a.manifest.get("variant")
                src = Path(a.path) / "model.onnx"
                if v in ONNX_NAMES and src.exists():
                    shutil.copy2(src, tmp / "onnx" / ONNX_NAMES[v])
                    # its export record beside it (parity, ONNX Runtime settings), so a pull can serve it as built;
                    # the source's local path stays here
                    record = {k: x for k, x in export_manifest(Path(a.path)).items() if k not in ("source", "file_name")}
                    record["file_sha256"] = file_sha256(src)  # a pull checks the file against it
                    atomic_write_text(tmp / "onnx" / hub_record_name(Variant(v)), json.dumps(record, indent=2))
                    variants.append({"variant": v, "file": f"onnx/{ONNX_NAMES[v]}", **{k: a.manifest.get(k) for k in ("size_bytes", "parity", "preset", "level")}})
            for extra in ("config.json",):
                if (tmp / extra).exists():
                    shutil.copy2(tmp / extra, tmp / "onnx" / extra)
            for tf in folder.glob("tokenizer*"):
                shutil.copy2(tf, tmp / "onnx" / tf.name)
            for tf in ("vocab.txt", "special_tokens_map.json"):
                if (folder / tf).exists():
                    shutil.copy2(folder / tf, tmp / "onnx" / tf)
        metrics = json.loads((folder / "metrics.json").read_text()) if (folder / "metrics.json").exists() else {}
        atomic_write_text(tmp / "README.md", push_card(name, repo_id, metrics, variants, folder))
        write_checksums(tmp)
        (tmp / STAGED).write_text("staged by `qadistill zoo push`; not uploaded\n")
        replace_dir(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def push(staged: Path, repo_id: str, private: bool, token: str | None) -> str:
    from huggingface_hub import HfApi

    sync_hf_env()
    api = HfApi(endpoint=endpoint(), token=token, library_name="qadistill", library_version=__version__)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        info = api.upload_folder(folder_path=str(staged), repo_id=repo_id, repo_type="model", ignore_patterns=[STAGED],
                                 commit_message=f"Upload {repo_id.split('/')[-1]} with qadistill {__version__}")
    except Exception as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        msg = redact(msg, token)
        raise QadistillError(f"upload to {repo_id} failed: {type(exc).__name__}: {msg}",
                             "check the repo id, your token's write access (`hf auth login`) and the network") from None
    return getattr(info, "commit_url", None) or str(info)


def redact(text: str, secret: str | None) -> str:
    """``text`` with each whole occurrence of ``secret`` (a token) replaced by ***; a short secret inside a longer
    word is left alone, so the message stays readable."""
    import re

    if not secret:
        return text
    return re.sub(rf"(?<![A-Za-z0-9_]){re.escape(secret)}(?![A-Za-z0-9_])", "***", text)


def _mk(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p
