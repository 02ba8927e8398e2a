from __future__ import annotations

import pytest

from qadistill.errors import RecipeError
from qadistill.recipes import load_recipe, parse_recipe, recipe_to_toml
from qadistill.registry import builtin_zoo_dir

TEACHER = {"kind": "teacher", "name": "t", "architecture": "bi-encoder", "source": {"type": "package", "name": "all-minilm-l6-v2"}}
PIPE = {"kind": "pipeline", "name": "p", "teachers": ["a", "b"], "student": "s"}


def with_(base: dict, **changes) -> dict:
    d = {**base}
    for k, v in changes.items():
        if v is ...:
            d.pop(k, None)
        else:
            d[k] = v
    return d


INVALID = [
    # (recipe, field named in the message, text in the message)
    ({"name": "x"}, "kind", "missing"),
    (with_(TEACHER, kind="professor"), "kind", "not a recipe kind"),
    (with_(TEACHER, name="Bad Name!"), "name", "not a valid name"),
    (with_(TEACHER, max_lenght=128), "max_lenght", "unknown field"),
    (with_(TEACHER, architecture="poly-encoder"), "architecture", "'poly-encoder' is not allowed"),
    (with_(TEACHER, max_length=0), "max_length", "greater than or equal to 8"),
    (with_(TEACHER, source={"type": "package", "name": "bert-huge"}), "source.name", "'bert-huge' is not allowed"),
    (with_(TEACHER, source={"type": "hub", "repo_id": "a//b"}), "source.repo_id", "not a valid Hugging Face repo id"),
    (with_(TEACHER, source={"type": "hub", "repo_id": "org/model", "revision": "../etc"}), "source.revision", "not a valid revision"),
    (with_(TEACHER, source={"type": "ftp", "url": "x"}), "source.type", "'ftp' is not allowed"),
    (with_(TEACHER, source=...), None, "set 'source'"),
    (with_(TEACHER, architecture="cross-encoder", calibration={"method": "logistic"}), None, "bi-encoders only"),
    (with_(TEACHER, source=..., finetune_from="all-minilm-l6-v2"), None, "set architecture = \"cross-encoder\""),
    ({"kind": "student", "name": "s", "init": {"type": "config", "hidden_size": 100, "num_heads": 12}}, "init", "multiple of num_heads"),
    ({"kind": "student", "name": "s", "init": {"type": "truncate", "model": "m", "layers": 0}}, "init.layers", "greater than or equal to 1"),
    ({"kind": "student", "name": "s", "init": {}}, "init.type", "missing"),
    ({"kind": "student", "name": "s", "init": {"type": "pretrained", "source": {"type": "local", "path": "/x"}}, "head_combine": "max"}, "head_combine", "'max' is not allowed"),
    (with_(PIPE, distill={"alpha": 1.5}), "distill.alpha", "less than or equal to 1"),
    (with_(PIPE, distill={"temperature": 0}), "distill.temperature", "greater than 0"),
    (with_(PIPE, distill={"mode": "single"}), None, "exactly one teacher, got 2"),
    (with_(PIPE, teachers=[], distill={"mode": "mkdm"}), None, "needs at least one teacher"),
    (with_(PIPE, teachers=["a", "a"]), None, "must not repeat"),
    (with_(PIPE, distill={"mode": "gold"}), None, "labels only"),
    (with_(PIPE, export={"targets": ["onnx", "int4"]}), "export.targets.1", "'int4' is not allowed"),
    (with_(PIPE, data={"limit_train_queries": -3}), "data.limit_train_queries", "greater than or equal to 1"),
    (with_(PIPE, student=...), "student", "missing"),
    # strict types: a quoted number or a word for a boolean is an error, never coerced
    (with_(PIPE, distill={"max_length": "64"}), "distill.max_length", "valid integer (got '64')"),
    (with_(PIPE, distill={"freeze_embeddings": "yes"}), "distill.freeze_embeddings", "valid boolean (got 'yes')"),
    (with_(PIPE, distill={"learning_rate": "3e-4"}), "distill.learning_rate", "valid number (got '3e-4')"),
    ({"kind": "student", "name": "s", "init": {"type": "prune", "model": "m"}}, "init", "needs intermediate_size, attention_heads or activation"),
    ({"kind": "student", "name": "s", "init": {"type": "prune", "model": "m", "activation": "swish"}}, "init.activation", "'swish' is not allowed"),
]


@pytest.mark.parametrize("data,field,text", INVALID, ids=[f"{i}-{f or 'model'}" for i, (_, f, _) in enumerate(INVALID)])
def test_invalid_recipes_name_file_field_and_problem(data, field, text):
    with pytest.raises(RecipeError) as ei:
        parse_recipe(data, "my.toml")
    msg = ei.value.message
    assert msg.startswith("my.toml")
    if field:
        assert f"field '{field}'" in msg, msg
    assert text in msg, msg
    assert ei.value.hint


def test_toml_syntax_error_names_file(tmp_path):
    f = tmp_path / "broken.toml"
    f.write_text('kind = "teacher"\nname = \n')
    with pytest.raises(RecipeError, match=r"broken.toml: invalid TOML"):
        load_recipe(f)


def test_binary_file_and_missing_file(tmp_path):
    f = tmp_path / "bin.toml"
    f.write_bytes(b"\xff\xfe\x00\x01")
    with pytest.raises(RecipeError, match="not UTF-8"):
        load_recipe(f)
    with pytest.raises(RecipeError, match="file not found"):
        load_recipe(tmp_path / "nope.toml")


def test_every_builtin_recipe_validates_and_round_trips(tmp_path):
    files = sorted(builtin_zoo_dir().glob("*.toml"))
    assert len(files) >= 10
    for f in files:
        r = load_recipe(f)
        assert f.stem == r.name, f"{f.name}: file name should match the recipe name"
        again = tmp_path / f.name
        again.write_text(recipe_to_toml(r))
        assert load_recipe(again) == r


def test_defaults_are_filled():
    r = parse_recipe({"kind": "pipeline", "name": "p", "teachers": ["a"], "student": "s"})
    assert r.distill.mode == "avg" and r.distill.alpha == 0.5 and r.data.name == "wikiqa"
    assert r.export.targets == ["onnx", "int8-dynamic"]


def test_training_settings_are_composed_from_one_base_that_maps_onto_the_loop():
    """[distill] and [finetune] extend one TrainSettings; every field they share with train.TrainConfig reaches the loop
    through train_config, so a recipe knob is never silently dropped."""
    from dataclasses import fields

    from qadistill.recipes import DistillSettings, FinetuneSettings, TrainSettings
    from qadistill.train import TrainConfig, train_config

    loop = {f.name for f in fields(TrainConfig)}
    assert set(TrainSettings.model_fields) <= loop
    assert issubclass(DistillSettings, TrainSettings) and issubclass(FinetuneSettings, TrainSettings)
    d = DistillSettings(epochs=3, patience=5, eval_every=7, loss="listwise", list_size=8, temperature=1.5)
    cfg = train_config(d)
    for k in set(DistillSettings.model_fields) & loop:
        assert getattr(cfg, k) == getattr(d, k), k
    assert (cfg.loss, cfg.list_size, cfg.patience) == ("listwise", 8, 5)
    # teach's own defaults stay its own
    assert (FinetuneSettings().epochs, FinetuneSettings().learning_rate, DistillSettings().epochs) == (2, 3e-5, 1)
