from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import make_tiny_model, tiny_jsonl
from qadistill.cache import LogitCache
from qadistill.data import load_dataset
from qadistill.metrics import ranking_metrics
from qadistill.teachers import BiEncoderTeacher, CrossEncoderTeacher, fit_logistic

pytestmark = pytest.mark.integration  # real models, processes or the CLI end to end


def test_cache_put_get_and_truncation(tmp_path):
    c = LogitCache(tmp_path / "c")
    c.put("k", np.arange(1000, dtype=np.float32))
    assert np.array_equal(c.get("k"), np.arange(1000, dtype=np.float32))
    p = c.path("k")
    p.write_bytes(p.read_bytes()[:200])  # a truncated file
    assert c.get("k") is None and not p.exists()  # detected and removed, never used


def test_compute_resumes_after_interruption(tmp_path):
    c = LogitCache(tmp_path / "c")
    calls = []

    def fn(a, b):
        calls.append(a)
        if a == 20 and len(calls) == 3:
            raise KeyboardInterrupt
        return np.arange(a, b, dtype=np.float32)

    with pytest.raises(KeyboardInterrupt):
        c.compute("k", 45, 10, fn)
    assert calls == [0, 10, 20]
    out = c.compute("k", 45, 10, fn)
    assert calls == [0, 10, 20, 20, 30, 40]  # finished chunks were not recomputed
    assert np.array_equal(out, np.arange(45, dtype=np.float32))
    assert not (tmp_path / "c" / "k.parts").exists()


def test_fit_logistic_recovers_parameters():
    rng = np.random.default_rng(0)
    x = rng.normal(size=20000)
    y = (rng.random(20000) < 1 / (1 + np.exp(-(3.0 * x - 1.0)))).astype(float)
    cal = fit_logistic(x, y)
    assert cal.a == pytest.approx(3.0, abs=0.15) and cal.b == pytest.approx(-1.0, abs=0.1)


@pytest.fixture
def tiny_data(tmp_path):
    return tiny_jsonl(tmp_path / "tiny.jsonl")


def test_cross_encoder_scores_in_dataset_order_and_caches(tmp_path, tiny_data, monkeypatch):
    folder = make_tiny_model(tmp_path / "xenc", "cross")
    ds = load_dataset(str(tiny_data))
    t = CrossEncoderTeacher("tiny", folder, 64, batch_size=5)
    s = t.logits(ds)
    direct = t.score_pairs([p.query for p in ds.pairs], [p.passage for p in ds.pairs])
    assert s.shape == (len(ds),)
    np.testing.assert_allclose(s, direct, atol=1e-5)  # length sorting is undone
    # second time: from the cache, the model is not called
    t2 = CrossEncoderTeacher("tiny", folder, 64, batch_size=5)
    monkeypatch.setattr(CrossEncoderTeacher, "score_pairs", lambda *a: (_ for _ in ()).throw(AssertionError("model called")))
    np.testing.assert_array_equal(t2.logits(ds), s)


def test_truncated_cache_file_is_recomputed(tmp_path, tiny_data):
    folder = make_tiny_model(tmp_path / "xenc", "cross")
    ds = load_dataset(str(tiny_data))
    t = CrossEncoderTeacher("tiny", folder, 64)
    s = t.logits(ds)
    shards = sorted(t.scores().dir.glob("*.npz"))  # the scores live in the content-addressed shard store
    assert shards
    for p in shards + [t.cache.path(k) for k in t.cache.entries()]:  # truncate every cached file
        p.write_bytes(p.read_bytes()[:100])
    calls = []
    orig = CrossEncoderTeacher.score_pairs

    def spy(self, q, p):
        calls.append(len(q))
        return orig(self, q, p)

    CrossEncoderTeacher.score_pairs = spy
    try:
        s2 = CrossEncoderTeacher("tiny", folder, 64).logits(ds)
    finally:
        CrossEncoderTeacher.score_pairs = orig
    assert sum(calls) == len(ds)
    np.testing.assert_allclose(s2, s, atol=1e-6)


def test_bi_encoder_embeds_each_text_once_and_calibrates(tmp_path, tiny_data):
    folder = make_tiny_model(tmp_path / "bienc", "bi")
    ds = load_dataset(str(tiny_data))
    seen = []
    t = BiEncoderTeacher("tiny-bi", folder, 64, calib_data=str(tiny_data), calib_split="x")
    orig = t._embed_batchwise
    t._embed_batchwise = lambda texts: (seen.extend(texts), orig(texts))[1]
    raw = t.raw_scores(ds)
    assert len(seen) == len(set(seen)) == len({p.query for p in ds.pairs} | {p.passage for p in ds.pairs})
    assert np.all(raw <= 1.0001) and np.all(raw >= -1.0001)  # cosine similarities
    cal = t.calibration()
    logits = t.logits(ds)
    np.testing.assert_allclose(logits, cal.a * raw + cal.b, rtol=1e-5, atol=1e-5)
    # calibration is monotone: ranking metrics unchanged
    q = [p.query_id for p in ds.pairs]
    if cal.a > 0:
        assert ranking_metrics(q, raw.tolist(), ds.labels())["map"] == pytest.approx(ranking_metrics(q, logits.tolist(), ds.labels())["map"])


def test_eval_cli_on_a_folder(cli, tmp_path, tiny_data):
    folder = make_tiny_model(tmp_path / "xenc", "cross")
    r = cli("eval", str(folder), "--data", str(tiny_data), "--format", "json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    ds = load_dataset(str(tiny_data))
    s = CrossEncoderTeacher("x", folder, 128).score_pairs([p.query for p in ds.pairs], [p.passage for p in ds.pairs])
    expect = ranking_metrics([p.query_id for p in ds.pairs], s.tolist(), ds.labels())
    assert res["rows"][0]["map"] == pytest.approx(expect["map"], abs=1e-6)
    assert res["rows"][0]["queries"] == 12


def test_eval_says_how_many_pairs_each_model_saw_cut_at_its_max_length(cli, tmp_path, tiny_data):
    """Pairs past a model's max length were cut without a word: a file whose passages share a long prefix scored every
    candidate of a query the same after the cut. eval counts the pairs each model sees cut (a bi-encoder: a query or
    a passage past it alone) and says so, with the length; the JSON has both."""
    from qadistill.backends import PairTokenizer

    cross, bi = make_tiny_model(tmp_path / "xenc", "cross"), make_tiny_model(tmp_path / "bienc", "bi")
    rows = [json.loads(line) for line in tiny_data.read_text().splitlines()]
    for r in rows[::3]:
        r["passage"] = " ".join([r["passage"]] * 6)  # past 48 tokens for the cross-encoder; some past 48 alone too
    for r in rows[1::3]:
        r["passage"] = " ".join(["king"] * 43 + [r["passage"].split()[0]]) + "."  # 47 tokens alone, past 48 with any query
    data = tmp_path / "long.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tok = PairTokenizer(cross, 48)
    want_cross = sum(1 for n in tok.lengths([r["query"] for r in rows], [r["passage"] for r in rows]) if n > 48)
    want_bi = sum(1 for r in rows if max(tok.lengths([r["query"], r["passage"]])) > 48)
    assert 0 < want_bi < want_cross < len(rows)  # the pairs long only together are cut for the cross-encoder alone
    r = cli("eval", str(cross), str(bi), "--data", str(data), "--max-length", "48", "--format", "json")
    assert r.exit_code == 0, r.output
    got = {row["model"]: row for row in json.loads(r.stdout)["rows"]}
    assert got[str(cross)]["over_length"] == want_cross and got[str(cross)]["max_length"] == 48
    assert got[str(bi)]["over_length"] == want_bi
    table = cli("eval", str(cross), "--data", str(data), "--max-length", "48")
    assert f"{want_cross} of {len(rows)} pairs are longer than its max length (48 tokens) and were cut" in " ".join(table.stderr.split())
    short = cli("eval", str(cross), "--data", str(tiny_data), "--max-length", "128", "--format", "json")
    assert json.loads(short.stdout)["rows"][0]["over_length"] == 0


def test_eval_errors(cli, tmp_path):
    r = cli("eval")
    assert r.exit_code == 2 and "nothing to evaluate" in r.stderr
    r = cli("eval", "all-minilm-l6-v2", "--data", str(tmp_path / "missing.jsonl"))
    assert r.exit_code == 2 and "no such dataset or file" in r.stderr
    r = cli("eval", "quickstart", "--data", "wikiqa")
    assert r.exit_code == 2
    r = cli("eval", "--teachers", "all-minilm-l6-v2,all-minilm-l6-v2", "--data", str(tmp_path / "missing.jsonl"))
    assert r.exit_code == 2 and "named twice" in r.stderr  # before the data is even read


def test_bi_encoder_reuses_embeddings_of_texts_it_has_seen(tmp_path, tiny_data):
    """A pool built from the train texts only embeds its new texts, in this process and in a later one (the cached
    calibration split primes the reuse)."""
    folder = make_tiny_model(tmp_path / "bienc", "bi")
    ds = load_dataset(str(tiny_data))
    t = BiEncoderTeacher("tiny-bi", folder, 64, calib_data=str(tiny_data), calib_split="x")
    t.raw_scores(ds)  # embeds (and caches) every text of the calibration split
    old = t._split_texts(ds)
    later = BiEncoderTeacher("tiny-bi", folder, 64, calib_data=str(tiny_data), calib_split="x")
    for i, fresh in enumerate((t, later)):
        new = [f"a title never seen {i}", f"another new query {i}"]
        seen = []
        orig = fresh._embed_batchwise
        fresh._embed_batchwise = lambda texts, orig=orig, seen=seen: (seen.extend(texts), orig(texts))[1]
        emb = fresh.embed(new + old[:5] + new[:1])
        assert sorted(seen) == sorted(new)
        assert emb.shape[0] == 8
        np.testing.assert_allclose(emb[-1], emb[0])
        full = fresh.embed(old)
        assert sorted(seen) == sorted(new)  # nothing recomputed
    ref = BiEncoderTeacher("tiny-bi", folder, 64, calibrate=False, cache=LogitCache(tmp_path / "other"))
    np.testing.assert_allclose(full, ref.embed(old), atol=1e-5)


def test_an_ensemble_scored_on_its_teachers_calibration_split_says_so(cli, tmp_path, tiny_data, monkeypatch):
    """Bi-encoder teachers calibrate on WikiQA dev (the README said train): an ensemble's MAP on that split is scored on
    the labels that weighted its members. eval names the members calibrated on the split it scores."""
    import numpy as np

    import qadistill.teachers

    ds = load_dataset(str(tiny_data))

    class Fake:
        def __init__(self, name, calibrated_on):
            self.name, self.max_length, self.own_max_length, self.batch_size = name, 64, 64, 32
            self.calibrate, self.calib_data, self.calib_split = calibrated_on is not None, str(tiny_data), calibrated_on

        def logits(self, ds, progress=None):
            return np.random.default_rng(len(self.name)).normal(size=len(ds.pairs)).astype(np.float32)

        def over_length(self, ds):
            return 0

    fakes = {"bi-a": Fake("bi-a", "all"), "bi-b": Fake("bi-b", "train"), "cross": Fake("cross", None)}
    monkeypatch.setattr(qadistill.teachers, "load_scorer", lambda name, *a, **k: fakes[name])
    r = cli("eval", "--teachers", "bi-a,bi-b,cross", "--data", str(tiny_data), "--split", "all", "--format", "json")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)["rows"]
    assert rows[-1]["model"].startswith("ensemble(") and rows[-1]["calibrated_on_this_split"] == ["bi-a"]
    assert all("calibrated_on_this_split" not in x for x in rows[:-1]) and len(ds.pairs) == rows[0]["pairs"]
    table = cli("eval", "--teachers", "bi-a,bi-b,cross", "--data", str(tiny_data), "--split", "all")
    assert "bi-a calibrated on" in table.stderr and "its own calibration data" in " ".join(table.stderr.split())


def test_models_named_beside_teachers_are_scored_but_not_in_the_teachers_ensemble(cli, tmp_path, tiny_data, monkeypatch):
    """`eval s1 --teachers a,b` averaged s1 into "ensemble(s1+a+b)" (the same model three times, as s1, s1-onnx and
    s1-int8-dynamic, made a "ensemble" of itself), while --help says the ensemble is of the teachers."""
    import numpy as np

    import qadistill.teachers
    from qadistill.metrics import ranking_metrics

    ds = load_dataset(str(tiny_data))

    class Fake:
        def __init__(self, name, seed):
            self.name, self.max_length, self.own_max_length, self.batch_size, self.calibrate = name, 64, 64, 32, False
            self.out = np.random.default_rng(seed).normal(size=len(ds.pairs)).astype(np.float32)

        def logits(self, ds, progress=None):
            return self.out

        def over_length(self, ds):
            return 0

    fakes = {"s1": Fake("s1", 1), "a": Fake("a", 2), "b": Fake("b", 3)}
    monkeypatch.setattr(qadistill.teachers, "load_scorer", lambda name, *a, **k: fakes[name])
    r = cli("eval", "s1", "--teachers", "a,b", "--data", str(tiny_data), "--split", "all", "--format", "json")
    assert r.exit_code == 0, r.output
    rows = {x["model"]: x for x in json.loads(r.stdout)["rows"]}
    assert set(rows) == {"s1", "a", "b", "ensemble(a+b)"}
    want = ranking_metrics([p.query_id for p in ds.pairs], ((fakes["a"].out + fakes["b"].out) / 2).tolist(), ds.labels())
    assert rows["ensemble(a+b)"]["map"] == pytest.approx(want["map"])
