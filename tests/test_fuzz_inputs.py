"""Property-based fuzzing of every dataset loader and of the recipe parser.

The property: an input either loads, and then the result is exactly what the file says (every pair has a query and a
passage, labels are 0, 1 or None, one pair per non-blank data row), or it raises the project's own error
(DataError / RecipeError) whose message starts with the file's path and, for a bad row, names that row's line.
Never another exception, never a silently wrong result, never a hang.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qadistill.data import WIKIQA_COLUMNS, QADataset, is_blank, load_dataset, query_key
from qadistill.errors import DataError, RecipeError
from qadistill.recipes import PipelineRecipe, PrebuiltRecipe, StudentRecipe, TeacherRecipe, load_recipe, parse_recipe
from qadistill.registry import builtin_zoo_dir

# QADISTILL_FUZZ_EXAMPLES=2000 for a deeper search than the default run's.
FUZZ = settings(max_examples=int(os.environ.get("QADISTILL_FUZZ_EXAMPLES", "40")), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
TIME_BOUND_S = 5.0
BOM = "\ufeff"

# Characters that once split or shifted rows: Unicode line separators, form feeds, quotes, delimiters, combining marks.
ODD = "\u2028\u2029\x85\x0b\x0c\x1c\x1d\x1e\ufeff\u00e9\u0301\U0001f642\"',; "


def texts(forbid: str, surrogates: bool = False) -> st.SearchStrategy[str]:
    cats = ("Cc",) if surrogates else ("Cs", "Cc")
    chars = st.characters(blacklist_categories=cats, blacklist_characters=forbid) | st.sampled_from([c for c in ODD if c not in forbid])
    short = st.text(chars, min_size=1, max_size=24)
    huge = st.builds(lambda s, n: s * n, st.text(chars, min_size=1, max_size=8), st.integers(2000, 6000))
    return st.one_of(short, short, short, huge).filter(lambda s: not is_blank(s))  # blank: empty, refused (bad rows)


@dataclass(frozen=True)
class Row:
    qid: str
    query: str
    pid: str
    passage: str
    label: str  # "0", "1" or "" (unlabelled)
    bad: str | None = None  # the kind of damage done to this row, None for a good row


@st.composite
def good_rows(draw, forbid: str) -> list[Row]:
    queries = draw(st.lists(texts(forbid), min_size=1, max_size=4, unique_by=query_key))  # distinct questions, by their words
    n = draw(st.integers(1, 8))
    rows, labels = [], {}
    for i in range(n):
        k = draw(st.integers(0, len(queries) - 1))
        passage, label = draw(texts(forbid)), draw(st.sampled_from(["0", "1", ""]))
        if label:  # one passage text has one label per query: two would contradict each other (a data error)
            label = labels.setdefault((k, passage.strip()), label)
        rows.append(Row(str(k), queries[k], f"D{k}-{i}", passage, label))
    return rows


def with_bad_rows(draw, rows: list[Row], kinds: list[str]) -> list[Row]:
    """Insert rows derived from good ones (same query id and text, a fresh passage id) with one kind of damage each."""
    out = list(rows)
    for j in range(draw(st.integers(0, 2))):
        src = draw(st.sampled_from(rows))
        bad = replace(src, pid=f"bad-{j}", bad=draw(st.sampled_from(kinds)))
        out.insert(draw(st.integers(0, len(out))), bad)
    return out


def check_error(exc: Exception, path: Path, bad_lines: list[int], n_lines: int) -> None:
    """The error is ours, starts with the file's path, names a real line, and if rows were damaged, one of them."""
    assert isinstance(exc, DataError), f"{type(exc).__name__}: {exc}"
    msg = exc.message
    assert msg.startswith(f"{path}:") or msg.startswith(f"{path} "), msg
    m = re.match(re.escape(str(path)) + r":(\d+):", msg)
    if m:
        assert 1 <= int(m.group(1)) <= n_lines + 1, msg
    if bad_lines:
        named = {int(x) for x in re.findall(r"(?::|line )(\d+)", msg[len(str(path)) :])}
        assert named & set(bad_lines), f"{msg} (damaged lines: {bad_lines})"
    assert exc.hint


def load_or_error(path: Path, bad_lines: list[int] | None = None) -> QADataset | None:
    raw = path.read_bytes()
    n_lines = raw.count(b"\n") + raw.count(b"\r") + 1  # an upper bound: \r\n counts twice
    start = time.monotonic()
    try:
        ds = load_dataset(str(path))
    except Exception as exc:  # noqa: BLE001 - the property is about which exceptions come out
        check_error(exc, path, bad_lines or [], n_lines if not path.name.endswith(".gz") else 10**9)
        ds = None
    assert time.monotonic() - start < TIME_BOUND_S
    if ds is not None:
        check_consistent(ds)
    return ds


def check_consistent(ds: QADataset) -> None:
    assert len(ds) > 0
    for p in ds.pairs:
        assert not is_blank(p.query) and not is_blank(p.passage)
        assert p.label in (0, 1, None)
        assert isinstance(p.query_id, str) and isinstance(p.passage_id, str)
    ds.fingerprint()  # every text is encodable


def expect(ds: QADataset | None, rows: list[Row], with_ids: bool = True) -> None:
    assert ds is not None, "a file of good rows must load"
    assert len(ds) == len(rows)
    for p, r in zip(ds.pairs, rows):
        assert (p.query, p.passage, p.label) == (r.query, r.passage, int(r.label) if r.label else None)
        if with_ids:
            assert (p.query_id, p.passage_id) == (r.qid, r.pid)


def write_file(path: Path, text: str, bom: bool) -> Path:
    data = ((BOM if bom else "") + text).encode("utf-8")
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def assemble(lines: list[str], rows: list[Row], draw, newline: str, blanks: list[str]) -> tuple[str, list[int]]:
    """Join the header and row lines, with blank lines sprinkled in; return the text and the lines of damaged rows."""
    out, bad_lines = [lines[0]], []
    for line, row in zip(lines[1:], rows):
        for _ in range(draw(st.integers(0, 1))):
            out.append(draw(st.sampled_from(blanks)))
        out.append(line)
        if row.bad:
            bad_lines.append(len(out))
    return newline.join(out) + draw(st.sampled_from([newline, ""])), bad_lines


NEWLINES = st.sampled_from(["\n", "\r\n", "\r"])

# ---------------------------------------------------------------------------------------------------------------------
# WikiQA layout (.tsv / .tsv.gz)
# ---------------------------------------------------------------------------------------------------------------------
TSV_BAD = ["missing", "extra", "label", "empty_query", "empty_passage", "nul", "conflict"]
BAD_LABELS = ["2", "-1", "yes", "0.5", "1.5", "01", "tru"]  # 1, 1.0, "1.0", true are valid labels (one rule in every format)


def wikiqa_cells(r: Row, draw) -> dict[str, str]:
    c = {"QuestionID": r.qid, "Question": r.query, "DocumentID": r.pid.split("-")[0], "DocumentTitle": "title " + r.qid,
         "SentenceID": r.pid, "Sentence": r.passage, "Label": r.label}
    bad = r.bad
    if bad == "extra":
        c["Sentence"] += "\tmore words"
    elif bad == "label":
        c["Label"] = draw(st.sampled_from(BAD_LABELS))
    elif bad == "empty_query":
        c["Question"] = " "
    elif bad == "empty_passage":
        c["Sentence"] = ""
    elif bad == "nul":
        c["Sentence"] += "\x00"
    elif bad == "conflict":
        c["Question"] += " or not"
    return c


@st.composite
def wikiqa_files(draw) -> tuple[str, list[Row], list[int]]:
    rows = with_bad_rows(draw, draw(good_rows("\t\n\r\x00")), TSV_BAD)
    order = draw(st.permutations(WIKIQA_COLUMNS))
    lines = ["\t".join(order)]
    for r in rows:
        cells = [wikiqa_cells(r, draw)[c] for c in order]
        lines.append("\t".join(cells[:-1] if r.bad == "missing" else cells))
    text, bad_lines = assemble(lines, rows, draw, draw(NEWLINES), ["", "   ", "\t\t"])
    return text, rows, bad_lines


@FUZZ
@given(wikiqa_files(), st.booleans(), st.booleans())
def test_wikiqa_rows_load_exactly_or_name_the_bad_line(tmp_path, f, gz, bom):
    text, rows, bad_lines = f
    path = write_file(tmp_path / ("WikiQA-fuzz.tsv" + (".gz" if gz else "")), text, bom)
    ds = load_or_error(path, bad_lines)
    if not bad_lines:
        expect(ds, rows)
        assert ds.pairs[0].title == "title " + rows[0].qid
    else:
        assert ds is None, "a damaged row must not load"


# ---------------------------------------------------------------------------------------------------------------------
# JSONL (.jsonl / .jsonl.gz)
# ---------------------------------------------------------------------------------------------------------------------
JSONL_BAD = ["missing", "label", "empty_query", "empty_passage", "not_text", "id_type", "duplicate_key", "conflict", "not_object", "bad_json"]


def jsonl_line(r: Row, draw, ascii_only: bool) -> str:
    obj: dict = {"query_id": r.qid, "query": r.query, "passage_id": r.pid, "passage": r.passage}
    if r.label:
        obj["label"] = draw(st.sampled_from([int(r.label), r.label, bool(int(r.label))]))
    bad = r.bad
    if bad == "missing":
        del obj[draw(st.sampled_from(["query", "passage"]))]
    elif bad == "label":
        obj["label"] = draw(st.sampled_from([2, -1, 0.5, "yes", [1], {"v": 1}, float("nan")]))
    elif bad == "empty_query":
        obj["query"] = "  "
    elif bad == "empty_passage":
        obj["passage"] = ""
    elif bad == "not_text":
        obj[draw(st.sampled_from(["query", "passage"]))] = draw(st.sampled_from([5, None, ["a"], {"t": "a"}, True]))
    elif bad == "id_type":
        obj["query_id"] = int(r.qid)  # "3" elsewhere, 3 here: must not become one query
    elif bad == "conflict":
        obj["query"] += " or not"
    elif bad == "not_object":
        return json.dumps([obj])
    elif bad == "bad_json":
        return json.dumps(obj, ensure_ascii=ascii_only)[:-1]
    line = json.dumps(obj, ensure_ascii=ascii_only)
    if bad == "duplicate_key":
        line = line[:-1] + ', "passage": "a second passage"}'
    return line


@FUZZ
@given(st.data(), st.booleans(), st.booleans())
def test_jsonl_rows_load_exactly_or_name_the_bad_line(tmp_path, data, gz, bom):
    ascii_only = data.draw(st.booleans())
    rows = with_bad_rows(data.draw, data.draw(good_rows("")), JSONL_BAD)
    newline = data.draw(NEWLINES)
    out, bad_lines = [], []
    for r in rows:
        if data.draw(st.booleans()):
            out.append(data.draw(st.sampled_from(["", "  "])))
        out.append(jsonl_line(r, data.draw, ascii_only))
        if r.bad:
            bad_lines.append(len(out))
    path = write_file(tmp_path / ("fuzz.jsonl" + (".gz" if gz else "")), newline.join(out) + newline, bom)
    ds = load_or_error(path, bad_lines)
    if not bad_lines:
        expect(ds, rows)
    else:
        assert ds is None, "a damaged row must not load"


@FUZZ
@given(st.lists(texts("", surrogates=True), min_size=1, max_size=3))
def test_jsonl_escaped_surrogates_load_or_are_refused(tmp_path, passages):
    """JSON can spell an unpaired surrogate (\\ud800) that no UTF-8 file can hold: refused, not a crash later on."""
    lines = [json.dumps({"query": "q?", "passage": p, "passage_id": str(i)}) for i, p in enumerate(passages)]
    path = write_file(tmp_path / "s.jsonl", "\n".join(lines) + "\n", False)
    ds = load_or_error(path)
    if ds is not None:
        assert [p.passage for p in ds.pairs] == passages


# ---------------------------------------------------------------------------------------------------------------------
# CSV / TSV with a header (.csv, .csv.gz, .tsv)
# ---------------------------------------------------------------------------------------------------------------------
CSV_BAD = ["missing", "extra", "label", "empty_query", "empty_passage", "nul", "unclosed_quote", "stray_quote", "conflict"]


def csv_line(cells: list[str], delim: str, quoting: int) -> str:
    buf = io.StringIO()
    csv.writer(buf, delimiter=delim, quoting=quoting, lineterminator="").writerow(cells)
    return buf.getvalue()


@st.composite
def csv_files(draw, delim: str) -> tuple[str, list[Row], list[int], list[str]]:
    rows = with_bad_rows(draw, draw(good_rows("\n\r\x00")), CSV_BAD)
    optional = draw(st.lists(st.sampled_from(["label", "query_id", "passage_id", "notes"]), unique=True))
    header = draw(st.permutations(["query", "passage", *optional]))
    quoting = draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]))
    if "query_id" not in header:
        rows = [replace(r, bad="label") if r.bad == "conflict" else r for r in rows]  # without ids, texts are the ids
    if delim == "\t":  # a tab-separated line that splits into the right cells is read literally: a stray quote is text
        rows = [replace(r, bad="missing") if r.bad in ("unclosed_quote", "stray_quote") else r for r in rows]
    if "passage_id" not in header:  # distinct passages, so that the expected rows are told apart by text
        seen: set = set()
        for i, r in enumerate(rows):
            while (query_key(r.query), r.passage.strip()) in seen:  # rows group by the query's words
                r = rows[i] = replace(r, passage=r.passage + f" ({i})")
            seen.add((query_key(r.query), r.passage.strip()))
    lines = [delim.join(header)]
    for r in rows:
        c = {"query": r.query, "passage": r.passage, "label": r.label, "query_id": r.qid, "passage_id": r.pid, "notes": "n"}
        if r.bad == "label" and "label" not in header:
            r = replace(r, bad="empty_passage")
        if r.bad == "label":
            c["label"] = draw(st.sampled_from(BAD_LABELS))
        elif r.bad == "empty_query":
            c["query"] = "  "
        elif r.bad == "empty_passage":
            c["passage"] = ""
        elif r.bad == "nul":
            c["passage"] += "\x00"
        elif r.bad == "conflict":
            c["query"] += " or not"
        cells = [c[h] for h in header]
        if r.bad == "missing":
            cells = cells[:-1]
        elif r.bad == "extra":
            cells.append("one more")
        line = csv_line(cells, delim, quoting)
        if r.bad == "unclosed_quote":
            line = csv_line(cells[:-1], delim, quoting) + delim + '"' + cells[-1].replace('"', "")
        elif r.bad == "stray_quote":
            line = csv_line(cells[:-1], delim, quoting) + delim + '"x"y' + cells[-1].replace('"', "")
        lines.append(line)
    text, bad_lines = assemble(lines, rows, draw, draw(NEWLINES), ["", "   ", delim * 2])
    return text, rows, bad_lines, list(header)


@pytest.mark.parametrize("name,delim", [("fuzz.csv", ","), ("fuzz.csv.gz", ","), ("fuzz.tsv", "\t")])
def test_delimited_rows_load_exactly_or_name_the_bad_line(tmp_path, name, delim):
    @FUZZ
    @given(csv_files(delim), st.booleans())
    def check(f, bom):
        text, rows, bad_lines, header = f
        path = write_file(tmp_path / name, text, bom)
        ds = load_or_error(path, bad_lines)
        if not bad_lines:
            ids = "query_id" in header and "passage_id" in header
            expect(ds, [r if "label" in header else replace(r, label="") for r in rows], with_ids=ids)
            assert len(ds.query_groups()) == len({r.qid for r in rows})
        else:
            assert ds is None, "a damaged row must not load"

    check()


# ---------------------------------------------------------------------------------------------------------------------
# Random bytes and truncated files, for every loader
# ---------------------------------------------------------------------------------------------------------------------
NAMES = ["WikiQA-x.tsv", "WikiQA-x.tsv.gz", "x.jsonl", "x.jsonl.gz", "x.csv", "x.csv.gz", "x.tsv"]
HEADS = {"tsv": "\t".join(WIKIQA_COLUMNS) + "\n", "jsonl": "", "csv": "query,passage,label\n"}


def head_for(name: str) -> str:
    return HEADS["tsv"] if name.startswith("WikiQA") else HEADS["jsonl"] if ".jsonl" in name else HEADS["csv"].replace(",", "\t" if name == "x.tsv" else ",")


@pytest.mark.parametrize("name", NAMES)
def test_random_bytes_load_or_raise_data_error(tmp_path, name):
    @FUZZ
    @given(st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode)), st.booleans(), st.booleans())
    def check(payload, with_head, compress):
        data = (head_for(name).encode() if with_head else b"") + payload
        path = tmp_path / name
        path.write_bytes(gzip.compress(data) if name.endswith(".gz") and compress else data)
        load_or_error(path)

    check()


def valid_text(name: str) -> str:
    rows = [Row(str(k % 3), f"question {k % 3}?", f"D{k}-0", f"passage number {k} " * (k + 1), str(k % 2)) for k in range(12)]
    if name.startswith("WikiQA"):
        return head_for(name) + "".join(
            "\t".join([r.qid, r.query, "D", "t", r.pid, r.passage, r.label]) + "\r\n" for r in rows)
    if ".jsonl" in name:
        return "".join(json.dumps({"query_id": r.qid, "query": r.query, "passage_id": r.pid, "passage": r.passage,
                                   "label": int(r.label)}) + "\n" for r in rows)
    delim = "\t" if name == "x.tsv" else ","
    return head_for(name) + "".join(csv_line([r.query, r.passage, r.label], delim, csv.QUOTE_MINIMAL) + "\n" for r in rows)


@pytest.mark.parametrize("name", NAMES)
def test_truncated_files_load_a_prefix_or_raise_data_error(tmp_path, name):
    full = write_file(tmp_path / ("full-" + name), valid_text(name), False)
    whole = load_dataset(str(full)).pairs
    raw = full.read_bytes()

    @FUZZ
    @given(st.integers(0, len(raw) - 1))
    def check(cut):
        path = tmp_path / name
        path.write_bytes(raw[:cut])
        ds = load_or_error(path)
        if name.endswith(".gz"):
            assert ds is None, f"a gzip cut at byte {cut} of {len(raw)} must not load"
        elif ds is not None:  # rows before the cut are intact; the cut row, if it loads, is a prefix of itself
            n = len(ds)
            assert ds.pairs[: n - 1] == whole[: n - 1]
            last, orig = ds.pairs[-1], whole[n - 1]
            assert orig.query.startswith(last.query) and orig.passage.startswith(last.passage)
            assert last.label in (orig.label, None)

    check()


# ---------------------------------------------------------------------------------------------------------------------
# Recipes
# ---------------------------------------------------------------------------------------------------------------------
SCHEMA_FIELDS = {f for m in (TeacherRecipe, StudentRecipe, PipelineRecipe, PrebuiltRecipe) for f in m.model_fields}
BUILTIN_TOML = sorted(builtin_zoo_dir().glob("*.toml"))
TOML_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**20), 10**20) | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


def check_recipe_error(exc: Exception, where: str) -> None:
    assert isinstance(exc, RecipeError), f"{type(exc).__name__}: {exc}"
    assert exc.message.startswith(where), exc.message
    assert "errors.pydantic.dev" not in exc.message and "Value error," not in exc.message, exc.message
    assert len(exc.message) < 600, exc.message
    assert exc.hint


def load_recipe_or_error(path: Path) -> None:
    start = time.monotonic()
    try:
        load_recipe(path)
    except Exception as exc:  # noqa: BLE001
        check_recipe_error(exc, str(path))
    assert time.monotonic() - start < TIME_BOUND_S


@FUZZ
@given(st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode)))
def test_random_recipe_bytes_raise_recipe_error(tmp_path, payload):
    path = tmp_path / "fuzz.toml"
    path.write_bytes(payload)
    load_recipe_or_error(path)


@FUZZ
@given(st.sampled_from(BUILTIN_TOML), st.data())
def test_truncated_recipe_loads_or_names_the_toml_line(tmp_path, src, data):
    raw = src.read_bytes()
    cut = data.draw(st.integers(0, len(raw)))
    path = tmp_path / "cut.toml"
    path.write_bytes(raw[:cut])
    try:
        load_recipe(path)
    except RecipeError as exc:
        check_recipe_error(exc, str(path))
        if "invalid TOML" in exc.message:
            assert re.search(r"line \d+", exc.message), exc.message


@st.composite
def mutated_recipes(draw) -> dict:
    """A built-in recipe with fields replaced by random values, dropped, or added: every kind of type confusion."""
    import tomllib

    base = tomllib.loads(draw(st.sampled_from(BUILTIN_TOML)).read_text())
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["set", "drop", "nested"]))
        key = draw(st.sampled_from(sorted(base) + ["extra_field"]))
        if op == "drop":
            base.pop(key, None)
        elif op == "nested" and isinstance(base.get(key), dict) and base[key]:
            sub = dict(base[key])
            sub[draw(st.sampled_from(sorted(sub)))] = draw(TOML_VALUES)
            base[key] = sub
        else:
            base[key] = draw(TOML_VALUES)
    return base


@FUZZ
@given(mutated_recipes())
def test_mutated_recipe_parses_or_names_the_field(data):
    try:
        parse_recipe(data, "fuzz.toml")
    except Exception as exc:  # noqa: BLE001
        check_recipe_error(exc, "fuzz.toml")
        if exc.field:  # a real field: one the recipe has, or one the schema knows
            assert exc.field.split(".")[0] in set(data) | SCHEMA_FIELDS, exc.message


@FUZZ
@given(mutated_recipes())
def test_mutated_recipe_file_round_trips_through_toml(tmp_path, data):
    import tomli_w

    path = tmp_path / "m.toml"
    try:
        path.write_text(tomli_w.dumps(data))
    except (TypeError, ValueError):  # None or a non-string key has no TOML spelling
        return
    load_recipe_or_error(path)


def test_recipe_toml_errors_name_the_line(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text('kind = "teacher"\nname = "t"\narchitecture = \n')
    with pytest.raises(RecipeError, match=r"broken.toml: invalid TOML at line 3, column 16"):
        load_recipe(path)


def test_deeply_nested_inputs_are_errors_not_crashes(tmp_path):
    path = tmp_path / "deep.toml"
    path.write_text("x = " + "[" * 100_000 + "]" * 100_000 + "\n")
    load_recipe_or_error(path)
    deep = tmp_path / "deep.jsonl"
    deep.write_text('{"query": "q", "passage": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    with pytest.raises(DataError, match=r"deep.jsonl:1: invalid JSON"):
        load_dataset(str(deep))
    big = tmp_path / "big.jsonl"
    big.write_text('{"query": "q", "passage": "p", "label": ' + "1" * 5000 + "}\n")
    with pytest.raises(DataError, match=r"big.jsonl:1: invalid JSON"):
        load_dataset(str(big))


# ---------------------------------------------------------------------------------------------------------------------
# What the fuzzing found in the loaders, pinned as plain examples (each failed on the old code)
# ---------------------------------------------------------------------------------------------------------------------
WQ = "\t".join(WIKIQA_COLUMNS) + "\n"
WQ_LABEL_FIRST = "QuestionID\tQuestion\tDocumentID\tDocumentTitle\tSentenceID\tLabel\tSentence\n"
FOUND = [
    # (file name, content, number of pairs it must load, or the error it must raise)
    ("WikiQA-a.tsv", WQ + "Q1\tq?\tD1\tt\tD1-0\tline\u2028separator inside\t1\n", 1),
    ("WikiQA-b.tsv", WQ + "Q1\tq?\tD1\tt\tD1-0\tform\x0cfeed and \x85 next-line\t0\n", 1),
    ("WikiQA-c.tsv", BOM + WQ + "Q1\tq?\tD1\tt\tD1-0\tp\t1\n", 1),
    ("WikiQA-d.tsv", WQ_LABEL_FIRST + "Q1\tq?\tD1\tt\tD1-0\t1\ta tab\tsplits this passage\n", r":2: 8 fields, expected 7"),
    ("WikiQA-e.tsv", WQ + "Q1\tq?\tD1\tt\tD1-0\tp\x00\t1\n", r":2: NUL byte"),
    ("a.jsonl", BOM + '{"query": "q?", "passage": "p"}\n', 1),
    ("b.jsonl", '{"query": "q?", "passage": "p\\ud800"}\n', r":1: field 'passage' holds an unpaired surrogate"),
    ("c.jsonl", '{"query": {"text": "q?"}, "passage": "p"}\n', r":1: field 'query' is an object, expected a string"),
    ("d.jsonl", '{"query": "q?", "passage": "p", "passage": "other"}\n', r":1: field 'passage' appears twice"),
    ("e.jsonl", '{"query_id": null, "query": "q?", "passage": "p"}\n', r":1: query_id is null, expected a string or an integer"),
    ("f.jsonl", '{"query": "q?", "passage": "p", "label": ' + "1" * 5000 + "}\n", r":1: invalid JSON"),
    ("g.jsonl", '{"query": "q?", "passage": "p\u2028p"}\n', 1),
    ("a.csv", BOM + "query,passage\nq?,p\n", 1),
    ("b.csv", 'query,passage,label\nq?,"a passage\nover two lines",1\n', 1),  # RFC 4180: a quoted field may break lines
    ("c.csv", 'query,passage,label\nq?,"quoted"tail,1\n', r":2: bad quoting"),
    ("d.csv", "query,passage\nq?," + "x" * 200_000 + "\n", 1),  # over Python's csv default (131,072): a long document reads
    ("e.csv", "query,passage\nq?,p\x00\n", r":2: NUL byte"),
]


@pytest.mark.parametrize("name,content,outcome", FOUND, ids=[f[0] for f in FOUND])
def test_found_by_fuzzing(tmp_path, name, content, outcome):
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8", "surrogatepass"))
    if isinstance(outcome, int):
        ds = load_dataset(str(path))
        assert len(ds) == outcome
        check_consistent(ds)
        assert "\u2028" not in content or "\u2028" in ds.pairs[0].passage
    else:
        with pytest.raises(DataError, match=re.escape(str(path)) + outcome):
            load_dataset(str(path))


def test_a_quoted_field_may_hold_line_breaks_and_an_unclosed_quote_names_the_line_it_opened_on(tmp_path):
    """RFC 4180 (what Excel, pandas and csv.writer write): a quoted field with line breaks is one field, its record
    numbered by its first line; a quote that never closes is an error at the line that opened it, in the loader and
    in the streaming reader (score) alike."""
    from qadistill.stream import open_pairs

    path = tmp_path / "b.csv"
    path.write_text('query,passage,label\nq?,"a passage\nover two lines, with a comma",1\nq?,"one ""quoted"" line",0\n')
    ds = load_dataset(str(path))
    assert [p.passage for p in ds.pairs] == ["a passage\nover two lines, with a comma", 'one "quoted" line']
    assert [p.line for p in ds.pairs] == [2, 4]
    assert [p for _, p in open_pairs(str(path)).rows()] == [p.passage for p in ds.pairs]
    path.write_text('query,passage,label\nq?,p,1\nq?,"never closed,0\nq?,r,0\n')
    with pytest.raises(DataError, match=r"b.csv:3: unclosed quote \(a quoted field opened here is still open after the file ends\)"):
        load_dataset(str(path))
    with pytest.raises(DataError, match=r"b.csv:3: unclosed quote"):
        list(open_pairs(str(path)).rows())
