"""`distill --unlabelled FILE` (issue 20): TMKD stage 1 on a user's pool, streamed shard by shard through the score
store, recorded in the model, resumable to identical weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import requires_package, tiny_jsonl, write
from test_distill import tiny_zoo  # noqa: F401  (fixture: a cross-encoder and a bi-encoder teacher)
from test_score import _zoo

pytestmark = pytest.mark.integration  # real models, processes or the CLI end to end


@pytest.fixture
def setup(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("QADISTILL_SHARD_PAIRS", "64")  # 300 pool pairs: 5 shards (4 of 64, one of 44)
    _zoo(cli, tmp_path / "models")
    data = tiny_jsonl(tmp_path / "data.jsonl", n_queries=12, per_query=4)
    pool = tiny_jsonl(tmp_path / "pool.jsonl", n_queries=60, per_query=5, seed=3)
    return data, pool


def _weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def _args(data, pool, name: str) -> list[str]:
    return ["distill", "--teachers", "tiny-t0,tiny-t1", "--student", "tiny-random-student", "--data", str(data),
            "--dev", str(data), "--test", str(data), "--unlabelled", str(pool), "--loss", "listwise", "--max-length", "32",
            "--batch-size", "8", "--name", name, "--format", "json"]


@requires_package("all-minilm-l6-v2")
def test_score_then_distill_unlabelled_streams_every_pair_and_scores_nothing(cli, setup, isolated_home, monkeypatch):
    from qadistill import backends

    data, pool = setup
    r = cli("score", "tiny-t0,tiny-t1", "--data", str(pool), "--format", "json")
    assert r.exit_code == 0, r.output
    manifest = json.loads(Path(json.loads(r.stdout)["manifest"]).read_text())
    cli("score", "tiny-t0,tiny-t1", "--data", str(data))  # and the labelled file: distill then runs no teacher at all
    calls = []
    for cls, attr in ((backends.TorchBackend, "run"), (backends.BiEncoderTorchBackend, "_vectors")):
        orig = getattr(cls, attr)
        monkeypatch.setattr(cls, attr, lambda self, enc, orig=orig, cls=cls: (calls.append(cls.__name__), orig(self, enc))[1])
    r = cli(*_args(data, pool, "pooled"), "--unlabelled-passes", "2")
    assert r.exit_code == 0, r.output
    assert calls == []  # every shard of the pool (and the train file) came from the score store
    res = json.loads(r.stdout)
    assert res["stage1"]["pool_pairs"] == 300 and res["stage1"]["pairs_seen"] == 600  # both passes read every pair
    u = res["unlabelled"]
    assert (u["pairs"], u["passes"], u["shard_pairs"], u["queries"], u["format"]) == (300, 2, 64, 60, "jsonl")
    assert u["sha256"] == manifest["data"]["sha256"] and u["path"] == str(pool)
    folder = isolated_home / "artifacts" / "pooled"
    assert f"`{pool}` (300 unlabelled pairs, 60 queries" in (folder / "README.md").read_text()
    assert 'unlabelled = "' in (folder / "recipe.toml").read_text() and "unlabelled_passes = 2" in (folder / "recipe.toml").read_text()
    assert json.loads((folder / "metrics.json").read_text())["unlabelled"] == u


@pytest.mark.slow  # three distill runs: ~3 minutes on 2 busy cores
@requires_package("all-minilm-l6-v2")
def test_stage1_interrupted_mid_shard_resumes_to_identical_weights(cli, setup, tmp_path):
    from test_finetune import _InterruptAt

    from qadistill.distill import run_distill
    from qadistill.recipes import parse_recipe
    from qadistill.registry import Registry
    from qadistill.store import Store

    data, pool = setup
    recipe = parse_recipe({"kind": "pipeline", "name": "p", "teachers": ["tiny-t0", "tiny-t1"], "student": "tiny-random-student",
                           "data": {"name": str(data), "dev": str(data), "test": str(data), "unlabelled": str(pool)},
                           "distill": {"batch_size": 8, "max_length": 32, "seed": 7, "loss": "listwise", "unlabelled_passes": 2}})
    store = Store.open()
    reg = Registry(store=store)
    full = run_distill(recipe, reg, store, name="full", out_dir=tmp_path / "full")
    per_pass = full.metrics["stage1"]["step"] // 2
    cut_at = per_pass + 20  # the second pass, in its second shard (a 64-pair shard of 5-candidate lists: ~13 steps)
    with pytest.raises(KeyboardInterrupt):
        run_distill(recipe, reg, store, name="cut", out_dir=tmp_path / "cut", progress=_InterruptAt(cut_at))
    ckpt = __import__("torch").load(tmp_path / "cut.work" / "stage1" / "checkpoint.pt", weights_only=False)
    assert ckpt["state"]["epoch"] == 1 and ckpt["state"]["shard"] >= 1 and ckpt["state"]["step"] == cut_at
    assert ckpt["state"]["step"] > ckpt["state"]["shard_start"]  # mid-shard
    resumed = run_distill(recipe, reg, store, name="cut", out_dir=tmp_path / "cut", resume=True)
    assert resumed.metrics["stage1"]["step"] == full.metrics["stage1"]["step"]
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "cut")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


def test_unlabelled_errors_fail_before_any_model_loads(cli, setup, tmp_path, monkeypatch):
    import qadistill.student

    data, pool = setup
    monkeypatch.setattr(qadistill.student, "build_encoder", lambda *a, **k: pytest.fail("a model was loaded"))
    base = _args(data, pool, "bad")
    at = base.index("--unlabelled") + 1
    run = lambda spec, *more: cli(*base[:at], spec, *base[at + 1 :], *more)  # noqa: E731
    r = run(str(tmp_path / "missing.jsonl"))
    assert r.exit_code == 2 and "missing.jsonl: no such dataset or file" in r.stderr
    bad = write(tmp_path / "bad.jsonl", '{"query": "a?", "passage": "b."}\n{"query": "c?", "passage": ""}\n')
    r = run(str(bad))
    assert r.exit_code == 2 and "bad.jsonl:2: empty passage" in r.stderr
    r = run("wikiqa")
    assert r.exit_code == 2 and "not a named data set" in r.stderr
    r = run(str(write(tmp_path / "empty.jsonl", "\n")))
    assert r.exit_code == 2 and "empty.jsonl: no rows" in r.stderr
    r = run(str(pool), "--unlabelled-passes", "0")
    assert r.exit_code == 2 and "unlabelled-passes" in r.stderr
    r = cli("distill", "--mode", "gold", "--student", "tiny-random-student", "--data", str(data), "--unlabelled", str(pool))
    assert r.exit_code == 2 and "needs teachers" in r.stderr


def test_recipe_unlabelled_fields_are_validated():
    from qadistill.errors import RecipeError
    from qadistill.recipes import parse_recipe

    base = {"kind": "pipeline", "name": "p", "teachers": ["t"], "student": "s"}
    r = parse_recipe({**base, "data": {"unlabelled": "pairs.jsonl"}, "distill": {"unlabelled_passes": 3}})
    assert r.data.unlabelled == "pairs.jsonl" and r.distill.unlabelled_passes == 3
    with pytest.raises(RecipeError, match="unlabelled_passes"):
        parse_recipe({**base, "distill": {"unlabelled_passes": 0}})
    with pytest.raises(RecipeError, match="unlabelled"):
        parse_recipe({**base, "data": {"unlabelled": ""}})


def test_consecutive_rows_of_one_query_form_its_list():
    from qadistill.stage1 import grouped_pairs

    got = grouped_pairs(3, ["a", "a", "b", "a", "a"], ["p1", "p2", "p3", "p4", "p5"])
    assert [p.query_id for p in got] == ["u3-0", "u3-0", "u3-1", "u3-2", "u3-2"] and all(p.label is None for p in got)


@pytest.mark.parametrize("name,text", [
    ("graded.csv", "query,passage,label\na?,b.,2\na?,c.,yes\nd?,e.,\n"),
    ("graded.jsonl", '{"query": "a?", "passage": "b.", "label": 3}\n{"query": "a?", "passage": "c.", "label": "n/a"}\n'),
])
def test_an_unlabelled_pool_ignores_its_labels_whatever_they_hold(tmp_path, name, text):
    from qadistill.stage1 import scan_pool
    from qadistill.stream import open_pairs

    p = write(tmp_path / name, text)
    pool = scan_pool(str(p), 64)
    assert pool.pairs == len(text.strip().splitlines()) - name.endswith(".csv")
    with pytest.raises(Exception, match="label"):  # a labelled read still checks them
        list(open_pairs(str(p)).rows())


def test_stage1_layout_spreads_the_chosen_teachers_over_every_head():
    import numpy as np

    from qadistill.teachers import spread_targets, stage1_layout

    assert stage1_layout(["a", "b", "c"], None) is None and stage1_layout(["a", "b"], ["a", "b"]) is None
    layout = stage1_layout(["a", "b", "c"], ["c", "a"])
    assert layout == [1, None, 0]  # a: column 1 of (c, a); b: not chosen, the mean; c: column 0
    cols = np.array([[1.0, 3.0], [-2.0, 0.0]], dtype=np.float32)  # columns: c, a
    out = spread_targets(cols, layout)
    assert out.shape == (2, 3) and out.dtype == np.float32
    assert out.tolist() == [[3.0, 2.0, 1.0], [0.0, -1.0, -2.0]]
    assert spread_targets(cols, None) is cols


def test_recipe_unlabelled_teachers_are_validated():
    from qadistill.errors import RecipeError
    from qadistill.recipes import parse_recipe

    base = {"kind": "pipeline", "name": "p", "teachers": ["t0", "t1", "t2"], "student": "s"}
    r = parse_recipe({**base, "distill": {"pretrain_unlabelled": True, "unlabelled_teachers": ["t1", "t0"]}})
    assert r.distill.unlabelled_teachers == ["t1", "t0"]
    r = parse_recipe({**base, "data": {"unlabelled": "pool.jsonl"}, "distill": {"unlabelled_teachers": ["t2"]}})
    assert r.distill.unlabelled_teachers == ["t2"]
    for bad, match in (([], "is empty"), (["t0", "t0"], "must not repeat"), (["t0", "t9"], "t9, not among the pipeline's teachers")):
        with pytest.raises(RecipeError, match=match):
            parse_recipe({**base, "distill": {"pretrain_unlabelled": True, "unlabelled_teachers": bad}})
    with pytest.raises(RecipeError, match="labels the unlabelled pool, and this pipeline uses none"):
        parse_recipe({**base, "distill": {"unlabelled_teachers": ["t0"]}})
    # rehearsal labels the pool too: there the choice applies without a stage 1
    assert parse_recipe({**base, "distill": {"rehearse": 0.5, "unlabelled_teachers": ["t0"]}}).distill.unlabelled_teachers == ["t0"]


@requires_package("all-minilm-l6-v2")
@pytest.mark.parametrize("mode", ["mkdm", "avg"])
def test_only_the_named_teachers_label_the_stage1_pool(cli, tiny_zoo, isolated_home, monkeypatch, mode):
    import numpy as np

    import qadistill.distill
    from qadistill import teachers as T

    seen = []

    def spy(teachers, ds, mode_, progress):
        out = T.teacher_targets(teachers, ds, mode_, progress)
        seen.append(([t.name for t in teachers], len(ds), out.shape))
        return out

    monkeypatch.setattr(qadistill.distill, "teacher_targets", spy)
    r = cli("distill", "--teachers", "tiny-t0,tiny-t1", "--student", "tiny-random-student", "--data", str(tiny_zoo),
            "--mode", mode, "--pretrain-unlabelled", "--unlabelled-teachers", "tiny-t1", "--max-length", "48",
            "--batch-size", "8", "--name", f"s1-{mode}", "--format", "json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    train, pool = seen
    assert train[0] == ["tiny-t0", "tiny-t1"]  # the labelled stage learns from both
    assert pool[0] == ["tiny-t1"] and pool[1] == res["stage1"]["pool_pairs"]  # the pool: tiny-t1 only
    assert pool[2] == (pool[1], 1)
    assert res["pipeline"]["distill"]["unlabelled_teachers"] == ["tiny-t1"]
    card = (isolated_home / "artifacts" / f"s1-{mode}" / "README.md").read_text()
    assert "labelled by `tiny-t1` only" in card
    assert np.isfinite(res["metrics"]["test"]["map"])


def test_unlabelled_teachers_errors_are_one_line(cli, tiny_zoo):
    r = cli("distill", "--teachers", "tiny-t0,tiny-t1", "--student", "tiny-random-student", "--data", str(tiny_zoo),
            "--pretrain-unlabelled", "--unlabelled-teachers", "tiny-t0,tiny-t7")
    assert r.exit_code == 2 and "tiny-t7, not among the pipeline's teachers" in r.stderr and "Traceback" not in r.stderr
    r = cli("distill", "--teachers", "tiny-t0,tiny-t1", "--student", "tiny-random-student", "--data", str(tiny_zoo),
            "--unlabelled-teachers", "tiny-t0")
    assert r.exit_code == 2 and "this pipeline uses none" in r.stderr


def test_streamed_stage1_targets_follow_the_layout_and_key_the_checkpoint():
    import numpy as np

    from qadistill.stage1 import ShardTargets

    class Fake:
        def __init__(self, name, value):
            self.name, self.value = name, value

        def calibration(self, progress=None):
            return None

        def score_space(self):
            return self.name

        def pair_scores(self, qs, ps, progress, what, shard_pairs):
            return np.full(len(qs), self.value, dtype=np.float32)

    t1 = Fake("t1", 2.0)
    spread = ShardTargets([t1], "mkdm", 64, layout=[None, 0])  # heads t0, t1; only t1 labels the pool
    out = spread(["q"] * 3, ["p"] * 3)
    assert out.shape == (3, 2) and np.all(out == 2.0)
    assert ShardTargets([t1], "mkdm", 64)(["q"], ["p"]).shape == (1, 1)
    assert spread.fingerprint() != ShardTargets([t1], "mkdm", 64).fingerprint()  # a checkpoint of one never resumes the other


def test_stage1_settings_that_would_change_nothing_are_refused():
    from qadistill.errors import RecipeError
    from qadistill.recipes import parse_recipe

    base = {"kind": "pipeline", "name": "p", "teachers": ["t"], "student": "s"}
    with pytest.raises(RecipeError, match="unlabelled_passes sets TMKD stage 1's passes, and this pipeline has no stage 1"):
        parse_recipe({**base, "distill": {"unlabelled_passes": 3}})
    with pytest.raises(RecipeError, match=r"pool_pseudo_queries shapes the built-in stage-1 pool, which \[data\] unlabelled"):
        parse_recipe({**base, "data": {"unlabelled": "pairs.jsonl"}, "distill": {"pool_pseudo_queries": 2}})
    with pytest.raises(RecipeError, match="pool_hard_negatives shapes the built-in unlabelled pool, and this pipeline uses none"):
        parse_recipe({**base, "distill": {"pool_hard_negatives": 2}})
    assert parse_recipe({**base, "distill": {"rehearse": 1, "pool_hard_negatives": 2}}).distill.pool_hard_negatives == 2
    with pytest.raises(RecipeError, match="rehearse mixes in batches the teachers label, and mode 'gold' has no teachers"):
        parse_recipe({**base, "teachers": [], "distill": {"mode": "gold", "rehearse": 0.5}})
    with pytest.raises(RecipeError, match="rehearse"):
        parse_recipe({**base, "distill": {"rehearse": -1}})
    ok = parse_recipe({**base, "distill": {"pretrain_unlabelled": True, "unlabelled_passes": 2, "pool_pseudo_queries": 2}})
    assert ok.distill.pool_pseudo_queries == 2
    assert parse_recipe({**base, "data": {"unlabelled": "pairs.jsonl"}, "distill": {"unlabelled_passes": 2}}).distill.unlabelled_passes == 2


def test_a_pool_counts_its_one_candidate_lists(tmp_path):
    from qadistill.stage1 import scan_pool

    rows = ["a?", "a?", "b?", "c?", "c?", "c?", "d?", "a?"]  # lists: a a | b | c c c | d | a
    p = write(tmp_path / "p.jsonl", "".join(json.dumps({"query": q, "passage": f"p{i}."}) + "\n" for i, q in enumerate(rows)))
    for shard in (2, 3, 100):  # a list that crosses a chunk boundary is still one list
        pool = scan_pool(str(p), shard)
        assert (pool.pairs, pool.queries, pool.lists, pool.single_lists) == (8, 4, 5, 3)  # 4 queries, "a?" twice apart
        assert pool.info(1)["queries"] == 4 and pool.info(1)["lists"] == 5


@pytest.mark.parametrize("loss", ["listwise", "margin-mse"])
def test_a_ranking_loss_on_one_candidate_lists_is_refused_before_any_model_loads(cli, setup, tmp_path, monkeypatch, loss):
    import qadistill.student

    data, _ = setup
    monkeypatch.setattr(qadistill.student, "build_encoder", lambda *a, **k: pytest.fail("a model was loaded"))
    single = write(tmp_path / "single.jsonl", "".join(json.dumps({"query": f"q{i}?", "passage": f"p{i}."}) + "\n" for i in range(20)))
    base = _args(data, single, "bad")
    base[base.index("--loss") + 1] = loss
    r = cli(*base)  # the pool: every query once (or the rows of each query not kept together)
    assert r.exit_code == 2 and "single.jsonl: every query has one candidate" in r.stderr and "--loss pointwise" in r.stderr
    labelled = write(tmp_path / "lab.jsonl", "".join(json.dumps({"query": f"q{i}?", "passage": f"p{i}.", "label": i % 2}) + "\n" for i in range(20)))
    at = base.index("--unlabelled")
    args = base[:at] + base[at + 2 :]
    args[args.index("--data") + 1] = str(labelled)  # the labelled stage: one candidate per query
    r = cli(*args)
    assert r.exit_code == 2 and "lab.jsonl" in r.stderr and "no query has two or more candidates" in r.stderr


def test_a_pool_whose_query_rows_are_apart_gets_a_note_before_any_work(cli, setup, tmp_path, monkeypatch):
    import qadistill.distill

    data, _ = setup
    monkeypatch.setattr(qadistill.distill, "_run_main", lambda *a, **k: pytest.fail("the run started"))
    from qadistill.errors import UserInputError

    def stop(*a, **k):
        raise UserInputError("stopped after the plan notes")
    monkeypatch.setattr(qadistill.distill, "artifact_lock", stop)
    rows = [(f"q{i // 2 % 3}?", f"p{i}.") for i in range(12)]  # q0 q0 q1 q1 q2 q2 q0 q0 ...: 3 queries in 6 runs
    apart = write(tmp_path / "apart.jsonl", "".join(json.dumps({"query": q, "passage": p}) + "\n" for q, p in rows))
    sorted_ = write(tmp_path / "sorted.jsonl", "".join(json.dumps({"query": q, "passage": p}) + "\n" for q, p in sorted(rows)))
    r = cli(*_args(data, apart, "apart"))
    err = " ".join(r.stderr.split())
    assert "apart.jsonl has 3 queries in 6 runs of consecutive rows" in err and "sort the file by query" in err, err
    assert "stopped after the plan notes" in err
    r = cli(*_args(data, sorted_, "sorted"))
    assert "runs of consecutive rows" not in " ".join(r.stderr.split()) and "stopped after the plan notes" in r.stderr


def test_a_pool_given_by_a_relative_path_is_recorded_by_its_absolute_one(tmp_path, monkeypatch):
    from qadistill.stage1 import scan_pool

    write(tmp_path / "p.jsonl", "".join(json.dumps({"query": "q?", "passage": f"p{i}."}) + "\n" for i in range(3)))
    monkeypatch.chdir(tmp_path)
    pool = scan_pool("p.jsonl", 100)
    assert pool.path == str(tmp_path.resolve() / "p.jsonl") and pool.info(1)["path"] == pool.path
