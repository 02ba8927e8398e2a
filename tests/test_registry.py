from __future__ import annotations

import json

import pytest

from conftest import write
from qadistill.errors import NameConflictError, RecipeError, UnknownNameError, UserInputError
from qadistill.registry import Registry
from qadistill.store import Store

BUILTINS = {
    "all-minilm-l6-v2", "all-mpnet-base-v2", "paraphrase-minilm-l3-v2", "minilm-l6-cross-wikiqa",
    "ms-marco-minilm-l6-v2", "ms-marco-minilm-l12-v2", "bge-reranker-base",
    "minilm-l3-student", "minilm-l6-first3-student", "minilm-l6-first2-student", "tiny-random-student", "quickstart",
}

MY_TEACHER = """
kind = "teacher"
name = "my-teacher"
architecture = "cross-encoder"
source = { type = "local", path = "/models/mine" }
"""


@pytest.fixture
def reg(tmp_path):
    return Registry(user_dir=tmp_path / "zoo", store=Store(tmp_path / "s.db"))


def test_builtins_are_all_there(reg):
    assert BUILTINS <= set(reg.names())
    assert reg.get("quickstart").kind == "pipeline"
    assert reg.recipe("all-mpnet-base-v2", "teacher").architecture == "bi-encoder"


def test_every_builtin_reference_resolves(reg):
    for e in reg.entries():
        reg.check_references(e.recipe, e.path)


def test_unknown_name_suggests(reg):
    with pytest.raises(UnknownNameError) as ei:
        reg.get("all-mpnet-base")
    assert "all-mpnet-base-v2" in ei.value.suggestions
    assert "did you mean" in ei.value.message
    with pytest.raises(UnknownNameError) as ei:
        reg.get("mpnet")
    assert "all-mpnet-base-v2" in ei.value.suggestions


def test_kind_filter_in_lookup(reg):
    with pytest.raises(UnknownNameError, match="'quickstart' is a pipeline recipe, not a teacher"):
        reg.get("quickstart", "teacher")  # was "unknown teacher 'quickstart'": the name exists, as another kind
    with pytest.raises(UnknownNameError, match="unknown teacher 'no-such-name'"):
        reg.get("no-such-name", "teacher")
    reg.add_artifact("stu", "student-model", reg.store.home / "artifacts" / "stu")
    with pytest.raises(UnknownNameError, match="'stu' is a built student-model, not a teacher"):  # `score stu`
        reg.recipe("stu", "teacher")


def test_add_then_remove_user_recipe(reg, tmp_path):
    f = write(tmp_path / "in" / "mine.toml", MY_TEACHER)
    e = reg.add(f)
    assert e.origin == "user" and (tmp_path / "zoo" / "my-teacher.toml").exists()
    assert Registry(user_dir=tmp_path / "zoo").get("my-teacher").kind == "teacher"
    with pytest.raises(NameConflictError, match="already taken") as ei:
        reg.add(f)
    assert "--force" in ei.value.hint
    reg.add(f, force=True)
    reg.remove("my-teacher")
    assert not (tmp_path / "zoo" / "my-teacher.toml").exists()
    with pytest.raises(UnknownNameError):
        reg.get("my-teacher")


def test_add_cannot_shadow_a_builtin(reg, tmp_path):
    f = write(tmp_path / "q.toml", MY_TEACHER.replace("my-teacher", "quickstart"))
    with pytest.raises(NameConflictError, match="built-in"):
        reg.add(f, force=True)


def test_invalid_recipe_writes_nothing(reg, tmp_path):
    f = write(tmp_path / "bad.toml", MY_TEACHER + "\nmax_length = -1\n")
    with pytest.raises(RecipeError, match="bad.toml: field 'max_length'"):
        reg.add(f)
    assert not (tmp_path / "zoo").exists() or not list((tmp_path / "zoo").iterdir())


def test_pipeline_with_unknown_teacher_is_refused(reg, tmp_path):
    f = write(
        tmp_path / "p.toml",
        'kind = "pipeline"\nname = "mine"\nteachers = ["all-mpnet-base-v2", "all-minilm-l7"]\nstudent = "minilm-l3-student"\n',
    )
    with pytest.raises(RecipeError) as ei:
        reg.add(f)
    assert "field 'teachers[1]'" in ei.value.message and "all-minilm-l6-v2" in ei.value.message


def test_pipeline_student_must_be_a_student(reg, tmp_path):
    f = write(tmp_path / "p.toml", 'kind = "pipeline"\nname = "mine"\nteachers = ["all-mpnet-base-v2"]\nstudent = "all-minilm-l6-v2"\n')
    with pytest.raises(RecipeError, match="field 'student': 'all-minilm-l6-v2' is a teacher recipe, not a student"):
        reg.add(f)


def test_builtin_cannot_be_removed(reg):
    with pytest.raises(UserInputError, match="built-in"):
        reg.remove("quickstart")


def test_artifacts_are_names_too(reg, tmp_path):
    folder = tmp_path / "built"
    folder.mkdir()
    reg._store.add_artifact("quickstart-student", "student-model", folder, recipe="quickstart", manifest={"parameters": 17_390_209})
    reg._entries = None
    e = reg.get("quickstart-student")
    assert e.origin == "artifact" and e.path == folder
    reg.remove("quickstart-student")
    assert reg._store.artifact("quickstart-student") is None
    assert folder.exists()  # files stay unless asked


def test_duplicate_names_across_user_files_are_an_error(tmp_path):
    write(tmp_path / "zoo" / "a.toml", MY_TEACHER)
    write(tmp_path / "zoo" / "b.toml", MY_TEACHER)
    with pytest.raises(RecipeError, match="already defined"):
        Registry(user_dir=tmp_path / "zoo").names()


# -- a broken recipe in the user zoo is reported, not a wall in front of every command ----------------------------------
BROKEN_TOML = 'kind = "teacher"\nname = \n'


def test_a_broken_user_recipe_is_a_problem_not_a_crash(tmp_path):
    write(tmp_path / "zoo" / "broken.toml", BROKEN_TOML)
    reg = Registry(user_dir=tmp_path / "zoo")
    assert "quickstart" in reg.names()
    [(path, message)] = reg.problems()
    assert path == tmp_path / "zoo" / "broken.toml" and "invalid TOML at line 2" in message
    with pytest.raises(RecipeError, match=r"broken.toml: invalid TOML at line 2"):
        reg.get("broken")
    with pytest.raises(RecipeError, match=r"broken.toml: invalid TOML"):
        reg.recipe("broken", "teacher")


def test_a_broken_builtin_recipe_stays_an_error(tmp_path):
    write(tmp_path / "builtin" / "broken.toml", BROKEN_TOML)
    with pytest.raises(RecipeError, match="broken.toml: invalid TOML"):
        Registry(builtin_dir=tmp_path / "builtin", user_dir=tmp_path / "zoo").names()


def test_zoo_list_warns_about_a_broken_user_recipe_and_lists_the_rest(cli, isolated_home):
    write(isolated_home / "zoo" / "broken.toml", BROKEN_TOML)
    r = cli("zoo", "list", "--format", "json")
    assert r.exit_code == 0, r.output
    assert "quickstart" in {x["name"] for x in json.loads(r.stdout)}
    warning = [line for line in r.stderr.splitlines() if "broken.toml" in line]
    assert len(warning) == 1 and warning[0].startswith("warning: skipped")
    assert "invalid TOML at line 2" in warning[0] and "qadistill zoo remove broken" in warning[0]


def test_asking_for_a_broken_recipe_gives_its_error(cli, isolated_home):
    write(isolated_home / "zoo" / "broken.toml", BROKEN_TOML)
    write(isolated_home / "zoo" / "my-teacher.toml", MY_TEACHER + "max_length = -1\n")
    for args in (("zoo", "show", "broken"), ("distill", "broken")):
        r = cli(*args)
        assert r.exit_code == 2, r.output
        assert "broken.toml: invalid TOML at line 2" in r.stderr and "unknown" not in r.stderr
        assert "hint: fix that file, or remove it with `qadistill zoo remove broken`" in r.stderr
    r = cli("zoo", "show", "my-teacher")
    assert r.exit_code == 2 and "my-teacher.toml: field 'max_length'" in r.stderr
    assert cli("zoo", "show", "quickstart", "--no-resolve").exit_code == 0  # the others still work


def test_zoo_remove_removes_a_broken_user_recipe(cli, isolated_home):
    f = write(isolated_home / "zoo" / "broken.toml", BROKEN_TOML)
    r = cli("zoo", "remove", "broken")
    assert r.exit_code == 0, r.output
    assert "removed broken (user)" in r.stderr and not f.exists()
    r = cli("zoo", "list", "--format", "json")
    assert r.exit_code == 0 and "warning" not in r.stderr


def test_zoo_add_replaces_a_broken_user_recipe_only_with_force(cli, tmp_path, isolated_home):
    broken = write(isolated_home / "zoo" / "my-teacher.toml", BROKEN_TOML)
    f = write(tmp_path / "mine.toml", MY_TEACHER)
    r = cli("zoo", "add", str(f))
    assert r.exit_code == 2 and "broken recipe" in r.stderr and "--force" in r.stderr
    assert broken.read_text() == BROKEN_TOML
    assert cli("zoo", "add", str(f), "--force").exit_code == 0
    assert broken.read_text() == MY_TEACHER


def test_delete_files_only_inside_the_home(tmp_path, isolated_home):
    reg = Registry(user_dir=tmp_path / "zoo", store=Store.open())
    outside = tmp_path / "user-out" / "stu"
    outside.mkdir(parents=True)
    (outside / "model.safetensors").write_bytes(b"x")
    reg._store.add_artifact("stu-out", "student-model", outside)
    reg._entries = None
    with pytest.raises(UserInputError, match="outside QADISTILL_HOME") as ei:
        reg.remove("stu-out", delete_files=True)
    assert str(outside) in ei.value.message and "zoo remove stu-out" in ei.value.hint
    assert (outside / "model.safetensors").exists() and reg._store.artifact("stu-out") is not None  # nothing done
    inside = isolated_home / "artifacts" / "stu"
    inside.mkdir(parents=True)
    leftover = isolated_home / "artifacts" / "stu.work" / "stage2"  # a build killed in its clean-up left its checkpoints
    leftover.mkdir(parents=True)
    (leftover / "checkpoint.pt").write_bytes(b"x")
    reg._store.add_artifact("stu-in", "student-model", inside)
    reg._entries = None
    reg.remove("stu-in", delete_files=True)
    assert not inside.exists() and reg._store.artifact("stu-in") is None
    assert not leftover.parent.exists()  # they go with it (they kept 33 MB and blocked a rebuild of the name)


def test_delete_files_never_deletes_the_home_itself(tmp_path, isolated_home):
    isolated_home.mkdir(parents=True, exist_ok=True)
    reg = Registry(user_dir=tmp_path / "zoo", store=Store.open())
    reg._store.add_artifact("home", "student-model", isolated_home)
    reg._entries = None
    with pytest.raises(UserInputError):
        reg.remove("home", delete_files=True)
    assert (isolated_home / "qadistill.db").exists()


def test_a_registered_folder_that_lost_its_checksums_is_refused_not_trusted(reg, tmp_path):
    from conftest import make_tiny_model
    from qadistill.errors import ModelFolderError
    from qadistill.integrity import MANIFEST, write_checksums

    folder = make_tiny_model(tmp_path / "stu", "cross")
    write_checksums(folder)  # as distill, teach and export leave every folder they build
    reg.add_artifact("stu", "student-model", folder)
    assert reg.resolve("stu").folder == folder
    (folder / MANIFEST).unlink()  # before: every check off, so zeroed weights were served
    with pytest.raises(ModelFolderError, match=f"{MANIFEST} is missing .it was there when 'stu' was registered"):
        reg.resolve("stu")
    plain = make_tiny_model(tmp_path / "plain", "cross")  # registered without a manifest (older builds): as before
    reg.add_artifact("plain", "student-model", plain)
    assert reg.resolve("plain").folder == plain


def test_a_built_folder_given_by_path_runs_at_the_length_it_was_built_for(reg, tmp_path):
    """A student built at max length 64 and loaded by its folder's path ran at 128 (eval, rank, the API): another
    number than by its name (WikiQA dev .63779 against .63848), with nothing said. A folder's own record of its length
    (distill's and teach's metrics.json, an export's qadistill_export.json) is its default, as its name's is."""
    from conftest import make_tiny_model
    from qadistill.api import resolve_model
    from qadistill.teachers import load_scorer

    folder = make_tiny_model(tmp_path / "student", "cross")
    assert reg.resolve(str(folder)).max_length is None  # a user's own folder: no record, the default (128)
    assert resolve_model(str(folder), "torch", reg)[3] == 128
    (folder / "metrics.json").write_text(json.dumps({"max_length": 24, "dev_map": 0.5}))
    assert reg.resolve(str(folder)).max_length == 24
    assert resolve_model(str(folder), "torch", reg)[3] == 24
    assert load_scorer(str(folder), reg).max_length == 24
    assert load_scorer(str(folder), reg, max_length=40).max_length == 40  # --max-length still overrides it
    for bad in ("x", 3, True, None, 10**9):  # a record that is not a usable length is not used
        (folder / "metrics.json").write_text(json.dumps({"max_length": bad}))
        assert reg.resolve(str(folder)).max_length is None, bad
    (folder / "metrics.json").write_text("{not json")
    assert reg.resolve(str(folder)).max_length is None
