"""FFN pruning of a built student (FastFormers-style): importance that is exact where it must be, a pruned model that
is a plain BertConfig, and a recovery distillation that starts from the pruned student and says what it pruned."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import requires_package, write
from qadistill.data import QAPair
from qadistill.prune import ffn_importance, keep_top, prune_ffn
from tests.test_distill import tiny_zoo  # noqa: F401  (the fixture: two tiny teachers and a data file)


class _Tok:
    """A whitespace tokenizer with the call signature the pruning loop uses (ids from a hash, no network)."""

    def __call__(self, qs, ps, truncation=True, max_length=32, padding=False, return_tensors=None):
        ids = [[1] + [2 + hash(w) % 50 for w in (q + " " + p).split()][: max_length - 1] for q, p in zip(qs, ps)]
        if not padding:
            return {"input_ids": ids}
        n = max(len(x) for x in ids)
        return {"input_ids": torch.tensor([x + [0] * (n - len(x)) for x in ids]),
                "attention_mask": torch.tensor([[1] * len(x) + [0] * (n - len(x)) for x in ids])}


def _tiny_classifier(seed: int = 0):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=24,
                     num_labels=1, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return BertForSequenceClassification(cfg).eval()


def _pairs(n: int = 12) -> list[QAPair]:
    words = "who what when where river city king war song film born built".split()
    return [QAPair(f"q{i // 3}", " ".join(words[i % 5: i % 5 + 3]), f"p{i}", " ".join(words[(i * 7) % 9: (i * 7) % 9 + 4]),
                   int(i % 3 == 0)) for i in range(n)]


def test_a_dead_unit_has_zero_importance_and_pruning_it_changes_nothing():
    model, tok, pairs = _tiny_classifier(), _Tok(), _pairs()
    with torch.no_grad():
        for layer in model.bert.encoder.layer:
            layer.output.dense.weight[:, [3, 17]] = 0.0  # units 3 and 17 feed nothing downstream
    imp = ffn_importance(model, tok, pairs, max_length=16, batch_size=5)
    assert [tuple(s.shape) for s in imp] == [(24,), (24,)]
    for s in imp:
        assert float(s[3]) == 0.0 and float(s[17]) == 0.0
        assert float(s.sum()) > 0
    keep = keep_top(imp, 22)
    assert all(3 not in k.tolist() and 17 not in k.tolist() for k in keep)
    pruned = prune_ffn(model.bert, keep)
    assert pruned.config.intermediate_size == 22 and pruned.encoder.layer[1].output.dense.weight.shape == (32, 22)
    enc = tok([p.query for p in pairs], [p.passage for p in pairs], max_length=16, padding=True)
    with torch.no_grad():
        a = model.bert(**enc).pooler_output
        b = pruned.eval()(**enc).pooler_output
    assert torch.allclose(a, b, atol=1e-6)


def test_keep_top_takes_the_largest_in_ascending_index_order():
    s = [torch.tensor([0.5, 3.0, 0.1, 2.0]), torch.tensor([9.0, 0.0, 1.0, 0.2])]
    assert [k.tolist() for k in keep_top(s, 2)] == [[1, 3], [0, 2]]


def test_pruning_needs_labels_and_a_uniform_width():
    from qadistill.errors import UserInputError

    model = _tiny_classifier()
    with pytest.raises(UserInputError, match="need labels"):
        ffn_importance(model, _Tok(), [QAPair("q", "a b", "p", "c d", None)], max_length=8)
    with pytest.raises(ValueError, match="same number"):
        prune_ffn(model.bert, [torch.arange(10), torch.arange(12)])


PRUNED = """kind = "student"
name = "tiny-pruned"
description = "the tiny student with its FFN pruned"
init = {{ type = "prune", model = "{model}", intermediate_size = {width}, importance_queries = 6 }}
"""


@requires_package("all-minilm-l6-v2")
def test_distill_from_a_pruned_student_recovers_and_saves_a_plain_smaller_model(cli, tiny_zoo, tmp_path):
    from transformers import AutoModelForSequenceClassification

    common = ["--teachers", "tiny-t0,tiny-t1", "--data", str(tiny_zoo), "--max-length", "48", "--batch-size", "8", "--format", "json"]
    r = cli("distill", "--student", "tiny-random-student", *common, "--name", "stu-full")
    assert r.exit_code == 0, r.output
    assert cli("zoo", "add", str(write(tmp_path / "p.toml", PRUNED.format(model="stu-full", width=48)))).exit_code == 0
    listed = {x["name"]: x for x in json.loads(cli("zoo", "list", "--format", "json").stdout)}
    assert listed["tiny-pruned"]["available"]
    r = cli("distill", "--student", "tiny-pruned", *common, "--name", "stu-pruned")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["pruned"]["intermediate_before"] == 128 and res["pruned"]["intermediate_after"] == 48
    assert res["pruned"]["queries"] == 6 and len(res["pruned"]["kept_importance"]) == 2
    assert all(0.375 <= k <= 1.0 for k in res["pruned"]["kept_importance"])  # the top 48 of 128 hold at least 48/128
    assert res["student"]["init"] == {"type": "prune", "model": "stu-full", "intermediate_size": 48, "importance_queries": 6}
    folder = tmp_path / "qadistill-home" / "artifacts" / "stu-pruned"
    m = AutoModelForSequenceClassification.from_pretrained(str(folder))  # plain transformers: a plain BertConfig
    assert m.config.intermediate_size == 48 and m.bert.encoder.layer[0].intermediate.dense.out_features == 48
    assert res["pruned"]["source"] == "stu-full" and "pruned from `stu-full`" in (folder / "README.md").read_text() and "128 -> 48 in every layer" in (folder / "README.md").read_text()
    full = json.loads((tmp_path / "qadistill-home" / "artifacts" / "stu-full" / "metrics.json").read_text())
    assert res["parameters"] < full["parameters"]


@requires_package("all-minilm-l6-v2")
def test_a_pruned_student_of_an_unbuilt_or_too_small_source_fails_before_any_work(cli, tiny_zoo, tmp_path):
    common = ["--teachers", "tiny-t0", "--mode", "single", "--data", str(tiny_zoo), "--max-length", "48"]
    assert cli("zoo", "add", str(write(tmp_path / "p.toml", PRUNED.format(model="not-built-yet", width=48)))).exit_code == 0
    r = cli("distill", "--student", "tiny-pruned", *common)
    assert r.exit_code == 2 and "init.model 'not-built-yet' is not a built student yet" in r.stderr
    assert "Traceback" not in r.output
    assert cli("distill", "--student", "tiny-random-student", *common, "--batch-size", "8", "--name", "src").exit_code == 0
    assert cli("zoo", "add", "--force", str(write(tmp_path / "p.toml", PRUNED.format(model="src", width=128)))).exit_code == 0
    r = cli("distill", "--student", "tiny-pruned", *common)
    assert r.exit_code == 2 and "does not prune" in r.stderr and "fewer than 128" in r.stderr
