"""Shared option aliases, the app class and output helpers: data on stdout (rich table or JSON), logs on stderr."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, get_args

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption


class Device(str, Enum):
    """Where a command runs models."""

    cpu = "cpu"
    cuda = "cuda"


class Format(str, Enum):
    table = "table"
    json = "json"


FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="Output as a rich table or as JSON for scripts.")]


# --- help: plain metavars ------------------------------------------------------------------------------------------
# typer 0.2x renders a label from each parameter's Python annotation in the help's type column (`<str>`, `<bool>`,
# `<int range>`, `<list[str]>`, `<path>`, choices as `<a|b>`), flags and arguments included. A parameter's `metavar`
# replaces the label for options; arguments always show it. The classes below give every command one convention,
# in one place: flags show nothing, choices `[a|b]`, other options TEXT / INTEGER / FLOAT / PATH, arguments their
# upper-case name (MODEL, MODELS...). An explicit `metavar=` on an option still wins.

_TYPE_WORDS = {str: "TEXT", int: "INTEGER", float: "FLOAT", Path: "PATH"}


def _choices(param: TyperOption | TyperArgument) -> str | None:
    """'[a|b|c]' for a choice (Enum or Literal) parameter, else None."""
    choices = param.type_descriptor.choices
    if not choices:
        return None
    return "[" + "|".join(str(c.value if isinstance(c, Enum) else c) for c in choices) + "]"


def _option_metavar(param: TyperOption) -> str:
    if param.is_flag or param.count:
        return ""
    chosen = _choices(param)
    if chosen:
        return chosen
    desc = param.type_descriptor
    ann = get_args(desc.annotation)[0] if desc.is_list and get_args(desc.annotation) else desc.annotation
    if desc.is_path:
        return "PATH"
    return _TYPE_WORDS.get(ann, (param.name or "value").upper())


class _PlainArgument(TyperArgument):
    """An argument shown as its upper-case name, with no type label (choices still shown)."""

    @property
    def display_name_raw(self) -> str:
        return self.metavar if self.metavar is not None else (self.name or "arg").upper()

    def display_type_rich(self, ctx) -> str | None:
        return _choices(self)


def plain_metavars(params: list) -> list:
    """Give `params` the plain convention above (idempotent; leaves explicit metavars alone)."""
    for p in params:
        if isinstance(p, TyperOption) and p.metavar is None:
            p.metavar = _option_metavar(p)
        elif isinstance(p, TyperArgument) and not isinstance(p, _PlainArgument):
            p.__class__ = _PlainArgument  # same object and state, one rendering method overridden (typer builds the instance)
    return params


class Command(TyperCommand):
    def get_params(self, ctx):  # covers the help option too, which click creates on first use
        return plain_metavars(super().get_params(ctx))


class Group(TyperGroup):
    def get_params(self, ctx):
        return plain_metavars(super().get_params(ctx))


class App(typer.Typer):
    """typer.Typer whose groups and commands render plain metavars; use it for every (sub-)app."""

    def __init__(self, **kw: Any) -> None:
        kw.setdefault("cls", Group)
        super().__init__(**kw)

    def command(self, name: str | None = None, *, cls: type[TyperCommand] | None = None, **kw: Any):
        return super().command(name, cls=cls or Command, **kw)


def out_console():
    """stdout. Text prints as written, never as rich markup: a passage, query, path or name holding "[/x]" or "[bold]"
    is shown as it is (markup read it: dropped text, or a MarkupError after the work was done). Styles come from
    ``styled`` / ``dim`` / ``warn`` and Text cells, which put user text in literally."""
    from rich.console import Console

    return Console(highlight=False, emoji=False, markup=False)


def err_console():
    """stderr, as ``out_console``: no markup is read from printed strings."""
    from rich.console import Console

    return Console(stderr=True, highlight=False, emoji=False, markup=False)


def styled(template: str, *values: Any):
    """A line in our markup (``template``, with ``{}`` slots) holding ``values`` (user text) literally."""
    from rich.markup import escape
    from rich.text import Text

    return Text.from_markup(template.format(*(escape(str(v)) for v in values)))


def dim(text: str):
    """A note, dimmed; its text literal."""
    from rich.text import Text

    return Text(text, style="dim")


def warn(text: str):
    """A warning line in yellow; its text literal."""
    from rich.text import Text

    return Text(text, style="yellow")


def refuse_named_twice(names: list[str], hint: str) -> None:
    """A name given twice on one command line is a UserInputError naming it (eval: an "ensemble" of a model with
    itself; bench: two identical rows)."""
    from qadistill.errors import UserInputError

    twice = next((n for i, n in enumerate(names) if n in names[:i]), None)
    if twice is not None:
        raise UserInputError(f"{twice!r} is named twice", hint)


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def table(title: str | None, columns: list[str], rows: list[list[Any]], no_wrap: tuple[str, ...] = (),
          min_widths: dict[str, int] | None = None, **kw):
    from rich.table import Table

    from rich.text import Text

    def literal(v: Any):  # user text as written; a Text (ours, styled) as it is
        return v if isinstance(v, Text) else Text("" if v is None else str(v))

    t = Table(title=None if title is None else literal(title), header_style="bold", **kw)
    for c in columns:
        t.add_column(c, overflow="fold", no_wrap=c in no_wrap, min_width=(min_widths or {}).get(c))
    for r in rows:
        t.add_row(*[literal(v) for v in r])
    return t
