"""`distill --rehearse R`: the labelled stage mixes in R teacher-only batches of the unlabelled pool per labelled batch
(rehearsal against forgetting what TMKD stage 1 taught)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from conftest import requires_package
from test_distill import tiny_zoo  # noqa: F401  (fixture: a cross-encoder and a bi-encoder teacher)
from test_unlabelled import _args, setup  # noqa: F401  (fixture: a labelled file and a 300-pair pool, shards of 64)

from qadistill.data import QAPair
from qadistill.train import TrainConfig, _Loop, with_rehearsal


def _loop(n_main: int, n_extra: int, rehearse: float, loss: str = "listwise", per_query: int = 5) -> _Loop:
    """A loop holding only what batching reads: n_main pairs, then n_extra rehearsal pairs (lists of per_query)."""
    loop = _Loop.__new__(_Loop)
    loop.cfg = TrainConfig(batch_size=8, list_size=4, loss=loss, rehearse=rehearse)
    n = n_main + n_extra
    loop.qs = [f"q{i}" for i in range(n)]
    loop.lengths = [10 + (7 * i) % 23 for i in range(n)]
    loop.groups = [i // per_query if i < n_main else 10_000 + (i - n_main) // per_query for i in range(n)]
    loop.n_main = n_main
    return loop


@pytest.mark.parametrize("loss", ["listwise", "pointwise"])
def test_rehearsal_batches_are_mixed_in_at_the_ratio_and_every_labelled_pair_stays_once(loss):
    loop = _loop(200, 500, 0.5, loss)
    plain = _loop(200, 0, 0.5, loss)
    batches = loop.seeded_batches(7)
    main = [b for b in batches if b[0] < 200]
    extra = [b for b in batches if b[0] >= 200]
    assert all(all(i < 200 for i in b) for b in main)  # a batch is labelled or rehearsal, never both
    assert all(all(i >= 200 for i in b) for b in extra)
    assert sorted(i for b in main for i in b) == list(range(200))  # each labelled pair once per epoch
    assert sorted(map(sorted, main)) == sorted(map(sorted, plain.seeded_batches(7)))  # the same labelled batches as without
    assert len(extra) == round(0.5 * len(main))
    rehearsed = [i for b in extra for i in b]
    assert len(set(rehearsed)) == len(rehearsed)  # a draw without repeats
    if loss == "listwise":  # whole lists of one query
        assert all(len({loop.groups[i] for i in b}) * 4 >= len(b) for b in extra)
    assert batches == loop.seeded_batches(7)  # seeded
    assert [b for b in loop.seeded_batches(8) if b[0] >= 200] != extra  # another epoch draws other batches
    first = next(i for i, b in enumerate(batches) if b[0] >= 200)
    assert first < len(batches) - len(extra)  # shuffled in among the labelled batches, not appended


def test_rehearsal_is_capped_by_the_set_held():
    loop = _loop(200, 40, 3.0)
    extra = [b for b in loop.seeded_batches(1) if b[0] >= 200]
    assert sorted(i for b in extra for i in b) == list(range(200, 240))  # all of it, once: no pair repeated to fill


def test_with_rehearsal_drops_labels_keeps_queries_apart_and_checks_heads():
    pairs = [QAPair("a", "q", "p1", "x", 1), QAPair("a", "q", "p2", "y", 0)]
    extra = [QAPair("a", "q", "p3", "z", 1)]  # the same query id in the pool: a list of its own
    out, tl = with_rehearsal(pairs, np.zeros((2, 3)), extra, np.ones((1, 3)))
    assert [p.label for p in out] == [1, 0, None]
    assert out[2].query_id != "a" and out[:2] == pairs
    assert tl.shape == (3, 3) and tl[2].tolist() == [1, 1, 1]
    with pytest.raises(ValueError, match="one per head"):
        with_rehearsal(pairs, np.zeros((2, 3)), extra, np.ones((1, 1)))
    with pytest.raises(ValueError, match="these pairs have none"):
        with_rehearsal(pairs, None, extra, np.ones((1, 1)))


@requires_package("all-minilm-l6-v2")
@pytest.mark.integration
def test_rehearsal_on_the_builtin_pool_without_stage1(cli, tiny_zoo, isolated_home, monkeypatch):  # noqa: F811
    import qadistill.distill
    from qadistill import teachers as T

    seen = []

    def spy(teachers, ds, mode_, progress):
        out = T.teacher_targets(teachers, ds, mode_, progress)
        seen.append((ds.split, len(ds)))
        return out

    monkeypatch.setattr(qadistill.distill, "teacher_targets", spy)
    common = ["distill", "--teachers", "tiny-t0,tiny-t1", "--student", "tiny-random-student", "--data", str(tiny_zoo),
              "--mode", "mkdm", "--loss", "listwise", "--max-length", "48", "--batch-size", "8", "--format", "json"]
    r = cli(*common, "--rehearse", "1", "--name", "rh")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["stage1"] is None  # no stage 1: the pool is only rehearsed
    (train_split, _), (pool_split, pool_pairs) = seen
    assert pool_split.endswith("-pool")
    reh = res["stage2"]["rehearsal"]
    assert reh["ratio"] == 1 and reh["pairs_held"] == pool_pairs
    plain = json.loads(cli(*common, "--name", "plain").stdout)
    labelled_steps = plain["stage2"]["step"]
    assert res["stage2"]["step"] == labelled_steps + sum(reh["batches_per_epoch"])
    assert reh["batches_per_epoch"] == [labelled_steps]  # one pool batch per labelled batch (the pool is larger)
    assert res["pipeline"]["distill"]["rehearse"] == 1
    card = (isolated_home / "artifacts" / "rh" / "README.md").read_text()
    assert f"1 teacher-only batch(es) of the pool built from the train split's texts per labelled batch ({sum(reh['batches_per_epoch'])} of its" in card
    assert np.isfinite(res["metrics"]["test"]["map"])
    r = cli(*common[:-2], "--mode", "gold", "--rehearse", "1", "--name", "g")
    assert r.exit_code != 0 and "rehearse" in r.output and "Traceback" not in r.output


@requires_package("all-minilm-l6-v2")
@pytest.mark.integration
def test_rehearsal_draws_whole_shards_of_an_unlabelled_file(cli, setup, isolated_home):  # noqa: F811
    data, pool = setup
    r = cli(*_args(data, pool, "rh-file"), "--rehearse", "0.5")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    reh = res["stage2"]["rehearsal"]
    want = math.ceil(0.5 * res["train_pairs"] * 1 * 1.25)
    assert want <= reh["pairs_held"] < want + 64 or reh["pairs_held"] == 300  # whole shards of 64 until the draw is covered
    assert reh["batches_per_epoch"][0] > 0
    card = (isolated_home / "artifacts" / "rh-file" / "README.md").read_text()
    assert f"teacher-only batch(es) of `{pool}` per labelled batch" in card


def _rehearsed(ds, teacher):
    """The first 24 pairs again as a pool (labels dropped by the loop) with other teacher logits."""
    return ds.pairs[:24], -teacher[:24]


@pytest.mark.integration
def test_an_interrupted_rehearsing_run_resumes_bit_for_bit_and_a_plain_checkpoint_is_refused(tmp_path):
    from resume_worker import run, setting_resumes_exactly
    from test_resume import same_weights

    full = setting_resumes_exactly(tmp_path, 17, _rehearsed, rehearse=0.5)
    assert full["rehearsal"]["batches_per_epoch"] == [5, 5]  # 10 labelled batches an epoch, half as many of the pool
    assert full["step"] == 30
    run(tmp_path / "none", tmp_path / "none.safetensors", None, False)  # rehearsal changes the weights
    assert not same_weights(tmp_path / "full.safetensors", tmp_path / "none.safetensors")
