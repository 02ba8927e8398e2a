from __future__ import annotations

import json

import pytest

from conftest import make_tiny_model, tiny_jsonl
from qadistill.errors import UserInputError
from qadistill.finetune import FinetuneConfig, bucketed_batches, finetune_cross_encoder
from qadistill.progress import NullProgress
from qadistill.recipes import parse_recipe

RECIPE = parse_recipe({"kind": "teacher", "name": "tiny-cross", "architecture": "cross-encoder", "finetune_from": "all-minilm-l6-v2"})


def cfg(data, **kw):
    base = dict(data=str(data), epochs=2, batch_size=8, max_length=48, learning_rate=5e-4, checkpoint_every=3, patience=5)
    return FinetuneConfig(**{**base, **kw})


def test_bucketed_batches_are_seeded_and_cover_everything():
    lengths = [i % 37 for i in range(500)]
    a = bucketed_batches(lengths, 16, seed=1)
    assert a == bucketed_batches(lengths, 16, seed=1) and a != bucketed_batches(lengths, 16, seed=2)
    assert sorted(i for b in a for i in b) == list(range(500))


class _InterruptAt(NullProgress):
    def __init__(self, step):
        self.step = step

    def task(self, description, total):
        outer = self

        class T:
            n = 0

            def advance(self, k=1, **f):
                self.n += k
                if f and self.n >= outer.step:
                    raise KeyboardInterrupt

            def done(self):
                pass

        return T()


def test_interrupted_and_resumed_run_matches_an_uninterrupted_one(tmp_path):
    import torch
    from safetensors.torch import load_file

    data = tiny_jsonl(tmp_path / "d.jsonl", n_queries=10, per_query=4)
    base = make_tiny_model(tmp_path / "base", "cross")
    full = finetune_cross_encoder(RECIPE, base, cfg(data), out_dir=tmp_path / "full")
    with pytest.raises(KeyboardInterrupt):
        finetune_cross_encoder(RECIPE, base, cfg(data), out_dir=tmp_path / "resumed", progress=_InterruptAt(7))
    assert (tmp_path / "resumed.work" / "checkpoint.pt").exists()
    with pytest.raises(UserInputError, match="unfinished run") as ei:
        finetune_cross_encoder(RECIPE, base, cfg(data), out_dir=tmp_path / "resumed")
    assert "--resume" in ei.value.hint
    res = finetune_cross_encoder(RECIPE, base, cfg(data), out_dir=tmp_path / "resumed", resume=True)
    assert res["steps"] == full["steps"] == 10
    assert res["dev_map"] == pytest.approx(full["dev_map"], abs=1e-9)
    assert [h["dev_map"] for h in res["history"]] == pytest.approx([h["dev_map"] for h in full["history"]])
    a = load_file(str(tmp_path / "full" / "model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "model.safetensors"))
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    folder = tmp_path / "resumed"
    assert {"config.json", "model.safetensors", "tokenizer.json", "metrics.json", "recipe.toml"} <= {p.name for p in folder.iterdir()}
    assert json.loads((folder / "metrics.json").read_text())["steps"] == 10
    assert not (tmp_path / "resumed.work").exists()


def test_teach_refuses_a_bi_encoder(tmp_path):
    r = parse_recipe({"kind": "teacher", "name": "b", "architecture": "bi-encoder", "source": {"type": "local", "path": "/x"}})
    with pytest.raises(UserInputError, match="fine-tunes cross-encoders"):
        finetune_cross_encoder(r, tmp_path, cfg(tmp_path / "x.jsonl"))


def test_teach_cli_errors(cli):
    r = cli("teach", "all-minilm-l6-v2")
    assert r.exit_code == 2 and "no finetune_from" in r.stderr
    r = cli("teach", "minilm-l6-cross", "--train-filter", "some")
    assert r.exit_code == 2
