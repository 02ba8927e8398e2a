"""A student truncated from a teacher that `qadistill teach` fine-tunes (``minilm-l6-cross3-student``): its layers come
from the built cross-encoder, and an unbuilt one is a one-line error naming the command that builds it."""
from __future__ import annotations

import pytest

from conftest import make_tiny_model
from qadistill.errors import QadistillError
from qadistill.recipes import parse_recipe

TEACHER = parse_recipe({"kind": "teacher", "name": "tiny-cross", "architecture": "cross-encoder", "finetune_from": "all-minilm-l6-v2"})
STUDENT = parse_recipe({"kind": "student", "name": "tiny-cross1-student", "init": {"type": "truncate", "model": "tiny-cross", "layers": 1}})


class _Registry:
    """The two calls ``build_encoder`` makes for a truncate init: the teacher's recipe and its build."""

    def __init__(self, folder):
        self.folder, self.asked = folder, []

    def recipe(self, ref, kind):
        assert (ref, kind) == ("tiny-cross", "teacher")
        return TEACHER

    def built_teacher(self, ref):
        self.asked.append(ref)
        return self.folder


def test_truncating_a_fine_tuned_teacher_keeps_its_first_layers_and_pooler(tmp_path):
    import torch
    from transformers import BertForSequenceClassification

    folder = make_tiny_model(tmp_path / "built-cross", "cross", seed=3)
    reg = _Registry(folder)
    from qadistill.student import build_encoder

    enc, tok = build_encoder(STUDENT, reg)
    assert reg.asked == ["tiny-cross"] and enc.config.num_hidden_layers == 1
    full = BertForSequenceClassification.from_pretrained(str(folder)).bert.state_dict()
    mine = enc.state_dict()
    assert set(mine) == {k for k in full if not k.startswith("encoder.layer.1.")}
    assert all(torch.equal(mine[k], full[k]) for k in mine)  # embeddings, layer 0 and the trained pooler, unchanged
    assert tok("a question")["input_ids"][0] == tok.cls_token_id


def test_an_unbuilt_fine_tuned_teacher_is_an_error_naming_teach():
    from qadistill.registry import Registry
    from qadistill.store import Store
    from qadistill.student import build_encoder

    reg = Registry(store=Store.open())
    recipe = reg.recipe("minilm-l6-cross3-student", "student")
    with pytest.raises(QadistillError, match="minilm-l6-cross-wikiqa' has not been built") as ei:
        build_encoder(recipe, reg)
    assert "qadistill teach minilm-l6-cross-wikiqa" in ei.value.hint


def test_zoo_show_says_the_cross3_student_needs_its_teacher_built(cli):
    r = cli("zoo", "show", "minilm-l6-cross3-student", "--format", "json")
    assert r.exit_code == 0, r.output
    assert "needs-build" in r.stdout and "qadistill teach minilm-l6-cross-wikiqa" in r.stdout
