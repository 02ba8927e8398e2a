"""Heads that earn their keep: mlp heads that fold exactly, and a learned head combination that really moves."""

from __future__ import annotations

import json
from math import comb

import numpy as np
import pytest
import torch

from qadistill.heads import fit_head_weights, simplex_grid, steps_for
from tests.conftest import requires_package
from tests.test_distill import tiny_zoo  # noqa: F401  (the fixture: two tiny teachers and a data file)


def _tiny_encoder(hidden: int = 32, seed: int = 0):
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    return BertModel(BertConfig(vocab_size=60, hidden_size=hidden, num_hidden_layers=1, num_attention_heads=2,
                                intermediate_size=48))


def _batch(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 60, (5, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[2, 7:] = 0
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


def test_simplex_grid_covers_the_simplex_on_multiples_of_the_step():
    g = simplex_grid(3, 4)
    assert g.shape == (comb(6, 2), 3)
    assert np.allclose(g.sum(1), 1) and (g >= 0).all()
    assert len({tuple(r) for r in g.round(6)}) == len(g)
    assert set(np.unique(g * 4).round(6)) == {0, 1, 2, 3, 4}
    assert simplex_grid(1, 5).tolist() == [[1.0]]
    assert comb(steps_for(5) + 4, 4) <= 2000 and steps_for(2) == 20


def test_learned_weights_move_to_the_informative_head_and_stay_at_the_mean_without_evidence():
    rng = np.random.default_rng(0)
    q, y, good, bad = [], [], [], []
    for i in range(40):
        labels = [1, 0, 0, 0, 0]
        for lab in labels:
            q.append(f"q{i}")
            y.append(lab)
            good.append(lab + rng.normal(0, 0.6))  # ranks well
            bad.append(rng.normal(0, 3.0))  # large, uninformative
    logits = np.stack([good, bad], 1)
    fit = fit_head_weights(logits, q, y)
    assert fit["kept"] and fit["weights"][0] > 0.8
    assert fit["map_learned"] > fit["map_mean"] + 0.05
    same = fit_head_weights(np.stack([good, good], 1), q, y)
    assert not same["kept"] and same["weights"] == [0.5, 0.5] and same["map_learned"] == same["map_mean"]


@pytest.mark.parametrize("kind,k,hidden", [("mlp", 3, 32), ("mlp", 2, 32), ("linear", 3, 32)])
def test_heads_fold_exactly_into_a_plain_sequence_classifier_with_any_convex_weights(kind, k, hidden):
    from qadistill.student import make_student_class

    model = make_student_class()(_tiny_encoder(hidden), k, heads=kind).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    w = torch.softmax(torch.randn(k), 0)
    model.set_head_weights(w.tolist())
    x = _batch()
    with torch.no_grad():
        ours = model.score(model(**x))
        folded = model.to_sequence_classifier().eval()(**x).logits[:, 0]
        assert float((ours - folded).abs().max()) < 1e-5
    if kind == "mlp":  # K*m rows are used; 32 // 3 = 10 leaves 2 spare pooler rows, zero in the fold
        assert model.hidden.out_features == k * (hidden // k)


def test_mlp_heads_start_from_the_pooler_and_train_apart():
    from qadistill.student import make_student_class

    enc = _tiny_encoder()
    model = make_student_class()(enc, 2, heads="mlp")
    assert torch.equal(model.hidden.weight, enc.pooler.dense.weight[:32])
    out = model(**_batch())
    assert out.shape == (5, 2)
    out[:, 0].sum().backward()  # head 0's loss reaches its own slice of the hidden layer only
    g = model.hidden.weight.grad
    assert g[:16].abs().sum() > 0 and g[16:].abs().sum() == 0


def test_head_weights_are_validated():
    from qadistill.student import make_student_class

    model = make_student_class()(_tiny_encoder(), 2)
    for bad in ([0.7, 0.7], [1.2, -0.2], [1.0]):
        with pytest.raises(ValueError):
            model.set_head_weights(bad)
    with pytest.raises(ValueError):
        make_student_class()(_tiny_encoder(), 2, heads="cnn")


@requires_package("all-minilm-l6-v2")
def test_distill_with_mlp_heads_and_a_learned_combination_reports_both_and_serves_the_fold(cli, tiny_zoo, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    r = cli("distill", "--teachers", "tiny-t0,tiny-t1", "--student", "tiny-random-student", "--data", str(tiny_zoo),
            "--mode", "mkdm", "--heads", "mlp", "--head-combine", "learned", "--max-length", "48", "--batch-size", "8", "--name", "stu-mlp",
            "--format", "json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["head_kind"] == "mlp" and res["head_combine"] == "learned"
    comb_ = res["head_combination"]
    assert comb_["fitted_on"].endswith("dev") and len(comb_["weights"]) == 2
    assert abs(sum(comb_["weights"]) - 1) < 1e-9 and comb_["map_learned"] >= comb_["map_mean"]
    assert set(comb_["mean_metrics"]) == set(res["metrics"])
    assert res["head_weights"] == pytest.approx(comb_["weights"])
    folder = tmp_path / "qadistill-home" / "artifacts" / "stu-mlp"
    assert 'heads = "mlp"' in (folder / "recipe.toml").read_text()
    card = (folder / "README.md").read_text()
    assert "objective pointwise; heads mlp x 2, served as " in card and "fitted on" in card
    model = AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()  # plain transformers, no qadistill
    tok = AutoTokenizer.from_pretrained(str(folder))
    from qadistill.metrics import ranking_metrics
    from qadistill.splits import resolve_splits

    test = resolve_splits(str(tiny_zoo), "train", "dev", "test", None, None, 0, (0.8, 0.1, 0.1)).test
    enc = tok([p.query for p in test.pairs], [p.passage for p in test.pairs], truncation=True, max_length=48,
              padding=True, return_tensors="pt")
    with torch.no_grad():
        s = model(**enc).logits[:, 0].numpy()
    served = ranking_metrics([p.query_id for p in test.pairs], s.tolist(), test.labels())
    assert served["map"] == pytest.approx(res["metrics"]["test"]["map"], abs=1e-6)


def test_an_unknown_head_kind_is_a_usage_error(cli):
    r = cli("distill", "--student", "tiny-random-student", "--teachers", "all-minilm-l6-v2", "--heads", "cnn")
    assert r.exit_code == 2 and "cnn" in r.stderr


def test_a_learned_combination_without_per_teacher_heads_is_a_usage_error_before_any_work(cli):
    r = cli("distill", "--student", "tiny-random-student", "--teachers", "all-minilm-l6-v2,paraphrase-minilm-l3-v2",
            "--head-combine", "learned")  # the default mode is avg: one head
    assert r.exit_code == 2 and "--mode mkdm" in r.stderr and "Traceback" not in r.output
    r = cli("distill", "quickstart", "--mode", "avg", "--head-combine", "learned")
    assert r.exit_code == 2 and "mode 'avg'" in r.stderr
