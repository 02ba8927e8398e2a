"""`qadistill score` (issue 20): teacher scoring as its own resumable, data-parallel step, into the cache distill reads."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, make_tiny_model, requires_package, tiny_jsonl, write

pytestmark = pytest.mark.integration  # real models, processes or the CLI end to end

WORKER = str(REPO / "tests" / "score_worker.py")
from tests.test_distill import TEACHER  # noqa: E402  (the teacher recipe template)


def _zoo(cli, models: Path) -> None:
    """Register tiny-t0 (cross-encoder) and tiny-t1 (bi-encoder, uncalibrated) in the current QADISTILL_HOME."""
    for i, arch in enumerate(("cross-encoder", "bi-encoder")):
        folder = models / f"t{i}"
        if not folder.exists():
            make_tiny_model(folder, "cross" if arch == "cross-encoder" else "bi", seed=i)
        extra = 'calibration = { method = "none" }' if arch == "bi-encoder" else ""
        f = write(models / f"t{i}.toml", TEACHER.format(name=f"tiny-t{i}", arch=arch, path=folder, extra=extra))
        r = cli("zoo", "add", str(f))
        assert r.exit_code == 0, r.output


@pytest.fixture
def pool(tmp_path):
    """A few hundred pairs: 60 queries x 5 passages."""
    return tiny_jsonl(tmp_path / "pool.jsonl", n_queries=60, per_query=5, seed=3)


@pytest.fixture
def zoo(cli, tmp_path):
    _zoo(cli, tmp_path / "models")
    return tmp_path / "models"


def _env(home: Path, counts: Path, **extra) -> dict:
    env = {**os.environ, "QADISTILL_HOME": str(home), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "SCORE_COUNT_DIR": str(counts), "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}
    env.pop("SCORE_KILL_AFTER", None)
    return {**env, **{k: str(v) for k, v in extra.items()}}


def _counts(folder: Path) -> dict[str, dict[str, int]]:
    """{rank: {"cross": rows, "bi": rows}} from score_worker's count files."""
    out: dict[str, dict[str, int]] = {}
    for f in folder.glob("*.txt"):
        for line in f.read_text().split("\n"):
            if line:
                kind, rows, rank = line.split()
                out.setdefault(rank, {"cross": 0, "bi": 0})[kind] += int(rows)
    return out


def _torchrun() -> str:
    exe = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    if exe is None:
        pytest.skip("torchrun not installed")
    return exe


def test_score_writes_content_addressed_shards_and_a_manifest(cli, zoo, pool, isolated_home):
    from qadistill.data import load_dataset
    from qadistill.scoring import manifest_scores
    from qadistill.teachers import BiEncoderTeacher, CrossEncoderTeacher

    r = cli("score", "tiny-t0,tiny-t1", "--data", str(pool), "--shard-size", "64", "--format", "json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["pairs"] == 300 and res["shards"] == 5 and res["teachers"] == ["tiny-t0", "tiny-t1"]
    assert res["scored"] == 600 and res["pairs_per_s"] > 0 and res["processes"] == 1
    m = json.loads(Path(res["manifest"]).read_text())
    assert m["data"]["pairs"] == 300 and m["shard_pairs"] == 64
    for t in m["teachers"]:
        assert [s["index"] for s in t["shards"]] == [0, 1, 2, 3, 4]
        assert [s["pairs"] for s in t["shards"]] == [64, 64, 64, 64, 44]
        for s in t["shards"]:
            import hashlib

            assert hashlib.sha256(Path(s["file"]).read_bytes()).hexdigest() == s["sha256"]
    got = manifest_scores(res["manifest"])
    # the same scores as the teachers give the whole data set scored at once, elsewhere (another cache)
    ds = load_dataset(str(pool))
    from qadistill.cache import LogitCache

    other = LogitCache(isolated_home.parent / "elsewhere" / "logits")
    ref0 = CrossEncoderTeacher("tiny-t0", zoo / "t0", 64, cache=other).logits(ds)
    ref1 = BiEncoderTeacher("tiny-t1", zoo / "t1", 64, cache=other, calibrate=False).logits(ds)
    assert np.abs(got["tiny-t0"] - ref0).max() <= 1e-5 and np.abs(got["tiny-t1"] - ref1).max() <= 1e-5
    # a second run finds every shard: nothing scored, the manifest is rewritten the same
    r2 = cli("score", "tiny-t0,tiny-t1", "--data", str(pool), "--shard-size", "64", "--format", "json")
    assert r2.exit_code == 0 and json.loads(r2.stdout)["scored"] == 0
    # its progress says the stored shards were reused, not scored (it read "300 to do" and a rate of reading files)
    assert "tiny-t0: scoring" in r2.stderr and "nothing to do, all 300 already done (reused)" in r2.stderr
    assert "pairs_per_s" not in r2.stderr
    assert all(np.array_equal(manifest_scores(res["manifest"])[k], v) for k, v in got.items())


def test_bi_encoder_score_embeds_each_distinct_text_once_across_shards(cli, zoo, pool, monkeypatch):
    from qadistill.data import load_dataset
    from qadistill.teachers import BiEncoderTeacher

    seen: list[str] = []
    orig = BiEncoderTeacher._embed_batchwise
    monkeypatch.setattr(BiEncoderTeacher, "_embed_batchwise", lambda self, texts: (seen.extend(texts), orig(self, texts))[1])
    r = cli("score", "tiny-t1", "--data", str(pool), "--shard-size", "7", "--format", "json")  # a query's pairs straddle shards
    assert r.exit_code == 0, r.output
    ds = load_dataset(str(pool))
    assert sorted(seen) == sorted({p.query for p in ds.pairs} | {p.passage for p in ds.pairs})


@requires_package("all-minilm-l6-v2")
@pytest.mark.parametrize("split", ["named", "by-query"])
def test_distill_after_score_scores_nothing(cli, zoo, pool, monkeypatch, split):
    """With the same teachers and data, distill reads what score wrote: no teacher forward pass. "by-query": distill
    splits the file into train/dev/test and trains on a subset cut into other shards: found pair by pair."""
    from qadistill import backends

    r = cli("score", "tiny-t0,tiny-t1", "--data", str(pool), "--shard-size", "64", "--format", "json")
    assert r.exit_code == 0, r.output
    calls = []
    for cls in (backends.TorchBackend, backends.BiEncoderTorchBackend):
        orig = cls.run if cls is backends.TorchBackend else cls._vectors
        name = "run" if cls is backends.TorchBackend else "_vectors"
        monkeypatch.setattr(cls, name, lambda self, enc, orig=orig, cls=cls: (calls.append(cls.__name__), orig(self, enc))[1])
    extra = ["--dev", str(pool), "--test", str(pool)] if split == "named" else []
    r = cli("distill", "--teachers", "tiny-t0,tiny-t1", "--student", "tiny-random-student", "--data", str(pool), *extra,
            "--max-length", "32", "--batch-size", "16", "--epochs", "1", "--name", f"after-score-{split}", "--format", "json")
    assert r.exit_code == 0, r.output
    assert calls == []
    assert json.loads(r.stdout)["train_pairs"] == (300 if split == "named" else json.loads(r.stdout)["train_pairs"])


def test_score_killed_mid_way_resumes_by_shard_with_identical_scores(cli, zoo, pool, isolated_home, tmp_path, monkeypatch):
    from qadistill.scoring import manifest_scores

    args = [sys.executable, WORKER, "score", "tiny-t0,tiny-t1", "--data", str(pool), "--shard-size", "32", "--format", "json"]
    killed = subprocess.run(args, capture_output=True, text=True, env=_env(isolated_home, tmp_path / "c1", SCORE_KILL_AFTER=5), timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert not list((tmp_path / "qadistill-home" / "scores").rglob("manifest.json"))  # only a finished run writes one
    done = subprocess.run(args, capture_output=True, text=True, env=_env(isolated_home, tmp_path / "c2"), timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    res = json.loads(done.stdout)
    # 5 shards were written before the kill (t0 and t1 of shards 0 and 1, t0 of shard 2): 3 of t0's 10 shards kept
    assert _counts(tmp_path / "c2")["0"]["cross"] == 300 - 3 * 32
    assert res["scored"] == 600 - 5 * 32
    # bit-identical to an uninterrupted run in a fresh home
    fresh = tmp_path / "fresh-home"
    monkeypatch.setenv("QADISTILL_HOME", str(fresh))
    _zoo(cli, zoo)
    whole = subprocess.run(args, capture_output=True, text=True, env=_env(fresh, tmp_path / "c3"), timeout=300)
    assert whole.returncode == 0, whole.stderr[-2000:]
    a, b = manifest_scores(res["manifest"]), manifest_scores(json.loads(whole.stdout)["manifest"])
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_torchrun_two_processes_score_each_pair_once_with_the_same_scores(cli, zoo, pool, isolated_home, tmp_path, monkeypatch):
    from qadistill.data import load_dataset
    from qadistill.scoring import manifest_scores

    args = ["score", "tiny-t0,tiny-t1", "--data", str(pool), "--shard-size", "40", "--format", "json"]
    one = subprocess.run([sys.executable, WORKER, *args], capture_output=True, text=True, env=_env(isolated_home, tmp_path / "c1"), timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]
    two_home = tmp_path / "two-home"
    monkeypatch.setenv("QADISTILL_HOME", str(two_home))
    _zoo(cli, zoo)
    two = subprocess.run([_torchrun(), "--nproc_per_node", "2", WORKER, *args], capture_output=True, text=True,
                         env=_env(two_home, tmp_path / "c2"), timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    res = json.loads(two.stdout[two.stdout.index("{"):])
    assert res["processes"] == 2 and res["pairs"] == 300 and res["shards"] == 8
    a, b = manifest_scores(json.loads(one.stdout)["manifest"]), manifest_scores(res["manifest"])
    assert max(float(np.abs(a[k] - b[k]).max()) for k in a) <= 1e-5
    counts = _counts(tmp_path / "c2")
    # shards 0-3 on rank 0 (160 pairs), 4-7 on rank 1 (140): each pair through the cross-encoder once in all
    assert {r: c["cross"] for r, c in counts.items()} == {"0": 160, "1": 140}
    ds = load_dataset(str(pool))  # every text embedded once (no query straddles the share boundary at pair 160)
    assert sum(c["bi"] for c in counts.values()) == len({p.query for p in ds.pairs} | {p.passage for p in ds.pairs})


@requires_package("all-minilm-l6-v2")
def test_distill_under_torchrun_scores_each_pair_once_split_between_processes(cli, zoo, pool, isolated_home, tmp_path):
    """Before: every rank scored every pair itself (or waited for another rank's whole-data entry). Now each scores
    its contiguous share of the shards and reads the others'."""
    env = _env(isolated_home, tmp_path / "c", QADISTILL_SHARD_PAIRS=50)
    cmd = [_torchrun(), "--nproc_per_node", "2", WORKER, "distill", "--teachers", "tiny-t0,tiny-t1", "--student",
           "tiny-random-student", "--data", str(pool), "--dev", str(pool), "--test", str(pool), "--max-length", "32",
           "--batch-size", "32", "--epochs", "1", "--name", "ddp-score", "--format", "json"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    counts = _counts(tmp_path / "c")
    assert {r: c["cross"] for r, c in counts.items()} == {"0": 150, "1": 150}  # 300 pairs, 6 shards, 3 per rank
    from qadistill.data import load_dataset

    ds = load_dataset(str(pool))
    assert sum(c["bi"] for c in counts.values()) == len({p.query for p in ds.pairs} | {p.passage for p in ds.pairs})


def test_score_errors(cli, zoo, tmp_path):
    r = cli("score", "nope-teacher", "--data", str(tmp_path / "x.jsonl"))
    assert r.exit_code == 2 and "unknown" in r.stderr
    r = cli("score", "tiny-t0", "--data", str(tmp_path / "missing.jsonl"))
    assert r.exit_code == 2 and "no such dataset or file" in r.stderr
    bad = write(tmp_path / "bad.jsonl", '{"query": "a?", "passage": "b."}\n{"query": "", "passage": "c."}\n')
    r = cli("score", "tiny-t0", "--data", str(bad))
    assert r.exit_code == 2 and "bad.jsonl:2: empty query" in r.stderr
    good = write(tmp_path / "good.jsonl", '{"query": "a?", "passage": "b."}\n')
    r = cli("score", "tiny-t0", "--data", str(good), "--out", str(good))  # before: "File exists" after the scoring
    assert r.exit_code == 2 and "is a file, not a folder" in r.stderr
    r = cli("score", "tiny-t0", "--data", str(good), "--out", str(good / "scores"))  # a parent that is a file
    assert r.exit_code == 2 and f"--out {good / 'scores'}: {good} is a file, not a folder" in " ".join(r.stderr.split()), r.output
    r = cli("score", "tiny-t0", "--data", str(good), "--split", "bogus")  # before: the whole file, scored as "good/bogus"
    assert r.exit_code == 2 and "--split bogus: a file is read whole here" in r.stderr
    pq = write(tmp_path / "p.parquet", "PAR1")
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        r = cli("score", "tiny-t0", "--data", str(pq))
        assert r.exit_code == 1 and "needs the pyarrow package" in r.stderr  # the environment, not the input and "pip install pyarrow" in r.stderr


def test_whole_data_cache_entries_from_before_the_shard_store_are_still_read(tmp_path, pool, monkeypatch):
    from qadistill.cache import make_key
    from qadistill.data import load_dataset
    from qadistill.teachers import CrossEncoderTeacher

    folder = make_tiny_model(tmp_path / "x", "cross")
    ds = load_dataset(str(pool))
    t = CrossEncoderTeacher("tiny", folder, 64)
    old = np.arange(len(ds), dtype=np.float32)  # what an older qadistill cached for this teacher and data
    t.cache.put(make_key("raw", t.fingerprint(), ds.fingerprint(), 64), old, {"kind": "raw"})
    monkeypatch.setattr(CrossEncoderTeacher, "score_pairs", lambda *a: (_ for _ in ()).throw(AssertionError("model called")))
    assert np.array_equal(t.logits(ds), old)


def test_stream_reads_delimited_files_by_their_header_and_wikiqa_tsv_by_its_own(tmp_path):
    """A plain `query,passage[,label]` CSV/TSV is read by its header (a refactor once sent it through the WikiQA TSV
    reader, which asked for QuestionID/Question/... and refused every such file); WikiQA TSVs still read as WikiQA."""
    from qadistill.errors import DataError
    from qadistill.stream import open_pairs

    csv = tmp_path / "pairs.csv"
    csv.write_text('query,passage,label\nwho wrote hamlet?,"Shakespeare, in 1600",1\nwho wrote hamlet?,a play,0\n\nwhat is ice?,frozen water,1\n')
    s = open_pairs(str(csv))
    assert s.format == "csv" and list(s.rows()) == [("who wrote hamlet?", "Shakespeare, in 1600"), ("who wrote hamlet?", "a play"),
                                                   ("what is ice?", "frozen water")]
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("query\tpassage\nq one\tp one\nq two\tp two\n")
    assert list(open_pairs(str(tsv)).rows()) == [("q one", "p one"), ("q two", "p two")]
    bad = tmp_path / "bad.csv"
    bad.write_text("ask,body\nq,p\n")  # question,text now read by their common names
    with pytest.raises(DataError, match=r"bad.csv:1: missing column 'query'"):
        list(open_pairs(str(bad)).rows())
    label = tmp_path / "label.csv"
    label.write_text("query,passage,label\nq,p,maybe\n")
    with pytest.raises(DataError, match=r"label.csv:2"):
        list(open_pairs(str(label)).rows())
    wiki = tmp_path / "WikiQA-x.tsv"
    wiki.write_text("QuestionID\tQuestion\tDocumentID\tDocumentTitle\tSentenceID\tSentence\tLabel\n"
                    "Q1\twho?\tD1\tT\tD1-0\tsomeone\t1\n\nQ1\twho?\tD1\tT\tD1-1\tno one\t0\n")
    w = open_pairs(str(wiki))
    assert w.format == "wikiqa-tsv" and list(w.rows()) == [("who?", "someone"), ("who?", "no one")]
    with pytest.raises(DataError, match=r"WikiQA-y.tsv:2: 3 fields, expected 7"):
        (tmp_path / "WikiQA-y.tsv").write_text(wiki.read_text().splitlines()[0] + "\nQ1\twho?\tD1\n")
        list(open_pairs(str(tmp_path / "WikiQA-y.tsv")).rows())


def test_parquet_pairs_stream_by_batch_and_bad_parquet_is_one_line(cli, zoo, tmp_path):
    """Parquet input (pyarrow): read in record batches, the same pairs as the JSONL of the same rows, and a missing
    column, a non-string cell or a file that is not Parquet named in one line."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    from qadistill.errors import DataError
    from qadistill.stream import open_pairs

    rows = [(f"question {i // 3}?", f"passage {i} text") for i in range(50)]
    good = tmp_path / "pairs.parquet"
    pq.write_table(pa.table({"query": [q for q, _ in rows], "passage": [p for _, p in rows], "label": [i % 2 for i in range(50)]}),
                   str(good), row_group_size=7)
    s = open_pairs(str(good))
    assert s.format == "parquet" and s.count() == 50 and list(s.rows()) == rows
    assert [len(q) for q, _ in s.chunks(16)] == [16, 16, 16, 2]
    nocol = tmp_path / "nocol.parquet"
    pq.write_table(pa.table({"ask": ["a?"], "passage": ["b"]}), str(nocol))
    with pytest.raises(DataError, match="missing column 'query'"):
        list(open_pairs(str(nocol)).rows())
    nums = tmp_path / "nums.parquet"
    pq.write_table(pa.table({"query": ["a?", "b?"], "passage": pa.array([None, "x"], pa.string())}), str(nums))
    with pytest.raises(DataError, match="row 1"):
        list(open_pairs(str(nums)).rows())
    junk = write(tmp_path / "junk.parquet", "not parquet at all")
    r = cli("score", "tiny-t0", "--data", str(junk))
    assert r.exit_code == 2 and "junk.parquet" in r.stderr and "Traceback" not in r.output


def test_bad_rows_fail_before_any_teacher_calibrates(cli, zoo, tmp_path, monkeypatch):
    """A bi-encoder's calibration scores a whole split (a minute with a real model): a bad row further down the data
    once failed only after it."""
    from qadistill import scoring

    def calibrated(*a, **kw):
        raise AssertionError("calibrated before the data was checked")

    monkeypatch.setattr(scoring, "calibration_entry", calibrated)
    bad = write(tmp_path / "late.jsonl", '{"query": "a?", "passage": "b."}\n' * 5 + '{"query": "a?", "passage": ""}\n')
    r = cli("score", "tiny-t0", "--data", str(bad))
    assert r.exit_code == 2 and "late.jsonl:6: empty passage" in r.stderr, r.output


def test_two_files_of_one_name_keep_their_own_manifests(cli, zoo, tmp_path):
    a = tiny_jsonl(tmp_path / "a" / "pairs.jsonl", n_queries=6, per_query=3, seed=1)
    b = tiny_jsonl(tmp_path / "b" / "pairs.jsonl", n_queries=2, per_query=3, seed=2)
    ra = cli("score", "tiny-t0", "--data", str(a), "--format", "json")
    rb = cli("score", "tiny-t0", "--data", str(b), "--format", "json")
    assert ra.exit_code == 0 and rb.exit_code == 0, ra.output + rb.output
    ma, mb = json.loads(ra.stdout)["manifest"], json.loads(rb.stdout)["manifest"]
    assert ma != mb and Path(ma).parent.name.startswith("pairs-")
    assert json.loads(Path(ma).read_text())["data"]["pairs"] == 18 and json.loads(Path(mb).read_text())["data"]["pairs"] == 6


def test_stream_line_numbers_match_the_loaders_for_bad_bytes_and_newlines(tmp_path):
    """The stream and `qadistill.data` name the same line: a Latin-1 byte on line 2 is line 2 (the stream once
    decoded in chunks and said line 1); \\r\\n, \\r and a BOM read as the loader reads them."""
    from qadistill.data import load_dataset
    from qadistill.errors import DataError
    from qadistill.stream import open_pairs

    latin = tmp_path / "latin1.csv"
    latin.write_bytes(b"query,passage\nwho?,caf\xe9\n")
    for read in (lambda: list(open_pairs(str(latin)).rows()), lambda: load_dataset(str(latin))):
        with pytest.raises(DataError, match=r"latin1.csv:2: not UTF-8"):
            read()
    mixed = tmp_path / "mixed.csv"
    mixed.write_bytes(b"\xef\xbb\xbfquery,passage,label\r\na?,x,1\rb?,y,0\r\n\r\nc?,z,1")
    assert list(open_pairs(str(mixed)).rows()) == [(p.query, p.passage) for p in load_dataset(str(mixed)).pairs] == [
        ("a?", "x"), ("b?", "y"), ("c?", "z")]
    nul = tmp_path / "nul.csv"
    nul.write_bytes(b"query,passage\na?,x\nb?,y\x00\n")
    with pytest.raises(DataError, match=r"nul.csv:3: NUL byte"):
        list(open_pairs(str(nul)).rows())


def test_the_next_hint_quotes_a_path_with_spaces(cli, zoo, pool, tmp_path):
    spaced = tmp_path / "my pairs.jsonl"
    spaced.write_text(pool.read_text())
    r = cli("score", "tiny-t0", "--data", str(spaced))
    assert r.exit_code == 0, r.output
    assert f"--data '{spaced}'" in r.stderr.replace("\n", "")  # before: unquoted, two words when pasted into a shell
