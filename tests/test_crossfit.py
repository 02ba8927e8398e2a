"""Cross-fitted teachers (`teach --folds K`): folds dealt by query, fold models trained without their fold, and each
pair of a teacher's own training queries scored by the fold model that held its query out."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import make_tiny_model, tiny_jsonl
from qadistill.crossfit import FOLDS_DIR, FOLDS_FILE, assign_folds, query_key, read_folds, route, write_folds
from qadistill.data import QADataset, QAPair, load_dataset
from qadistill.errors import QadistillError, UserInputError
from qadistill.recipes import parse_recipe

RECIPE = parse_recipe({"kind": "teacher", "name": "tiny-cross", "architecture": "cross-encoder", "finetune_from": "all-minilm-l6-v2"})


def _ds(n_queries=9, per_query=3, dup_text=False):
    pairs = [QAPair(f"q{i}", f"question {i % 4 if dup_text else i}?", f"p{i}-{j}", f"passage {j} of {i}", int(j == 0))
             for i in range(n_queries) for j in range(per_query)]
    return QADataset("t", "train", pairs)


def test_folds_keep_whole_queries_lose_no_pair_and_are_balanced_and_seeded():
    ds = _ds(10)
    folds = assign_folds(ds, 3, seed=0)
    assert sorted(len({p.query for p in f.pairs}) for f in folds) == [3, 3, 4]
    assert sorted((p.query_id, p.passage_id) for f in folds for p in f.pairs) == sorted((p.query_id, p.passage_id) for p in ds.pairs)
    texts = [{p.query for p in f.pairs} for f in folds]
    assert all(not (a & b) for i, a in enumerate(texts) for b in texts[i + 1:])
    assert [f.pairs for f in assign_folds(ds, 3, seed=0)] == [f.pairs for f in folds]
    assert [{p.query for p in f.pairs} for f in assign_folds(ds, 3, seed=1)] != texts
    shuffled = QADataset("t", "train", list(reversed(ds.pairs)))  # row order does not move a query to another fold
    assert [{p.query for p in f.pairs} for f in assign_folds(shuffled, 3, seed=0)] == texts


def test_a_query_text_asked_twice_stays_in_one_fold():
    ds = _ds(8, dup_text=True)  # q0 and q4 share a text: scoring sees texts, so both must be held out together
    for f in assign_folds(ds, 2, seed=0):
        ids = {p.query_id for p in f.pairs}
        assert all((f"q{i}" in ids) == (f"q{i + 4}" in ids) for i in range(4))


@pytest.mark.parametrize("k,msg", [(1, "at least 2"), (12, "only 9 distinct queries")])
def test_fold_counts_that_cannot_work_are_refused(k, msg):
    with pytest.raises(UserInputError, match=msg):
        assign_folds(_ds(9), k, seed=0)


def test_a_recipe_with_one_fold_is_refused():
    from qadistill.errors import RecipeError
    from qadistill.recipes import FinetuneSettings

    with pytest.raises(Exception, match="1 fold is no cross-fitting"):
        FinetuneSettings(folds=1)
    assert FinetuneSettings(folds=3).folds == 3 and FinetuneSettings().folds == 0
    assert RecipeError  # the recipe loader maps the ValidationError (test_recipes covers the mapping)


def _fake_teacher(tmp_path, k=2):
    folder = make_tiny_model(tmp_path / "t", "cross")
    ds = _ds(6)
    folds = assign_folds(ds, k, seed=0)
    for i in range(k):
        make_tiny_model(folder / FOLDS_DIR / f"fold-{i}", "cross", seed=i + 1)
    write_folds(folder, folds, seed=0)
    return folder, folds


def test_route_sends_each_held_out_query_to_its_fold_and_the_rest_to_the_full_model(tmp_path):
    folder, folds = _fake_teacher(tmp_path)
    got = read_folds(folder)
    assert [p.name for p, _ in got] == ["fold-0", "fold-1"]
    q0 = folds[0].pairs[0].query
    q1 = folds[1].pairs[0].query
    assert route([q0, q1, "a question nobody trained on?"], got) == [0, 1, -1]
    assert query_key(q0) in got[0][1] and q0 not in (tmp_path / "t" / FOLDS_DIR / FOLDS_FILE).read_text()  # keys, not texts


@pytest.mark.parametrize("damage", ["not json", "missing fold folder", "one fold", "wrong format"])
def test_a_damaged_fold_list_is_an_error_naming_it_never_a_silent_full_model(tmp_path, damage):
    import shutil

    folder, _ = _fake_teacher(tmp_path)
    f = folder / FOLDS_DIR / FOLDS_FILE
    doc = json.loads(f.read_text())
    if damage == "not json":
        f.write_text("{oops")
    elif damage == "missing fold folder":
        shutil.rmtree(folder / FOLDS_DIR / "fold-1")
    elif damage == "one fold":
        f.write_text(json.dumps({**doc, "folds": doc["folds"][:1]}))
    else:
        f.write_text(json.dumps({**doc, "format": 99}))
    with pytest.raises(QadistillError, match="folds.json") as ei:
        read_folds(folder)
    assert "--folds" in ei.value.hint


@pytest.mark.integration
def test_a_cross_fitted_teacher_scores_its_training_queries_out_of_fold(tmp_path, monkeypatch):
    """End to end: teach --folds 2 trains the full model and two fold models, each without its fold; the teacher then
    scores a training pair with the fold model that held its query out and any other pair with the full model."""
    import qadistill.finetune as ft
    from qadistill.finetune import FinetuneConfig, finetune_cross_encoder
    from qadistill.teachers import CrossEncoderTeacher

    data = tiny_jsonl(tmp_path / "d.jsonl", n_queries=12, per_query=4)
    dev = tiny_jsonl(tmp_path / "dev.jsonl", n_queries=4, per_query=4, seed=7)
    base = make_tiny_model(tmp_path / "base", "cross")
    seen = []
    real_train = ft.train

    def spy(model, tok, pairs, *a, dev=None, **kw):
        seen.append(({p.query for p in pairs}, {p.query for p in dev.pairs}))
        return real_train(model, tok, pairs, *a, dev=dev, **kw)

    monkeypatch.setattr(ft, "train", spy)
    cfg = FinetuneConfig(data=str(data), dev=str(dev), epochs=1, batch_size=8, max_length=48, learning_rate=5e-4, folds=2,
                         train_filter="all")
    m = finetune_cross_encoder(RECIPE, base, cfg, out_dir=tmp_path / "t")
    train_ds = load_dataset(str(data), "train")
    all_q = {p.query for p in train_ds.pairs}
    assert len(seen) == 3 and seen[0][0] == all_q  # the full model: every query, early-stopped on dev
    for trained, held in seen[1:]:  # each fold model: never its held-out queries, early-stopped on them
        assert held and not (trained & held) and trained | held == all_q
    assert m["folds"]["k"] == 2 and len(m["folds"]["held_out_map"]) == 2
    assert json.loads((tmp_path / "t" / "metrics.json").read_text())["folds"]["k"] == 2

    folder = tmp_path / "t"
    teacher = CrossEncoderTeacher("tiny-cross", folder, 48)
    full = CrossEncoderTeacher("full", folder, 48)
    full._folds = []  # the same folder read as a plain model
    fold0 = CrossEncoderTeacher("fold0", folder / FOLDS_DIR / "fold-0", 48)
    fold1 = CrossEncoderTeacher("fold1", folder / FOLDS_DIR / "fold-1", 48)
    held0, held1 = seen[1][1], seen[2][1]
    qs = [p.query for p in train_ds.pairs] + ["a question nobody trained on?"]
    ps = [p.passage for p in train_ds.pairs] + [train_ds.pairs[0].passage]
    got = teacher._score_shard(qs, ps)
    want = np.where([q in held0 for q in qs], fold0._score_shard(qs, ps),
                    np.where([q in held1 for q in qs], fold1._score_shard(qs, ps), full._score_shard(qs, ps)))
    assert np.allclose(got, want, atol=1e-5)
    assert not np.allclose(got[:-1], full._score_shard(qs, ps)[:-1], atol=1e-3)  # not what the memorising model says
    assert got[-1] == pytest.approx(full._score_shard(qs[-1:], ps[-1:])[0], abs=1e-5)


@pytest.mark.integration
def test_an_interrupted_cross_fit_resumes_without_training_finished_models_again(tmp_path, monkeypatch):
    import qadistill.finetune as ft
    from qadistill.finetune import FinetuneConfig, finetune_cross_encoder

    data = tiny_jsonl(tmp_path / "d.jsonl", n_queries=8, per_query=3)
    base = make_tiny_model(tmp_path / "base", "cross")
    cfg = FinetuneConfig(data=str(data), dev=str(data), epochs=1, batch_size=8, max_length=48, learning_rate=5e-4, folds=2,
                         checkpoint_every=1)
    real_train, calls = ft.train, []

    def interrupted_in_fold_2(*a, **kw):
        calls.append(kw.get("label"))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_train(*a, **kw)

    monkeypatch.setattr(ft, "train", interrupted_in_fold_2)
    with pytest.raises(KeyboardInterrupt):
        finetune_cross_encoder(RECIPE, base, cfg, out_dir=tmp_path / "t")
    calls.clear()
    monkeypatch.setattr(ft, "train", lambda *a, **kw: calls.append(kw.get("label")) or real_train(*a, **kw))
    for other in ({"epochs": 2}, {"folds": 3}, {"folds": 0}):  # a different run's settings never mix in
        with pytest.raises(UserInputError, match="other settings"):
            finetune_cross_encoder(RECIPE, base, FinetuneConfig(**{**cfg.__dict__, **other}), out_dir=tmp_path / "t", resume=True)
    m = finetune_cross_encoder(RECIPE, base, cfg, out_dir=tmp_path / "t", resume=True)
    assert calls == ["teach tiny-cross: fold 2/2"] and m["folds"]["k"] == 2
    assert (tmp_path / "t" / FOLDS_DIR / "fold-1" / "config.json").exists() and not (tmp_path / "t.work").exists()


def test_teach_folds_1_is_a_one_line_error_naming_the_option(cli):
    r = cli("teach", "minilm-l6-cross-wikiqa", "--folds", "1")
    assert r.exit_code != 0 and "--folds: 1 fold is no cross-fitting" in r.output and "Traceback" not in r.output
