"""The weight average (``ema_decay``): it is what the run keeps, computed as documented, and it resumes exactly."""

from __future__ import annotations

import dataclasses

import pytest

import resume_worker
from resume_worker import run, setting_resumes_exactly
from test_resume import same_weights

pytestmark = pytest.mark.integration  # a real (tiny) training loop


class Recorder:
    """A progress that copies one trained weight after every step (the loop reports a step once it is done)."""

    def __init__(self, model, name: str) -> None:
        self.param = dict(model.named_parameters())[name]
        self.seen = [self.param.detach().clone()]

    def task(self, description, total, done=0):
        outer = self

        class T:
            def advance(self, k=1, **fields):
                if fields:
                    outer.seen.append(outer.param.detach().clone())

            def done(self):
                pass

        return T()


@pytest.mark.parametrize("decay", [0.0, 0.9])
def test_the_kept_weights_are_the_documented_average_of_the_steps(tmp_path, decay):
    from qadistill.train import train

    model, tok, ds, teacher = resume_worker.build(tmp_path / "fixture")
    name = "encoder.encoder.layer.0.attention.self.query.weight"
    if name not in dict(model.named_parameters()):
        name = next(n for n, p in model.named_parameters() if p.requires_grad and p.dim() == 2)
    rec = Recorder(model, name)
    cfg = dataclasses.replace(resume_worker.config(), ema_decay=decay, select_on_dev=False)
    state = train(model, tok, ds.pairs, teacher, cfg, tmp_path / "work", dev=ds, progress=rec)
    steps = rec.seen
    assert len(steps) == state["step"] + 1 == 21
    kept = dict(model.named_parameters())[name].detach()
    if not decay:
        assert (kept == steps[-1]).all()
        return
    ema = steps[0].clone()
    for n, w in enumerate(steps[1:]):
        d = min(decay, (1 + n) / (10 + n))
        ema = d * ema + (1 - d) * w
    assert state["ema_updates"] == 20
    assert (kept - ema).abs().max() < 1e-6
    assert (kept - steps[-1]).abs().max() > 1e-5  # not the last step's weights (ten times the tolerance above)


def test_dev_selects_among_averages_and_an_interrupted_average_resumes_bit_for_bit(tmp_path):
    setting_resumes_exactly(tmp_path, 7, ema_decay=0.8)
    # the run without the average keeps other weights
    run(tmp_path / "noema", tmp_path / "noema.safetensors", None, False)
    assert not same_weights(tmp_path / "full.safetensors", tmp_path / "noema.safetensors")
