from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import make_tiny_model, requires_package, tiny_jsonl, tiny_pairs, write
from qadistill.metrics import ranking_metrics

pytestmark = pytest.mark.integration  # real models, processes or the CLI end to end


@pytest.fixture(scope="module")
def tiny_rank(tmp_path_factory):
    root = tmp_path_factory.mktemp("rank")
    return make_tiny_model(root / "m", "cross"), tiny_jsonl(root / "d.jsonl")


def test_api_is_lazy():
    out = subprocess.run([sys.executable, "-c", "import sys, qadistill; assert callable(qadistill.load.__call__); print('torch' in sys.modules)"],
                         capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "False"


def test_pair_tokenizer_matches_transformers(tiny_rank):
    from transformers import AutoTokenizer

    from qadistill.backends import PairTokenizer

    folder, _ = tiny_rank
    rows = tiny_pairs(n_queries=6, per_query=3)
    qs, ps = [r["query"] for r in rows], [r["passage"] * 3 for r in rows]  # long passages: truncation matters
    fast = PairTokenizer(folder, 24).pairs(qs, ps)
    hf = AutoTokenizer.from_pretrained(str(folder))(qs, ps, padding=True, truncation=True, max_length=24, return_tensors="np")
    for k in ("input_ids", "attention_mask", "token_type_ids"):
        assert (fast[k] == hf[k]).all(), k


@requires_package("all-minilm-l6-v2")
def test_pair_tokenizer_matches_on_a_real_vocabulary():
    from transformers import AutoTokenizer

    from qadistill.backends import PairTokenizer
    from qadistill.sources import resolve_package

    folder = resolve_package("all-minilm-l6-v2")
    qs = ["How are glacier caves formed?", "what's the U.S. capital?"]
    ps = ["A partly submerged glacier cave on Perito Moreno Glacier. " * 8, "Washington, D.C. — the capital — is on the Potomac."]
    fast = PairTokenizer(folder, 64).pairs(qs, ps, pad_to_max=True)
    hf = AutoTokenizer.from_pretrained(str(folder))(qs, ps, padding="max_length", truncation=True, max_length=64, return_tensors="np")
    assert all((fast[k] == hf[k]).all() for k in ("input_ids", "attention_mask", "token_type_ids"))


def test_rank_cli_and_api_agree_with_eval(cli, tiny_rank, tmp_path):
    from qadistill import load
    from qadistill.data import load_dataset

    folder, data = tiny_rank
    ds = load_dataset(str(data))
    ev = json.loads(cli("eval", str(folder), "--data", str(data), "--format", "json").stdout)["rows"][0]
    model = load(str(folder), backend="torch")
    all_scores, cli_scores = [], []
    for qid, idx in ds.query_groups().items():
        query = ds.pairs[idx[0]].query
        passages = [ds.pairs[i].passage for i in idx]
        ranked = model.rank(query, passages)
        assert [r.rank for r in ranked] == list(range(1, len(idx) + 1))
        s = {r.index: r.score for r in ranked}
        all_scores += [s[j] for j in range(len(idx))]
        f = write(tmp_path / f"{qid}.txt", "\n".join(passages) + "\n")
        r = cli("rank", str(folder), "--query", query, "--passages", str(f), "--backend", "torch", "--format", "json")
        assert r.exit_code == 0, r.output
        res = json.loads(r.stdout)["results"]
        assert [x["index"] for x in res] == [x.index for x in ranked]  # same order as the API
        cs = {x["index"]: x["score"] for x in res}
        cli_scores += [cs[j] for j in range(len(idx))]
    order = [i for idx in ds.query_groups().values() for i in idx]
    q = [ds.pairs[i].query_id for i in order]
    y = [ds.pairs[i].label for i in order]
    assert ranking_metrics(q, all_scores, y)["map"] == pytest.approx(ev["map"], abs=1e-6)
    assert ranking_metrics(q, cli_scores, y)["map"] == pytest.approx(ev["map"], abs=1e-6)


def test_rank_onnx_auto_picks_int8_that_passed_parity(cli, tiny_rank, tmp_path):
    folder, data = tiny_rank
    r = cli("export", str(folder), "--quantize", "dynamic", "--data", str(data), "--parity-queries", "12", "--max-map-drop", "100")
    assert r.exit_code == 0, r.output
    from qadistill.api import resolve_model

    label, f, kind, ml, arch = resolve_model("m-int8-dynamic")
    assert kind == "onnx-int8" and (f / "model.onnx").exists()
    pf = write(tmp_path / "p.txt", "shakespeare wrote hamlet.\nparis is in france.\nthe river is long.\n")
    r = cli("rank", "m-int8-dynamic", "-q", "who wrote hamlet?", "-p", str(pf), "-k", "2", "--format", "json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["backend"] == "onnx-int8" and len(res["results"]) == 2


def test_rank_stdin_and_jsonl(cli, tiny_rank):
    folder, _ = tiny_rank
    r = cli("rank", str(folder), "-q", "who wrote hamlet?", "--format", "json", input="a king.\nshakespeare wrote hamlet.\n")
    assert r.exit_code == 0, r.output
    assert len(json.loads(r.stdout)["results"]) == 2
    r = cli("rank", str(folder), "-q", "who?", "--format", "json", input='{"id": "x1", "passage": "a king."}\n{"id": "x2", "text": "the queen."}\n')
    assert {x["id"] for x in json.loads(r.stdout)["results"]} == {"x1", "x2"}
    rows = '{"query_id": "Q1", "query": "who?", "passage_id": "D1-0", "passage": "a king.", "label": 0}\n'
    r = cli("rank", str(folder), "-q", "who?", "--format", "json", input=rows)  # an eval file's rows keep their ids
    assert [x["id"] for x in json.loads(r.stdout)["results"]] == ["D1-0"]


@pytest.mark.parametrize(
    "args,stdin,text",
    [
        (["-q", "  "], "a\n", "the query is empty"),
        (["-q", "who?"], "\n\n", "no passages to rank"),
        (["-q", "who?"], "\x00\x01binary", "not a text file"),
        (["-q", "who?"], "Paris.\nRome.\n".encode("utf-16"), "is UTF-16 text"),
        (["-q", "who?", "-p", "/nonexistent/p.txt"], None, "does not exist"),
    ],
)
def test_rank_bad_input_is_one_line_exit_2(cli, tiny_rank, args, stdin, text):
    folder, _ = tiny_rank
    r = cli("rank", str(folder), *args, input=stdin)
    assert r.exit_code == 2 and text in r.stderr and "Traceback" not in r.output


def test_rank_jsonl_errors_name_the_line_in_the_file_blank_lines_included(cli, tiny_rank, tmp_path):
    folder, _ = tiny_rank
    f = write(tmp_path / "pj.jsonl", '{"id": "a", "passage": "x."}\n\n\n{"id": "b", "passage": ""}\n')
    r = cli("rank", str(folder), "-q", "who?", "-p", str(f))
    assert r.exit_code == 2 and "pj.jsonl:4: field 'passage' must be non-empty" in r.stderr
    f = write(tmp_path / "pk.jsonl", '\n{"id": "a", "passage": "x."}\nnot json\n')
    r = cli("rank", str(folder), "-q", "who?", "-p", str(f))
    assert r.exit_code == 2 and "pk.jsonl:3: invalid JSON" in r.stderr and "a .jsonl file" in r.stderr
    r = cli("rank", str(folder), "-q", "who?", input='\n{"id": "a", "passage": "x."}\nnot json\n')
    assert r.exit_code == 2 and "stdin:3: invalid JSON" in r.stderr and "line 2 starts a JSON object" in r.stderr


def test_rank_unknown_model(cli):
    r = cli("rank", "no-such-model", "-q", "who?", input="a\n")
    assert r.exit_code == 2 and "unknown model 'no-such-model'" in r.stderr


def test_auto_serves_an_export_only_when_its_parity_can_be_trusted():
    from qadistill.api import parity_trusted

    assert parity_trusted({"ok": True, "max_abs_diff": 0.05, "reference_std": 1.2})
    assert not parity_trusted({"ok": False, "max_abs_diff": 0.05, "reference_std": 1.2})
    # the quickstart student: int8 error 0.008 against logits that spread 0.006 -> near-ties reordered, not served
    assert not parity_trusted({"ok": True, "max_abs_diff": 0.0079, "reference_std": 0.0063})
    assert parity_trusted({"ok": True, "max_abs_diff": 1.7e-6, "reference_std": 0.0063})  # its fp32 ONNX is fine
    assert parity_trusted({"ok": True, "max_abs_diff": 0.3})  # exports made before reference_std was recorded
    assert not parity_trusted({"ok": True, "max_abs_diff": 0.01, "reference_std": 1.2, "queries": 1})  # bounds nothing
    assert parity_trusted({"ok": True, "max_abs_diff": 0.01, "reference_std": 1.2, "queries": 10})


def test_api_rank_and_score_refuse_what_the_cli_refuses(tiny_rank):
    from qadistill import load
    from qadistill.errors import UserInputError

    folder, _ = tiny_rank
    m = load(str(folder), backend="torch", max_length=32)
    for bad, msg in [
        (dict(passages="paris is in france."), "a list of passages, not one string"),
        (dict(passages=["a king.", 3]), r"passage 1 is an int, not text"),
        (dict(passages=["a king.", "  "]), "passage 1 is empty"),
        (dict(passages=["a king."], top_k=0), "top_k 0"),
        (dict(passages=["a king."], top_k=-1), "top_k -1"),
        (dict(passages=["a king.", "the queen."], ids=["x"]), "2 passages but 1 ids"),
        (dict(passages=["a king.", "the queen."], ids="ab"), "ids is a str, not a list of ids"),  # before: ids a, b
        (dict(passages=["a king."], ids=5), "ids is an int, not a list of ids"),
    ]:
        with pytest.raises(UserInputError, match=msg):
            m.rank("who?", **bad)
    with pytest.raises(UserInputError, match="pair 0: expected"):
        m.score(["who?"])
    with pytest.raises(UserInputError, match=r"pair 1: the passage is a NoneType"):
        m.score([("who?", "a king."), ("who?", None)])
    assert [r.index for r in m.rank("who?", ("a king.", "the queen."), top_k=5)] != []  # a tuple is fine; k over the size too


@pytest.mark.parametrize("kw,msg", [
    (dict(max_length=-5), "max_length -5: must be a whole number of at least 8"),  # before: a tokenizer OverflowError
    (dict(max_length=0), "max_length 0"),  # before: silently the default
    (dict(max_length=4096), "max_length 4096 is longer than the model"),
    (dict(threads=-3), "threads -3"),  # before: torch's RuntimeError
    (dict(threads=0), "threads 0"),
    (dict(batch_size="8"), "batch_size '8'"),  # before: a TypeError
    (dict(sessions=True), "sessions True"),
])
def test_api_load_checks_its_settings_as_the_cli_does(tiny_rank, kw, msg):
    from qadistill import load
    from qadistill.errors import UserInputError

    folder, _ = tiny_rank
    with pytest.raises(UserInputError, match=msg):
        load(str(folder), backend="torch", **kw)


def test_api_load_warns_about_more_threads_than_cpus(tiny_rank):
    import os

    from qadistill import load

    folder, _ = tiny_rank
    with pytest.warns(UserWarning, match=f"threads={(os.cpu_count() or 1) + 1} is more than this machine's"):
        load(str(folder), backend="torch", threads=(os.cpu_count() or 1) + 1)


@pytest.mark.parametrize("name,msg", [(None, "the model is a NoneType, not a name"), (123, "the model is an int"),
                                      ("  ", "the model name is empty")])
def test_api_load_refuses_what_is_not_a_model_name(name, msg):
    from qadistill import load
    from qadistill.errors import UserInputError

    with pytest.raises(UserInputError, match=msg):
        load(name)


def test_rank_file_with_a_bom_or_mixed_json_lines(cli, tiny_rank, tmp_path):
    folder, _ = tiny_rank
    p = tmp_path / "bom.txt"
    p.write_bytes("\ufeffparis is in france.\nthe river is long.\n".encode())
    r = cli("rank", str(folder), "-q", "where is paris?", "-p", str(p), "--format", "json")
    assert r.exit_code == 0 and {x["passage"] for x in json.loads(r.stdout)["results"]} == {"paris is in france.", "the river is long."}
    mixed = write(tmp_path / "mixed.jsonl", '{"id": "a", "passage": "a king."}\nthe queen.\n')
    r = cli("rank", str(folder), "-q", "who?", "-p", str(mixed))
    assert r.exit_code == 2 and "mixed.jsonl:2" in r.stderr and "JSON" in r.stderr, r.output


def test_rank_without_passages_at_a_terminal_says_how_instead_of_waiting(monkeypatch):
    import io

    from qadistill.cli.rank import read_passages
    from qadistill.errors import UserInputError

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdin", Tty(""))
    with pytest.raises(UserInputError, match="nothing is piped in") as ei:
        read_passages("-")
    assert "-p FILE" in ei.value.hint


@pytest.mark.parametrize("model,msg", [("/nonexistent/model-folder", "no such folder: /nonexistent/model-folder"),
                                       ("", "the model name is empty")])
def test_rank_a_missing_folder_or_empty_name_says_so(cli, model, msg):
    r = cli("rank", model, "-q", "who?", input="a king.\n")  # before: "not a valid Hugging Face repo id" / the current folder
    assert r.exit_code == 2 and msg in r.stderr and "Traceback" not in r.output


def test_rank_json_gives_each_passage_its_input_line(cli, tiny_rank):
    folder, _ = tiny_rank
    r = cli("rank", str(folder), "-q", "who wrote hamlet?", "--format", "json", input="Hamlet.\n\n\nBananas.\n")
    assert r.exit_code == 0, r.output
    by = {x["passage"]: x for x in json.loads(r.stdout)["results"]}
    assert (by["Hamlet."]["index"], by["Hamlet."]["line"]) == (0, 1)
    assert (by["Bananas."]["index"], by["Bananas."]["line"]) == (1, 4)  # index: among the passages; line: in the input
    r = cli("rank", str(folder), "-q", "who?", "--format", "json", input='{"id": "x1", "passage": "a king."}\n\n{"passage": "the queen."}\n')
    assert {x["id"]: x["line"] for x in json.loads(r.stdout)["results"]} == {"x1": 1, "2": 3}


@pytest.mark.parametrize("bad", ['{"x": 1}', "[1]", "true", "1.5", "null"])
def test_rank_jsonl_id_that_is_not_a_string_or_integer_is_refused(cli, tiny_rank, bad):
    folder, _ = tiny_rank
    r = cli("rank", str(folder), "-q", "who?", input=f'{{"id": "a", "passage": "x."}}\n{{"id": {bad}, "passage": "y."}}\n')
    assert r.exit_code == 2 and "stdin:2: id" in r.stderr and "not a string or a whole number" in r.stderr, r.output


def test_a_nan_score_is_an_error_naming_the_pair_never_a_reordered_ranking(cli, tiny_rank, monkeypatch):
    """Damaged weights in a folder without a checksum record gave NaN for one passage, which sorted into the ranking
    and reordered every passage. The model's scores are made NaN for one pair here (tokenizers differ across the
    Hugging Face lines: on one, the tiny tokenizer maps every word to [UNK], so a corrupted embedding row hits all)."""
    import numpy as np

    import qadistill.backends as backends
    from qadistill.api import load
    from qadistill.errors import ScoreError

    real = backends.Backend.score_real_lengths

    def one_nan(self, qs, ps, *a, **k):
        out = np.asarray(real(self, qs, ps, *a, **k), dtype=np.float64)
        out[[i for i, p in enumerate(ps) if "king" in p]] = np.nan
        return out
    monkeypatch.setattr(backends.Backend, "score_real_lengths", one_nan)
    m = load(str(tiny_rank[0]), backend="torch")
    with pytest.raises(ScoreError, match=r"non-finite score \(nan\) for pair 1 \(1 of 3 pairs\)"):
        m.rank("who?", ["paris.", "a king.", "the queen."])
    r = cli("rank", str(tiny_rank[0]), "-q", "who?", "--backend", "torch", "--format", "json", input="paris.\na king.\nthe queen.\n")
    assert r.exit_code != 0 and "non-finite score" in r.stderr and "NaN" not in r.stdout, r.output


def test_api_refuses_none_for_a_list_a_lone_surrogate_and_use_after_close(tiny_rank):
    from qadistill.api import load
    from qadistill.errors import UserInputError

    m = load(str(tiny_rank[0]), backend="torch")
    with pytest.raises(UserInputError, match="pairs is a NoneType, not a list"):
        m.score(None)
    with pytest.raises(UserInputError, match="passages is a NoneType, not a list"):
        m.rank("who?", None)
    with pytest.raises(UserInputError, match="passage 0 holds a character that is not Unicode text"):
        m.rank("who?", ["\ud800abc", "b"])
    assert len(m.rank("who?", ["a king.", "b"])) == 2
    m.close()
    with pytest.raises(UserInputError, match="was closed"):
        m.rank("who?", ["a king.", "b"])
    with pytest.raises(UserInputError, match="was closed"):
        m.score([("who?", "a king.")])


def test_an_onnx_export_loaded_for_torch_names_its_source_not_damage(cli, tiny_rank, tmp_path):
    from qadistill.api import load
    from qadistill.errors import UserInputError

    folder, data = tiny_rank
    r = cli("export", str(folder), "--data", str(data), "--parity-queries", "12", "--out", str(tmp_path / "x"), "--format", "json")
    assert r.exit_code == 0, r.output
    onnx_dir = json.loads(r.stdout)[0]["path"]
    with pytest.raises(UserInputError, match="is an ONNX export: it has no PyTorch weights") as ei:
        load(onnx_dir, backend="torch")
    assert "load its source model" in ei.value.hint


def test_a_file_given_as_the_model_is_said_to_be_a_file(tmp_path):
    from qadistill.api import load
    from qadistill.errors import UserInputError

    f = tmp_path / "README.md"
    f.write_text("# not a model\n")
    with pytest.raises(UserInputError, match="README.md is a file, not a model folder"):
        load(str(f))


def test_sessions_on_a_pytorch_model_is_refused(tiny_rank):
    from qadistill.api import load
    from qadistill.errors import UserInputError

    with pytest.raises(UserInputError, match="sessions=2 needs an ONNX model"):
        load(str(tiny_rank[0]), backend="torch", sessions=2)


@pytest.mark.parametrize("name, content, where", [
    ("broken.jsonl", '{"id": 1, "passage": "a king."\n{"id": 2, "passage": "the queen."}\n', "broken.jsonl:1: invalid JSON"),
    ("broken.ndjson", '\n{"id": 1, "passage": "a king.",}\n', "broken.ndjson:2: invalid JSON"),
    ("plain.jsonl", "a king.\nthe queen.\n", "plain.jsonl:1: invalid JSON"),
    ("-", '{"id": 1, "passage": "a king."\n{"id": 2, "passage": "the queen."}\n', "stdin:1: invalid JSON"),
])
def test_rank_broken_jsonl_is_refused_not_ranked_as_raw_text(cli, tiny_rank, tmp_path, name, content, where):
    """A JSONL file (by its name, or a first line that starts like a JSON object) whose first line does not parse used
    to be read as plain text: every raw JSON line ranked as a passage, exit 0."""
    folder, _ = tiny_rank
    if name == "-":
        r = cli("rank", str(folder), "-q", "who?", input=content)
    else:
        r = cli("rank", str(folder), "-q", "who?", "-p", str(write(tmp_path / name, content)))
    assert r.exit_code == 2 and where in r.stderr, r.output


def test_rank_plain_text_file_may_start_with_a_brace(cli, tiny_rank, tmp_path):
    folder, _ = tiny_rank
    f = write(tmp_path / "p.txt", '{"quoted" in braces} is a passage.\nthe queen.\n')
    r = cli("rank", str(folder), "-q", "who?", "-p", str(f), "--format", "json")
    assert r.exit_code == 0 and len(json.loads(r.stdout)["results"]) == 2, r.output


def test_rank_reads_old_mac_line_ends_and_skips_invisible_lines(cli, tiny_rank):
    """A CR-only file ranked as one passage holding every line (exit 0); a line of a zero-width space was a passage."""
    folder, _ = tiny_rank
    r = cli("rank", str(folder), "-q", "who?", "--format", "json", input="A king.\rThe queen.\r\u200b\rA dog.\r")
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)["results"]
    assert sorted(x["passage"] for x in got) == ["A dog.", "A king.", "The queen."]
    assert sorted(x["line"] for x in got) == [1, 2, 4]


def test_text_in_square_brackets_is_shown_as_written_never_read_as_markup(cli, tiny_rank, tmp_path, monkeypatch):
    """Passages, queries, paths and names went through rich markup: "[/x]" was an internal MarkupError (after `score`
    had done its work: exit 1), "[bold]was[/bold]" and "a[i]" lost text, a home folder "[x]" vanished from "saved to",
    and doctor's fix read "pip install 'qadistill'" for "qadistill[ray]". Every console prints text as written."""
    folder, data = tiny_rank
    passages = tmp_path / "p.txt"
    passages.write_text("see the note [/x] about shakespeare\narray a[i] = b[j] and [red]x\nhamlet [bold]was[/bold] written [1].\n")
    r = cli("rank", str(folder), "-q", "who wrote [/x] hamlet?", "-p", str(passages))
    assert r.exit_code == 0, r.output
    flat = " ".join(r.stdout.split())
    for text in ("who wrote [/x] hamlet?", "see the note [/x] about shakespeare", "array a[i] = b[j] and [red]x",
                 "hamlet [bold]was[/bold] written [1]."):
        assert text in flat, (text, r.stdout)
    odd = tmp_path / "br[/x]" / "t[v2].jsonl"
    odd.parent.mkdir(parents=True)
    odd.write_text(data.read_text())
    r = cli("eval", str(folder), "--data", str(odd))
    assert r.exit_code == 0, r.output
    assert "t[v2].jsonl" in " ".join(r.stdout.split()) and "MarkupError" not in r.output
    from qadistill.cli._common import table

    from rich.console import Console

    con = Console(width=200, record=True, markup=False)
    con.print(table("doctor", ["fix"], [["pip install 'qadistill[ray]'"]]))
    assert "pip install 'qadistill[ray]'" in con.export_text()
