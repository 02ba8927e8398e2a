"""`distill --stage1-mix W|dev`: the served weights are (1 - W) x the labelled stage's + W x TMKD stage 1's last
(WiSE-FT between the two stages), W set by the recipe or chosen on dev from 0, 0.1 .. 1; every share's dev MAP is
recorded."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import requires_package
from test_distill import tiny_zoo  # noqa: F401  (fixture: a cross-encoder and a bi-encoder teacher)

from qadistill.distill import STAGE1_MIX_GRID, mix_weights


def test_mix_is_a_per_tensor_interpolation_that_keeps_integer_buffers():
    last = {"w": torch.tensor([[0.0, 10.0]]), "ids": torch.tensor([0, 1, 2])}
    first = {"w": torch.tensor([[4.0, 0.0]]), "ids": torch.tensor([5, 5, 5])}
    assert torch.equal(mix_weights(last, first, 0.0)["w"], last["w"])
    assert torch.equal(mix_weights(last, first, 1.0)["w"], first["w"])
    assert torch.allclose(mix_weights(last, first, 0.25)["w"], torch.tensor([[1.0, 7.5]]))
    assert torch.equal(mix_weights(last, first, 0.5)["ids"], last["ids"])  # position ids are not averaged


def _run(cli, tiny_zoo, name: str, *extra: str) -> dict:  # noqa: F811
    r = cli("distill", "--teachers", "tiny-t0,tiny-t1", "--student", "tiny-random-student", "--data", str(tiny_zoo),
            "--pretrain-unlabelled", "--max-length", "48", "--batch-size", "8", "--name", name, "--format", "json",
            "--dev", str(tiny_zoo), "--test", str(tiny_zoo), *extra)  # named: eval below re-measures the same file
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


@requires_package("all-minilm-l6-v2")
def test_stage1_mix_chosen_on_dev_is_served_recorded_and_carded(cli, tiny_zoo, isolated_home):  # noqa: F811
    res = _run(cli, tiny_zoo, "mix-dev", "--stage1-mix", "dev")
    m = res["stage1_mix"]
    curve = {c["share"]: c["map"] for c in m["dev_curve"]}
    assert tuple(curve) == STAGE1_MIX_GRID and m["setting"] == "dev" and m["fitted_on"] == res["dev_data"]
    best = max(curve.values())
    assert m["share"] == min(w for w, v in curve.items() if v == best)  # the best dev MAP, ties to the smaller share
    assert res["dev_map"] == m["dev_map"] == curve[m["share"]]
    # share 0 is the labelled stage's own (best) weights, scored again
    assert curve[0.0] == pytest.approx(res["stage2"]["best_map"], abs=1e-6) and m["dev_map_unmixed"] == curve[0.0]
    # the saved folder is the served mix: eval on it (dev and test are the whole file here) gives the recorded figures
    r = cli("eval", "mix-dev", "--data", str(tiny_zoo), "--max-length", "48", "--format", "json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["rows"][0]["map"] == pytest.approx(res["metrics"]["test"]["map"], abs=1e-5)
    assert res["metrics"]["test"]["map"] == pytest.approx(m["dev_map"], abs=1e-5)
    card = (isolated_home / "artifacts" / "mix-dev" / "README.md").read_text()
    assert f"Dev MAP of the served weights (stage-1 share {m['share']:g})" in card
    assert "x TMKD stage 1's last (WiSE-FT; the share with the best dev MAP); dev MAP by stage-1 share" in card


@requires_package("all-minilm-l6-v2")
def test_a_fixed_share_is_served_and_joins_the_curve(cli, tiny_zoo, isolated_home):  # noqa: F811
    res = _run(cli, tiny_zoo, "mix-25", "--stage1-mix", "0.25")
    m = res["stage1_mix"]
    assert m["share"] == 0.25 and m["setting"] == 0.25 and res["pipeline"]["distill"]["stage1_mix"] == 0.25
    assert [c["share"] for c in m["dev_curve"]] == sorted([*STAGE1_MIX_GRID, 0.25])
    assert res["dev_map"] == next(c["map"] for c in m["dev_curve"] if c["share"] == 0.25)
    r = cli("eval", "mix-25", "--data", str(tiny_zoo), "--max-length", "48", "--format", "json")
    assert json.loads(r.stdout)["rows"][0]["map"] == pytest.approx(res["dev_map"], abs=1e-5)  # the 0.25 mix is saved
    # the curve on test too, for the record: the served share's row is the reported figure
    by_share = {c["share"]: c for c in m["curves"]["test"]["by_share"]}
    assert list(by_share) == sorted([*STAGE1_MIX_GRID, 0.25]) and m["curves"]["test"]["data"] == res["metrics"]["test"]["data"]
    assert by_share[0.25]["map"] == pytest.approx(res["metrics"]["test"]["map"], abs=1e-9)
    plain = _run(cli, tiny_zoo, "mix-0")
    assert plain["stage1_mix"] is None and plain["pipeline"]["distill"]["stage1_mix"] == 0
    # one seed, one training: the saved weights differ only by the mix, and share 0 of the mixed run is the plain run
    assert m["dev_curve"][0]["map"] == pytest.approx(plain["dev_map"], abs=1e-6)
    from safetensors.torch import load_file

    a, b = (load_file(str(isolated_home / "artifacts" / n / "model.safetensors")) for n in ("mix-25", "mix-0"))
    assert a.keys() == b.keys() and any(not torch.equal(a[k], b[k]) for k in a)


def test_stage1_mix_is_refused_without_stage1_or_out_of_range(cli):
    common = ["distill", "--teachers", "all-minilm-l6-v2", "--student", "tiny-random-student"]
    r = cli(*common, "--stage1-mix", "0.3")
    assert r.exit_code == 2 and "has no stage 1" in r.stderr and "Traceback" not in r.output
    r = cli(*common, "--pretrain-unlabelled", "--stage1-mix", "1.5")
    assert r.exit_code == 2 and "a number from 0 to 1" in r.stderr
    r = cli(*common, "--pretrain-unlabelled", "--stage1-mix", "half")
    assert r.exit_code == 2 and "--stage1-mix 'half' is neither a share nor dev" in r.stderr


@requires_package("all-minilm-l6-v2")
def test_stage1_mix_with_learned_head_weights(cli, tiny_zoo, isolated_home):  # noqa: F811
    res = _run(cli, tiny_zoo, "mix-mkdm", "--mode", "mkdm", "--head-combine", "learned", "--stage1-mix", "0.5")
    assert res["stage1_mix"]["share"] == 0.5 and "_weights" not in res["stage1_mix"]
    assert res["head_combination"]["fitted_on"] == res["dev_data"]  # fitted on the served (mixed) weights
    assert [c["share"] for c in res["stage1_mix"]["curves"]["test"]["by_share"]] == list(STAGE1_MIX_GRID)
