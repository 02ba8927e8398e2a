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
