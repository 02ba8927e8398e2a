"""The `qadistill` command line: one Typer sub-app per noun, each command a few lines over a core function."""

from __future__ import annotations

from typing import Annotated

import typer

from qadistill import __version__
from qadistill.cli import bench as _bench
from qadistill.cli import distill as _distill
from qadistill.cli import doctor as _doctor
from qadistill.cli import evaluate as _evaluate
from qadistill.cli import export as _export
from qadistill.cli import rank as _rank
from qadistill.cli import score as _score
from qadistill.cli import teach as _teach
from qadistill.cli import zoo as _zoo
from qadistill.cli._common import App

app = App(
    name="qadistill",
    help="Distil QA relevance teachers into light students (MKDM), compress them, benchmark accuracy vs speed.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(_zoo.app, name="zoo")
app.command("doctor")(_doctor.doctor)
app.command("eval")(_evaluate.eval_)
app.command("teach")(_teach.teach)
app.command("score")(_score.score)
app.command("distill")(_distill.distill)
app.command("export")(_export.export)
app.command("bench")(_bench.bench)
app.command("rank")(_rank.rank)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"qadistill {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    """qadistill: a terminal-first model zoo and benchmarking tool for compressing QA relevance models."""


def main() -> None:
    from qadistill.interrupts import install

    install()  # Ctrl-C / SIGTERM interrupt even when a script started us in the background (SIGINT ignored there)
    quiet_libraries()
    app()


def quiet_libraries() -> None:
    """Library chatter (transformers' load notes and deprecations, torch's TracerWarnings during ONNX export) is not
    for users of a CLI: errors and our own progress are. QADISTILL_DEBUG=1 keeps everything."""
    import os
    import warnings

    if os.environ.get("QADISTILL_DEBUG", "").strip().lower() in {"1", "true", "yes", "on"}:
        return
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # read when transformers is imported (never at --help)
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for mod in ("transformers", "torch", "optimum", "onnxruntime", "onnx", "accelerate", "huggingface_hub"):
        warnings.filterwarnings("ignore", module=rf"{mod}(\..*)?")
