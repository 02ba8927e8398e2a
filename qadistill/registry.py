"""The zoo: built-in recipes (``zoo/``), the user's recipes (``$QADISTILL_HOME/zoo``) and built artifacts (the store).

Built-ins and user recipes go through the same loader and validation. Names are unique across all three; an unknown
name raises ``UnknownNameError`` with close matches. A user recipe that does not load is kept aside as a problem (its
file stem is its name): asking for that name raises its RecipeError, everything else works, `zoo remove` deletes it.
A built-in recipe that does not load is a bug in qadistill and stays an error.
"""

from __future__ import annotations

import difflib
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from qadistill import paths
from qadistill.errors import NameConflictError, QadistillError, RecipeError, UnknownNameError, UserInputError
from qadistill.fsutil import atomic_write_bytes
from qadistill.modelref import ExportRef, ModelRef, export_manifest, recorded_max_length
from qadistill.recipes import (
    LocalSource,
    PipelineRecipe,
    PrebuiltRecipe,
    StudentRecipe,
    TeacherRecipe,
    TruncateInit,
    ConfigInit,
    load_recipe,
)

Recipe = TeacherRecipe | StudentRecipe | PipelineRecipe | PrebuiltRecipe


def builtin_zoo_dir() -> Path:
    """Built-in recipes: ``qadistill/_zoo`` inside a wheel, ``zoo/`` at the top of a source checkout."""
    here = Path(__file__).resolve().parent
    for cand in (here / "_zoo", here.parent / "zoo"):
        if cand.is_dir():
            return cand
    return here / "_zoo"


@dataclass(frozen=True)
class Entry:
    """One name in the zoo."""

    name: str
    kind: str  # teacher | student | pipeline | artifact kinds (student-model, export, teacher-model) | broken (removed)
    origin: str  # builtin | user | artifact
    path: Path  # the recipe file, or the artifact folder
    recipe: Recipe | None = None
    artifact: object | None = None  # store.Artifact
    extra: dict = field(default_factory=dict)


class Registry:
    def __init__(self, builtin_dir: Path | None = None, user_dir: Path | None = None, store=None) -> None:
        self.builtin_dir = Path(builtin_dir) if builtin_dir else builtin_zoo_dir()
        self.user_dir = Path(user_dir) if user_dir else paths.user_zoo_dir()
        self._store = store
        self._entries: dict[str, Entry] | None = None
        self._broken: dict[str, RecipeError] = {}  # user recipes that do not load, by file stem

    # -- the store (runs, artifacts, results) ---------------------------------------------------------------------------
    @property
    def store(self):
        """The results store (``qadistill.store.Store``) behind the built artifacts, or None for recipes only."""
        return self._store

    def artifacts(self, recipe: str | None = None) -> list:
        """Built artifacts (all, or those made from / derived from ``recipe``); [] without a store."""
        return self._store.artifacts(recipe=recipe) if self._store is not None else []

    def exports(self, name: str) -> dict:
        """The export artifacts of a model whose folder still exists, by variant (the last one built wins)."""
        return {a.manifest.get("variant"): a for a in self.artifacts(recipe=name) if a.kind == "export" and Path(a.path).exists()}

    def add_artifact(self, name: str, kind: str, path: Path | str, **kw) -> None:
        """Register a built folder in the store (see ``Store.add_artifact``); the next lookup sees it."""
        self._store.add_artifact(name, kind, path, **kw)
        self._entries = None

    # -- names to models ------------------------------------------------------------------------------------------------
    def resolve(self, name_or_folder: str, use: str = "use a teacher, a built student or a folder",
                recipes: tuple[str, ...] = ("teacher", "prebuilt"), hub: bool = False,
                model_folders_only: bool = False) -> ModelRef:
        """What a model argument means: an existing folder (as is; with ``model_folders_only`` only one that has a
        config.json), a zoo name (a recipe of one of the ``recipes`` kinds, whose weights are resolved; or a built
        artifact) or, with ``hub``, a Hub id ``org/name[@revision]``. Any other recipe is an error whose hint is
        ``use`` (what the command accepts)."""
        if not str(name_or_folder).strip():
            raise UserInputError("the model name is empty", use)
        p = Path(name_or_folder).expanduser()
        if p.is_dir() and (not model_folders_only or (p / "config.json").exists()):
            return self._folder_ref(p)
        if str(name_or_folder).startswith(("/", "./", "../", "~")) and not p.exists():  # a path, not a name or Hub id
            raise UserInputError(f"no such folder: {p}", "check the path (a model folder holds config.json), or pass a zoo name")
        try:
            e = self.get(name_or_folder)
        except UnknownNameError:
            if p.is_file():  # not a name: a weights file or a README given for the folder around it
                raise UserInputError(f"{p} is a file, not a model folder",
                                     f"pass the folder that holds config.json (e.g. {p.parent}), or a zoo name") from None
            if hub and "/" in name_or_folder:
                return self._hub_ref(name_or_folder)
            raise
        if e.recipe is None:
            return self._artifact_ref(e)
        if e.kind not in recipes:
            raise UserInputError(f"'{e.name}' is a {e.kind} recipe, not a model", use)
        return self._recipe_ref(e)

    def built_teacher(self, name: str) -> Path:
        """The folder `qadistill teach NAME` built last (that still exists)."""
        folder = self.teacher_build(name)
        if folder is None:
            raise QadistillError(f"teacher '{name}' has not been built yet", f"run `qadistill teach {name} --data wikiqa`")
        return folder

    def teacher_build(self, name: str) -> Path | None:
        """``built_teacher``'s folder, or None when NAME has no build (that still exists)."""
        arts = [a for a in self.artifacts(recipe=name) if a.kind == "teacher-model" and Path(a.path).exists()]
        return Path(arts[-1].path) if arts else None

    def _exports_of(self, name: str) -> tuple[ExportRef, ...]:
        return tuple(ExportRef(a.name, a.manifest.get("variant"), Path(a.path), a.manifest.get("parity") or {},
                               a.manifest.get("max_length")) for a in self.artifacts(recipe=name) if a.kind == "export")

    @staticmethod
    def _folder_ref(p: Path) -> ModelRef:
        man = export_manifest(p)
        return ModelRef(p.name, p, "folder", None, recorded_max_length(p, man), variant=man.get("variant"), parent=man.get("source_name"))

    @staticmethod
    def _hub_ref(ref: str) -> ModelRef:
        from qadistill.hub import parse_repo_ref
        from qadistill.recipes import HubSource
        from qadistill.sources import folder_architecture, resolve_hub

        repo, rev = parse_repo_ref(ref)  # validated before any request
        folder = resolve_hub(HubSource(type="hub", repo_id=repo, revision=rev))
        return ModelRef(ref, folder, "hub", folder_architecture(folder), None)

    def _artifact_ref(self, e: Entry) -> ModelRef:
        from qadistill.errors import ModelFolderError
        from qadistill.integrity import MANIFEST, damaged_hint

        man = e.artifact.manifest
        if man.get("checksummed") and Path(e.path).is_dir() and not (Path(e.path) / MANIFEST).is_file():
            # without its manifest no file of the folder would be checked: a damaged weight file would be served
            raise ModelFolderError(f"{e.path}: {MANIFEST} is missing (it was there when '{e.name}' was registered), so "
                                   "its files cannot be checked", damaged_hint(Path(e.path)))
        ml = man.get("max_length")
        if e.kind == "export":
            return ModelRef(e.name, Path(e.path), "export", "cross-encoder", ml, variant=man.get("variant"),
                            parent=e.artifact.parent)
        digest = man.get("content_digest")
        return ModelRef(e.name, Path(e.path), e.kind, "cross-encoder", ml, self._exports_of(e.name),
                        content_hash=digest if isinstance(digest, str) else None)

    def _recipe_ref(self, e: Entry) -> ModelRef:
        from qadistill.sources import resolve_source

        r = e.recipe
        if isinstance(r, PrebuiltRecipe) or r.source is not None:
            folder, arch = resolve_source(r.source), r.architecture
        else:
            folder, arch = self.built_teacher(e.name), "cross-encoder"  # `teach` builds cross-encoders only
        exports = self._exports_of(e.name) if arch == "cross-encoder" else ()
        return ModelRef(e.name, folder, e.kind, arch, r.max_length, exports, recipe=r)

    # -- loading --------------------------------------------------------------------------------------------------------
    def _load(self) -> dict[str, Entry]:
        if self._entries is not None:
            return self._entries
        entries: dict[str, Entry] = {}
        broken: dict[str, RecipeError] = {}
        for origin, folder in (("builtin", self.builtin_dir), ("user", self.user_dir)):
            if not folder.is_dir():
                continue
            for f in sorted(folder.glob("*.toml")):
                try:
                    recipe = load_recipe(f)
                except RecipeError as exc:
                    if origin == "builtin":
                        raise
                    broken[f.stem] = exc
                    continue
                if recipe.name in entries:
                    other = entries[recipe.name].path
                    raise RecipeError(f, "name", f"'{recipe.name}' is already defined in {other}", "rename one of them")
                entries[recipe.name] = Entry(recipe.name, recipe.kind, origin, f, recipe=recipe)
        if self._store is not None:
            for art in self._store.artifacts():
                if art.name not in entries:
                    entries[art.name] = Entry(art.name, art.kind, "artifact", Path(art.path), artifact=art)
        self._entries, self._broken = entries, broken
        return entries

    def problems(self) -> list[tuple[Path, str]]:
        """User recipes that do not load: (file, what is wrong). They are left out of every listing."""
        self._load()
        return [(Path(exc.path), exc.message) for exc in self._broken.values()]

    def names(self) -> list[str]:
        return list(self._load())

    def entries(self) -> list[Entry]:
        return list(self._load().values())

    def get(self, name: str, kind: str | None = None) -> Entry:
        entries = self._load()
        e = entries.get(name)
        if e is None and name in self._broken:
            exc = self._broken[name]
            raise RecipeError(exc.path, exc.field, exc.problem, f"fix that file, or remove it with `qadistill zoo remove {name}`")
        if e is None or (kind and e.kind != kind):
            pool = [n for n, x in entries.items() if not kind or x.kind == kind]
            close = difflib.get_close_matches(name, pool, n=3, cutoff=0.5)
            close += [n for n in pool if name.lower() in n and n not in close]
            actual = None if e is None else (f"a built {e.kind}" if e.recipe is None else f"a {e.kind} recipe")
            raise UnknownNameError(name, kind or "model", close[:3], actual)
        return e

    def recipe(self, name: str, kind: str | None = None) -> Recipe:
        e = self.get(name, kind)
        if e.recipe is None:
            raise UserInputError(f"'{name}' is a built artifact, not a recipe", f"run `qadistill zoo show {name}`")
        return e.recipe

    # -- cross references -----------------------------------------------------------------------------------------------
    def check_references(self, recipe: Recipe, path: object) -> None:
        """Names a recipe points at must exist with the right kind (teachers are teachers, ...)."""

        def need(ref: str, kind: str, field_name: str) -> None:
            try:
                self.get(ref, kind)
            except UnknownNameError as exc:
                raise RecipeError(path, field_name, exc.message, "run `qadistill zoo list` to see the names") from None

        if isinstance(recipe, PipelineRecipe):
            for i, t in enumerate(recipe.teachers):
                need(t, "teacher", f"teachers[{i}]")
            need(recipe.student, "student", "student")
        elif isinstance(recipe, StudentRecipe):
            if isinstance(recipe.init, TruncateInit):
                need(recipe.init.model, "teacher", "init.model")
            elif isinstance(recipe.init, ConfigInit):
                need(recipe.init.vocab_from, "teacher", "init.vocab_from")
        elif isinstance(recipe, TeacherRecipe) and recipe.finetune_from:
            need(recipe.finetune_from, "teacher", "finetune_from")
        if isinstance(recipe, TeacherRecipe) and recipe.finetune is not None:
            for i, t in enumerate(recipe.finetune.distill_from):  # checked at `teach` only after it had started
                need(t, "teacher", f"finetune.distill_from[{i}]")
        if isinstance(recipe, TeacherRecipe) and isinstance(recipe.source, LocalSource):
            pass  # a local folder may be created later (e.g. by `qadistill teach`); resolution checks it

    # -- user zoo -------------------------------------------------------------------------------------------------------
    def add(self, file: Path, force: bool = False) -> Entry:
        """Validate a recipe file and copy it into the user zoo. Nothing is written when anything is wrong."""
        file = Path(file)
        recipe = load_recipe(file)
        self.check_references(recipe, file)
        existing = self._load().get(recipe.name)
        if recipe.name in self._broken and not force:
            raise NameConflictError(
                f"{file}: name '{recipe.name}' is taken by a broken recipe in your zoo ({self._broken[recipe.name].path})",
                f"pass --force to replace it, or remove it with `qadistill zoo remove {recipe.name}`",
            )
        if existing is not None:
            if existing.origin != "user" or not force:
                where = "a built-in recipe" if existing.origin == "builtin" else ("a built artifact" if existing.origin == "artifact" else "in your zoo")
                raise NameConflictError(
                    f"{file}: name '{recipe.name}' is already taken ({where})",
                    "rename it in the file" + ("" if existing.origin != "user" else ", or pass --force to replace it"),
                )
            if existing.kind != recipe.kind:  # --force replaces a recipe, never turns a pipeline into a student
                raise NameConflictError(
                    f"{file}: '{recipe.name}' is a {existing.kind} recipe in your zoo and this file is a {recipe.kind}: "
                    "--force replaces a recipe with one of its kind",
                    f"remove it first (`qadistill zoo remove {recipe.name}`), or rename the {recipe.kind} in the file",
                )
        target = self.user_dir / f"{recipe.name}.toml"
        atomic_write_bytes(target, file.read_bytes())
        self._entries = None
        return self.get(recipe.name)

    def remove(self, name: str, delete_files: bool = False) -> Entry:
        """Remove a user recipe, or unregister an artifact; ``delete_files`` also deletes its folder, which must lie
        inside the current QADISTILL_HOME (else ``UserInputError`` and nothing is changed)."""
        if name not in self._load() and name in self._broken:  # the one command that must work on a broken file
            path = Path(self._broken[name].path)
            path.unlink()
            self._entries = None
            return Entry(name, "broken", "user", path)
        e = self.get(name)
        if e.origin == "builtin":
            raise UserInputError(f"'{name}' is a built-in recipe and cannot be removed", "add your own with `qadistill zoo add FILE`")
        if e.origin == "user":
            e.path.unlink()
            self._entries = None
            return e
        from qadistill.locks import artifact_lock

        busy = "wait for it to finish, then remove it"
        with artifact_lock(name, hint=busy), artifact_lock(f"{name}.export", "exports of", busy, shown=name):  # never under a running build
            exports = self.derived_exports(name)
            work = paths.work_path(e.path)  # a build's leftover checkpoints (killed in clean-up)
            folders = [x for x in [e.path, work, *(Path(a.path) for a in exports)] if delete_files and x.exists()]
            outside = next((x for x in folders if not paths.under_home(x)), None)
            if outside is not None:
                raise UserInputError(
                    f"'{name}': the folder {outside} is outside QADISTILL_HOME ({paths.home()}); qadistill only deletes inside "
                    "the home, so nothing was removed",
                    f"unregister it with `qadistill zoo remove {name}` (without --delete-files) and delete the folder yourself",
                )
            for a in exports:  # they hold this model's weights: left registered, a rebuild's name would serve the old ones
                self._store.remove_artifact(a.name)
            self._store.remove_artifact(name)
            for x in folders:
                shutil.rmtree(x) if x.is_dir() else x.unlink()
        self._entries = None
        return e

    def derived_exports(self, name: str) -> list:
        """The export artifacts registered from the model ``name`` (``zoo remove`` takes them with it)."""
        return [a for a in self.artifacts(recipe=name) if a.kind == "export" and a.parent == name]
