"""CUDA paths, run where a GPU is at hand (`make test-gpu`); deselected by default, skipped without CUDA."""

from __future__ import annotations

import pytest

from conftest import make_tiny_model, tiny_pairs

pytestmark = pytest.mark.gpu


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def test_torch_backend_on_cuda_scores_like_the_cpu(tmp_path):
    if not _cuda():
        pytest.skip("no CUDA device")
    from qadistill.backends import TorchBackend

    folder = make_tiny_model(tmp_path / "m", "cross")
    pairs = tiny_pairs(n_queries=8)
    qs, ps = [p["query"] for p in pairs], [p["passage"] for p in pairs]
    cpu = TorchBackend(folder, 64, device="cpu")
    gpu = TorchBackend(folder, 64, device="cuda")
    for b in (cpu, gpu):
        b.load()
    a, g = cpu.logits(qs, ps), gpu.logits(qs, ps)
    assert abs(a - g).max() < 1e-4
