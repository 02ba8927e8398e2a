"""The ranking-aware objectives (listwise KL, Margin-MSE, listwise gold) and the batches that keep a query together."""

from __future__ import annotations

import json
import math

import pytest
import torch

from qadistill.losses import gold_listwise, listwise_kl, margin_mse, ranking_distill_loss
from qadistill.train import grouped_batches

from tests.conftest import WordTokenizer, requires_package
from tests.test_distill import tiny_zoo  # noqa: F401  (the fixture: two tiny teachers and a data file)


def _data():
    torch.manual_seed(0)
    t = torch.randn(10, 2)
    g = torch.tensor([0, 0, 0, 1, 1, 1, 1, 2, 3, 3])  # query 2 has one candidate: no ranking signal
    return t, g


def test_listwise_kl_is_zero_at_the_teacher_up_to_a_shift_per_query_and_positive_elsewhere():
    t, g = _data()
    shift = torch.tensor([1.0, -3.0, 5.0, 0.5])[g][:, None]  # any constant per query and head leaves a softmax alone
    assert float(listwise_kl(t + shift, t, g, 2.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(listwise_kl(torch.zeros_like(t), t, g, 2.0)) > 0.01
    # scaled by T^2, and computed per query: the hand-made KL of query 0, head 0 matches
    p = torch.softmax(t[:3, 0] / 2, 0)
    q = torch.full((3,), 1 / 3)
    one = listwise_kl(torch.zeros(3, 1), t[:3, :1], g[:3], 2.0)
    assert float(one) == pytest.approx(4 * float((p * (p / q).log()).sum()), rel=1e-5)


def test_listwise_kl_ignores_singleton_groups_and_a_batch_of_them_is_zero_with_a_gradient():
    t, g = _data()
    s = torch.zeros(10, 2, requires_grad=True)
    base = listwise_kl(s, t, g, 1.0).detach()
    moved = s.detach().clone()
    moved[7] += 10.0  # the only candidate of query 2
    assert float(listwise_kl(moved, t, g, 1.0)) == pytest.approx(float(base), abs=1e-6)
    alone = torch.zeros(3, 2, requires_grad=True)
    z = listwise_kl(alone, torch.randn(3, 2), torch.tensor([0, 1, 2]), 2.0)
    z.backward()
    assert float(z) == 0.0 and alone.grad is not None


def test_margin_mse_matches_margins_not_levels():
    t, g = _data()
    assert float(margin_mse(t + 7.0, t, g)) == pytest.approx(0.0, abs=1e-6)
    # two candidates: ((s0 - s1) - (t0 - t1))^2
    s2, t2 = torch.tensor([[1.0], [0.0]]), torch.tensor([[3.0], [0.5]])
    assert float(margin_mse(s2, t2, torch.tensor([4, 4]))) == pytest.approx((1.0 - 2.5) ** 2)


def test_gold_listwise_uses_only_queries_with_a_positive_and_a_negative():
    y = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0, float("nan"), float("nan")])
    g = torch.tensor([0, 0, 0, 1, 1, 2, 2])
    s = torch.tensor([[2.0], [0.0], [0.0], [5.0], [1.0], [3.0], [0.0]])
    expected = -math.log(math.exp(2) / (math.exp(2) + 2))
    assert float(gold_listwise(s, y, g)) == pytest.approx(expected, rel=1e-6)


def test_ranking_distill_loss_mixes_teacher_and_gold_and_refuses_an_unknown_loss():
    t, g = _data()
    s = torch.randn(10, 2)
    y = torch.tensor([1.0, 0, 0, 0, 1, 0, 0, 1, 0, 1])
    mixed = ranking_distill_loss(s, t, y, g, "listwise", 2.0, 0.3)
    assert float(mixed) == pytest.approx(0.7 * float(listwise_kl(s, t, g, 2.0)) + 0.3 * float(gold_listwise(s, y, g)), rel=1e-6)
    unl = torch.full((10,), float("nan"))
    assert float(ranking_distill_loss(s, t, unl, g, "margin-mse", 2.0, 0.5)) == pytest.approx(float(margin_mse(s, t, g)))
    with pytest.raises(ValueError, match="unknown loss"):
        ranking_distill_loss(s, t, y, g, "pairwise", 2.0, 0.5)


def test_grouped_batches_keep_lists_whole_cover_every_pair_once_and_are_seeded():
    import random

    rng = random.Random(1)
    groups = [q for q in range(40) for _ in range(rng.randint(1, 30))]
    lengths = [rng.randint(5, 60) for _ in groups]
    a = grouped_batches(groups, lengths, 32, 8, seed=3)
    assert sorted(i for b in a for i in b) == list(range(len(groups)))
    assert all(len(b) <= 32 for b in a)
    # a query's candidates sit in lists of at most 8, each list inside one batch
    for q in range(40):
        members = [i for i, x in enumerate(groups) if x == q]
        where = {}
        for bi, b in enumerate(a):
            n = sum(1 for i in b if groups[i] == q)
            if n:
                where[bi] = n
        assert sum(where.values()) == len(members) and len(where) <= math.ceil(len(members) / 8)
    assert a == grouped_batches(groups, lengths, 32, 8, seed=3)
    assert a != grouped_batches(groups, lengths, 32, 8, seed=4)


@requires_package("all-minilm-l6-v2")
@pytest.mark.parametrize("loss", ["listwise", "margin-mse"])
def test_distill_with_a_ranking_loss_trains_and_records_it(cli, tiny_zoo, tmp_path, loss):
    r = cli("distill", "--teachers", "tiny-t0,tiny-t1", "--student", "tiny-random-student", "--data", str(tiny_zoo),
            "--loss", loss, "--list-size", "4", "--max-length", "48", "--batch-size", "8", "--name", f"stu-{loss}",
            "--format", "json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["stage2"]["step"] > 0
    recipe = (tmp_path / "qadistill-home" / "artifacts" / f"stu-{loss}" / "recipe.toml").read_text()
    assert f'loss = "{loss}"' in recipe


def test_an_unknown_loss_is_a_usage_error(cli):
    r = cli("distill", "--student", "tiny-random-student", "--teachers", "all-minilm-l6-v2", "--loss", "pairwise")
    assert r.exit_code == 2 and "pairwise" in r.stderr


def test_freeze_embeddings_trains_everything_but_the_word_embeddings(tmp_path):
    """``freeze_embeddings`` leaves the word embeddings exactly as initialised and still trains the rest."""
    from transformers import BertConfig, BertModel

    from qadistill.data import QAPair
    from qadistill.student import make_student_class
    from qadistill.train import TrainConfig, train

    torch.manual_seed(0)
    enc = BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32))
    model = make_student_class()(enc, 2)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    pairs = [QAPair(f"q{i // 4}", f"what is {i // 4}", f"p{i}", f"passage {i} text {i % 3}", int(i % 4 == 0)) for i in range(32)]
    teacher = torch.randn(32, 2).numpy()
    cfg = TrainConfig(epochs=1, batch_size=8, max_length=16, loss="listwise", list_size=4, freeze_embeddings=True, checkpoint_every=0)
    train(model, WordTokenizer(), pairs, teacher, cfg, tmp_path / "work")
    after = dict(model.named_parameters())
    word = "encoder.embeddings.word_embeddings.weight"
    assert torch.equal(after[word], before[word])
    assert not torch.equal(after["heads.weight"], before["heads.weight"])
    assert not torch.equal(after["encoder.encoder.layer.0.attention.self.query.weight"], before["encoder.encoder.layer.0.attention.self.query.weight"])
