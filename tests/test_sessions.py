"""Throughput serving with several ONNX Runtime sessions (``backends.SessionPool``): the same batches as one session,
so the same scores in the caller's order; threads shared out; errors before any work; bench rows per session count."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import make_tiny_model, tiny_jsonl, tiny_pairs, write
from qadistill.errors import UserInputError

pytestmark = pytest.mark.integration  # real (tiny) models and ONNX Runtime sessions

MAX_LENGTH = 48


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory):
    import torch
    from transformers import BertForSequenceClassification

    from qadistill.compress import export_onnx

    root = tmp_path_factory.mktemp("sessions")
    folder = make_tiny_model(root / "m", "cross")
    m = BertForSequenceClassification.from_pretrained(str(folder))
    with torch.no_grad():
        m.classifier.weight.mul_(300.0)  # random logits spread by ~1e-2: a scrambled order shows
    m.save_pretrained(str(folder), safe_serialization=True)
    export_onnx(folder, root / "onnx")
    return root / "onnx"


@pytest.fixture(scope="module")
def pairs():
    rows = tiny_pairs(n_queries=10, per_query=7, seed=5)
    qs, ps = [r["query"] for r in rows], [r["passage"] for r in rows]
    ps[4] = ps[4] * 6  # a long one: truncated, and alone in the last batch
    return qs, ps


def test_pool_scores_equal_one_session_in_the_callers_order(onnx_dir, pairs):
    from qadistill.backends import OrtBackend, SessionPool

    qs, ps = pairs
    one = OrtBackend(onnx_dir, MAX_LENGTH, threads=1).load()
    ref = one.score_real_lengths(qs, ps, 4)
    assert ref.std() > 1e-3
    for n in (2, 3):
        pool = SessionPool(lambda t: OrtBackend(onnx_dir, MAX_LENGTH, threads=t), n).load()
        try:
            assert len(pool.backends) == n and all(b.threads == 1 for b in pool.backends)
            got = pool.score_real_lengths(qs, ps, 4)
            assert np.abs(got - ref).max() <= 1e-5  # the same batches: int8 dynamic scales per batch would show a change
            assert pool.run_many([one.encode(qs[:3], ps[:3])] * n)[n - 1].shape == (3,)
        finally:
            pool.close()


def test_pool_shares_the_threads_and_refuses_what_it_cannot_serve(onnx_dir, tmp_path):
    from qadistill.backends import OrtBackend, SessionPool, TorchBackend

    assert SessionPool(lambda t: OrtBackend(onnx_dir, MAX_LENGTH, threads=t), 2, threads=4).threads == 2
    assert SessionPool(lambda t: OrtBackend(onnx_dir, MAX_LENGTH, threads=t), 3, threads=2).threads == 1
    with pytest.raises(UserInputError, match="at least 1"):
        SessionPool(lambda t: OrtBackend(onnx_dir, MAX_LENGTH, threads=t), 0)
    torch_folder = make_tiny_model(tmp_path / "t", "cross")
    with pytest.raises(UserInputError, match="need an ONNX Runtime model"):
        SessionPool(lambda t: TorchBackend(torch_folder, MAX_LENGTH, threads=t), 2).load()


def test_api_and_cli_rank_with_sessions(cli, onnx_dir, pairs, tmp_path):
    from qadistill import load

    qs, ps = pairs
    base = load(str(onnx_dir), max_length=MAX_LENGTH, batch_size=4, threads=1)
    pooled = load(str(onnx_dir), max_length=MAX_LENGTH, batch_size=4, sessions=2)
    a, b = np.array(base.score(zip(qs, ps))), np.array(pooled.score(zip(qs, ps)))
    assert a.std() > 1e-3 and np.abs(a - b).max() <= 1e-5
    assert [r.index for r in pooled.rank(qs[0], ps[:7])] == [r.index for r in base.rank(qs[0], ps[:7])]
    pooled.close()
    with pytest.raises(UserInputError, match="is an ONNX export: it has no PyTorch weights"):  # torch cannot load it at all
        load(str(onnx_dir), backend="torch", sessions=2)
    with pytest.raises(UserInputError, match="at least 1"):
        load(str(onnx_dir), sessions=0)
    f = write(tmp_path / "p.txt", "\n".join(ps[:7]) + "\n")
    r = cli("rank", str(onnx_dir), "-q", qs[0], "-p", str(f), "--max-length", str(MAX_LENGTH), "--batch-size", "2",
            "--sessions", "2", "--format", "json")
    assert r.exit_code == 0, r.output
    got = {x["index"]: x["score"] for x in json.loads(r.stdout)["results"]}
    want = base.score([(qs[0], p) for p in ps[:7]])
    assert max(abs(got[i] - want[i]) for i in range(7)) <= 1e-5


def test_bench_rows_per_session_count(cli, onnx_dir, tmp_path):
    data = tiny_jsonl(tmp_path / "d.jsonl")
    r = cli("bench", str(onnx_dir), "--data", str(data), "--batch-sizes", "2", "--max-length", "32", "--min-time", "0",
            "--min-runs", "3", "--threads", "2", "--sessions", "1,2", "--lengths", "both", "--format", "json")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)["rows"]
    assert sorted((x["sessions"], x["lengths"]) for x in rows) == [(1, "padded"), (1, "real"), (2, "padded"), (2, "real")]
    for x in rows:
        assert x["threads"] == 2 and x["map"] == rows[0]["map"]  # the accuracy pass: one session, same for every row
        if x["lengths"] == "padded":
            n = x["sessions"]
            assert x["unit"] == ("batch" if n == 1 else "2 batches at once")
            assert x["throughput_pairs_s"] == pytest.approx(n * 2 / (x["latency_ms"]["p50"] / 1000))
    csv = cli("bench", str(onnx_dir), "--data", str(data), "--batch-sizes", "2", "--max-length", "32", "--min-time", "0",
              "--min-runs", "3", "--sessions", "2", "--no-accuracy", "--format", "csv")
    head, line = csv.stdout.splitlines()[:2]
    assert line.split(",")[head.split(",").index("sessions")] == "2"
    torch_folder = make_tiny_model(tmp_path / "t", "cross")
    for model, bad, msg in ((onnx_dir, ["--sessions", "0"], "distinct positive"), (onnx_dir, ["--sessions", "1,x"], "not a list of integers"),
                            (torch_folder, ["--sessions", "2", "--backends", "torch"], "sessions are for ONNX Runtime")):
        b = cli("bench", str(model), "--data", str(data), "--no-accuracy", *bad)
        assert b.exit_code == 2 and msg in b.stderr and b.stdout == "", b.output


def test_every_single_thread_session_runs_flushed_not_only_the_processs_first(onnx_dir, pairs):
    """ONNX Runtime flushes denormals on the creating thread for a process's first session only; a single-thread
    session made later ran every op unflushed on its caller's thread (slow on the padding mask's denormals).
    Each session that asks for flushing runs flushed, and leaves its caller's thread as it was."""
    from qadistill.backends import OrtBackend, denormals_flushed

    flush = {"config": {"session.set_denormal_as_zero": "1"}}
    qs, ps = pairs
    before = denormals_flushed()
    first, later = (OrtBackend(onnx_dir, MAX_LENGTH, threads=1, session=flush).load() for _ in range(2))
    for be in (first, later):
        assert be._run_env is not None and be._run_env.flushed
    ref = first.score_real_lengths(qs, ps, 4)
    assert np.array_equal(later.score_real_lengths(qs, ps, 4), ref) and denormals_flushed() == before
    plain = OrtBackend(onnx_dir, MAX_LENGTH, threads=1, session={}).load()  # settings that do not ask: left alone
    assert plain._run_env is None


def test_sessions_with_backend_torch_of_an_exported_model_says_to_drop_torch(monkeypatch):
    """`rank s1 --backend torch --sessions 2` said "export it first" for a model already exported."""
    import qadistill.api as api
    from qadistill.errors import UserInputError

    monkeypatch.setattr(api, "resolve_model", lambda name, backend="auto", registry=None: (
        name, __import__("pathlib").Path("/nowhere"), "torch" if backend == "torch" else "onnx-int8", 64, "cross-encoder"))
    with pytest.raises(UserInputError, match="sessions=2 needs an ONNX model") as e:
        api.load("s1", backend="torch", sessions=2)
    assert "drop backend torch" in e.value.hint and "export it first" not in e.value.hint
