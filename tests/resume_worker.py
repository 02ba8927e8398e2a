"""A tiny two-teacher distillation (train() of a 2-head student on fixed teacher logits) run as its own process, so a
test can SIGKILL it at a chosen step and resume it. Usage:
    python resume_worker.py WORKDIR OUT.safetensors [--kill-at N] [--resume]
The data and the base model are made in WORKDIR/../fixture by the first call (deterministic)."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import ActAt, make_tiny_model, tiny_jsonl  # noqa: E402


def build(fixture: Path):
    import numpy as np
    import torch
    from transformers import AutoTokenizer, BertModel

    from qadistill.data import load_dataset
    from qadistill.student import make_student_class

    torch.set_num_threads(1)
    if not (fixture / "base" / "config.json").exists():
        make_tiny_model(fixture / "base", "cross")
        tiny_jsonl(fixture / "d.jsonl", n_queries=10, per_query=4)
    ds = load_dataset(str(fixture / "d.jsonl"))
    tok = AutoTokenizer.from_pretrained(str(fixture / "base"))
    torch.manual_seed(3)
    model = make_student_class()(BertModel.from_pretrained(str(fixture / "base")), n_heads=2)
    teacher = np.random.default_rng(0).normal(size=(len(ds), 2)).astype("float32")
    return model, tok, ds, teacher


def KillAt(step: int, sig: int = signal.SIGKILL) -> ActAt:
    """A progress that kills this process (SIGKILL) or Ctrl-Cs it (SIGINT) at training step ``step``."""
    return ActAt(step, lambda: os.kill(os.getpid(), sig))


def config():
    from qadistill.train import TrainConfig

    return TrainConfig(epochs=2, batch_size=4, max_length=32, learning_rate=5e-4, checkpoint_every=3, patience=5, seed=11)


rehearsal = None  # a test may set a function (dataset, teacher logits) -> (pairs, logits) to rehearse (config().rehearse)


def run(work: Path, out: Path, kill_at: int | None, resume: bool, sig: int = signal.SIGKILL) -> dict:
    from safetensors.torch import save_file

    from qadistill.progress import NullProgress
    from qadistill.train import train

    model, tok, ds, teacher = build(work.parent / "fixture")
    progress = KillAt(kill_at, sig) if kill_at else NullProgress()
    state = train(model, tok, ds.pairs, teacher, config(), work, dev=ds, resume=resume, progress=progress,
                  rehearsal=rehearsal(ds, teacher) if rehearsal else None)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out))
    return state


def setting_resumes_exactly(tmp: Path, cut_at: int, rehearse_with=None, **setting) -> dict:
    """With the training config changed by ``setting`` (and ``rehearse_with`` as the rehearsal hook): a run Ctrl-C'd
    at step ``cut_at`` and resumed ends with the dev history and the weights of one run straight through, and a
    checkpoint made without the setting is refused on resume, naming it. Returns the straight run's state; its weights
    are at TMP/full.safetensors. The module's config and hook are restored whatever happens."""
    import dataclasses

    import pytest
    from test_resume import same_weights

    from qadistill.errors import UserInputError

    global config, rehearsal
    base = config
    changed = lambda: dataclasses.replace(base(), **setting)  # noqa: E731
    try:
        rehearsal, config = rehearse_with, changed
        full = run(tmp / "full", tmp / "full.safetensors", None, False)
        with pytest.raises(KeyboardInterrupt):
            run(tmp / "cut", tmp / "cut.safetensors", cut_at, False, signal.SIGINT)
        resumed = run(tmp / "cut", tmp / "cut.safetensors", None, True)
        assert [h["dev_map"] for h in resumed["history"]] == [h["dev_map"] for h in full["history"]]
        assert same_weights(tmp / "full.safetensors", tmp / "cut.safetensors")
        config = base
        with pytest.raises(KeyboardInterrupt):
            run(tmp / "plain", tmp / "plain.safetensors", 4, False, signal.SIGINT)
        config = changed
        (name, value), = setting.items()
        with pytest.raises(UserInputError, match=rf"other settings.*{name} {getattr(base(), name)} -> {value}"):
            run(tmp / "plain", tmp / "plain.safetensors", None, True)
    finally:
        config, rehearsal = base, None
    return full


if __name__ == "__main__":
    args = sys.argv[1:]
    kill = int(args[args.index("--kill-at") + 1]) if "--kill-at" in args else None
    run(Path(args[0]), Path(args[1]), kill, "--resume" in args)
