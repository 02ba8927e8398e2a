"""What `qadistill zoo list/show` report, as plain data (the CLI only renders it)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from qadistill.errors import QadistillError
from qadistill.recipes import (
    ContinueInit,
    PipelineRecipe,
    PrebuiltRecipe,
    PretrainedInit,
    PruneInit,
    StudentRecipe,
    TeacherRecipe,
    TruncateInit,
    recipe_to_dict,
)
from qadistill.registry import Entry, Registry
from qadistill.sources import SourceStatus, resolve_source, source_status


@dataclass
class ZooRow:
    name: str
    kind: str
    origin: str
    parameters: int | None
    source: str
    availability: str  # offline | hf-cache | needs-hub | missing-package | missing-folder | needs-build | damaged | invalid
    available: bool
    built: list[str]
    best_map: float | None
    description: str
    published: dict | None = None
    best_map_dataset: str | None = None  # the dataset and split best_map was measured on
    best_map_split: str | None = None
    detail: str | None = None  # why it is not available (e.g. which file of a damaged folder), else where it is

    def to_dict(self) -> dict:
        return asdict(self)


def _teacher_status(reg: Registry, recipe: TeacherRecipe, built: list[str]) -> tuple[str, SourceStatus]:
    if recipe.source is not None:
        return recipe.source.describe(), source_status(recipe.source)
    desc = f"teach:{recipe.finetune_from}"
    if built:
        return desc, SourceStatus(True, "offline", "built by `qadistill teach`")
    base = reg.recipe(recipe.finetune_from, "teacher")
    st = _teacher_status(reg, base, [])[1] if isinstance(base, TeacherRecipe) else SourceStatus(False, "missing-folder", "")
    return desc, SourceStatus(False, "needs-build" if st.available else st.where, f"run `qadistill teach {recipe.name} --data wikiqa`")


def damage(reg: Registry, name: str, hashes: bool) -> tuple[Path, str] | None:
    """(folder, problem) when the folder built or pulled under ``name`` disagrees with its recorded checksums (a listed
    file missing or resized; with ``hashes`` also a sha256 that differs), None when it is whole or has no record."""
    from qadistill.integrity import folder_problem

    a = reg.store.artifact(name) if reg.store is not None else None
    if a is None or not Path(a.path).is_dir():
        return None
    problem = folder_problem(Path(a.path), hashes)
    return (Path(a.path), problem) if problem else None


def entry_status(reg: Registry, e: Entry, built: list[str], hashes: bool | None = None) -> tuple[str, SourceStatus]:
    """Where a zoo name's weights come from and whether they work now. ``hashes``: also check the folder built or
    pulled under the name against its recorded checksums, by size only (False; what `zoo list` does) or reading every
    file (True; `zoo show`)."""
    source, st = _entry_status(reg, e, built)
    if hashes is not None and st.available:
        found = damage(reg, e.name, hashes)
        if found:
            from qadistill.integrity import damaged_hint

            st = SourceStatus(False, "damaged", f"{found[1]}; {damaged_hint(found[0])}")
    return source, st


def _entry_status(reg: Registry, e: Entry, built: list[str]) -> tuple[str, SourceStatus]:
    r = e.recipe
    if r is None:
        p = Path(e.path)
        ok = p.exists()
        return f"built:{p}", SourceStatus(ok, "offline" if ok else "missing-folder", str(p))
    if isinstance(r, TeacherRecipe):
        return _teacher_status(reg, r, built)
    if isinstance(r, PrebuiltRecipe):
        if built:
            return r.source.describe(), SourceStatus(True, "offline", "pulled")
        st = source_status(r.source)
        return r.source.describe(), st if st.available else SourceStatus(False, "pullable", f"`qadistill zoo pull {r.source.repo_id}`")
    if isinstance(r, StudentRecipe):
        init = r.init
        if isinstance(init, PretrainedInit):
            return f"init:{init.source.describe()}", source_status(init.source)
        if isinstance(init, (PruneInit, ContinueInit)):
            from qadistill.prune import UnbuiltSourceError, describe, source_folder

            label = f"init:{init.model} pruned to {describe(init)}" if isinstance(init, PruneInit) else f"init:{init.model} as built"

            try:
                folder = source_folder(init.model, reg)  # the resolver distill uses: artifact or model folder
            except UnbuiltSourceError:
                return label, SourceStatus(False, "needs-build", f"build {init.model} first")
            except QadistillError as exc:  # e.g. a teacher's name: no build makes it a student
                return label, SourceStatus(False, "invalid", exc.message)
            ok = folder.exists()
            return label, SourceStatus(ok, "offline" if ok else "missing-folder", str(folder))
        ref = init.model if isinstance(init, TruncateInit) else init.vocab_from
        label = f"init:first {init.layers} layers of {ref}" if isinstance(init, TruncateInit) else f"init:random (vocab {ref})"
        base = reg.get(ref)
        return label, entry_status(reg, base, _built(reg, ref))[1]
    assert isinstance(r, PipelineRecipe)
    missing = []
    for name in [*r.teachers, r.student]:
        try:
            st = entry_status(reg, reg.get(name), _built(reg, name))[1]
        except QadistillError:
            st = SourceStatus(False, "missing-folder", "")
        if not st.available:
            missing.append(f"{name} ({st.where})")
    label = f"{' + '.join(r.teachers) or 'gold labels'} -> {r.student}"
    if missing:
        return label, SourceStatus(False, "needs-build" if all("needs-build" in m for m in missing) else "needs-hub" if any("needs-hub" in m for m in missing) else "missing-package", "missing: " + ", ".join(missing))
    return label, SourceStatus(True, "offline", "all parts available offline")


def _built(reg: Registry, name: str) -> list[str]:
    store = reg.store
    if store is None:
        return []
    return [a.name for a in store.artifacts(recipe=name) if a.name != name] + ([name] if store.artifact(name) else [])


def best_map(store, names: list[str]) -> dict | None:
    """The best test MAP (else dev MAP) of a zoo row's names, all on one dataset: the first name with a result fixes
    it (an artifact's training dataset), so an eval of a built model on other data never replaces the figure."""
    for split in ("test", "dev"):
        dataset, best = None, None
        for n in names:
            m = store.best_metric(n, "map", dataset=dataset, split=split)
            if m is None:
                continue
            dataset = m["dataset"]
            if best is None or m["value"] > best["value"]:
                best = m
        if best is not None:
            return best
    return None


def zoo_rows(reg: Registry) -> list[ZooRow]:
    rows = []
    store = reg.store
    for e in reg.entries():
        built = _built(reg, e.name)
        source, st = entry_status(reg, e, built, hashes=False)
        params = e.recipe.parameters if e.recipe is not None else (e.artifact.manifest.get("parameters") if e.artifact else None)
        best = best_map(store, [e.name, *built]) if store is not None else None
        rows.append(
            ZooRow(
                name=e.name,
                kind=e.kind,
                origin=e.origin,
                parameters=params,
                source=source,
                availability=st.where,
                available=st.available,
                built=built,
                best_map=best["value"] if best else None,
                best_map_dataset=best["dataset"] if best else None,
                best_map_split=best["split"] if best else None,
                description=(e.recipe.description if e.recipe else e.artifact.manifest.get("description", "") if e.artifact else ""),
                published=(e.recipe.published.model_dump() if isinstance(e.recipe, PrebuiltRecipe) and e.recipe.published else None),
                detail=st.detail or None,
            )
        )
    return rows


def zoo_show(reg: Registry, name: str, resolve: bool = True) -> dict:
    """Everything about one name: recipe, resolved source folder, artifacts, metrics."""
    e = reg.get(name)
    built = _built(reg, name)
    source, st = entry_status(reg, e, built, hashes=True)
    info: dict = {
        "name": e.name,
        "kind": e.kind,
        "origin": e.origin,
        "file": str(e.path),
        "source": source,
        "availability": st.where,
        "available": st.available,
        "detail": st.detail,
    }
    if e.recipe is not None:
        info["recipe"] = recipe_to_dict(e.recipe)
    src = None
    if isinstance(e.recipe, (TeacherRecipe, PrebuiltRecipe)):
        src = e.recipe.source
    elif isinstance(e.recipe, StudentRecipe) and isinstance(e.recipe.init, PretrainedInit):
        src = e.recipe.init.source
    if src is not None and resolve and st.available:
        folder = resolve_source(src)
        info["resolved"] = str(folder)
        info["files"] = sorted(p.name for p in Path(folder).iterdir() if p.is_file())
    store = reg.store
    if store is not None:
        info["artifacts"] = [
            {"name": a.name, "kind": a.kind, "path": a.path, "created_at": a.created_at, "manifest": a.manifest}
            for a in store.artifacts(recipe=name)
        ] + ([{"name": e.artifact.name, "kind": e.artifact.kind, "path": e.artifact.path, "manifest": e.artifact.manifest}] if e.artifact else [])
        # the latest value per (artifact, dataset, split, metric): every eval appends one, the store keeps the history
        latest: dict[tuple, dict] = {}
        for n in dict.fromkeys([name, *built]):
            for r in store.results(n):
                latest[(r["artifact"], r["dataset"], r["split"], r["metric"])] = {
                    k: r[k] for k in ("artifact", "dataset", "split", "metric", "value", "note", "run_id")}
        info["results"] = list(latest.values())
    return info
