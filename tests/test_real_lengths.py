"""Real-length scoring: pairs tokenized to their own lengths, sorted and bucketed, each batch padded to its longest
only (or to a static ONNX graph's length), scores in the caller's order and equal to the padded-to-max path's."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import make_tiny_model, tiny_pairs, write
from qadistill.backends import length_batches
from qadistill.errors import UserInputError

pytestmark = pytest.mark.integration  # real (tiny) models and ONNX Runtime sessions

MAX_LENGTH = 48


def spread_logits(folder, scale: float = 300.0):
    """The tiny model with its classifier scaled up: its random logits spread by about 1e-2, not 1e-4, so a 1e-4 bound on
    score differences can tell a scrambled order from a right one."""
    import torch
    from transformers import BertForSequenceClassification

    m = BertForSequenceClassification.from_pretrained(str(folder))
    with torch.no_grad():
        m.classifier.weight.mul_(scale)
    m.save_pretrained(str(folder), safe_serialization=True)
    return folder


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("real")
    return spread_logits(make_tiny_model(root / "m", "cross")), root


@pytest.fixture(scope="module")
def pairs():
    rows = tiny_pairs(n_queries=8, per_query=5, seed=3)
    qs, ps = [r["query"] for r in rows], [r["passage"] for r in rows]
    ps[3] = ps[3] * 6  # longer than MAX_LENGTH: truncation is exercised too
    return qs, ps


@pytest.fixture(scope="module")
def onnx_dir(tiny):
    from qadistill.compress import export_onnx

    folder, root = tiny
    export_onnx(folder, root / "onnx")
    return root / "onnx"


def padded_scores(be, qs, ps):
    """One pair at a time, padded to max_length: the reference every real-length score must equal."""
    return np.array([be.run(be.tokenizer.pairs([q], [p], pad_to_max=True))[0] for q, p in zip(qs, ps)], dtype=np.float32)


def test_length_batches_sort_bound_and_cover_every_pair():
    lengths = [30, 5, 12, 5, 60, 7, 12, 9]
    batches = length_batches(lengths, batch_size=3)
    assert batches == [[1, 3, 5], [7, 2, 6], [0, 4]]  # shortest first, stable among equals
    budget = length_batches(lengths, batch_size=8, batch_tokens=40)
    assert sorted(i for b in budget for i in b) == list(range(8))
    for b in budget:
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 40
    assert [4] in budget  # 60 tokens alone: over the budget, still a batch of its own
    assert length_batches([], 4) == []


def test_torch_real_lengths_equal_padded_in_the_callers_order(tiny, pairs):
    from qadistill.backends import TorchBackend

    folder, _ = tiny
    qs, ps = pairs
    be = TorchBackend(folder, MAX_LENGTH, threads=1).load()
    ref = padded_scores(be, qs, ps)
    assert ref.std() > 1e-3  # spread 10x the bound: a wrong order could not pass
    for bs, bt in ((4, None), (32, None), (8, 200)):
        got = be.score_real_lengths(qs, ps, bs, bt)
        assert np.abs(got - ref).max() <= 1e-4, (bs, bt)
    lengths = [len(e.ids) for e in be.tokenizer.unpadded(qs, ps)]
    assert max(lengths) == MAX_LENGTH and min(lengths) < MAX_LENGTH // 2
    for idx, enc in be.real_length_batches(qs, ps, 4):
        assert enc["input_ids"].shape == (len(idx), max(lengths[i] for i in idx))  # padded to the batch's longest only
        assert (enc["attention_mask"].sum(1) == [lengths[i] for i in idx]).all()


def test_transformers_tokenizer_path_matches_tokenizers(tiny, pairs):
    from transformers import AutoTokenizer

    from qadistill.backends import PairTokenizer

    folder, _ = tiny
    qs, ps = pairs
    fast = PairTokenizer(folder, MAX_LENGTH)
    slow = PairTokenizer(folder, MAX_LENGTH, hf=AutoTokenizer.from_pretrained(str(folder)))
    a, b = fast.collate(fast.unpadded(qs, ps)), slow.collate(slow.unpadded(qs, ps))
    assert all((a[k] == b[k]).all() for k in a)
    assert (a["input_ids"] == fast.pairs(qs, ps)["input_ids"]).all()


def test_onnx_export_has_a_dynamic_sequence_axis_and_equal_scores(onnx_dir, pairs):
    from qadistill.backends import OrtBackend

    qs, ps = pairs
    be = OrtBackend(onnx_dir, MAX_LENGTH, threads=1).load()
    assert be.fixed_length is None
    assert all(isinstance(i.shape[1], str) for i in be.session.get_inputs())
    ref = padded_scores(be, qs, ps)
    assert np.abs(be.score_real_lengths(qs, ps, 8) - ref).max() <= 1e-4


def _static_copy(onnx_dir, dest, length: int):
    """The export with its sequence axis fixed at ``length``, as an export made without dynamic axes has it."""
    import shutil

    import onnx

    shutil.copytree(onnx_dir, dest)
    m = onnx.load(str(dest / "model.onnx"))
    for i in m.graph.input:
        i.type.tensor_type.shape.dim[1].dim_value = length
    onnx.save(m, str(dest / "model.onnx"))
    (dest / "qadistill_checksums.json").unlink(missing_ok=True)
    return dest


def test_a_static_length_graph_is_padded_to_its_length(onnx_dir, pairs, tmp_path):
    from qadistill.backends import OrtBackend

    qs, ps = pairs
    static = _static_copy(onnx_dir, tmp_path / "static", 64)
    be = OrtBackend(static, MAX_LENGTH, threads=1).load()
    assert be.fixed_length == 64
    assert all(enc["input_ids"].shape[1] == 64 for _, enc in be.real_length_batches(qs, ps, 8))
    dyn = OrtBackend(onnx_dir, MAX_LENGTH, threads=1).load()
    ref = padded_scores(dyn, qs, ps)
    assert np.abs(be.score_real_lengths(qs, ps, 8) - ref).max() <= 1e-4
    assert np.abs(be.logits(qs[:3], ps[:3]) - ref[:3]).max() <= 1e-4  # the per-batch path pads to 64 too
    with pytest.raises(UserInputError, match="exactly 64 tokens"):
        OrtBackend(static, 96, threads=1).load()


def test_bi_encoder_real_lengths_equal_padded(tmp_path, pairs):
    from qadistill.backends import BiEncoderTorchBackend

    folder = make_tiny_model(tmp_path / "bi", "bi")
    qs, ps = pairs
    be = BiEncoderTorchBackend(folder, MAX_LENGTH, threads=1).load()
    ref = np.array([be.run(be.encode([q], [p], pad_to_max=True))[0] for q, p in zip(qs, ps)])
    assert ref.std() > 1e-3
    assert np.abs(be.score_real_lengths(qs, ps, 8) - ref).max() <= 1e-4


def test_a_bi_encoder_embeds_each_distinct_text_once_and_says_its_scores_are_cosines(tmp_path, pairs, cli):
    """Reranking with a bi-encoder embedded the query once per passage (a list of N: 2N texts, not N + 1), so the API
    ran 2.6x slower than eval on the same pairs; and its scores are cosine similarities, which the docs called logits
    (eval calibrates them into logits before it averages teachers, so an average of API scores is not eval's)."""
    from qadistill import load
    from qadistill.backends import BiEncoderTorchBackend

    folder = make_tiny_model(tmp_path / "bi", "bi")
    qs, ps = pairs
    be = BiEncoderTorchBackend(folder, MAX_LENGTH, threads=1).load()
    embedded = []
    vectors = be._vectors
    be._vectors = lambda enc: embedded.append(len(enc["input_ids"])) or vectors(enc)
    ranked_list = be.score_real_lengths([qs[0]] * 10, ps[:10], 16)
    assert sum(embedded) == 1 + len(set(ps[:10]))  # one batch: the query once
    embedded.clear()
    assert np.abs(be.score_real_lengths([qs[0]] * 10, ps[:10], 4) - ranked_list).max() <= 1e-4
    assert sum(embedded) == 3 + len(set(ps[:10]))  # batches of 4, 4 and 2 pairs: the query once in each
    ref = np.array([be.run(be.encode([qs[0]], [p], pad_to_max=True))[0] for p in ps[:10]])
    assert np.abs(ranked_list - ref).max() <= 1e-4
    m = load(str(folder), backend="torch", max_length=MAX_LENGTH)
    assert m.score_kind == "cosine"
    assert all(-1 - 1e-5 <= x <= 1 + 1e-5 for x in m.score(zip(qs, ps)))
    f = write(tmp_path / "p.txt", "\n".join(ps[:5]) + "\n")
    r = cli("rank", str(folder), "-q", qs[0], "-p", str(f), "--backend", "torch", "--max-length", str(MAX_LENGTH), "--format", "json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["score_kind"] == "cosine"
    r = cli("rank", str(folder), "-q", qs[0], "-p", str(f), "--backend", "torch", "--max-length", str(MAX_LENGTH))
    assert r.exit_code == 0 and "cosine" in r.stdout


def test_a_cross_encoders_scores_are_logits(tiny):
    from qadistill import load

    folder, _ = tiny
    assert load(str(folder), backend="torch", max_length=MAX_LENGTH).score_kind == "logit"


def test_api_and_cli_rank_with_a_token_budget(cli, tiny, pairs, tmp_path):
    from qadistill import load

    folder, _ = tiny
    qs, ps = pairs
    base = load(str(folder), backend="torch", max_length=MAX_LENGTH, batch_size=1)
    budget = load(str(folder), backend="torch", max_length=MAX_LENGTH, batch_size=16, batch_tokens=100)
    a, b = np.array(base.score(zip(qs, ps))), np.array(budget.score(zip(qs, ps)))
    assert a.std() > 1e-3 and np.abs(a - b).max() <= 1e-4
    f = write(tmp_path / "p.txt", "\n".join(ps[:10]) + "\n")
    r = cli("rank", str(folder), "-q", qs[0], "-p", str(f), "--backend", "torch", "--max-length", str(MAX_LENGTH),
            "--batch-size", "3", "--batch-tokens", "60", "--format", "json")
    assert r.exit_code == 0, r.output
    got = {x["index"]: x["score"] for x in json.loads(r.stdout)["results"]}
    want = base.score([(qs[0], p) for p in ps[:10]])
    assert max(abs(got[i] - want[i]) for i in range(10)) <= 1e-4
    with pytest.raises(UserInputError, match="batch_tokens 0: must be a whole number of at least 1"):
        load(str(folder), backend="torch", batch_tokens=0)


def test_rank_says_which_passages_it_cut_and_shows_a_long_passage_cut(cli, tiny, tmp_path):
    """A 9,000-word passage was cut at the max length without a word (eval says so) and printed whole (1,023 lines)."""
    folder, _ = tiny
    long = " ".join(["word"] * 3000)
    f = write(tmp_path / "p.txt", "a short passage.\n" + long + "\n")
    r = cli("rank", str(folder), "-q", "who?", "-p", str(f), "--backend", "torch", "--max-length", str(MAX_LENGTH), "--format", "json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["over_length"] == 1 and res["max_length"] == MAX_LENGTH
    assert any(x["passage"] == long for x in res["results"])  # JSON keeps the text whole
    r = cli("rank", str(folder), "-q", "who?", "-p", str(f), "--backend", "torch", "--max-length", str(MAX_LENGTH))
    said = " ".join(r.stderr.split())
    assert r.exit_code == 0 and "1 of 2 passages are longer than" in said and "shown cut" in said
    assert r.stdout.count("word") < 200
