from __future__ import annotations

import json

import pytest

from conftest import ActAt, make_tiny_model, tiny_jsonl
from qadistill.errors import UserInputError
from qadistill.finetune import FinetuneConfig, bucketed_batches, finetune_cross_encoder
from qadistill.recipes import parse_recipe

pytestmark = pytest.mark.integration  # real models, processes or the CLI end to end

RECIPE = parse_recipe({"kind": "teacher", "name": "tiny-cross", "architecture": "cross-encoder", "finetune_from": "all-minilm-l6-v2"})


def cfg(data, **kw):
    # dev named explicitly as the same file: these tests check the loop, not held-out quality (a file alone is split)
    base = dict(data=str(data), dev=str(data), epochs=2, batch_size=8, max_length=48, learning_rate=5e-4, checkpoint_every=3, patience=5)
    return FinetuneConfig(**{**base, **kw})


def test_bucketed_batches_are_seeded_and_cover_everything():
    lengths = [i % 37 for i in range(500)]
    a = bucketed_batches(lengths, 16, seed=1)
    assert a == bucketed_batches(lengths, 16, seed=1) and a != bucketed_batches(lengths, 16, seed=2)
    assert sorted(i for b in a for i in b) == list(range(500))


def _ctrl_c():
    raise KeyboardInterrupt


def _InterruptAt(step):
    """Ctrl-C at training step ``step``."""
    return ActAt(step, _ctrl_c)


def test_interrupted_and_resumed_run_matches_an_uninterrupted_one(tmp_path):
    import torch
    from safetensors.torch import load_file

    data = tiny_jsonl(tmp_path / "d.jsonl", n_queries=10, per_query=4)
    base = make_tiny_model(tmp_path / "base", "cross")
    full = finetune_cross_encoder(RECIPE, base, cfg(data), out_dir=tmp_path / "full")
    with pytest.raises(KeyboardInterrupt):
        finetune_cross_encoder(RECIPE, base, cfg(data), out_dir=tmp_path / "resumed", progress=_InterruptAt(7))
    assert (tmp_path / "resumed.work" / "checkpoint.pt").exists()
    with pytest.raises(UserInputError, match="unfinished run") as ei:
        finetune_cross_encoder(RECIPE, base, cfg(data), out_dir=tmp_path / "resumed")
    assert "--resume" in ei.value.hint
    res = finetune_cross_encoder(RECIPE, base, cfg(data), out_dir=tmp_path / "resumed", resume=True)
    assert res["steps"] == full["steps"] == 10
    assert res["dev_map"] == pytest.approx(full["dev_map"], abs=1e-9)
    assert [h["dev_map"] for h in res["history"]] == pytest.approx([h["dev_map"] for h in full["history"]])
    a = load_file(str(tmp_path / "full" / "model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "model.safetensors"))
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    folder = tmp_path / "resumed"
    assert {"config.json", "model.safetensors", "tokenizer.json", "metrics.json", "recipe.toml"} <= {p.name for p in folder.iterdir()}
    assert json.loads((folder / "metrics.json").read_text())["steps"] == 10
    assert not (tmp_path / "resumed.work").exists()


def test_teach_refuses_a_bi_encoder(tmp_path):
    r = parse_recipe({"kind": "teacher", "name": "b", "architecture": "bi-encoder", "source": {"type": "local", "path": "/x"}})
    with pytest.raises(UserInputError, match="fine-tunes cross-encoders"):
        finetune_cross_encoder(r, tmp_path, cfg(tmp_path / "x.jsonl"))


def test_teach_cli_errors(cli):
    r = cli("teach", "all-minilm-l6-v2")
    assert r.exit_code == 2 and "no finetune_from" in r.stderr
    r = cli("teach", "minilm-l6-cross", "--train-filter", "some")
    assert r.exit_code == 2


def test_teach_with_soft_targets_learns_the_teachers_mean_logit(tmp_path, monkeypatch):
    import numpy as np

    import qadistill.finetune as ft

    data = tiny_jsonl(tmp_path / "d.jsonl", n_queries=10, per_query=4)
    base = make_tiny_model(tmp_path / "base", "cross")

    class FakeTeacher:
        def __init__(self, sign):
            self.sign = sign

        def logits(self, ds, progress=None):
            return np.array([self.sign * (2.0 if p.label else -2.0) + 0.1 * i for i, p in enumerate(ds.pairs)], dtype=np.float32)

    seen = {}
    real_train = ft.train

    def spy(model, tok, pairs, teacher_logits, tcfg, *a, **kw):
        seen.update(targets=teacher_logits, alpha=tcfg.alpha, temperature=tcfg.temperature, n=len(pairs))
        return real_train(model, tok, pairs, teacher_logits, tcfg, *a, **kw)

    monkeypatch.setattr(ft, "train", spy)
    t1, t2 = FakeTeacher(1.0), FakeTeacher(0.5)
    res = finetune_cross_encoder(RECIPE, base, cfg(data, epochs=1, distill_from=["t1", "t2"], alpha=0.3), out_dir=tmp_path / "soft",
                                 soft_teachers=[t1, t2])
    from qadistill.data import load_dataset

    ds = load_dataset(str(data))
    expect = (t1.logits(ds) + t2.logits(ds)) / 2
    assert seen["targets"].shape == (seen["n"], 1) and seen["alpha"] == 0.3 and seen["temperature"] == 2.0
    np.testing.assert_allclose(seen["targets"][:, 0], expect[: seen["n"]], rtol=1e-6)  # every tiny query has a positive
    assert res["config"]["distill_from"] == ["t1", "t2"]
    finetune_cross_encoder(RECIPE, base, cfg(data, epochs=1), out_dir=tmp_path / "gold")
    assert seen["targets"] is None and seen["alpha"] == 1.0


def test_teach_cli_refuses_to_distill_from_itself(cli):
    r = cli("teach", "minilm-l6-cross-wikiqa", "--distill-from", "minilm-l6-cross-wikiqa")
    assert r.exit_code == 2 and "itself" in r.stderr


def test_a_taught_teacher_records_how_it_was_made_and_the_recipe_gives_teach_its_defaults(tmp_path):
    import tomllib

    from qadistill.recipes import load_recipe
    from qadistill.registry import Registry

    data = tiny_jsonl(tmp_path / "d.jsonl", n_queries=10, per_query=4)
    base = make_tiny_model(tmp_path / "base", "cross")
    finetune_cross_encoder(RECIPE, base, cfg(data, epochs=1, learning_rate=1e-4), out_dir=tmp_path / "t")
    made = tomllib.loads((tmp_path / "t" / "recipe.toml").read_text())["finetune"]
    assert made["epochs"] == 1 and made["learning_rate"] == 1e-4 and made["data"] == str(data)
    assert load_recipe(tmp_path / "t" / "recipe.toml").finetune.epochs == 1  # it loads back as a recipe
    published = Registry().recipe("minilm-l6-cross-wikiqa").finetune
    assert published.distill_from == ["all-mpnet-base-v2"] and published.epochs == 4 and published.eval_every == 271


@pytest.mark.parametrize("how", ["with-positive", "all"])
def test_teach_on_data_without_a_correct_answer_is_a_data_error_before_any_work(tmp_path, how):
    rows = [{"query_id": f"q{i}", "query": f"question {i}?", "passage_id": f"p{i}{j}", "passage": f"passage {j} of {i}", "label": 0}
            for i in range(4) for j in range(3)]
    data = tmp_path / "allneg.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    base = make_tiny_model(tmp_path / "base", "cross")
    with pytest.raises(UserInputError, match="no training query has a correct answer") as ei:
        finetune_cross_encoder(RECIPE, base, cfg(data, train_filter=how), out_dir=tmp_path / "out")
    assert "label 1" in ei.value.hint
    assert not (tmp_path / "out.work").exists() and not (tmp_path / "out").exists()


def test_teach_interrupted_before_a_checkpoint_does_not_promise_one(tmp_path, monkeypatch):
    import qadistill.finetune as ft
    from qadistill.errors import InterruptedRunError
    from qadistill.store import Store

    def interrupted(*a, **k):
        raise KeyboardInterrupt  # e.g. Ctrl-C while the soft-target teachers score, before the first step

    monkeypatch.setattr(ft, "train", interrupted)
    data = tiny_jsonl(tmp_path / "d.jsonl", n_queries=6, per_query=3)
    with pytest.raises(InterruptedRunError) as ei:
        ft.run_teach(Store.open(), RECIPE, make_tiny_model(tmp_path / "base", "cross"), cfg(data), out_dir=tmp_path / "out")
    assert "checkpoint was saved" not in str(ei.value) and "--resume" not in ei.value.hint


def test_teach_interrupted_with_a_checkpoint_names_the_whole_command_to_resume(tmp_path, isolated_home):
    """The hint after Ctrl-C read `qadistill teach NAME --resume`, dropping --data and --out: followed, it trained afresh
    on the recipe's default data into the zoo's folder, registered that, and then refused the real resume. It now
    repeats the interrupted command with --resume; a --resume that finds no checkpoint says where it looked."""
    import qadistill.finetune as ft
    from qadistill.errors import InterruptedRunError
    from qadistill.store import Store

    data = tiny_jsonl(tmp_path / "my data.jsonl", n_queries=10, per_query=4)
    out = tmp_path / "t out"
    command = f"qadistill teach tiny-cross --data '{data}' --out '{out}'"
    assert ft.resume_note(ft.teach_folder("tiny-cross", out), resume=True).startswith(f"note: no checkpoint to resume in {out}.work")
    with pytest.raises(InterruptedRunError) as ei:
        ft.run_teach(Store.open(), RECIPE, make_tiny_model(tmp_path / "base", "cross"), cfg(data), out_dir=out,
                     progress=_InterruptAt(7), command=command)
    assert "checkpoint was saved" in str(ei.value) and ei.value.hint == f"continue with `{command} --resume`"
    assert ft.resume_note(ft.teach_folder("tiny-cross", out), resume=True) is None and ft.resume_note(ft.teach_folder("tiny-cross", out), resume=False) is None
    assert ft.resume_note(ft.teach_folder("tiny-cross", None), resume=True) is not None  # the zoo's folder has no checkpoint: said


def test_teach_out_elsewhere_never_replaces_the_registered_build(tmp_path, isolated_home, monkeypatch):
    import qadistill.finetune as ft
    from qadistill.errors import UserInputError
    from qadistill.store import Store

    store = Store.open()
    data = tiny_jsonl(tmp_path / "d.jsonl", n_queries=6, per_query=3)
    base = make_tiny_model(tmp_path / "base", "cross")
    m = ft.run_teach(store, RECIPE, base, cfg(data, epochs=1), out_dir=tmp_path / "first")
    figures = store.results("tiny-cross")
    assert m["path"] == str(tmp_path / "first") and figures
    monkeypatch.setattr(ft, "train", lambda *a, **k: pytest.fail("trained before refusing"))
    with pytest.raises(UserInputError, match="already built at") as ei:
        ft.run_teach(store, RECIPE, base, cfg(data, epochs=1), out_dir=tmp_path / "scratch")
    assert "omit --out" in ei.value.hint and not (tmp_path / "scratch").exists()
    assert store.results("tiny-cross") == figures  # the build in use keeps its figures
    arts = [a for a in store.artifacts(recipe="tiny-cross") if a.kind == "teacher-model"]
    assert [a.path for a in arts][-1] == str(tmp_path / "first")


@pytest.mark.parametrize("when", ["renamed", "clean-up"])
def test_teach_interrupted_after_its_folder_is_in_place_registers_it_and_says_so(tmp_path, isolated_home, monkeypatch, when):
    """Ctrl-C once the fine-tuned folder is renamed into place (before it is registered) or while the work folder is
    removed: the teacher is registered with its dev figure and the message says there is nothing to resume."""
    import os
    import signal

    import qadistill.finetune as ft
    from qadistill.errors import InterruptedRunError
    from qadistill.store import Store

    if when == "renamed":
        real = ft.replace_dir

        def then_ctrl_c(src, dst):
            real(src, dst)
            os.kill(os.getpid(), signal.SIGINT)  # a Ctrl-C that lands right after the rename
        monkeypatch.setattr(ft, "replace_dir", then_ctrl_c)
    else:
        real_rmtree = ft.shutil.rmtree

        def rmtree(path, *a, **k):
            if str(path).endswith(".work"):
                raise KeyboardInterrupt
            return real_rmtree(path, *a, **k)
        monkeypatch.setattr(ft.shutil, "rmtree", rmtree)
    store = Store.open()
    data = tiny_jsonl(tmp_path / "d.jsonl", n_queries=6, per_query=3)
    with pytest.raises(InterruptedRunError) as ei:
        ft.run_teach(store, RECIPE, make_tiny_model(tmp_path / "base", "cross"), cfg(data, epochs=1), out_dir=tmp_path / "out")
    assert "saved and registered" in str(ei.value) and "--resume" not in ei.value.hint and "zoo show tiny-cross" in ei.value.hint
    arts = [a for a in store.artifacts(recipe="tiny-cross") if a.kind == "teacher-model"]
    assert [a.path for a in arts] == [str(tmp_path / "out")]
    assert [r["metric"] for r in store.results("tiny-cross")] == ["map"]
    assert (tmp_path / "out" / "model.safetensors").exists()


def test_a_finished_builds_leftover_checkpoints_do_not_block_a_rebuild(tmp_path):
    """A build killed between putting its folder in place (registered) and deleting its work folder left NAME.work:
    --overwrite then said "an unfinished run exists: add --resume", and --resume "already exists: pass --overwrite".
    Checkpoints older than the built folder's checksum record are that leftover, and go; newer ones (a rebuild
    interrupted later) are an unfinished run, still refused without --resume."""
    import os

    from qadistill.errors import UserInputError
    from qadistill.finetune import leftover_work, work_dir_for
    from qadistill.integrity import write_checksums

    out = tmp_path / "m"
    out.mkdir()
    (out / "config.json").write_text("{}")
    ckpt = tmp_path / "m.work" / "stage2" / "checkpoint.pt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"x")
    os.utime(ckpt, (1_000_000, 1_000_000))
    assert not leftover_work(out)  # no built folder yet: an unfinished first build
    with pytest.raises(UserInputError, match="unfinished run"):
        work_dir_for(out, resume=False)
    write_checksums(out)
    assert leftover_work(out)
    assert work_dir_for(out, resume=False).exists() and not ckpt.exists()
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    ckpt.write_bytes(b"y")  # newer than the build: a rebuild interrupted after it
    os.utime(ckpt, (4_000_000_000, 4_000_000_000))
    assert not leftover_work(out)
    with pytest.raises(UserInputError, match="unfinished run"):
        work_dir_for(out, resume=False)
