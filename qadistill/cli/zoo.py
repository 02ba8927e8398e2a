"""`qadistill zoo ...`: list, show, add, remove."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from qadistill.cli._common import Format, FormatOpt, err_console, out_console, print_json, table
from qadistill.cli.errors import handle_errors

app = typer.Typer(help="The model zoo: teacher/student/pipeline recipes and built students.", no_args_is_help=True)

NameArg = Annotated[str, typer.Argument(help="A zoo name (see `qadistill zoo list`).")]

AVAIL_STYLE = {
    "offline": "[green]offline[/]",
    "hf-cache": "[green]hf-cache[/]",
    "needs-hub": "[yellow]needs-hub[/]",
    "needs-build": "[cyan]needs-build[/]",
    "missing-package": "[red]missing-package[/]",
    "missing-folder": "[red]missing-folder[/]",
}


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
    kind: Annotated[str | None, typer.Option(help="Only this kind: teacher, student, pipeline.")] = None,
) -> None:
    """List every recipe and built artifact: kind, size, source, whether it works offline, what is built."""
    from qadistill.catalog import zoo_rows

    reg = _registry()
    rows = [r for r in zoo_rows(reg) if kind is None or r.kind == kind]
    if fmt is Format.json:
        print_json([r.to_dict() for r in rows])
        return
    t = table(
        "qadistill zoo",
        ["name", "kind", "params", "source", "availability", "built", "best MAP"],
        [
            [r.name, r.kind, _params(r.parameters), r.source, AVAIL_STYLE.get(r.availability, r.availability),
             ", ".join(r.built) or "-", f"{r.best_map:.3f}" if r.best_map is not None else "-"]
            for r in rows
        ],
        no_wrap=("name", "availability", "params", "kind"),
    )
    out_console().print(t)
    err_console().print("[dim]`qadistill zoo show NAME` for details; needs-hub models work once they are in the HF cache.[/]")


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
                  [[r["artifact"], r["dataset"], r["split"], r["metric"], f"{r['value']:.4f}"] for r in info["results"]])
        )


@app.command("add")
@handle_errors
def add(
    file: Annotated[Path, typer.Argument(help="A recipe TOML file to validate and copy into your zoo.")],
    force: Annotated[bool, typer.Option(help="Replace a recipe of the same name in your zoo.")] = False,
) -> None:
    """Validate a recipe and add it to your zoo ($QADISTILL_HOME/zoo). Nothing is written if it is invalid."""
    e = _registry().add(file, force=force)
    err_console().print(f"added [bold]{e.name}[/] ({e.kind}) -> {e.path}")


@app.command("remove")
@handle_errors
def remove(
    name: NameArg,
    delete_files: Annotated[bool, typer.Option("--delete-files", help="Also delete a built artifact's folder.")] = False,
) -> None:
    """Remove a recipe from your zoo, or unregister a built artifact (its files stay unless --delete-files)."""
    e = _registry().remove(name, delete_files=delete_files)
    err_console().print(f"removed [bold]{e.name}[/] ({e.origin})")
