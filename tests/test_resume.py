"""Exact resume: an interruption at any step (Ctrl-C, SIGTERM or SIGKILL) resumes to the same final weights as the
uninterrupted run — bit for bit."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from resume_worker import run

pytestmark = pytest.mark.integration  # real models, processes or the CLI end to end

WORKER = Path(__file__).resolve().parent / "resume_worker.py"
TOTAL_STEPS = 20  # 40 pairs, batch 4, 2 epochs; checkpoints every 3 steps, epoch end at step 10


def same_weights(a: Path, b: Path) -> bool:
    import torch
    from safetensors.torch import load_file

    x, y = load_file(str(a)), load_file(str(b))
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    state = run(root / "full", root / "full.safetensors", None, False)
    assert state["step"] == TOTAL_STEPS
    return root, root / "full.safetensors", state


# steps 10 (an epoch end, just before its dev evaluation) and 1 (before any checkpoint) are the classic traps
@pytest.mark.parametrize("step", [1, 10, random.Random(0).randint(2, TOTAL_STEPS - 1)])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_at_a_step_saves_a_checkpoint_and_resumes_to_identical_weights(reference, step, sig):
    from qadistill.interrupts import Interrupted

    root, full, ref_state = reference
    work, out = root / f"sig{int(sig)}-{step}", root / f"sig{int(sig)}-{step}.safetensors"
    with pytest.raises(Interrupted) as ei:
        run(work, out, step, False, sig)
    assert ei.value.exit_code == 128 + int(sig)
    assert (work / "checkpoint.pt").exists()
    state = run(work, out, None, True)
    assert state["step"] == TOTAL_STEPS
    assert [h["dev_map"] for h in state["history"]] == [h["dev_map"] for h in ref_state["history"]]
    assert same_weights(full, out)
    # the time the interrupted run spent is kept apart, so a summary does not pass it off as this process's
    assert 0 < state["train_seconds_before"] < state["train_seconds"] and "train_seconds_before" not in ref_state


@pytest.mark.parametrize("step", [random.Random(1).randint(1, TOTAL_STEPS - 1), 10])
def test_sigkill_at_a_step_resumes_to_identical_weights(reference, step):
    root, full, _ = reference
    work, out = root / f"kill-{step}", root / f"kill-{step}.safetensors"
    p = subprocess.run([sys.executable, str(WORKER), str(work), str(out), "--kill-at", str(step)], capture_output=True, timeout=300)
    assert p.returncode == -signal.SIGKILL, p.stderr.decode()[-2000:]
    assert not out.exists()
    state = run(work, out, None, True)
    assert state["step"] == TOTAL_STEPS
    assert same_weights(full, out)


def test_resume_refuses_a_checkpoint_of_other_settings_or_data_or_a_damaged_one(reference):
    import dataclasses

    import resume_worker
    from qadistill.errors import UserInputError

    root, _, _ = reference
    work = root / "guard"
    with pytest.raises(KeyboardInterrupt):
        run(work, root / "guard.safetensors", 4, False, signal.SIGINT)
    base = resume_worker.config
    try:
        resume_worker.config = lambda: dataclasses.replace(base(), learning_rate=0.5)
        with pytest.raises(UserInputError, match="other settings.*learning_rate"):
            run(work, root / "guard.safetensors", None, True)
        # TMKD stage 1 calls its epochs unlabelled_passes: a changed --unlabelled-passes is named so (was "epochs")
        resume_worker.config = lambda: dataclasses.replace(base(), epochs=base().epochs + 1, epochs_setting="unlabelled_passes")
        with pytest.raises(UserInputError, match=rf"other settings \(unlabelled_passes {base().epochs} -> {base().epochs + 1}\)"):
            run(work, root / "guard.safetensors", None, True)
        resume_worker.config = lambda: dataclasses.replace(base(), epochs_setting="unlabelled_passes")
        with pytest.raises(UserInputError, match="is damaged"):  # the name alone is no change: on to the next check
            (work / "checkpoint.pt").write_bytes((work / "checkpoint.pt").read_bytes()[:1000])
            run(work, root / "guard.safetensors", None, True)
    finally:
        resume_worker.config = base
    (work / "checkpoint.pt").write_bytes((work / "checkpoint.pt").read_bytes()[:1000])
    with pytest.raises(UserInputError, match="is damaged"):
        run(work, root / "guard.safetensors", None, True)


def _garble(path: Path) -> None:
    """Flip 64 bytes a third of the way in: a checkpoint's zip usually still opens (a tensor's bytes change)."""
    data = bytearray(path.read_bytes())
    at = len(data) // 3
    data[at:at + 64] = bytes(b ^ 0x5A for b in data[at:at + 64])
    path.write_bytes(bytes(data))


def test_resume_refuses_a_checkpoint_whose_bytes_changed_though_it_still_loads(reference):
    """A checkpoint garbled inside one tensor loaded (the zip opened) and resumed to other weights, exit 0."""
    import torch

    from qadistill.errors import UserInputError

    root, _, _ = reference
    work = root / "garbled"
    with pytest.raises(KeyboardInterrupt):
        run(work, root / "garbled.safetensors", 4, False, signal.SIGINT)
    ckpt = work / "checkpoint.pt"
    assert (work / "checkpoint.pt.sha256").exists()
    _garble(ckpt)
    try:
        torch.load(ckpt, weights_only=False)  # this file is still a checkpoint to torch; or damaged to it too
    except Exception:
        pytest.skip("this garbling broke the zip itself (the older check catches that)")
    with pytest.raises(UserInputError, match=r"is damaged \(its sha256 .* recorded in checkpoint.pt.sha256") as ei:
        run(work, root / "garbled.safetensors", None, True)
    assert f"delete {work.parent}" not in ei.value.hint or "rerun without --resume" in ei.value.hint


def test_damaged_best_weights_are_refused_at_the_end_not_served(reference, monkeypatch):
    """best.pt, written at step 10's dev evaluation, garbled before the resumed run ends, with step 20's evaluation
    made worse so that best.pt stays the one served: the run refuses it instead of serving its weights."""
    import qadistill.train as train_mod
    from qadistill.errors import UserInputError
    from qadistill.integrity import sidecar_problem
    from qadistill.train import save_hashed

    root, _, _ = reference
    work, out = root / "garbled-best", root / "garbled-best.safetensors"
    with pytest.raises(KeyboardInterrupt):
        run(work, out, 12, False, signal.SIGINT)  # past the epoch-end dev evaluation
    assert (work / "best.pt.sha256").exists()
    _garble(work / "best.pt")
    monkeypatch.setattr(train_mod, "dev_map", lambda *a, **k: {"map": 0.0, "mrr": 0.0})
    with pytest.raises(UserInputError, match=r"best dev weights .*best.pt are damaged"):
        run(work, out, None, True)
    assert not out.exists()
    save_hashed({"x": 1}, root / "x.pt")
    assert sidecar_problem(root / "x.pt") is None
    (root / "x.pt").write_bytes((root / "x.pt").read_bytes() + b"\0")
    assert "recorded in x.pt.sha256" in sidecar_problem(root / "x.pt")
