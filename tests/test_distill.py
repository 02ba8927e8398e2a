from __future__ import annotations

import json

import pytest
import torch

from conftest import make_tiny_model, requires_package, tiny_jsonl, write
from qadistill.losses import distill_loss, gold_bce, soft_bce

pytestmark = pytest.mark.integration  # real models, processes or the CLI end to end


def test_soft_bce_is_minimal_at_the_teacher_and_scaled_by_t2():
    t = torch.tensor([[2.0, -1.0], [0.5, 3.0]])
    s = t.clone().requires_grad_(True)
    loss = soft_bce(s, t, 2.0)
    loss.backward()
    assert torch.allclose(s.grad, torch.zeros_like(s.grad), atol=1e-7)
    far = soft_bce(torch.zeros_like(t), t, 2.0)
    assert far > loss
    # T^2 scaling: at T=4 the loss is 16x the unscaled BCE of the softened logits
    raw = torch.nn.functional.binary_cross_entropy_with_logits(torch.zeros_like(t) / 4, (t / 4).sigmoid())
    assert float(soft_bce(torch.zeros_like(t), t, 4.0)) == pytest.approx(16 * float(raw), rel=1e-6)


def test_gold_bce_ignores_unlabelled():
    s = torch.tensor([[3.0], [-3.0], [100.0]])
    y = torch.tensor([1.0, 0.0, float("nan")])
    assert gold_bce(s, y) == pytest.approx(float(torch.nn.functional.softplus(torch.tensor(-3.0))), rel=1e-5)
    assert float(gold_bce(s, torch.full((3,), float("nan")))) == 0.0


def test_distill_loss_modes():
    s = torch.zeros(2, 3)
    t = torch.ones(2, 3)
    y = torch.tensor([1.0, 0.0])
    assert float(distill_loss(s, None, y, 2.0, 0.5)) == pytest.approx(float(gold_bce(s, y)))
    assert float(distill_loss(s, t, y, 2.0, 0.0)) == pytest.approx(float(soft_bce(s, t, 2.0)))
    mixed = distill_loss(s, t, y, 2.0, 0.3)
    assert float(mixed) == pytest.approx(0.7 * float(soft_bce(s, t, 2.0)) + 0.3 * float(gold_bce(s, y)), rel=1e-6)
    unl = torch.full((2,), float("nan"))
    assert float(distill_loss(s, t, unl, 2.0, 0.5)) == pytest.approx(float(soft_bce(s, t, 2.0)))


def test_folding_heads_is_exact(tmp_path):
    from transformers import AutoModelForSequenceClassification, BertModel, BertTokenizerFast

    from qadistill.student import make_student_class, save_student

    folder = make_tiny_model(tmp_path / "enc", "bi")
    enc = BertModel.from_pretrained(str(folder))
    model = make_student_class()(enc, n_heads=3).eval()
    with torch.no_grad():
        model.heads.weight.normal_()
        model.heads.bias.normal_()
    tok = BertTokenizerFast.from_pretrained(str(folder))
    batch = tok(["who wrote hamlet?", "where is paris?"], ["shakespeare wrote hamlet.", "paris is in france."], padding=True, return_tensors="pt")
    with torch.no_grad():
        expect = model.score(model(**batch))
    save_student(model, tok, tmp_path / "out")
    plain = AutoModelForSequenceClassification.from_pretrained(str(tmp_path / "out")).eval()
    with torch.no_grad():
        got = plain(**batch).logits[:, 0]
    assert plain.config.num_labels == 1
    assert torch.allclose(got, expect, atol=1e-5)


TEACHER = """
kind = "teacher"
name = "{name}"
architecture = "{arch}"
max_length = 64
source = {{ type = "local", path = "{path}" }}
{extra}
"""


@pytest.fixture
def tiny_zoo(cli, tmp_path):
    data = tiny_jsonl(tmp_path / "data.jsonl", n_queries=12, per_query=4)
    for i, arch in enumerate(("cross-encoder", "bi-encoder")):
        folder = make_tiny_model(tmp_path / f"t{i}", "cross" if arch == "cross-encoder" else "bi", seed=i)
        extra = 'calibration = { method = "none" }' if arch == "bi-encoder" else ""
        f = write(tmp_path / f"t{i}.toml", TEACHER.format(name=f"tiny-t{i}", arch=arch, path=folder, extra=extra))
        assert cli("zoo", "add", str(f)).exit_code == 0
    return data


@requires_package("all-minilm-l6-v2")
@pytest.mark.parametrize("mode", ["gold", "single", "avg", "mkdm"])
def test_distill_cli_every_mode_writes_a_loadable_student(cli, tiny_zoo, tmp_path, mode):
    teachers = "tiny-t0" if mode == "single" else "tiny-t0,tiny-t1"
    r = cli("distill", "--teachers", teachers, "--student", "tiny-random-student", "--data", str(tiny_zoo), "--mode", mode,
            "--max-length", "48", "--batch-size", "8", "--name", f"stu-{mode}", "--format", "json",
            "--dev", str(tiny_zoo), "--test", str(tiny_zoo))  # named: eval below re-measures the same file
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["heads"] == (2 if mode == "mkdm" else 1)
    folder = tmp_path / "qadistill-home" / "artifacts" / f"stu-{mode}"
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md", "metrics.json", "recipe.toml"} <= {p.name for p in folder.iterdir()}
    from transformers import AutoModelForSequenceClassification

    m = AutoModelForSequenceClassification.from_pretrained(str(folder))
    assert m.config.num_labels == 1
    # the metrics in the folder are what eval measures on the same model
    r2 = cli("eval", f"stu-{mode}", "--data", str(tiny_zoo), "--max-length", "48", "--format", "json")
    assert r2.exit_code == 0, r2.output
    assert json.loads(r2.stdout)["rows"][0]["map"] == pytest.approx(res["metrics"]["test"]["map"], abs=1e-5)
    rows = json.loads(cli("zoo", "list", "--format", "json").stdout)
    assert any(x["name"] == f"stu-{mode}" and x["kind"] == "student-model" for x in rows)
    card = (folder / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: transformers") and "model-index" in card


@requires_package("all-minilm-l6-v2")
def test_distill_two_stage(cli, tiny_zoo, isolated_home):
    r = cli("distill", "--teachers", "tiny-t0,tiny-t1", "--student", "tiny-random-student", "--data", str(tiny_zoo),
            "--pretrain-unlabelled", "--max-length", "48", "--batch-size", "8", "--name", "two-stage", "--format", "json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["stage1"]["pool_pairs"] > 48  # own pairs + hard + random + titles
    assert res["stage1"]["step"] > 0
    card = (isolated_home / "artifacts" / "two-stage" / "README.md").read_text()
    assert f"TMKD stage 1 pool: {res['stage1']['pool_pairs']} teacher-labelled pairs built from the train split" in card
    assert "5 similar and 3 random" in card and "1 pass(es)" in card


def test_distill_errors(cli):
    r = cli("distill", "--student", "tiny-random-student", "--mode", "single", "--teachers", "all-minilm-l6-v2,all-mpnet-base-v2")
    assert r.exit_code == 2 and "exactly one teacher" in r.stderr
    r = cli("distill", "--student", "nope-student", "--teachers", "all-minilm-l6-v2")
    assert r.exit_code == 2 and "unknown student" in r.stderr
    r = cli("distill")
    assert r.exit_code == 2


def test_unlabelled_pool_uses_train_texts_only():
    from qadistill.data import QADataset, QAPair
    from qadistill.distill import PoolSettings, build_unlabelled_pool

    pairs = [QAPair(f"Q{q}", f"question {q}?", f"D{q}-{k}", f"sentence {q} {k}.", int(k == 0), title=f"Title {q}") for q in range(5) for k in range(3)]
    pool = build_unlabelled_pool(QADataset("x", "train", pairs), None, PoolSettings(hard_k=0, random_k=2))
    assert all(p.label is None for p in pool.pairs)
    keys = [(p.query_id, p.passage_id) for p in pool.pairs]
    assert len(keys) == len(set(keys))
    texts = {p.passage for p in pairs}
    assert all(p.passage in texts for p in pool.pairs)
    assert sum(p.query_id.startswith("title:") for p in pool.pairs) == 15
    assert len(pool) > 15 + 15



def test_unlabelled_pool_pseudo_queries_are_sentences_against_their_own_documents_other_sentences():
    from qadistill.data import QADataset, QAPair
    from qadistill.distill import PoolSettings, build_unlabelled_pool

    pairs = [QAPair(f"Q{q}", f"question {q}?", f"D{q}-{k}", f"sentence {q} {k}.", int(k == 0)) for q in range(4) for k in range(3)]
    base = PoolSettings(own=False, hard_k=0, random_k=0, titles=False)
    assert len(build_unlabelled_pool(QADataset("x", "train", pairs), None, base)) == 0
    pool = build_unlabelled_pool(QADataset("x", "train", pairs), None, PoolSettings(own=False, hard_k=0, random_k=0, titles=False, pseudo_queries=2))
    by_q: dict = {}
    for p in pool.pairs:
        assert p.query_id.startswith("sent:") and p.label is None
        q = p.query_id.removeprefix("sent:")
        assert p.passage_id != q and p.passage_id.split("-")[0] == q.split("-")[0]  # another sentence, same document
        by_q.setdefault(q, []).append(p.passage_id)
    assert len(by_q) == 4 * 2 and all(len(v) == 2 for v in by_q.values())  # 2 queries per document, 2 neighbours each
    again = build_unlabelled_pool(QADataset("x", "train", pairs), None, PoolSettings(own=False, hard_k=0, random_k=0, titles=False, pseudo_queries=2))
    assert [(p.query_id, p.passage_id) for p in again.pairs] == [(p.query_id, p.passage_id) for p in pool.pairs]


@pytest.mark.slow
@requires_package("all-minilm-l6-v2")
def test_accelerate_launch_two_cpu_processes(cli, tiny_zoo, tmp_path, isolated_home):
    """`torchrun --nproc_per_node 2 -m qadistill distill ...` trains data-parallel through Accelerate (gloo, 2 CPU
    processes) unchanged. (`accelerate launch --cpu` needs mpirun for several CPU processes; on GPUs use
    `accelerate launch --multi_gpu`.)"""
    import os
    import shutil
    import subprocess

    exe = shutil.which("torchrun", path=os.path.dirname(__import__("sys").executable))
    if exe is None:
        pytest.skip("torchrun not installed")
    env = {**os.environ, "QADISTILL_HOME": str(isolated_home), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [exe, "--nproc_per_node", "2", "-m", "qadistill", "distill", "--teachers", "tiny-t0,tiny-t1", "--student", "tiny-random-student", "--data", str(tiny_zoo),
           "--dev", str(tiny_zoo), "--test", str(tiny_zoo), "--max-length", "32", "--batch-size", "4", "--name", "ddp", "--mode", "mkdm",
           "--format", "json"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout[out.stdout.index("{"):])
    assert res["name"] == "ddp" and res["heads"] == 2
    # 48 pairs, batch 4, 2 processes -> 6 optimizer steps per process
    assert res["stage2"]["step"] == 6 and res["stage2"]["pairs_seen"] == 48
    assert (isolated_home / "artifacts" / "ddp" / "model.safetensors").exists()


@requires_package("all-minilm-l6-v2")
@requires_package("all-minilm-l6-v2")
def test_a_ctrl_c_during_the_final_clean_up_says_the_student_is_saved_not_resume(cli, tiny_zoo, tmp_path, monkeypatch):
    import shutil

    import qadistill.distill

    real = shutil.rmtree

    def cut(path, *a, **k):  # Ctrl-C while the work folder is removed, after the student was saved and registered
        if str(path).endswith(".work"):
            raise KeyboardInterrupt
        return real(path, *a, **k)

    monkeypatch.setattr(qadistill.distill.shutil, "rmtree", cut)
    r = cli("distill", "--teachers", "tiny-t0,tiny-t1", "--student", "tiny-random-student", "--data", str(tiny_zoo),
            "--max-length", "32", "--batch-size", "8", "--name", "late")
    assert r.exit_code == 130 and "interrupted after late was saved and registered: nothing to resume" in r.stderr
    assert "--resume" not in r.stderr  # before: "a checkpoint was saved ... plus --resume", which then failed
    monkeypatch.setattr(qadistill.distill.shutil, "rmtree", real)
    assert cli("zoo", "show", "late").exit_code == 0


def test_eval_max_length_longer_than_the_model_names_the_option(cli, tiny_zoo, tmp_path):
    folder = tmp_path / "t0"  # tiny_zoo's cross-encoder teacher folder (128 positions)
    for model in (str(folder), "tiny-t0"):  # a folder, and a zoo teacher whose recipe max length the option overrides
        r = cli("eval", model, "--data", str(tiny_zoo), "--max-length", "5000")
        assert r.exit_code == 2 and "--max-length 5000 is longer than the model" in r.stderr, r.output
        assert "use --max-length 128 or less" in r.stderr


def test_eval_at_another_max_length_is_not_recorded_as_the_models_figure(cli, tiny_zoo):
    """`eval NAME --max-length 16` replaced NAME's stored MAP (zoo show, and zoo list's best MAP took the max over
    every length): a figure at another length is shown and in the JSON, but the store keeps the model's own."""
    import json

    from qadistill.store import Store

    def stored_map():  # every MAP the store holds for it (each eval appends one)
        return [r["value"] for r in Store.open().results("tiny-t0") if r["metric"] == "map"]

    own = cli("eval", "tiny-t0", "--data", str(tiny_zoo), "--format", "json")
    assert own.exit_code == 0, own.output
    row = json.loads(own.stdout)["rows"][0]
    assert "unrecorded" not in row and stored_map() == [row["map"]]
    other = cli("eval", "tiny-t0", "--data", str(tiny_zoo), "--max-length", "12")
    assert other.exit_code == 0, other.output
    assert "tiny-t0: not recorded in the store (scored at max length 12, not its own" in " ".join(other.stderr.split())
    again = json.loads(cli("eval", "tiny-t0", "--data", str(tiny_zoo), "--max-length", "12", "--format", "json").stdout)["rows"][0]
    assert again["max_length"] == 12 and again["unrecorded"].startswith("scored at max length 12")
    assert stored_map() == [row["map"]]


def test_distill_killed_mid_epoch_and_resumed_matches_uninterrupted(cli, tiny_zoo, tmp_path):
    from test_finetune import _InterruptAt

    from qadistill.distill import run_distill
    from qadistill.recipes import parse_recipe
    from qadistill.registry import Registry
    from qadistill.store import Store

    recipe = parse_recipe({"kind": "pipeline", "name": "p", "teachers": ["tiny-t0", "tiny-t1"], "student": "tiny-random-student",
                           "data": {"name": str(tiny_zoo), "dev": str(tiny_zoo), "test": str(tiny_zoo)},  # named: all 48 pairs train
                           "distill": {"batch_size": 4, "max_length": 32, "epochs": 2, "seed": 7}})
    store = Store.open()
    reg = Registry(store=store)
    full = run_distill(recipe, reg, store, name="full", out_dir=tmp_path / "full")
    with pytest.raises(KeyboardInterrupt):
        run_distill(recipe, reg, store, name="cut", out_dir=tmp_path / "cut", progress=_InterruptAt(17))
    # checkpoints every 200 steps by default: the Ctrl-C handler saved one at step 17, mid-epoch 2
    resumed = run_distill(recipe, reg, store, name="cut", out_dir=tmp_path / "cut", resume=True)
    assert resumed.metrics["stage2"]["step"] == full.metrics["stage2"]["step"] == 24
    assert resumed.metrics["metrics"]["test"]["map"] == pytest.approx(full.metrics["metrics"]["test"]["map"], abs=1e-9)
    assert resumed.metrics["dev_map"] == pytest.approx(full.metrics["dev_map"], abs=1e-9)


def test_a_truncation_deeper_than_its_source_is_refused_before_the_teachers_score(cli, tiny_zoo, tmp_path, monkeypatch):
    """A student recipe keeping 9 layers of a 6-layer model passed `zoo add` and failed only after the teachers had
    scored the data (35 s of a user's run): its source's config says so in seconds."""
    import qadistill.distill

    folder = make_tiny_model(tmp_path / "src", "cross")
    layers = json.loads((folder / "config.json").read_text())["num_hidden_layers"]
    src = write(tmp_path / "src.toml", TEACHER.format(name="tiny-src", arch="cross-encoder", path=folder, extra=""))
    assert cli("zoo", "add", str(src)).exit_code == 0
    deep = write(tmp_path / "deep.toml", f'kind = "student"\nname = "deep-student"\ninit = {{ type = "truncate", model = "tiny-src", layers = {layers + 3} }}\n')
    assert cli("zoo", "add", str(deep)).exit_code == 0
    monkeypatch.setattr(qadistill.distill, "_score_teachers", lambda *a, **k: pytest.fail("the teachers scored first"))
    r = cli("distill", "--teachers", "tiny-t0", "--student", "deep-student", "--data", str(tiny_zoo), "--max-length", "48",
            "--name", "deep")
    assert r.exit_code == 2 and f"init.layers={layers + 3} but tiny-src has {layers} layers" in r.stderr, r.output
