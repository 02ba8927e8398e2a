"""benchmarks/make_results.py renders RESULTS.md from the results' own reports (benchmarks/_report.py): heading, note
and order from the report, a result without one at the end under its command. Fast: fake results in a temporary
folder, nothing measured."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # the scripts import their helper so

import _report  # noqa: E402
import make_results  # noqa: E402

STARTUP = {"command": "python benchmarks/cli_startup.py --runs 3", "loadavg_1m": 0.5, "cpu_count": 2,
           "results": {"qadistill --help": {"median_s": 0.150, "min_s": 0.144, "max_s": 0.2, "runs": 3}}}


def _write(path: Path, d) -> None:
    path.write_text(json.dumps(d, indent=2) + "\n")


def test_report_gives_heading_and_note_and_a_file_without_one_comes_last(tmp_path: Path) -> None:
    res = tmp_path / "results"
    res.mkdir()
    _write(res / "a_bare.json", {"command": "python benchmarks/other.py --x 1", "value": 0.25})
    _write(res / "z_startup.json", {"report": {"title": "CLI start-up", "note": "Measured warm.", "order": 10}, **STARTUP})
    text = "\n".join(make_results.page(res))
    assert "## CLI start-up\n\nMeasured warm.\n\n`python benchmarks/cli_startup.py --runs 3` (load average 0.50)" in text
    assert "| `qadistill --help` | 150 ms | 144 ms |" in text
    assert "## `python benchmarks/other.py --x 1`" in text and '"value": 0.25' in text  # the fallback: raw, under its command
    assert text.index("## CLI start-up") < text.index("## `python benchmarks/other.py")
    assert '"report"' not in text


def test_order_sidecars_and_hidden_results(tmp_path: Path) -> None:
    res = tmp_path / "results"
    res.mkdir()
    (tmp_path / "results.meta.json").write_text(json.dumps({"title": "Fake page", "note": "About the machine."}))
    _write(res / "a_startup.json", {"report": {"title": "Second", "order": 20}, **STARTUP})
    (res / "b_kernel.txt").write_text("fused / unfused time: 2.13x\n")
    (res / "b_kernel.txt.meta.json").write_text(json.dumps({"title": "First", "note": "Kernel check:", "order": 10}))
    (res / "c_log.txt").write_text("not on the page\n")
    (res / "c_log.txt.meta.json").write_text(json.dumps({"title": "A log", "order": None}))
    lines = make_results.page(res)
    text = "\n".join(lines)
    assert lines[:4] == ["# Fake page", "", "About the machine.", ""]
    assert text.index("## First") < text.index("## Second")
    assert "Kernel check:\n\n```\nfused / unfused time: 2.13x\n```" in text
    assert "not on the page" not in text and "A log" not in text and "meta.json" not in text


def test_a_rerun_keeps_the_report_a_result_has(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    _report.write_json(out, {"command": "first"}, {"title": "default", "order": 1})
    _report.set_report(out, {"title": "edited", "order": 5})
    _report.write_json(out, {"command": "second"}, {"title": "default", "order": 1})
    assert json.loads(out.read_text()) == {"report": {"title": "edited", "order": 5}, "command": "second"}
    txt = tmp_path / "t.txt"
    _report.write_text(txt, "x\n", {"title": "t", "order": 2})
    assert _report.read(txt) == {"title": "t", "order": 2} and txt.read_text() == "x\n"


def _soup(arms: list[str], soup_test: float, command: str) -> dict:
    sets = {"dev": ["wikiqa", "dev"], "test": ["wikiqa", "test"]}
    seeds = [{"seed": s, **{k: {"dev": 0.7, "test": soup_test + (s - 1.5) / 100 if k == "soup" else 0.6} for k in [*arms, "soup"]}}
             for s in (1, 2)]
    mean = {k: {x: sum(r[k][x] for r in seeds) / 2 for x in sets} for k in [*arms, "soup"]}
    return {"command": command, "arms": arms, "sets": sets, "seeds": seeds, "mean": mean}


def test_soup_probes_of_one_section_show_as_tables_under_one_heading(tmp_path: Path) -> None:
    res = tmp_path / "results"
    res.mkdir()
    _write(res / "soup_a.json", {"report": {"title": "Soups", "note": "A probe.", "order": 1, "section": "soup"},
                                 **_soup(["x", "y"], 0.75, "python benchmarks/soup_probe.py")})
    _write(res / "soup_b.json", {"report": {"order": 2, "section": "soup"},
                                 **_soup(["x", "y", "z"], 0.8, "python benchmarks/soup_probe.py --arms x,y,z --out soup_b.json")})
    text = "\n".join(make_results.page(res))
    assert text.count("## Soups") == 1 and "A probe." in text
    assert "| student | wikiqa dev MAP | wikiqa test MAP |" in text
    assert "| `z` | 0.7000 | 0.6000 |" in text
    assert "| **soup** | 0.7000 | 0.7500 |" in text and "| **soup** | 0.7000 | 0.8000 |" in text  # the seeds' mean
    assert "seed 1 0.7000 / 0.7450; seed 2 0.7000 / 0.7550" in text
    assert text.index("Command: `python benchmarks/soup_probe.py`") < text.index("--arms x,y,z --out soup_b.json`")
    assert '"arms"' not in text  # not the raw JSON


def test_a_weighted_soup_shows_each_arms_share(tmp_path: Path) -> None:
    res = tmp_path / "results"
    res.mkdir()
    _write(res / "soup_w.json", {"report": {"title": "Soups", "order": 1, "section": "soup"},
                                 **_soup(["x", "y"], 0.75, "python benchmarks/soup_probe.py --weights 3,1"), "weights": [3.0, 1.0]})
    text = "\n".join(make_results.page(res))
    assert "| `x` (share 0.75) | 0.7000 | 0.6000 |" in text and "| `y` (share 0.25) | 0.7000 | 0.6000 |" in text
