"""Structured compression of a built student (FastFormers-style FFN pruning, merged attention heads, the tanh GELU):
importance that is exact where it must be, a reshaped model that is a plain BertConfig, and a recovery distillation
that starts from it and says what it changed."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import requires_package, write
from qadistill.data import QAPair
from qadistill.prune import ffn_importance, keep_top, merge_heads, prune_ffn, with_activation
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


def _attention_only(layer, hidden, mask):
    return layer.attention.self(hidden, attention_mask=mask)[0]


def test_merged_heads_keep_every_weight_and_equal_a_by_hand_softmax_over_the_joined_slices(tmp_path):
    from transformers import BertModel

    model = _tiny_classifier(3).bert.eval()  # 2 heads of 16
    merged = merge_heads(model, 1).eval()
    assert merged.config.num_attention_heads == 1 and merged.encoder.layer[0].attention.self.attention_head_size == 32
    for k, v in model.state_dict().items():
        assert torch.equal(v, merged.state_dict()[k]), k
    # the merged head by hand: one softmax over the full 32-dim q·k, scaled by 1/sqrt(32)
    x = torch.randn(2, 5, 32)
    att = merged.encoder.layer[0].attention.self
    q, k, v = att.query(x), att.key(x), att.value(x)
    want = torch.softmax(q @ k.transpose(1, 2) / 32 ** 0.5, dim=-1) @ v
    with torch.no_grad():
        got = _attention_only(merged.encoder.layer[0], x, None)
        two = _attention_only(model.encoder.layer[0], x, None)
    assert torch.allclose(got, want, atol=1e-5)
    assert not torch.allclose(got, two, atol=1e-3)  # two heads of 16 are another function
    merged.save_pretrained(tmp_path / "m")
    again = BertModel.from_pretrained(str(tmp_path / "m"))  # plain transformers, plain BertConfig
    assert again.config.num_attention_heads == 1


def test_merging_needs_a_divisor_below_the_head_count():
    bert = _tiny_classifier().bert
    for heads in (2, 3):
        with pytest.raises(ValueError, match="cannot merge"):
            merge_heads(bert, heads)


def test_the_tanh_gelu_changes_the_activation_only_and_barely_the_output():
    model = _tiny_classifier(1).bert.eval()
    fast = with_activation(model, "gelu_new").eval()
    assert fast.config.hidden_act == "gelu_new" and model.config.hidden_act == "gelu"
    ids = torch.randint(0, 60, (3, 9))
    with torch.no_grad():
        a, b = model(input_ids=ids).last_hidden_state, fast(input_ids=ids).last_hidden_state
    diff = float((a - b).abs().max())
    assert 0 < diff < 1e-2


def test_a_prune_init_must_change_something_and_say_a_valid_change(tmp_path):
    from qadistill.errors import UserInputError
    from qadistill.prune import check_init
    from qadistill.recipes import PruneInit

    with pytest.raises(ValueError, match="needs intermediate_size, attention_heads or activation"):
        PruneInit(type="prune", model="m")
    model = _tiny_classifier()
    model.config.num_attention_heads = 4
    model.config.hidden_size = 32
    model.save_pretrained(tmp_path / "src")
    with pytest.raises(UserInputError, match="does not merge the 4 heads") as e:
        check_init(tmp_path / "src", PruneInit(type="prune", model="m", attention_heads=3))
    assert "use one of 1, 2" in e.value.hint
    with pytest.raises(UserInputError, match="already the activation"):
        check_init(tmp_path / "src", PruneInit(type="prune", model="m", activation="gelu"))
    check_init(tmp_path / "src", PruneInit(type="prune", model="m", attention_heads=2, activation="gelu_new"))


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


RESHAPED = """kind = "student"
name = "tiny-reshaped"
description = "the tiny student with merged heads and the tanh GELU"
init = {{ type = "prune", model = "{model}", attention_heads = 2, activation = "gelu_new" }}
"""


@requires_package("all-minilm-l6-v2")
def test_distill_from_merged_heads_saves_a_plain_model_with_fewer_wider_heads(cli, tiny_zoo, tmp_path):
    from transformers import AutoModelForSequenceClassification

    common = ["--teachers", "tiny-t0", "--mode", "single", "--data", str(tiny_zoo), "--max-length", "48", "--batch-size", "8",
              "--format", "json"]
    assert cli("distill", "--student", "tiny-random-student", *common, "--name", "src").exit_code == 0
    assert cli("zoo", "add", str(write(tmp_path / "r.toml", RESHAPED.format(model="src")))).exit_code == 0
    r = cli("distill", "--student", "tiny-reshaped", *common, "--name", "stu-h2")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert (res["pruned"]["heads_before"], res["pruned"]["heads_after"]) == (4, 2)
    assert (res["pruned"]["activation_before"], res["pruned"]["activation_after"]) == ("gelu", "gelu_new")
    assert res["pruned"]["intermediate_after"] == res["pruned"]["intermediate_before"] == 128 and res["pruned"]["pairs"] == 0
    folder = tmp_path / "qadistill-home" / "artifacts" / "stu-h2"
    m = AutoModelForSequenceClassification.from_pretrained(str(folder))
    assert m.config.num_attention_heads == 2 and m.config.hidden_act == "gelu_new"
    card = (folder / "README.md").read_text()
    assert "attention heads 4 -> 2" in card and "activation gelu -> gelu_new" in card and "feed-forward width" not in card
    full = json.loads((tmp_path / "qadistill-home" / "artifacts" / "src" / "metrics.json").read_text())
    assert res["parameters"] == full["parameters"]


CONTINUED = """kind = "student"
name = "tiny-continued"
description = "the tiny student as built, for a further pass"
init = {{ type = "continue", model = "{model}" }}
"""


@requires_package("all-minilm-l6-v2")
def test_a_continue_init_starts_every_head_from_the_built_students_score(cli, tiny_zoo, tmp_path):
    """With a learning rate too small to move a weight, the continued student scores what its source scored: the
    encoder and the served score are carried over (a fresh head would rank differently), in either mode."""
    common = ["--teachers", "tiny-t0,tiny-t1", "--data", str(tiny_zoo), "--max-length", "48", "--batch-size", "8", "--format", "json"]
    r = cli("distill", "--student", "tiny-random-student", *common, "--mode", "avg", "--name", "src")
    assert r.exit_code == 0, r.output
    src = json.loads(r.stdout)
    assert cli("zoo", "add", str(write(tmp_path / "c.toml", CONTINUED.format(model="src")))).exit_code == 0
    listed = {x["name"]: x for x in json.loads(cli("zoo", "list", "--format", "json").stdout)}
    assert listed["tiny-continued"]["available"] and "as built" in listed["tiny-continued"]["source"]
    for mode in ("avg", "mkdm"):
        r = cli("distill", "--student", "tiny-continued", *common, "--mode", mode, "--lr", "1e-12", "--name", f"more-{mode}")
        assert r.exit_code == 0, r.output
        res = json.loads(r.stdout)
        assert res["student"]["init"] == {"type": "continue", "model": "src"} and res["pruned"] is None
        assert res["parameters"] == src["parameters"]
        assert res["metrics"]["test"]["map"] == pytest.approx(src["metrics"]["test"]["map"], abs=1e-9), mode
        assert res["dev_map"] == pytest.approx(src["dev_map"], abs=1e-9), mode
    card = (tmp_path / "qadistill-home" / "artifacts" / "more-mkdm" / "README.md").read_text()
    assert '"type": "continue"' in card and "continued from `src` as built" in card and "pruned from" not in card
    r = cli("distill", "--student", "tiny-continued", *common, "--name", "fresh")  # the same source, a normal rate: it trains
    assert r.exit_code == 0 and json.loads(r.stdout)["metrics"]["test"]["map"] >= 0
    before = (tmp_path / "qadistill-home" / "artifacts" / "src" / "model.safetensors").read_bytes()
    r = cli("distill", "--student", "tiny-continued", *common, "--name", "src", "--overwrite")  # into its own source
    assert r.exit_code == 2 and "the run would replace its own source" in r.stderr and "Traceback" not in r.output
    assert (tmp_path / "qadistill-home" / "artifacts" / "src" / "model.safetensors").read_bytes() == before


@requires_package("all-minilm-l6-v2")
def test_a_continue_init_of_an_unbuilt_source_or_a_teacher_fails_before_any_work(cli, tiny_zoo, tmp_path):
    common = ["--teachers", "tiny-t0", "--mode", "single", "--data", str(tiny_zoo), "--max-length", "48"]
    assert cli("zoo", "add", str(write(tmp_path / "c.toml", CONTINUED.format(model="not-built-yet")))).exit_code == 0
    r = cli("distill", "--student", "tiny-continued", *common)
    assert r.exit_code == 2 and "init.model 'not-built-yet' is not a built student yet" in r.stderr and "Traceback" not in r.output
    listed = {x["name"]: x for x in json.loads(cli("zoo", "list", "--format", "json").stdout)}
    assert listed["tiny-continued"]["availability"] == "needs-build"
    assert cli("zoo", "add", "--force", str(write(tmp_path / "c.toml", CONTINUED.format(model="tiny-t0")))).exit_code == 0
    listed = {x["name"]: x for x in json.loads(cli("zoo", "list", "--format", "json").stdout)}
    assert listed["tiny-continued"]["availability"] == "invalid" and "is a teacher" in listed["tiny-continued"]["detail"]  # no build fixes it
    folder = tmp_path / "not-a-student"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "bert", "id2label": {"0": "a", "1": "b"}}')
    assert cli("zoo", "add", "--force", str(write(tmp_path / "c.toml", CONTINUED.format(model=folder)))).exit_code == 0
    r = cli("distill", "--student", "tiny-continued", *common)
    assert r.exit_code == 2 and "is not a one-logit BERT student" in r.stderr and "continue a student built by" in r.stderr
    (folder / "config.json").write_text('{"model_type": "bert", "id2label": {"0": "LABEL_0"}}')
    (folder / "model.onnx").write_bytes(b"onnx")  # an export folder: config.json beside model.onnx, no PyTorch weights
    r = cli("distill", "--student", "tiny-continued", *common)
    assert r.exit_code == 2 and "holds an ONNX export (model.onnx), which cannot be trained on" in r.stderr
    assert "the student it was exported from" in r.stderr and "damaged" not in r.stderr
