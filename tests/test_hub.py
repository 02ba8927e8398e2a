from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from conftest import make_tiny_model
from hubserver import FakeHub

pytestmark = pytest.mark.integration  # real models, processes or the CLI end to end

CARD = """---
library_name: transformers
model-index:
- name: tiny
  results:
  - task:
      type: text-ranking
    dataset:
      name: MS MARCO
      type: ms_marco
      split: dev
    metrics:
    - type: mrr@10
      value: 32.5
---
# tiny
"""


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    folder = make_tiny_model(tmp_path_factory.mktemp("hub") / "m", "cross")
    files = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    files["README.md"] = CARD.encode()
    return files


def make_cache(hf_home: Path, repo: str, files: dict[str, bytes], commit: str = "a" * 40) -> Path:
    """The Hub cache layout as snapshot_download leaves it: blobs by hash, snapshot symlinks, refs/main."""
    root = hf_home / "hub" / ("models--" + repo.replace("/", "--"))
    (root / "blobs").mkdir(parents=True)
    snap = root / "snapshots" / commit
    snap.mkdir(parents=True)
    for name, data in files.items():
        h = hashlib.sha256(data).hexdigest()
        (root / "blobs" / h).write_bytes(data)
        (snap / name).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(root / "blobs" / h, (snap / name).parent), snap / name)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(commit)
    return snap


def test_pull_offline_from_the_hf_cache(cli, tiny_files, tmp_path):
    snap = make_cache(tmp_path / "hf-home", "cross-encoder/ms-marco-TinyBERT-L-2-v2", tiny_files)
    r = cli("zoo", "pull", "cross-encoder/ms-marco-TinyBERT-L-2-v2", "--format", "json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["name"] == "ms-marco-tinybert-l2-v2-pulled" and res["offline"] is True
    assert Path(res["path"]) == snap and res["commit"] == "a" * 40
    assert res["files"]["model.safetensors"] == hashlib.sha256(tiny_files["model.safetensors"]).hexdigest()
    assert res["card_metrics"][0]["metric"] == "mrr@10" and res["card_metrics"][0]["value"] == 32.5
    rows = {x["name"]: x for x in json.loads(cli("zoo", "list", "--format", "json").stdout)}
    assert rows["ms-marco-tinybert-l2-v2"]["built"] == ["ms-marco-tinybert-l2-v2-pulled"]
    assert rows["ms-marco-tinybert-l2-v2"]["published"]["metrics"]["mrr@10 ms-marco-dev"] == 32.56
    # the pulled student is usable right away
    ev = cli("rank", "ms-marco-tinybert-l2-v2-pulled", "-q", "who wrote hamlet?", "--format", "json", input="a king.\nshakespeare.\n")
    assert ev.exit_code == 0, ev.output


def test_pull_never_takes_over_a_name_the_zoo_already_gives(cli, tiny_files, tmp_path):
    from qadistill.store import Store

    make_cache(tmp_path / "hf-home", "me/stu", tiny_files)
    other = make_tiny_model(tmp_path / "built", "cross")
    Store.open().add_artifact("stu", "student-model", other, recipe="x")  # a student built here, also named stu
    r = cli("zoo", "pull", "me/stu")
    assert r.exit_code == 2 and "'stu' is already the student-model in" in r.stderr and "--name" in r.stderr
    r = cli("zoo", "pull", "me/stu", "--name", "quickstart")
    assert r.exit_code == 2 and "'quickstart' is already a builtin pipeline recipe" in r.stderr
    assert Path(Store.open().artifact("stu").path) == other  # still the built one
    r = cli("zoo", "pull", "me/stu", "--name", "stu-hub", "--format", "json")
    assert r.exit_code == 0 and json.loads(r.stdout)["name"] == "stu-hub"
    assert cli("zoo", "pull", "me/stu", "--name", "stu-hub").exit_code == 0  # pulling the same repo again updates it


def test_pull_missing_from_cache_offline_is_clear(cli):
    r = cli("zoo", "pull", "cross-encoder/ms-marco-MiniLM-L-4-v2@main")
    assert r.exit_code == 1
    assert "not in the local HF cache, and HF_HUB_OFFLINE is set" in r.stderr and "Traceback" not in r.output
    assert "unset HF_HUB_OFFLINE" in r.stderr


def test_pull_with_the_hub_unreachable_says_the_network_not_offline_mode(cli, monkeypatch):
    """With HF_HUB_OFFLINE unset and no network, the hint said "unset HF_HUB_OFFLINE" (it was not set) and never that
    the Hub did not answer."""
    import socket

    with socket.socket() as s:  # a local port nobody listens on: the connection is refused at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    r = cli("zoo", "pull", "cross-encoder/ms-marco-MiniLM-L-4-v2@main")
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert f"the Hub (http://127.0.0.1:{port}) could not be reached" in r.stderr and "check the network" in r.stderr
    assert "unset HF_HUB_OFFLINE" not in r.stderr


@pytest.mark.parametrize("ref", ["no-namespace", "a//b", "org/name@..", "org/na me", "../etc/passwd"])
def test_bad_repo_ids_are_refused_before_any_request(cli, ref, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    with FakeHub() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        r = cli("zoo", "pull", ref)
        assert r.exit_code == 2
        assert hub.requests == []


def test_pull_online_over_http(cli, tiny_files, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    files = {**tiny_files, "pytorch_model.bin": b"not-a-real-pickle"}
    with FakeHub() as hub:
        hub.add_repo("someone/tiny-reranker", files)
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        r = cli("zoo", "pull", "someone/tiny-reranker@main", "--format", "json")
        assert r.exit_code == 0, r.output
        res = json.loads(r.stdout)
        fetched = {p for m, p, h in hub.requests if m == "GET" and "/resolve/" in p}
        assert not any(p.endswith(".bin") for p in fetched)  # pickles are never downloaded by default
        assert "pytorch_model.bin" not in res["files"] and "model.safetensors" in res["files"]
        assert all("authorization" not in {k.lower() for k in h} for _, _, h in hub.requests)
        r = cli("zoo", "pull", "someone/missing-repo")
        assert r.exit_code == 2 and "does not exist" in r.stderr


def test_pull_refuses_pickle_only_repos(cli, tiny_files, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    files = {k: v for k, v in tiny_files.items() if k != "model.safetensors"}
    files["pytorch_model.bin"] = b"pickle"
    with FakeHub() as hub:
        hub.add_repo("someone/pickled", files)
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        r = cli("zoo", "pull", "someone/pickled")
        assert r.exit_code == 2 and "--allow-pickle" in r.stderr


@pytest.fixture
def built_student(cli, tmp_path):
    """A student artifact with metrics and an int8 export, registered like `distill` + `export` do."""
    from conftest import tiny_jsonl
    from qadistill.store import Store

    folder = make_tiny_model(tmp_path / "student", "cross")
    (folder / "metrics.json").write_text(json.dumps({"metrics": {"test": {"map": 0.71, "mrr": 0.72, "p@1": 0.6, "auc": 0.8, "queries": 237},
                                                                   "trecqa:dev": {"map": 0.66, "mrr": 0.7, "p@1": 0.5, "auc": 0.7, "queries": 65}},
                                                      "teachers": [], "max_length": 48}))
    (folder / "recipe.toml").write_text('kind = "pipeline"\nname = "x"\nteachers = ["a"]\nstudent = "s"\n')
    Store.open().add_artifact("my-student", "student-model", folder, recipe="x", manifest={"max_length": 48})
    data = tiny_jsonl(tmp_path / "d.jsonl")
    r = cli("export", "my-student", "--quantize", "dynamic", "--data", str(data), "--parity-queries", "12", "--max-map-drop", "100")
    assert r.exit_code == 0, r.output
    return folder


def test_push_dry_run_folder_is_a_valid_hub_repo(cli, built_student, tmp_path):
    from huggingface_hub import ModelCard
    from transformers import AutoModelForSequenceClassification

    out = tmp_path / "staged"
    r = cli("zoo", "push", "my-student", "me/my-student", "--dry-run", "--out", str(out))
    assert r.exit_code == 0, r.output
    assert "onnx/model_int8_dynamic.onnx" in r.stdout and "README.md" in r.stdout
    card = ModelCard.load(str(out / "README.md"))
    assert card.data.library_name == "transformers" and card.data.pipeline_tag == "text-classification"
    assert "microsoft/wiki_qa" in card.data.datasets
    res = {(e.dataset_name, e.metric_type): e.metric_value for e in card.data.eval_results}
    assert res[("WikiQA", "map")] == 0.71 and res[("trecqa", "mrr")] == 0.7
    assert "## ONNX variants" in card.text and "## Recipe" in card.text
    m = AutoModelForSequenceClassification.from_pretrained(str(out))
    assert m.config.num_labels == 1
    try:  # how a Hub user loads the ONNX variant: through Optimum where it is installed, else ONNX Runtime itself
        from optimum.onnxruntime import ORTModelForSequenceClassification
    except ImportError:
        import onnxruntime

        sess = onnxruntime.InferenceSession(str(out / "onnx" / "model_int8_dynamic.onnx"), providers=["CPUExecutionProvider"])
        assert [o.name for o in sess.get_outputs()] == ["logits"] and "input_ids" in {i.name for i in sess.get_inputs()}
    else:
        ort = ORTModelForSequenceClassification.from_pretrained(str(out), subfolder="onnx", file_name="model_int8_dynamic.onnx")
        assert ort is not None


def test_push_over_http_uploads_the_staged_folder_and_hides_the_token(cli, built_student, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_TOKEN", "hf_secretTOKEN123")
    with FakeHub() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        r = cli("zoo", "push", "my-student", "me/my-student", "--private")
        assert r.exit_code == 0, r.output
        # huggingface_hub 0.x asks for {"private": true}, >= 1 for {"visibility": "private"}
        assert hub.created and (hub.created[0].get("private") is True or hub.created[0].get("visibility") == "private")
        up = hub.repos["me/my-student"]
        assert {"README.md", "config.json", "model.safetensors", "onnx/model_int8_dynamic.onnx"} <= set(up)
        assert ".qadistill-staged" not in up  # the staging marker stays local
        assert "hf_secretTOKEN123" not in r.output
        assert any(h.get("authorization", h.get("Authorization", "")) == "Bearer hf_secretTOKEN123" for _, _, h in hub.requests)


def test_a_pushed_student_pulled_back_serves_as_it_did_at_its_length_with_its_onnx_variants(cli, built_student, monkeypatch):
    """A pull registered the model at its config's 512 positions (a student built at 64 was scored at 512: other logits,
    another order, MAP .6370 for .6367) and left the ONNX variants push had uploaded unusable ("has no onnx-int8
    variant"): push now uploads each variant's export record, and pull registers the variants from them."""
    from qadistill import load
    from qadistill.api import resolve_model

    passages = ["a king of denmark.", "shakespeare wrote it.", "in 1600 or so.", "a play in five acts.", "hamlet is a tragedy."]
    pairs = [("who wrote hamlet?", p) for p in passages]
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_TOKEN", "hf_x")
    with FakeHub() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        assert cli("zoo", "push", "my-student", "me/my-student").exit_code == 0
        assert "onnx/model_int8_dynamic.qadistill_export.json" in hub.repos["me/my-student"]
        up = dict(hub.repos["me/my-student"])
        r = cli("zoo", "pull", "me/my-student", "--name", "back", "--format", "json")
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout)["variants"] == ["back-onnx", "back-int8-dynamic"]
        # a later revision without the int8 variant: pulled again, the old revision's int8 is not served any more
        files = {k: v for k, v in hub.repos["me/my-student"].items() if "int8" not in k}
        hub.add_repo("me/my-student", files, commit="d" * 40)
        r = cli("zoo", "pull", "me/my-student", "--name", "other", "--format", "json")
        assert r.exit_code == 0 and json.loads(r.stdout)["variants"] == ["other-onnx"]
        stale = cli("zoo", "pull", "me/my-student", "--name", "back", "--format", "json")
        assert stale.exit_code == 0 and json.loads(stale.stdout)["variants"] == ["back-onnx"]
        assert load("back", backend="auto").backend_name != "onnx-int8"
        with pytest.raises(Exception, match="back-int8-dynamic"):
            load("back-int8-dynamic")
        from qadistill import paths

        assert not (paths.artifacts_dir() / "back-int8-dynamic").exists()  # its copy is not left behind
        hub.add_repo("me/my-student", {**files, **{k: v for k, v in up.items() if "int8" in k}}, commit="e" * 40)
        assert json.loads(cli("zoo", "pull", "me/my-student", "--name", "back", "--format", "json").stdout)["variants"] == [
            "back-onnx", "back-int8-dynamic"]
    assert resolve_model("back", "torch")[3] == resolve_model("my-student", "torch")[3] == 48
    for backend in ("torch", "onnx", "onnx-int8", "auto"):
        want, got = load("my-student", backend=backend), load("back", backend=backend)
        assert got.backend_name == want.backend_name, backend
        assert got.score(pairs) == want.score(pairs), backend
    assert load("back-int8-dynamic").score(pairs) == load("my-student", backend="onnx-int8").score(pairs)  # by its own name
    from transformers import AutoModelForSequenceClassification

    rows = {x["name"]: x for x in json.loads(cli("zoo", "list", "--format", "json").stdout)}
    n = sum(p.numel() for p in AutoModelForSequenceClassification.from_pretrained(str(built_student)).parameters())
    assert rows["back"]["parameters"] == n  # zoo list showed "-" for a pulled model
    r = cli("zoo", "remove", "back")  # its variants go with it
    assert r.exit_code == 0, r.output
    with pytest.raises(Exception, match="back-int8-dynamic"):
        load("back-int8-dynamic")


@pytest.mark.parametrize("extra,error", [
    ({"onnx/model_int8_dynamic.qadistill_export.json": b"{not json", "onnx/model_int8_dynamic.onnx": b"x"},
     "model_int8_dynamic.qadistill_export.json is not a JSON export record"),
    ({"onnx/model_int8_dynamic.qadistill_export.json": b'{"variant": "int8-dynamic"}', "onnx/model_int8_dynamic.onnx": b"x"},
     "model_int8_dynamic.qadistill_export.json has no parity record"),
    ({"onnx/model_int8_dynamic.qadistill_export.json": b'{"parity": {"ok": true}}'},
     "records a variant whose file onnx/model_int8_dynamic.onnx is not in the repo"),
    ({"onnx/model_int8_dynamic.qadistill_export.json": json.dumps({"parity": {"ok": True}, "file_sha256": "0" * 64}).encode(),
      "onnx/model_int8_dynamic.onnx": b"the first bytes of a truncated file"},
     "onnx/model_int8_dynamic.onnx is not the file its export record was made for"),
])
def test_a_pulled_repo_with_a_damaged_variant_record_is_refused_before_anything_is_registered(cli, tiny_files, tmp_path, extra, error):
    from qadistill.store import Store

    make_cache(tmp_path / "hf-home", "me/broken", {**tiny_files, **extra})
    r = cli("zoo", "pull", "me/broken")
    assert r.exit_code != 0 and error in r.stderr and "Traceback" not in r.output
    assert Store.open().artifact("broken") is None  # not half registered


def test_a_pull_never_replaces_another_model_under_a_variants_name(cli, tiny_files, tmp_path):
    from qadistill.store import Store

    rec = json.dumps({"parity": {"ok": True, "queries": 50}}).encode()
    make_cache(tmp_path / "hf-home", "me/stu", {**tiny_files, "onnx/model.onnx": b"x", "onnx/model.qadistill_export.json": rec})
    other = make_tiny_model(tmp_path / "built", "cross")
    Store.open().add_artifact("stu-onnx", "student-model", other, recipe="x")  # a student built here as stu-onnx
    r = cli("zoo", "pull", "me/stu")
    assert r.exit_code == 2 and "'stu-onnx' is already the student-model" in r.stderr and "--name" in r.stderr
    assert Path(Store.open().artifact("stu-onnx").path) == other and Store.open().artifact("stu") is None


def test_a_re_pull_keeps_exports_made_here_of_the_same_commit_and_names_those_of_replaced_weights(cli, tiny_files, tmp_path, monkeypatch):
    """Pulling a model again unregistered the exports made here from it (the store's rule for a model registered again)
    with nothing said, even when the commit had not changed; the export's own folder then blocked `export NAME`."""
    from conftest import tiny_jsonl
    from qadistill import load

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    data = tiny_jsonl(tmp_path / "d.jsonl")
    with FakeHub() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        hub.add_repo("me/plain", tiny_files, commit="1" * 40)
        assert cli("zoo", "pull", "me/plain").exit_code == 0
        r = cli("export", "plain", "--quantize", "dynamic", "--data", str(data), "--parity-queries", "12", "--max-map-drop", "100")
        assert r.exit_code == 0, r.output
        again = cli("zoo", "pull", "me/plain", "--format", "json")  # the same commit: the export is of these weights
        assert again.exit_code == 0 and json.loads(again.stdout)["unregistered"] == []
        assert load("plain", backend="onnx-int8").backend_name == "onnx-int8"
        hub.add_repo("me/plain", tiny_files, commit="2" * 40)  # a new revision
        newer = cli("zoo", "pull", "me/plain", "--format", "json")
        assert newer.exit_code == 0, newer.output
        assert sorted(json.loads(newer.stdout)["unregistered"]) == ["plain-int8-dynamic", "plain-onnx"]
        said = " ".join(newer.stderr.split())
        assert "unregistered" in said and "`qadistill export plain --quantize dynamic --overwrite`" in said
        assert json.loads(newer.stdout)["name"] == "plain" and "`qadistill export plain --overwrite`" not in said
        with pytest.raises(Exception, match="onnx-int8"):
            load("plain", backend="onnx-int8")


def test_push_refuses_what_is_not_a_student(cli):
    r = cli("zoo", "push", "quickstart", "me/x", "--dry-run")
    assert r.exit_code == 2 and "not a built student" in r.stderr


def test_push_dry_run_never_replaces_a_folder_it_did_not_stage(cli, built_student, tmp_path, isolated_home):
    mine = tmp_path / "mine"
    (mine / "sub").mkdir(parents=True)
    (mine / "precious.txt").write_text("keep me")
    for out in (mine, isolated_home, built_student):  # a user's folder, the qadistill home, the built model itself
        before = sorted(p.name for p in out.iterdir())
        r = cli("zoo", "push", "my-student", "me/x", "--dry-run", "--out", str(out))
        assert r.exit_code == 2 and "holds files push did not stage there" in r.stderr, r.output
        assert sorted(p.name for p in out.iterdir()) == before
    assert (mine / "precious.txt").read_text() == "keep me"
    staged = tmp_path / "staged"
    for _ in range(2):  # a folder push staged is replaced by the next dry run
        r = cli("zoo", "push", "my-student", "me/x", "--dry-run", "--out", str(staged))
        assert r.exit_code == 0, r.output
    assert ".qadistill-staged" not in r.stdout


def test_push_refuses_a_damaged_artifact_instead_of_hiding_it(cli, built_student, tmp_path):
    from qadistill.integrity import write_checksums

    write_checksums(built_student)  # as distill records it
    w = built_student / "model.safetensors"
    w.write_bytes(w.read_bytes()[:1000])
    r = cli("zoo", "push", "my-student", "me/x", "--dry-run", "--out", str(tmp_path / "staged"))
    assert r.exit_code != 0 and "model.safetensors is 1000 bytes" in r.stderr and "Traceback" not in r.output
    assert not (tmp_path / "staged").exists()


def test_a_token_is_redacted_where_it_stands_alone_not_inside_words():
    from qadistill.hub import redact

    assert redact("MaxRetryError: Bearer hf_abc123 refused", "hf_abc123") == "MaxRetryError: Bearer *** refused"
    assert redact("MaxRetryError exceeded (token=x)", "x") == "MaxRetryError exceeded (token=***)"  # was "Ma***RetryError e***ceeded"
    assert redact("no secret here", None) == "no secret here"


def test_push_dry_run_out_where_nothing_can_be_created_is_refused_before_staging(cli, built_student, tmp_path):
    import os

    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o500)
    try:
        if os.access(ro, os.W_OK) and os.geteuid() == 0:  # root writes anyway: use a place no one can create in
            out = "/proc/qadistill-push-test"
        else:
            out = str(ro / "staged")
        r = cli("zoo", "push", "my-student", "me/my-student", "--dry-run", "--out", out)
        err = " ".join(r.stderr.split())
        assert r.exit_code == 2 and f"--out {out}: cannot create it in" in err and ".qadistill" not in err, r.output
    finally:
        os.chmod(ro, 0o700)


def test_a_hub_id_ending_in_at_names_the_missing_revision():
    from qadistill.errors import UserInputError
    from qadistill.hub import parse_repo_ref

    with pytest.raises(UserInputError, match="names no revision after '@'"):
        parse_repo_ref("org/name@")
    assert parse_repo_ref("org/name") == ("org/name", "main") and parse_repo_ref("org/name@v1") == ("org/name", "v1")
