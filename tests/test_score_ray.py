"""`qadistill score --engine ray` (issue 20, part 3): the shards of `score` scored by a Ray actor pool, into the same
store and manifest as the local engine. The fast tests need no Ray; the slow one runs a local Ray cluster."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from qadistill.errors import QadistillError, UserInputError


def _one_line_error(r, *needles: str, code: int = 2) -> None:
    assert r.exit_code == code, r.output
    assert "Traceback" not in r.output
    assert [ln for ln in r.stderr.splitlines() if ln.startswith("error:")] == [r.stderr.splitlines()[0]]
    for n in needles:
        assert n in r.stderr, r.stderr


def test_engine_ray_without_ray_names_the_extra_before_anything_else(cli, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if ray were not installed
    monkeypatch.setitem(sys.modules, "ray.data", None)
    # an unknown teacher and a missing file: the missing extra is reported first, before any name, file or model
    r = cli("score", "no-such-teacher", "--data", str(tmp_path / "missing.jsonl"), "--engine", "ray")
    _one_line_error(r, "--engine ray needs ray[data], which is not installed", "pip install 'qadistill[ray]'", code=1)  # environment


def _closed_port() -> int:
    import socket

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens on it
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ray_options_are_checked_before_any_work(cli, monkeypatch, tmp_path):
    data = str(tmp_path / "missing.jsonl")
    r = cli("score", "no-such-teacher", "--data", data, "--workers", "2")
    _one_line_error(r, "--workers is an option of --engine ray", "add --engine ray")
    r = cli("score", "no-such-teacher", "--data", data, "--ray-address", "10.0.0.1:6379")
    _one_line_error(r, "--ray-address is an option of --engine ray")
    r = cli("score", "no-such-teacher", "--data", data, "--engine", "ray", "--workers", "0")
    assert r.exit_code == 2 and "--workers" in r.output
    r = cli("score", "no-such-teacher", "--data", data, "--engine", "spark")
    assert r.exit_code == 2 and "--engine" in r.output
    monkeypatch.setattr("qadistill.rayscore.require_ray", lambda: None)  # Ray "installed"
    port = _closed_port()
    for flag, env in (([], f"127.0.0.1:{port}"), (["--ray-address", f"ray://127.0.0.1:{port}"], None)):
        if env:
            monkeypatch.setenv("RAY_ADDRESS", env)
        r = cli("score", "no-such-teacher", "--data", data, "--engine", "ray", *flag)  # at once, not after minutes of retries
        _one_line_error(r, "cannot reach the Ray cluster at", f"127.0.0.1:{port}", "ray start --head")
        monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    r = cli("score", "no-such-teacher", "--data", data, "--engine", "ray")
    _one_line_error(r, "--engine ray under torchrun", "run it as one process")


def test_plan_sizes_the_actor_pool_to_the_cluster():
    from qadistill.rayscore import Plan, plan

    assert plan({"CPU": 16.0}, None, None, "c") == Plan(16, 1, 0, "cpu")  # one actor per CPU
    assert plan({"CPU": 16.0}, 2, None, "c") == Plan(2, 8, 0, "cpu")  # each actor's threads: its share of the CPUs
    assert plan({"CPU": 16.0, "GPU": 4.0}, None, None, "c") == Plan(4, 4, 1, "cuda")  # one actor per GPU
    assert plan({"CPU": 16.0, "GPU": 4.0}, 3, "cpu", "c") == Plan(3, 5, 0, "cpu")
    with pytest.raises(UserInputError, match=r"--workers 5: the Ray cluster \(c\) has 4 GPUs") as e:
        plan({"CPU": 16.0, "GPU": 4.0}, 5, None, "c")
    assert "--workers 4 or less" in e.value.hint
    with pytest.raises(UserInputError, match="has 2 CPUs"):
        plan({"CPU": 2.0}, 3, None, "c")
    with pytest.raises(UserInputError, match="--device cuda: the Ray cluster"):
        plan({"CPU": 2.0}, 1, "cuda", "c")


def test_a_workers_qadistill_error_reaches_the_user_as_it_was_raised():
    from qadistill.rayscore import _worker_error

    inner = UserInputError("teacher folder /x is missing", "install it")
    wrapped = RuntimeError("RayTaskError(UserCodeException): ...")
    wrapped.__cause__ = inner
    assert _worker_error(wrapped) is inner
    other = _worker_error(ValueError("line one\nOSError: disk gone\n"))
    assert isinstance(other, QadistillError) and other.message == "a Ray worker failed: OSError: disk gone"


def test_a_shard_block_carries_any_text_unchanged():
    pytest.importorskip("pyarrow")
    from qadistill.rayscore import _block

    qs, ps = ["who?", "lone \ud800 surrogate", "é"], ["a.", "b.", "c\x01."]
    row = _block(7, True, ["t0", "t1"], qs, ps).to_pylist()[0]
    assert row["index"] == 7 and row["data"] is True and row["teachers"] == ["t0", "t1"]
    assert [b.decode("utf-8", "surrogatepass") for b in row["queries"]] == qs
    assert [b.decode("utf-8", "surrogatepass") for b in row["passages"]] == ps


def test_doctor_lists_ray_as_optional(cli, monkeypatch):
    from qadistill import doctor as core

    real = core._version
    monkeypatch.setattr(core, "_version", lambda d: None if d == "ray" else real(d))
    rep = core.run_doctor(probe_gpu=False)
    ray = next(c for c in rep.checks if c.name == "lib:ray")
    assert (ray.ok, ray.required, ray.value) == (False, False, "not installed")
    assert ray.fix == "pip install 'qadistill[ray]' (for `qadistill score --engine ray`)"
    assert rep.ok == all(c.ok for c in rep.checks if c.name != "lib:ray" and c.required)  # ray never fails doctor
    monkeypatch.setattr(core, "_version", lambda d: "2.60.0" if d == "ray" else real(d))
    assert next(c for c in core.run_doctor(probe_gpu=False).checks if c.name == "lib:ray").ok


# -- on a local Ray cluster --------------------------------------------------------------------------------------------
def _score(cli, *args):
    r = cli("score", "tiny-t0,tiny-t1", *args, "--format", "json")
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def _shards(manifest: str) -> dict:
    m = json.loads(Path(manifest).read_text())
    return {t["name"]: [(s["index"], s["key"], s["pairs"]) for s in t["shards"]] for t in m["teachers"]}


@pytest.mark.slow
@pytest.mark.integration
def test_ray_engine_gives_the_local_engines_shards_and_scores(cli, tmp_path, monkeypatch):
    pytest.importorskip("ray.data")
    from conftest import tiny_jsonl
    from test_score import _zoo

    from qadistill.scoring import manifest_scores

    pool = tiny_jsonl(tmp_path / "pool.jsonl", n_queries=60, per_query=5, seed=3)  # 300 pairs: 5 shards of 64
    homes = {e: tmp_path / f"home-{e}" for e in ("local", "ray")}
    for home in homes.values():
        monkeypatch.setenv("QADISTILL_HOME", str(home))
        _zoo(cli, tmp_path / "models")
    args = ["--data", str(pool), "--shard-size", "64"]
    monkeypatch.setenv("QADISTILL_HOME", str(homes["local"]))
    local = _score(cli, *args)
    monkeypatch.setenv("QADISTILL_HOME", str(homes["ray"]))
    ray = _score(cli, *args, "--engine", "ray", "--workers", "2")
    assert (ray["engine"], ray["processes"], ray["pairs"], ray["shards"], ray["scored"]) == ("ray", 2, 300, 5, 600)
    assert _shards(ray["manifest"]) == _shards(local["manifest"])  # the same cut, the same shard keys
    a, b = manifest_scores(local["manifest"]), manifest_scores(ray["manifest"])
    assert a.keys() == b.keys() and max(float(np.abs(a[k] - b[k]).max()) for k in a) <= 1e-5
    # a rerun, with either engine, scores nothing (and the Ray one starts no cluster)
    again = _score(cli, *args, "--engine", "ray", "--workers", "2")
    assert (again["scored"], again["processes"]) == (0, 0)
    assert _score(cli, *args)["scored"] == 0
    monkeypatch.setenv("QADISTILL_HOME", str(homes["local"]))
    assert _score(cli, *args, "--engine", "ray")["scored"] == 0  # what the local engine scored, Ray finds
    # resume by shard: two of tiny-t0's shard files lost (a kill before they were written) -> only they are scored
    monkeypatch.setenv("QADISTILL_HOME", str(homes["ray"]))
    m = json.loads(Path(ray["manifest"]).read_text())
    for s in m["teachers"][0]["shards"][1:3]:
        Path(s["file"]).unlink()
    resumed = _score(cli, *args, "--engine", "ray", "--workers", "2")
    assert resumed["scored"] == 128
    c = manifest_scores(resumed["manifest"])
    assert all(np.array_equal(b[k], c[k]) for k in b)
