"""Every command's --help follows one convention: no `<type>` labels, choices shown as [a|b], flags without a metavar,
value options with an upper-case one."""

from __future__ import annotations

import re

import pytest
import typer.main

from qadistill.cli import app


def _walk(cmd, path: tuple[str, ...] = ()):
    yield path, cmd
    for name, sub in sorted(getattr(cmd, "commands", {}).items()):
        yield from _walk(sub, (*path, name))


COMMANDS = dict(_walk(typer.main.get_command(app)))
PATHS = sorted(COMMANDS)


def _help(cli, path: tuple[str, ...]) -> str:
    r = cli(*path, "--help")
    assert r.exit_code == 0, r.output
    return r.stdout


def _options(path: tuple[str, ...]) -> dict[str, object]:
    return {o: p for p in COMMANDS[path].params for o in getattr(p, "opts", []) if o.startswith("--")}


def test_the_walk_finds_every_noun_and_the_zoo_subcommands():
    assert {("eval",), ("export",), ("bench",), ("rank",), ("distill",), ("teach",), ("doctor",)} <= set(PATHS)
    assert {("zoo", "list"), ("zoo", "show"), ("zoo", "pull"), ("zoo", "push"), ("zoo", "add"), ("zoo", "remove")} <= set(PATHS)


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "root")
def test_help_has_no_type_placeholders(cli, path):
    out = _help(cli, path)
    assert re.findall(r"<[^<>=\n]*>", out) == [], out  # `<str>`, `<bool>`, `<int range>`, `<a|b>`; not a range's `x<=1`


def test_flags_show_no_metavar_and_values_an_upper_case_one(cli):
    out = _help(cli, ("export",))
    assert re.search(r"--fp16\s+Also an fp16", out)  # nothing between a flag and its help
    assert re.search(r"--per-channel\s+int8: one scale", out)
    assert re.search(r"--help\s+-h\s+Show this message", out)
    assert re.search(r"--data\s+TEXT\s", out) and re.search(r"--out\s+PATH\s", out)
    assert re.search(r"--calibration-pairs\s+INTEGER \[x>=1\]", out) and re.search(r"--max-map-drop\s+FLOAT", out)
    assert "{NAME}" in out  # the usage line; the argument is listed as NAME
    assert re.search(r"MODELS\.\.\.\s+Zoo names", _help(cli, ("eval",)))
