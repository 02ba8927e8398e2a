"""Every test gets its own QADISTILL_HOME and runs offline; tests never touch the network."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    home = tmp_path / "qadistill-home"
    monkeypatch.setenv("QADISTILL_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.delenv("QADISTILL_DEBUG", raising=False)
    # keep the shared unpack cache (QADISTILL_CACHE) so packaged models are unpacked once per machine
    monkeypatch.setenv("COLUMNS", "200")
    return home


@pytest.fixture
def runner():
    from typer.testing import CliRunner

    return CliRunner()


@pytest.fixture
def cli(runner):
    from qadistill.cli import app

    def invoke(*args: str, **kw):
        return runner.invoke(app, list(args), **kw)

    return invoke


def packaged_installed(name: str) -> bool:
    from qadistill.sources import packaged_files

    return packaged_files(name) is not None


def requires_package(name: str):
    return pytest.mark.skipif(
        not packaged_installed(name), reason=f"packaged model {name} not installed (run `make venv`)"
    )


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
