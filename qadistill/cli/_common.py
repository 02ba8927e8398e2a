"""Shared option aliases and output helpers: data on stdout (rich table or JSON), logs on stderr."""

from __future__ import annotations

import json
from enum import Enum
from typing import Annotated, Any

import typer


class Format(str, Enum):
    table = "table"
    json = "json"


FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="Output as a rich table or as JSON for scripts.")]


def out_console():
    from rich.console import Console

    return Console(highlight=False, emoji=False)


def err_console():
    from rich.console import Console

    return Console(stderr=True, highlight=False, emoji=False)


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def table(title: str | None, columns: list[str], rows: list[list[Any]], no_wrap: tuple[str, ...] = (),
          min_widths: dict[str, int] | None = None, **kw):
    from rich.table import Table

    t = Table(title=title, header_style="bold", **kw)
    for c in columns:
        t.add_column(c, overflow="fold", no_wrap=c in no_wrap, min_width=(min_widths or {}).get(c))
    for r in rows:
        t.add_row(*[("" if v is None else str(v)) for v in r])
    return t
