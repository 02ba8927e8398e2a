"""A damaged or edited model folder never gives a silently wrong number: config and weights must agree, recorded
checksums must match, and cached scores follow the folder's content (not its names, sizes and mtimes)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from conftest import make_tiny_model, tiny_jsonl
from qadistill.errors import ModelFolderError, SourceError, UserInputError

pytestmark = pytest.mark.integration  # real models, processes or the CLI end to end

PASSAGES = "a king.\nshakespeare wrote hamlet.\n"


def edit_config(folder: Path, **changes) -> Path:
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(changes)
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


@pytest.fixture(scope="module")
def tiny_cross(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("integrity") / "cross", "cross")


@pytest.fixture(scope="module")
def tiny_bi(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("integrity") / "bi", "bi")


def copy_of(folder: Path, tmp_path: Path, name: str = "m") -> Path:
    return Path(shutil.copytree(folder, tmp_path / name))


# ---------------------------------------------------------------------------------------------------------------------
# 1. config and weights agree
# ---------------------------------------------------------------------------------------------------------------------
def test_model_folder_error_is_bad_input_and_a_source_error():
    exc = ModelFolderError("x", "y")
    assert isinstance(exc, SourceError) and isinstance(exc, UserInputError) and exc.exit_code == 2


@pytest.mark.parametrize("layers,expect", [(3, "encoder.layer.2"), (1, "encoder.layer.1")])
def test_rank_refuses_a_folder_whose_config_was_edited_to_other_layers(cli, tiny_cross, tmp_path, layers, expect):
    folder = edit_config(copy_of(tiny_cross, tmp_path), num_hidden_layers=layers)
    r = cli("rank", str(folder), "-q", "who wrote hamlet?", "--backend", "torch", input=PASSAGES)
    assert r.exit_code == 2, r.output
    assert str(folder) in r.stderr and "config.json" in r.stderr and "model.safetensors" in r.stderr
    assert expect in r.stderr and ("missing" in r.stderr if layers == 3 else "unexpected" in r.stderr)
    assert "zoo remove" in r.stderr and "Traceback" not in r.output


def test_shape_mismatch_is_a_clear_error_not_a_traceback(cli, tiny_cross, tmp_path):
    folder = edit_config(copy_of(tiny_cross, tmp_path), intermediate_size=48)
    r = cli("rank", str(folder), "-q", "who wrote hamlet?", "--backend", "torch", input=PASSAGES)
    assert r.exit_code == 2, r.output
    assert "shape" in r.stderr and "intermediate.dense" in r.stderr and "config.json" in r.stderr


def test_truncated_weights_are_a_folder_error_not_a_traceback(cli, tiny_cross, tmp_path):
    folder = copy_of(tiny_cross, tmp_path)
    w = folder / "model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    r = cli("rank", str(folder), "-q", "who wrote hamlet?", "--backend", "torch", input=PASSAGES)
    assert r.exit_code == 2 and "model.safetensors" in r.stderr and "do not load" in r.stderr, r.output


def test_load_api_and_eval_refuse_an_edited_folder(cli, tiny_cross, tiny_bi, tmp_path):
    from qadistill import load

    cross = edit_config(copy_of(tiny_cross, tmp_path, "cross"), num_hidden_layers=3)
    with pytest.raises(ModelFolderError, match="encoder.layer.2"):
        load(str(cross), backend="torch")
    bi = edit_config(copy_of(tiny_bi, tmp_path, "bi"), num_hidden_layers=1)
    with pytest.raises(ModelFolderError, match="encoder.layer.1"):
        load(str(bi), backend="torch")
    data = tiny_jsonl(tmp_path / "d.jsonl")
    for folder in (cross, bi):
        r = cli("eval", str(folder), "--data", str(data))
        assert r.exit_code == 2 and "config.json" in r.stderr, r.output


def test_teachers_refuse_an_edited_folder(tiny_cross, tiny_bi, tmp_path):
    from qadistill.teachers import BiEncoderTeacher, CrossEncoderTeacher

    cross = edit_config(copy_of(tiny_cross, tmp_path, "cross"), num_hidden_layers=3)
    with pytest.raises(ModelFolderError, match="missing"):
        CrossEncoderTeacher("t", cross, 32).model
    bi = edit_config(copy_of(tiny_bi, tmp_path, "bi"), num_hidden_layers=3)
    with pytest.raises(ModelFolderError, match="missing"):
        BiEncoderTeacher("t", bi, 32, calibrate=False).model
    # an intact bi-encoder loads without its (unused) pooler and without complaint
    assert BiEncoderTeacher("t", tiny_bi, 32, calibrate=False).model is not None


def test_a_bi_encoder_used_as_a_cross_encoder_teacher_is_refused(tiny_bi):
    """Its classifier would be random: every score a silent guess."""
    from qadistill.teachers import CrossEncoderTeacher

    with pytest.raises(ModelFolderError, match="classifier"):
        CrossEncoderTeacher("t", tiny_bi, 32).model


def _encoder_without_pooler(folder: Path) -> Path:
    from transformers import BertModel

    src = make_tiny_model(folder, "bi")
    BertModel.from_pretrained(str(src), add_pooling_layer=False).save_pretrained(str(src), safe_serialization=True)
    return src


def _student_recipe(folder: Path):
    from qadistill.recipes import LocalSource, PretrainedInit, StudentRecipe

    return StudentRecipe(kind="student", name="s", init=PretrainedInit(type="pretrained", source=LocalSource(type="local", path=str(folder))))


@pytest.fixture
def transformers_log():
    """What transformers logs (its library logger does not propagate, so caplog cannot see it)."""
    import logging

    records: list[str] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = lambda rec: records.append(rec.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("transformers")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def test_student_from_an_encoder_without_pooler_gets_a_fresh_pooler_quietly(tmp_path, transformers_log):
    from qadistill.student import build_encoder

    folder = _encoder_without_pooler(tmp_path / "enc")
    transformers_log.clear()
    model, tok = build_encoder(_student_recipe(folder), registry=None)
    assert model.pooler is not None and model.config.num_hidden_layers == 2
    assert not [m for m in transformers_log if "initialized" in m], transformers_log


def test_student_from_a_cross_encoder_keeps_working(tiny_cross):
    """The cross-encoder's classifier is dropped on purpose (the student brings its own heads): not an error."""
    from qadistill.student import build_encoder

    model, _ = build_encoder(_student_recipe(tiny_cross), registry=None)
    assert model.config.num_hidden_layers == 2


def test_student_from_an_edited_encoder_is_refused(tiny_bi, tmp_path):
    from qadistill.student import build_encoder

    folder = edit_config(copy_of(tiny_bi, tmp_path), num_hidden_layers=3)
    with pytest.raises(ModelFolderError, match="encoder.layer.2"):
        build_encoder(_student_recipe(folder), registry=None)


# ---------------------------------------------------------------------------------------------------------------------
# 2. checksums
# ---------------------------------------------------------------------------------------------------------------------
def test_write_and_verify_checksums(tiny_cross, tmp_path):
    from qadistill.integrity import MANIFEST, verify_checksums, write_checksums

    folder = copy_of(tiny_cross, tmp_path)
    verify_checksums(folder)  # no manifest (a user folder): nothing to check
    files = write_checksums(folder)
    man = json.loads((folder / MANIFEST).read_text())
    assert MANIFEST not in files and set(files) == {p.name for p in folder.iterdir() if p.name != MANIFEST}
    assert man["files"] == files and man["sizes"]["model.safetensors"] == (folder / "model.safetensors").stat().st_size
    verify_checksums(folder)
    (folder / "notes.txt").write_text("added later")  # files the manifest does not list are not checked
    verify_checksums(folder)

    data = bytearray((folder / "model.safetensors").read_bytes())
    data[-5] ^= 0xFF  # same size, different content
    (folder / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ModelFolderError, match="model.safetensors") as ei:
        verify_checksums(folder)
    assert "sha256" in ei.value.message and "zoo remove" in ei.value.hint
    (folder / "model.safetensors").unlink()
    with pytest.raises(ModelFolderError, match="model.safetensors.*missing"):
        verify_checksums(folder)


def test_unreadable_manifest_is_a_folder_error(tiny_cross, tmp_path):
    from qadistill.integrity import MANIFEST, verify_checksums

    folder = copy_of(tiny_cross, tmp_path)
    (folder / MANIFEST).write_text("{not json")
    with pytest.raises(ModelFolderError, match=MANIFEST):
        verify_checksums(folder)


def test_save_student_records_checksums_and_rank_refuses_damaged_weights(cli, tmp_path):
    from qadistill.integrity import MANIFEST
    from qadistill.student import build_encoder, make_student_class, save_student

    enc, tok = build_encoder(_student_recipe(make_tiny_model(tmp_path / "enc", "bi")), registry=None)
    out = tmp_path / "student"
    save_student(make_student_class()(enc, 2), tok, out)
    assert "model.safetensors" in json.loads((out / MANIFEST).read_text())["files"]
    r = cli("rank", str(out), "-q", "who wrote hamlet?", "--backend", "torch", input=PASSAGES)
    assert r.exit_code == 0, r.output
    w = out / "model.safetensors"
    data = bytearray(w.read_bytes())
    data[-1] ^= 0x01  # one flipped bit in the last weight: loads fine, scores differ
    w.write_bytes(bytes(data))
    r = cli("rank", str(out), "-q", "who wrote hamlet?", "--backend", "torch", input=PASSAGES)
    assert r.exit_code == 2 and "model.safetensors" in r.stderr and "sha256" in r.stderr, r.output


def test_pull_records_checksums_in_the_folder_and_damage_is_refused(cli, tmp_path):
    from test_hub import make_cache

    from qadistill.integrity import MANIFEST

    src = make_tiny_model(tmp_path / "src", "cross")
    files = {p.name: p.read_bytes() for p in src.iterdir() if p.is_file()}
    snap = make_cache(tmp_path / "hf-home", "someone/tiny-xenc", files)
    r = cli("zoo", "pull", "someone/tiny-xenc", "--format", "json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert json.loads((snap / MANIFEST).read_text())["files"] == res["files"]  # one format: the pull's record
    blob = (snap / "model.safetensors").resolve()
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0x01
    blob.write_bytes(bytes(data))
    r = cli("rank", "tiny-xenc", "-q", "who wrote hamlet?", "--backend", "torch", input=PASSAGES)
    assert r.exit_code == 2 and "model.safetensors" in r.stderr, r.output
    # pulling again must not bless the damaged file: the HF cache names each blob by its sha256
    r = cli("zoo", "pull", "someone/tiny-xenc")
    assert r.exit_code == 2 and "model.safetensors" in r.stderr, r.output


def test_export_records_checksums_and_onnx_damage_is_refused(cli, tmp_path):
    from qadistill.integrity import MANIFEST
    from qadistill.store import Store

    folder = make_tiny_model(tmp_path / "student", "cross")
    Store.open().add_artifact("my-student", "student-model", folder, manifest={"max_length": 48})
    data = tiny_jsonl(tmp_path / "d.jsonl")
    r = cli("export", "my-student", "--data", str(data), "--parity-queries", "12", "--max-map-drop", "100", "--format", "json")
    assert r.exit_code == 0, r.output
    exported = Path(json.loads(r.stdout)[0]["path"]) if r.stdout.strip().startswith("[") else None
    exported = exported or next(p for p in (tmp_path / "qadistill-home" / "artifacts").iterdir() if p.name.endswith("-onnx"))
    assert "model.onnx" in json.loads((exported / MANIFEST).read_text())["files"]
    assert cli("rank", str(exported), "-q", "who wrote hamlet?", input=PASSAGES).exit_code == 0
    with open(exported / "model.onnx", "ab") as fh:
        fh.write(b"\0")
    r = cli("rank", str(exported), "-q", "who wrote hamlet?", input=PASSAGES)
    assert r.exit_code == 2 and "model.onnx" in r.stderr, r.output


# ---------------------------------------------------------------------------------------------------------------------
# 3. fingerprints follow content
# ---------------------------------------------------------------------------------------------------------------------
def _swap_weights_keep_size_and_mtime(folder: Path, tmp_path: Path) -> None:
    w = folder / "model.safetensors"
    st = w.stat()
    other = make_tiny_model(tmp_path / "other", "cross", seed=1) / "model.safetensors"
    assert other.stat().st_size == st.st_size
    with open(w, "r+b") as fh:  # in place: same inode, same size
        fh.write(other.read_bytes())
    os.utime(w, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert w.stat().st_size == st.st_size and w.stat().st_mtime_ns == st.st_mtime_ns


def test_folder_fingerprint_follows_content_not_mtime(tiny_cross, tmp_path):
    from qadistill.sources import folder_fingerprint

    folder = copy_of(tiny_cross, tmp_path)
    before = folder_fingerprint(folder)
    assert folder_fingerprint(folder) == before
    assert folder_fingerprint(copy_of(tiny_cross, tmp_path, "copy")) == before  # equal content, other path and mtimes
    _swap_weights_keep_size_and_mtime(folder, tmp_path)
    assert folder_fingerprint(folder) != before


def test_eval_does_not_serve_stale_cached_scores_after_weights_change_in_place(cli, tiny_cross, tmp_path):
    folder = copy_of(tiny_cross, tmp_path)
    data = tiny_jsonl(tmp_path / "d.jsonl")
    first = json.loads(cli("eval", str(folder), "--data", str(data), "--format", "json").stdout)["rows"][0]
    _swap_weights_keep_size_and_mtime(folder, tmp_path)
    r = cli("eval", str(folder), "--data", str(data), "--format", "json")
    assert r.exit_code == 0, r.output
    second = json.loads(r.stdout)["rows"][0]
    ref = make_tiny_model(tmp_path / "ref", "cross", seed=1)
    fresh = json.loads(cli("eval", str(ref), "--data", str(data), "--format", "json").stdout)["rows"][0]
    assert second["map"] == pytest.approx(fresh["map"]) and (second["map"], second["auc"]) != (first["map"], first["auc"])


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    from qadistill.compress import export_onnx

    root = tmp_path_factory.mktemp("onnx")
    export_onnx(make_tiny_model(root / "m", "cross"), root / "onnx")
    (root / "onnx" / "qadistill_checksums.json").unlink(missing_ok=True)  # a user's own folder: the loaders must tell
    return root / "onnx"


def _tok_garbage(f):
    (f / "tokenizer.json").write_text("garbage{{")


def _tok_config_garbage(f):
    (f / "tokenizer_config.json").write_text("not json")


def _vocab_without_unk(f):
    (f / "tokenizer.json").unlink()
    (f / "vocab.txt").write_text("a\nb\n")


def _manifest_garbage(f):
    (f / "qadistill_export.json").write_text("{bad")


def _onnx_truncated(f):
    data = (f / "model.onnx").read_bytes()
    (f / "model.onnx").write_bytes(data[:5000])


@pytest.mark.parametrize("damage", [_tok_garbage, _tok_config_garbage, _vocab_without_unk, _manifest_garbage, _onnx_truncated])
def test_a_damaged_folder_without_checksums_is_a_folder_error(cli, tiny_onnx, tmp_path, damage):
    from qadistill import load

    f = tmp_path / "x"
    shutil.copytree(tiny_onnx, f)
    damage(f)
    with pytest.raises(ModelFolderError, match=str(f)):
        load(str(f), max_length=32)
    (tmp_path / "p.txt").write_text(PASSAGES)
    r = cli("rank", str(f), "-q", "who wrote hamlet?", "-p", str(tmp_path / "p.txt"), "--max-length", "32")
    assert r.exit_code == 2 and str(f) in r.stderr and "unexpected" not in r.stderr, r.output


def test_zoo_list_and_show_flag_a_damaged_built_folder(cli, tmp_path):
    """`zoo list` checks sizes (no file read), `zoo show` every sha256: a damaged artifact is marked, never `offline`."""
    from qadistill.integrity import write_checksums
    from qadistill.store import Store

    folder = make_tiny_model(tmp_path / "built", "cross")
    write_checksums(folder)
    Store.open().add_artifact("my-built", "student-model", folder, manifest={})

    def availability(*cmd):
        r = cli("zoo", *cmd, "--format", "json")
        assert r.exit_code == 0, r.output
        out = json.loads(r.stdout)
        row = next(x for x in out if x["name"] == "my-built") if isinstance(out, list) else out
        return row["availability"], row.get("detail")

    assert availability("list")[0] == "offline"
    assert availability("show", "my-built")[0] == "offline"
    w = folder / "model.safetensors"
    data = bytearray(w.read_bytes())
    data[-1] ^= 0x01  # same size: only reading the file finds it
    w.write_bytes(bytes(data))
    assert availability("list")[0] == "offline"
    where, detail = availability("show", "my-built")
    assert where == "damaged" and "model.safetensors" in detail and "sha256" in detail and "zoo remove" in detail
    w.write_bytes(bytes(data[:-10]))  # truncated: the size tells
    where, _ = availability("list")
    assert where == "damaged"
    r = cli("zoo", "list")
    assert r.exit_code == 0 and "damaged" in r.stdout, r.output
    data[-1] ^= 0x01
    w.write_bytes(bytes(data))  # the weights whole again, a file gone
    assert availability("show", "my-built")[0] == "offline"
    (folder / "vocab.txt").unlink()
    where, detail = availability("list")
    assert where == "damaged" and "vocab.txt is missing" in detail


@pytest.mark.parametrize("cmd", [("distill", "quickstart", "--name", "x-s1"), ("teach", "minilm-l6-cross-wikiqa")])
def test_out_under_a_file_is_refused_before_any_work(cli, tmp_path, cmd):
    f = tmp_path / "notes.txt"
    f.write_text("mine\n")
    r = cli(*cmd, "--out", str(f / "model"))
    err = " ".join(r.stderr.split())
    assert r.exit_code == 2 and f"{f} is a file, not a folder" in err and "Traceback" not in r.output, r.output
    assert f.read_text() == "mine\n"


def test_recorded_weights_replaced_by_a_folder_are_named_as_a_folder(tmp_path):
    from qadistill.integrity import verify_checksums, write_checksums

    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"weights")
    write_checksums(folder)
    (folder / "model.safetensors").unlink()
    (folder / "model.safetensors").mkdir()
    with pytest.raises(ModelFolderError, match="model.safetensors is a folder where a file was recorded"):
        verify_checksums(folder)


def test_a_damaged_export_is_told_to_be_exported_again_and_a_pulled_one_pulled_again(tmp_path):
    """A built export with a flipped byte was told to "re-pull it (`qadistill zoo pull ORG/NAME`), rebuild it" by rank
    and eval: the way back is `export SOURCE --overwrite` (a pulled variant: the pull of its repo)."""
    import json

    from qadistill.integrity import damaged_hint

    built, pulled, other = tmp_path / "s1-int8-dynamic", tmp_path / "back-int8-dynamic", tmp_path / "student"
    for f in (built, pulled, other):
        f.mkdir()
    (built / "qadistill_export.json").write_text(json.dumps({"source_name": "s1", "variant": "int8-dynamic"}))
    (pulled / "qadistill_export.json").write_text(json.dumps({"source_name": "back", "variant": "int8-dynamic",
                                                              "pulled_from": "me/s1-student@" + "c" * 40}))
    # the options that make that variant again: `export s1 --overwrite` alone remade only the plain ONNX one
    assert "export it again (`qadistill export s1 --quantize dynamic --overwrite`)" in damaged_hint(built)
    assert "`qadistill zoo remove s1-int8-dynamic --delete-files`" in damaged_hint(built)
    (built / "qadistill_export.json").write_text(json.dumps({"source_name": "s1", "variant": "int8-dynamic", "per_channel": True,
                                                             "fp32_first_attention": True}))
    assert "`qadistill export s1 --quantize dynamic --per-channel --fp32-first-attention --overwrite`" in damaged_hint(built)
    (built / "qadistill_export.json").write_text(json.dumps({"source_name": "s1", "variant": "onnx"}))
    assert "`qadistill export s1 --overwrite`" in damaged_hint(built)
    assert "pull it again (`qadistill zoo pull me/s1-student --name back`)" in damaged_hint(pulled)
    assert "`qadistill zoo remove back-int8-dynamic --delete-files`" in damaged_hint(pulled)
    assert "re-pull it" in damaged_hint(other)
    (other / "qadistill_export.json").write_text("{not json")  # an unreadable record: the general hint, no error
    assert "re-pull it" in damaged_hint(other)
