"""How a result under benchmarks/results/ says where and how it appears in RESULTS.md (its "report"), and how a
benchmark script writes a result together with it.

A report is an object (or a list of them, when the result appears in more than one place):

  title    the heading (plain text, no ``#``: the page gives the level); without one, no heading
  note     the context a reader needs that the figures cannot say (what the default was, how it was measured)
  order    its place among its siblings, ascending; ``null``: not shown (a plot named in a heading, a log, the rows
           another result is made from); no order: after the ordered ones
  section  optional: results with the same section id are shown as one block, with the heading, note and way of
           showing of the lowest-ordered one, which reads the others
  view     optional: a way of showing other than the one the result's fields imply: ``raw`` (the JSON as it is),
           ``int8-vs-fp32`` (a section of bench runs by their int8/fp32 ratios, then one line per batch over the
           members marked ``in_summary``, at the lead's ``summary_length``, opened by its ``summary``)
  command  optional: the command that made the result, for a result that does not record it

Where it lives: a JSON object result carries it under its top-level ``"report"`` key. Anything else (a .txt, .md,
.jsonl or .png file, a JSON list, a folder) has a sidecar ``NAME.meta.json`` next to it, holding the report itself; the
page's own title and note are the results folder's sidecar, ``benchmarks/results.meta.json``. A folder's parts are the
files in it, each with its own report.

Rewriting a result keeps the report it already has (a rerun keeps its place and words; edit the report when a rerun
changes what the file means); a new result gets the writing script's default. Shell scripts set one with
  python benchmarks/_report.py FILE [--title T] [--note N] [--order K|null]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

SUFFIX = ".meta.json"


def sidecar(path: Path) -> Path:
    return path.with_name(path.name + SUFFIX)


def is_sidecar(path: Path) -> bool:
    return path.name.endswith(SUFFIX)


def _json_object(path: Path) -> dict | None:
    """The file's content when it is a JSON object (an empty or broken file, as a failed run leaves, is not)."""
    if path.suffix != ".json" or not path.is_file():
        return None
    try:
        d = json.loads(path.read_text())
    except ValueError:
        return None
    return d if isinstance(d, dict) else None


def read(path: Path) -> Any:
    """The report of the result at ``path`` (its own "report" key, else its sidecar), or None when it has none."""
    d = _json_object(path)
    if d is not None and "report" in d:
        return d["report"]
    side = sidecar(path)
    return json.loads(side.read_text()) if side.exists() else None


def _with_report(d: dict, report: Any) -> str:
    """``d`` as JSON with ``report`` as its first key."""
    return json.dumps({"report": report, **{k: v for k, v in d.items() if k != "report"}}, indent=2) + "\n"


def write_json(path: Path, data: Any, report: Any) -> None:
    """Write a JSON result with a report: the one the file already has, else ``report``."""
    existing = read(path)
    report = report if existing is None else existing
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, dict):
        path.write_text(_with_report(data, report))
        return
    path.write_text(json.dumps(data, indent=2) + "\n")
    ensure_sidecar(path, report)


def write_text(path: Path, text: str, report: Any) -> None:
    """Write a text result and, when it has none, its sidecar."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    ensure_sidecar(path, report)


def ensure_sidecar(path: Path, report: Any) -> None:
    if not sidecar(path).exists():
        sidecar(path).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")


def set_report(path: Path, report: Any) -> None:
    """Replace the report of the result at ``path`` (inside it for a JSON object, else its sidecar)."""
    d = _json_object(path)
    if d is not None:
        path.write_text(_with_report(d, report))
    else:
        sidecar(path).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description="set the report of a result file or folder")
    ap.add_argument("path", type=Path)
    ap.add_argument("--title")
    ap.add_argument("--note")
    ap.add_argument("--order", help="a number, or null (not shown on its own)")
    a = ap.parse_args()
    report: dict[str, Any] = {k: v for k, v in (("title", a.title), ("note", a.note)) if v}
    if a.order is not None:
        report["order"] = None if a.order == "null" else float(a.order) if "." in a.order else int(a.order)
    set_report(a.path, report)


if __name__ == "__main__":
    main()
