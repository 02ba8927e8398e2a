"""Every command's --help follows one convention: no `<type>` labels, choices shown as [a|b], flags without a metavar,
value options with an upper-case one; every command that prints data takes --format."""

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
PRINTS_NOTHING = {("zoo", "add"), ("zoo", "remove")}  # a status line on stderr, no data


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


def _choice_expectations() -> dict[str, str]:
    from qadistill.api import BACKENDS
    from qadistill.cli.export import Optimize, Preset, Quantize
    from qadistill.losses import LOSSES, MODES

    def bar(values) -> str:
        return "[" + "|".join(getattr(v, "value", v) for v in values) + "]"

    return {"--format": "[table|json]", "--device": "[cpu|cuda]", "--backend": bar(BACKENDS), "--quantize": bar(Quantize),
            "--preset": bar(Preset), "--optimize": bar(Optimize), "--mode": bar(MODES), "--loss": bar(LOSSES)}


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "root")
def test_choices_are_shown(cli, path):
    expected = {**_choice_expectations(), **({"--format": "[table|json|csv]"} if path == ("bench",) else {})}
    opts = _options(path)
    out = _help(cli, path)
    for opt, choices in expected.items():
        if opt in opts:
            assert re.search(rf"{re.escape(opt)}\s.*{re.escape(choices)}", out), f"{' '.join(path)} {opt}: {choices} not shown\n{out}"


def test_bench_help_lists_every_backend(cli):
    from qadistill.bench import ALL_BACKENDS

    words = set(re.findall(r"[\w-]+", _help(cli, ("bench",))))
    assert [b for b in ALL_BACKENDS if b not in words] == []


def test_choices_are_still_validated(cli):
    r = cli("export", "some-model", "--quantize", "int4")
    assert r.exit_code == 2 and "int4" in r.output
    r = cli("bench", "some-model", "--device", "tpu")
    assert r.exit_code == 2 and "tpu" in r.output


def test_flags_show_no_metavar_and_values_an_upper_case_one(cli):
    out = _help(cli, ("export",))
    assert re.search(r"--fp16\s+Also an fp16", out)  # nothing between a flag and its help
    assert re.search(r"--per-channel\s+int8: one scale", out)
    assert re.search(r"--help\s+-h\s+Show this message", out)
    assert re.search(r"--data\s+TEXT\s", out) and re.search(r"--out\s+PATH\s", out)
    assert re.search(r"--calibration-pairs\s+INTEGER \[x>=1\]", out) and re.search(r"--max-map-drop\s+FLOAT", out)
    assert "{NAME}" in out  # the usage line; the argument is listed as NAME
    assert re.search(r"MODELS\.\.\.\s+Zoo names", _help(cli, ("eval",)))


@pytest.mark.parametrize("path", [p for p in PATHS if p and p not in PRINTS_NOTHING and p != ("zoo",)],
                         ids=lambda p: " ".join(p))
def test_every_command_that_prints_data_takes_format(path):
    assert "--format" in _options(path)


def test_help_texts_survive_rich_markup():
    """typer renders help through rich markup: a `[word]` in a help string vanished (teach's "the recipe's [finetune]")."""
    from rich.text import Text

    texts = [(p, c.help or "") for p, c in COMMANDS.items()] + [
        (p, getattr(x, "help", None) or "") for p, c in COMMANDS.items() for x in c.params]
    lost = [(" ".join(p), t) for p, t in texts if Text.from_markup(t).plain != t]
    assert lost == []
