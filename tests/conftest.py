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


WORDS = (
    "what who how where is are the a of in to and was were by cave glacier ice water formed written play hamlet "
    "shakespeare city capital france paris river long big small red blue first name year born died king queen"
).split()


def make_tiny_model(folder: Path, kind: str = "cross", seed: int = 0) -> Path:
    """A tiny random BERT (hidden 32, 2 layers) with a small WordPiece vocab: fast, real code paths, no downloads.
    Never for accuracy claims."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "?", ".", ","] + WORDS
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True)
    tok.save_pretrained(str(folder))
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128, num_labels=1)
    model = BertForSequenceClassification(cfg) if kind == "cross" else BertModel(cfg)
    model.save_pretrained(str(folder), safe_serialization=True)
    return folder


def tiny_pairs(n_queries: int = 12, per_query: int = 4, seed: int = 0, positive_at: int = 0) -> list[dict]:
    import random

    rng = random.Random(seed)
    rows = []
    for q in range(n_queries):
        query = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 6))) + "?"
        for k in range(per_query):
            passage = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 25))) + "."
            rows.append({"query_id": f"q{q}", "query": query, "passage_id": f"q{q}-{k}", "passage": passage, "label": int(k == positive_at % per_query)})
    return rows


def tiny_jsonl(path: Path, **kw) -> Path:
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(json.dumps(r) for r in tiny_pairs(**kw)) + "\n")
    return path


class ActAt:
    """A progress whose training task calls ``action()`` once a training step at or after ``step`` is reported (the
    loop reports each step with its loss), to interrupt or kill a run at a chosen step."""

    def __init__(self, step: int, action) -> None:
        self.step, self.action = step, action

    def task(self, description, total, done=0):
        outer, start = self, done

        class T:
            n = start  # a resumed run's steps count from where it stopped

            def advance(self, k=1, **fields):
                self.n += k
                if fields and self.n >= outer.step:
                    outer.action()

            def done(self):
                pass

        return T()


class WordTokenizer:
    """A whitespace tokenizer over a 50-word vocabulary, for training loops on a tiny BERT (the loop only calls it)."""

    class _Enc(dict):
        def to(self, device):
            return self

    def __call__(self, qs, ps, padding=False, truncation=True, max_length=16, return_tensors=None):
        import torch

        ids = [[1] + [2 + hash(w) % 48 for w in (q + " " + p).split()][: max_length - 1] for q, p in zip(qs, ps)]
        if return_tensors is None:
            return {"input_ids": ids}
        n = max(len(x) for x in ids)
        pad = torch.tensor([x + [0] * (n - len(x)) for x in ids])
        return self._Enc(input_ids=pad, attention_mask=(pad > 0).long())
