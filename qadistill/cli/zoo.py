"""`qadistill zoo ...`: list, show, add, remove."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from qadistill.cli._common import App, Format, FormatOpt, dim, err_console, out_console, print_json, styled, table, warn
from qadistill.cli.errors import handle_errors

app = App(help="The model zoo: teacher/student/pipeline recipes and built students.", no_args_is_help=True)

NameArg = Annotated[str, typer.Argument(help="A zoo name (see `qadistill zoo list`).")]
RecipeFileArg = Annotated[Path, typer.Argument(help="A recipe TOML file to validate and copy into your zoo.")]
ForceOpt = Annotated[bool, typer.Option(help="Replace a recipe of the same name in your zoo.")]
DeleteFilesOpt = Annotated[bool, typer.Option("--delete-files", help="Also delete a built artifact's folder (only ever inside QADISTILL_HOME).")]

AVAIL_STYLE = {"offline": "green", "hf-cache": "green", "needs-hub": "yellow", "needs-build": "cyan", "pullable": "cyan",
               "missing-package": "red", "missing-folder": "red", "damaged": "red", "invalid": "red"}


def _published(p: dict | None):
    if not p:
        return "-"
    m = p.get("metrics", {})
    k = next((k for k in m if k.startswith("mrr")), next(iter(m), None))
    return styled("{} {} [dim](published)[/]", k, f"{m[k]:g}") if k else "-"


def _best(r) -> str:
    """'0.573 wikiqa:test': the figure and where it was measured (a data file by its name)."""
    if r.best_map is None:
        return "-"
    ds = r.best_map_dataset or "?"
    if "/" in ds and not ds.startswith("hf:"):
        ds = Path(ds).name
    return f"{r.best_map:.3f} {ds}:{r.best_map_split}"


def _value(r: dict) -> str:
    return f"{r['value']:.4f}" if r["value"] is not None else f"- ({r.get('note') or 'undefined'})"


def _registry():
    from qadistill.registry import Registry
    from qadistill.store import Store

    return Registry(store=Store.open())


def _params(n: int | None) -> str:
    if not n:
        return "-"
    return f"{n / 1e6:.1f}M"


@app.command("list")
@handle_errors
def list_(
    fmt: FormatOpt = Format.table,
    kind: Annotated[str | None, typer.Option(help="Only this kind: teacher, student, pipeline, prebuilt, or a built kind (student-model, export, teacher-model).")] = None,
) -> None:
    """List every recipe and built artifact: kind, size, source, whether it works offline, what is built."""
    from qadistill.catalog import zoo_rows

    reg = _registry()
    all_rows = zoo_rows(reg)
    kinds = sorted({r.kind for r in all_rows} | {"teacher", "student", "pipeline", "prebuilt"})
    if kind is not None and kind not in kinds:
        from qadistill.errors import UserInputError

        raise UserInputError(f"--kind {kind!r} is not a kind", f"use one of {', '.join(kinds)}")
    rows = [r for r in all_rows if kind is None or r.kind == kind]
    _warn_problems(reg)
    for r in rows:
        if r.availability == "damaged":
            err_console().print(styled("[yellow]warning: {} is damaged:[/] {}", r.name, r.detail or ""), soft_wrap=True)
    if fmt is Format.json:
        print_json([r.to_dict() for r in rows])
        return
    from rich.text import Text

    con = out_console()
    cols = ["name", "kind", "params", "source", "availability", "built", "best MAP", "published"]
    data = [
        [r.name, r.kind, _params(r.parameters), r.source, Text(r.availability, style=AVAIL_STYLE.get(r.availability, "")),
         ", ".join(r.built) or "-", _best(r), _published(r.published)]
        for r in rows
    ]
    if con.width < 160:  # a narrow terminal squeezed the wide columns to nothing: keep the ones that fit
        keep = [cols.index(c) for c in ("name", "kind", "params", "availability", "best MAP")]
        cols, data = [cols[i] for i in keep], [[row[i] for i in keep] for row in data]
    t = table("qadistill zoo", cols, data, no_wrap=("availability", "params", "kind", "best MAP"), min_widths={"name": 20, "built": 10})
    con.print(t)
    err_console().print(dim("`qadistill zoo show NAME` for details (source, published figures); needs-hub models work once they are in the HF cache."))


def _warn_problems(reg) -> None:
    for path, message in reg.problems():
        err_console().print(styled("[yellow]warning: skipped[/] {}; fix it or `qadistill zoo remove {}`", message, path.stem),
                            soft_wrap=True)


@app.command("show")
@handle_errors
def show(
    name: NameArg,
    fmt: FormatOpt = Format.table,
    resolve: Annotated[bool, typer.Option(help="Resolve the model source to a local folder (may unpack or convert once).")] = True,
) -> None:
    """Show one name: its recipe, the folder its weights resolve to, built artifacts and their metrics."""
    from qadistill.catalog import zoo_show

    info = zoo_show(_registry(), name, resolve=resolve)
    if fmt is Format.json:
        print_json(info)
        return
    import tomli_w
    from rich.panel import Panel
    from rich.syntax import Syntax

    con = out_console()
    rows = [[k, str(info[k])] for k in ("name", "kind", "origin", "file", "source", "availability", "detail", "resolved") if info.get(k) is not None]
    con.print(table(f"zoo: {name}", ["field", "value"], rows))
    if "recipe" in info:
        con.print(Panel(Syntax(tomli_w.dumps(info["recipe"]), "toml", theme="ansi_dark", word_wrap=True), title="recipe", expand=False))
    if info.get("artifacts"):
        con.print(table("artifacts", ["name", "kind", "path"], [[a["name"], a["kind"], a["path"]] for a in info["artifacts"]]))
    if info.get("results"):
        con.print(
            table("results", ["artifact", "dataset", "split", "metric", "value"],
                  [[r["artifact"], r["dataset"], r["split"], r["metric"], _value(r)] for r in info["results"]])
        )


@app.command("add")
@handle_errors
def add(file: RecipeFileArg, force: ForceOpt = False) -> None:
    """Validate a recipe and add it to your zoo ($QADISTILL_HOME/zoo). Nothing is written if it is invalid."""
    e = _registry().add(file, force=force)
    err_console().print(styled("added [bold]{}[/] ({}) -> {}", e.name, e.kind, e.path))


@app.command("remove")
@handle_errors
def remove(name: NameArg, delete_files: DeleteFilesOpt = False) -> None:
    """Remove a recipe from your zoo, or unregister a built artifact and its exports (their files stay unless
    --delete-files)."""
    reg = _registry()
    exports = [a.name for a in reg.derived_exports(name)] if reg.store is not None else []
    e = reg.remove(name, delete_files=delete_files)
    also = f" and its {len(exports)} export{'s' if len(exports) != 1 else ''} ({', '.join(exports)})" if exports and e.origin == "artifact" else ""
    err_console().print(styled("removed [bold]{}[/] ({}){}", e.name, e.origin, also + (", files deleted" if delete_files and e.origin == "artifact" else "")))


@app.command("pull")
@handle_errors
def pull(
    ref: Annotated[str, typer.Argument(help="ORG/NAME, or ORG/NAME@REVISION, on the Hugging Face Hub (or in the local HF cache).")],
    name: Annotated[str | None, typer.Option(help="Zoo name for it (default: from the repo name).")] = None,
    allow_pickle: Annotated[bool, typer.Option("--allow-pickle", help="Also accept pickle .bin weights (only for repos you trust).")] = False,
    fmt: FormatOpt = Format.table,
) -> None:
    """Download a prebuilt student (safetensors/ONNX), verify it, hash every file, register it in the zoo."""
    from qadistill.hub import parse_repo_ref, pull as core_pull, pulled_name, register_pulled
    from qadistill.paths import check_name

    if name is not None:
        check_name(name)  # before any download
    reg = _registry()
    pulled_name(reg, parse_repo_ref(ref)[0], name)  # a name taken by something else: refused before any download
    res = core_pull(ref, allow_pickle=allow_pickle, token=_token())
    pulled = register_pulled(reg, res, name)
    art, variants = pulled.name, pulled.variants
    if pulled.unregistered:
        err_console().print(warn(f"unregistered {', '.join(pulled.unregistered)}: exported here from {art}'s earlier "
                                 f"weights; make {'it' if len(pulled.unregistered) == 1 else 'them'} again from these: "
                                 + "; ".join(f"`{c}`" for c in pulled.export_again)))
    if fmt is Format.json:
        print_json({**res.__dict__, "name": art, "variants": variants, "unregistered": pulled.unregistered})
        return
    con = out_console()
    con.print(table(f"pulled {res.repo_id}@{res.revision} -> {art}", ["field", "value"], [
        ["folder", res.path], ["commit", res.commit or "-"], ["files", f"{len(res.files)} (sha256 recorded)"],
        ["offline", "yes (from the HF cache)" if res.offline else "no"],
        ["ONNX variants", ", ".join(variants) or "-"]]))
    if res.card_metrics:
        con.print(table("metrics from the model card (published, not measured here)", ["dataset", "split", "metric", "value"],
                        [[m["dataset"], m["split"], m["metric"], m["value"]] for m in res.card_metrics]))
    err_console().print(f"next: qadistill eval {art} --data wikiqa --split test")


@app.command("push")
@handle_errors
def push(
    name: NameArg,
    repo_id: Annotated[str, typer.Argument(help="ORG/NAME to upload to (your namespace).")],
    private: Annotated[bool, typer.Option(help="Create the repo as private.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Write the exact folder that would be uploaded, and stop.")] = False,
    out: Annotated[Path | None, typer.Option(help="Where --dry-run writes the folder (default: $QADISTILL_HOME/push/NAME).")] = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Upload a built student with its ONNX variants and a Hub model card (model-index with the measured results)."""
    from qadistill import paths
    from qadistill.errors import UserInputError
    from qadistill.hub import STAGED, parse_repo_ref, push as core_push, stage_for_push

    repo, rev = parse_repo_ref(repo_id)
    if rev != "main":
        raise UserInputError("push uploads to the main branch: drop the @revision", f"qadistill zoo push {name} {repo}")
    reg = _registry()
    e = reg.get(name)
    if e.artifact is None or e.kind not in ("student-model", "teacher-model"):
        raise UserInputError(f"'{name}' is not a built student", "build one with `qadistill distill`, then push it")
    exports = [a for a in reg.artifacts(recipe=name) if a.kind == "export"]
    dest = out or (paths.home() / "push" / name)
    staged = stage_for_push(name, e.path, exports, Path(dest), repo, own_dest=out is None)
    files = sorted(str(p.relative_to(staged)) for p in staged.rglob("*") if p.is_file() and p.name != STAGED)
    con = err_console()
    url = None if dry_run else core_push(staged, repo, private, _token())
    if fmt is Format.json:
        print_json({"name": name, "repo": repo, "private": private, "dry_run": dry_run, "folder": str(staged), "files": files, "url": url})
    elif dry_run:
        con.print(styled("dry run: would create {}repo [bold]{}[/] and upload {} files from {}:", 'private ' if private else '', repo, len(files), staged))
        for f in files:
            typer.echo(f"  {f}")
    else:
        con.print(f"uploaded {len(files)} files to {repo}: {url}")


def _token() -> str | None:
    import os

    return os.environ.get("HF_TOKEN") or None  # else huggingface_hub's own login; never printed
