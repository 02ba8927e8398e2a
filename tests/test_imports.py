"""`qadistill --help` and `qadistill zoo list` must not import the heavy libraries."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("torch", "transformers", "onnxruntime", "optimum", "onnx")

SCRIPT = """
import sys
from typer.testing import CliRunner
from qadistill.cli import app
r = CliRunner().invoke(app, {args!r})
assert r.exit_code == 0, r.output
heavy = sorted(m for m in {heavy!r} if m in sys.modules)
print("HEAVY:" + ",".join(heavy))
"""


@pytest.mark.parametrize("args", [["--help"], ["zoo", "list"], ["zoo", "list", "--format", "json"], ["zoo", "show", "quickstart"]])
def test_no_heavy_imports(args, tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(args=args, heavy=HEAVY)],
        capture_output=True, text=True, timeout=120,
        env={"QADISTILL_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert out.returncode == 0, out.stderr
    line = [x for x in out.stdout.splitlines() if x.startswith("HEAVY:")][-1]
    assert line == "HEAVY:", f"{args} imported {line[6:]}"
