"""benchmarks/soup_probe.py's weight average: the mean of N students' tensors, dtype kept, the first folder's other
files copied; students of different shapes refused. Fast: tiny hand-made tensors, nothing trained."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import soup_probe  # noqa: E402


def _student(folder: Path, w: torch.Tensor, tag: str) -> Path:
    folder.mkdir()
    save_file({"w": w, "b": torch.full((2,), float(w.sum()))}, str(folder / "model.safetensors"))
    for name in soup_probe.COPIED:
        (folder / name).write_text(f"{tag} {name}")
    return folder


def test_soup_is_the_mean_of_every_ingredient(tmp_path: Path) -> None:
    ws = [torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, 6.0]]), torch.tensor([[5.0, 1.0]])]
    folders = [_student(tmp_path / f"s{i}", w, f"s{i}") for i, w in enumerate(ws)]
    soup_probe.soup(folders, tmp_path / "soup")
    got = load_file(str(tmp_path / "soup" / "model.safetensors"))
    assert torch.equal(got["w"], torch.tensor([[3.0, 3.0]]))
    assert torch.equal(got["b"], torch.full((2,), (3.0 + 9.0 + 6.0) / 3))
    assert got["w"].dtype == torch.float32
    assert (tmp_path / "soup" / "config.json").read_text() == "s0 config.json"


def test_students_of_different_shapes_are_refused(tmp_path: Path) -> None:
    a = _student(tmp_path / "a", torch.zeros(1, 2), "a")
    b = _student(tmp_path / "b", torch.zeros(2, 2), "b")
    with pytest.raises(SystemExit, match="differ in shape"):
        soup_probe.soup([a, b], tmp_path / "soup")
    assert not (tmp_path / "soup").exists()


def test_weighted_soup_normalises_the_shares(tmp_path: Path) -> None:
    a = _student(tmp_path / "a", torch.tensor([[0.0, 4.0]]), "a")
    b = _student(tmp_path / "b", torch.tensor([[8.0, 0.0]]), "b")
    soup_probe.soup([a, b], tmp_path / "soup", [3, 1])  # shares 0.75 / 0.25
    assert torch.equal(load_file(str(tmp_path / "soup" / "model.safetensors"))["w"], torch.tensor([[2.0, 3.0]]))
    for bad in ([1.0], [-1.0, 2.0], [0.0, 0.0]):
        with pytest.raises(SystemExit, match="weight"):
            soup_probe.soup([a, b], tmp_path / f"bad{len(bad)}{bad[0]}", bad)


def test_one_lineage_siblings_or_a_source_with_its_passes() -> None:
    # siblings: both continued src
    assert soup_probe.lineage_root(["p1", "p2"], ["src", "src"]) == "src"
    # a source (started from base) and a pass that continued it: WiSE-FT style
    assert soup_probe.lineage_root(["src", "p1", "p2"], ["base", "src", "src"]) == "base"
    with pytest.raises(SystemExit, match="one lineage"):
        soup_probe.lineage_root(["p1", "q1"], ["src", "other"])
    with pytest.raises(SystemExit, match="records no starting model"):
        soup_probe.lineage_root(["p1", "p2"], ["src", None])
