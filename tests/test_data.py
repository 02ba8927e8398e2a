from __future__ import annotations

import gzip
import json

import pytest

from conftest import write
from qadistill.data import load_dataset, paths
from qadistill.errors import DataError

HEADER = "QuestionID\tQuestion\tDocumentID\tDocumentTitle\tSentenceID\tSentence\tLabel\r\n"
ROWS = [
    "Q1\thow are glacier caves formed?\tD1\tGlacier cave\tD1-0\tA partly submerged glacier cave.\t0\r\n",
    "Q1\thow are glacier caves formed?\tD1\tGlacier cave\tD1-1\tA glacier cave is a cave formed within the ice of a glacier.\t1\r\n",
    "Q2\twho wrote hamlet?\tD2\tHamlet\tD2-0\tHamlet is a tragedy written by William Shakespeare.\t1\r\n",
]


def wikiqa_file(tmp_path, rows=ROWS, name="WikiQA-mini.tsv.gz"):
    p = tmp_path / name
    with gzip.open(p, "wt", encoding="utf-8", newline="") as fh:
        fh.write(HEADER + "".join(rows))
    return p


def test_wikiqa_tsv_gz(tmp_path):
    ds = load_dataset(str(wikiqa_file(tmp_path)), "mini")
    assert len(ds) == 3 and ds.pairs[1].label == 1 and ds.pairs[0].passage.endswith("cave.")
    assert "\r" not in ds.pairs[0].passage and ds.pairs[0].title == "Glacier cave"
    assert ds.query_groups() == {"Q1": [0, 1], "Q2": [2]}
    assert ds.stats()["queries_with_pos_and_neg"] == 1


def test_fingerprint_is_stable_and_content_based(tmp_path):
    a = load_dataset(str(wikiqa_file(tmp_path)), "x").fingerprint()
    b = load_dataset(str(wikiqa_file(tmp_path, name="WikiQA-copy.tsv.gz")), "y").fingerprint()
    assert a == b
    changed = [ROWS[0], ROWS[1].replace("\t1\r", "\t0\r"), ROWS[2]]
    assert load_dataset(str(wikiqa_file(tmp_path, changed, "WikiQA-c.tsv.gz")), "x").fingerprint() != a


def test_truncated_gzip_is_an_error(tmp_path):
    p = wikiqa_file(tmp_path, ROWS * 50)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="truncated"):
        load_dataset(str(p))


@pytest.mark.parametrize(
    "rows,match",
    [
        ([ROWS[0].replace("\t0\r", "\t2\r")], r":2: label '2' is not 0 or 1"),
        ([ROWS[0], ROWS[0]], r":3: duplicated id .* first seen on line 2"),
        ([ROWS[0].replace("how are glacier caves formed?", " ")], r":2: empty query"),
        ([ROWS[0].replace("A partly submerged glacier cave.", "")], r":2: empty passage"),
        ([ROWS[0].split("\t", 3)[0] + "\tonly\n"], r":2: 2 fields, expected 7"),
    ],
)
def test_bad_wikiqa_rows(tmp_path, rows, match):
    with pytest.raises(DataError, match=match):
        load_dataset(str(wikiqa_file(tmp_path, rows)))


def test_missing_column(tmp_path):
    p = write(tmp_path / "WikiQA-bad.tsv", "QuestionID\tQuestion\tSentence\tLabel\nQ1\tq\ts\t1\n")
    with pytest.raises(DataError, match=r":1: missing column\(s\) SentenceID"):
        load_dataset(str(p))


def test_jsonl(tmp_path):
    rows = [
        {"query_id": "a", "query": "q?", "passage_id": "1", "passage": "p1", "label": 1},
        {"query_id": "a", "query": "q?", "passage_id": "2", "passage": "p2", "label": 0},
        {"query_id": "b", "query": "r?", "passage_id": "3", "passage": "p3"},
    ]
    p = write(tmp_path / "d.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    ds = load_dataset(str(p))
    assert [x.label for x in ds.pairs] == [1, 0, None] and not ds.labelled
    write(tmp_path / "bad.jsonl", '{"query": "q"}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:1: missing field\(s\) passage"):
        load_dataset(str(tmp_path / "bad.jsonl"))
    write(tmp_path / "bad2.jsonl", '{"query": "q", "passage": "p"}\n{oops\n')
    with pytest.raises(DataError, match=r"bad2.jsonl:2: invalid JSON"):
        load_dataset(str(tmp_path / "bad2.jsonl"))


def test_csv_with_column_mapping(tmp_path):
    p = write(tmp_path / "t.csv", 'qtext,label,atext\n"who?",1,"him"\n"who?",0,"her"\n')
    ds = load_dataset(str(p), columns={"query": "qtext", "passage": "atext", "label": "label"})
    assert len(ds.query_groups()) == 1 and ds.labels() == [1, 0]
    assert load_dataset(str(p)).pairs == ds.pairs  # TrecQA's header is a known layout: the same without the mapping
    with pytest.raises(DataError, match=r"missing column 'question'"):
        load_dataset(str(p), columns={"query": "question", "passage": "atext"})  # a mapping given is the one used


def test_unknown_dataset_and_split():
    with pytest.raises(DataError, match="no such dataset or file"):
        load_dataset("squad-v9")


SHARED = paths.data_dir()
needs_shared = pytest.mark.skipif(SHARED is None or not (SHARED / "wikiqa").is_dir(), reason="../shared/data (WikiQA) not present")


@needs_shared
def test_real_wikiqa_sizes():
    sizes = {"train": (20360, 2118), "dev": (2733, 296), "test": (6165, 633)}
    for split, (pairs, queries) in sizes.items():
        st = load_dataset("wikiqa", split).stats()
        assert (st["pairs"], st["queries"]) == (pairs, queries)
    assert load_dataset("wikiqa", "test").stats()["queries_with_pos_and_neg"] == 237
    with pytest.raises(DataError, match="no split 'validation'"):
        load_dataset("wikiqa", "validation")


@needs_shared
def test_real_trecqa_dev():
    st = load_dataset("trecqa", "dev").stats()
    assert st == {"pairs": 1148, "queries": 81, "positives": 222, "queries_with_pos_and_neg": 65, "repeated_passages": 0}


def test_subset_queries_can_count_only_scorable_queries(tmp_path):
    """`bench --accuracy-queries 30` on WikiQA test once kept ~10 queries that MAP counts: two in three have no answer."""
    import json

    from qadistill.data import load_dataset

    rows = [{"query_id": f"q{q}", "query": f"question {q}?", "passage_id": f"q{q}-{k}", "passage": f"passage {k}.",
             "label": int(k == 0 and q % 3 == 2)} for q in range(12) for k in range(3)]
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    ds = load_dataset(str(path), "test")
    assert len(ds.subset_queries(3).query_groups()) == 3
    sub = ds.subset_queries(3, scorable=True)
    assert list(sub.query_groups()) == ["q2", "q5", "q8"] and len(sub.pairs) == 9


def test_a_missing_wikiqa_file_names_the_file_and_the_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("QADISTILL_DATA_DIR", str(tmp_path / "nodata"))
    with pytest.raises(DataError) as e:
        load_dataset("wikiqa", "test")
    assert "WikiQA-test.tsv" in str(e.value) and "nodata" in str(e.value)
    assert "now " in e.value.hint and "wikiqa/" in e.value.hint


# -- silent merges: rows that would be folded into one query or one passage --------------------------------------------
def test_one_query_id_with_two_query_texts_is_an_error_naming_both_lines(tmp_path):
    other = ROWS[1].replace("how are glacier caves formed?", "how are glaciers formed?")
    with pytest.raises(DataError, match=r"WikiQA-mini.tsv.gz:3: query_id 'Q1' has another query text than on line 2"):
        load_dataset(str(wikiqa_file(tmp_path, [ROWS[0], other, ROWS[2]])))
    rows = [{"query_id": "a", "query": "q?", "passage_id": "1", "passage": "p1"}, {"query_id": "a", "query": "r?", "passage_id": "2", "passage": "p2"}]
    p = write(tmp_path / "d.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(DataError, match=r"d.jsonl:2: query_id 'a' has another query text than on line 1"):
        load_dataset(str(p))


@pytest.mark.parametrize("field", ["query_id", "passage_id"])
def test_jsonl_ids_of_two_json_types_are_an_error_naming_both_lines(tmp_path, field):
    rows = [{"query_id": "1", "query": "q?", "passage_id": "1", "passage": "p1"},
            {"query_id": "1", "query": "q?", "passage_id": "2", "passage": "p2"},
            {"query_id": "2", "query": "r?", "passage_id": "3", "passage": "p3"}]
    rows[2][field] = 1  # a JSON number where line 1 has the string "1"
    p = write(tmp_path / "d.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(DataError) as ei:
        load_dataset(str(p))
    msg = ei.value.message
    assert f"d.jsonl:3: {field} 1 is a number, on line 1 it is the string '1'" in msg, msg
    assert "one type" in ei.value.hint


def test_csv_missing_column_hint_names_the_header_it_needs(tmp_path):
    p = write(tmp_path / "t.csv", 'q_text,label,a_text\n"who?",1,"him"\n')
    with pytest.raises(DataError) as ei:
        load_dataset(str(p))
    assert "--columns" not in ei.value.hint
    assert "query" in ei.value.hint and "passage" in ei.value.hint and "q_text" in ei.value.hint and "a_text" in ei.value.hint


def test_labels_follow_one_rule_in_every_format(tmp_path):
    from qadistill.data import load_dataset

    (tmp_path / "a.csv").write_text("query,passage,label\nq?,p one,1.0\nq?,p two,0\nq?,p three,true\n")
    (tmp_path / "a.jsonl").write_text('{"query": "q?", "passage": "p one", "label": "1.0"}\n{"query": "q?", "passage": "p two", "label": 0}\n'
                                      '{"query": "q?", "passage": "p three", "label": true}\n')
    for f in ("a.csv", "a.jsonl"):
        assert load_dataset(str(tmp_path / f)).labels() == [1, 0, 1], f


@pytest.mark.parametrize("text,want", [("1.00", 1), ("0.000", 0), (" 1 ", 1), ("1.", 1), ("1.0", 1), ("+1", None),
                                       ("1e0", None), ("01", None), ("-0", None), ("1.5", None), ("2", None),
                                       ("nan", None), ("-1", None), ("yes", None)])
def test_a_label_is_any_number_that_is_0_or_1(tmp_path, text, want):
    """"1.0" was read and "1.00" (a spreadsheet's two decimals) refused as "not 0 or 1": 0 or 1 with any number of
    decimal zeros is read; other spellings (01, +1, 1e0) are refused as before, as anything else is."""
    for f, body in (("a.csv", f"query,passage,label\nq?,p,{text}\n"), ("a.jsonl", json.dumps({"query": "q?", "passage": "p", "label": text}) + "\n")):
        write(tmp_path / f, body)
        if want is None:
            with pytest.raises(DataError, match="is not 0 or 1"):
                load_dataset(str(tmp_path / f))
        else:
            assert load_dataset(str(tmp_path / f)).labels() == [want], (f, text)


def test_a_byte_that_is_not_utf8_is_named_by_its_value_and_its_offset_in_the_file(tmp_path):
    f = tmp_path / "latin1.csv"
    f.write_bytes("query,passage,label\nq?,caf\u00e9,1\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1.csv:2: not UTF-8 text \(byte 0xe9 at offset 26 of the file\)"):
        load_dataset(str(f))
    import gzip

    gz = tmp_path / "latin1.csv.gz"
    gz.write_bytes(gzip.compress(f.read_bytes()))
    with pytest.raises(DataError, match=r"not UTF-8 text \(byte 0xe9 at offset 26 of the decompressed text\)"):
        load_dataset(str(gz))


def test_one_passage_with_two_labels_for_one_query_is_an_error_in_every_format(tmp_path):
    """A contradiction would give a silently wrong metric (MAP 1.0 for a file that says both); an exact repeat with the
    same label is kept as two candidates, with or without passage ids (WikiQA repeats a few sentences under their own
    SentenceIDs, and its Hugging Face layout has no sentence ids)."""
    csv = write(tmp_path / "c.csv", "query,passage,label\na?,x,1\na?,y,0\na?,x,0\n")
    with pytest.raises(DataError, match=r"c.csv:4: .*label 0 here, 1 on line 2"):
        load_dataset(str(csv))
    rows = [{"query": "a?", "passage": "x", "label": 1}, {"query": "a?", "passage": " x ", "label": 0}]
    jl = write(tmp_path / "c.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(DataError, match=r"c.jsonl:2: .*label 0 here, 1 on line 1"):
        load_dataset(str(jl))
    same = write(tmp_path / "s.csv", "query,passage,label\na?,x,1\na?,y,0\na?,x,1\n")
    assert load_dataset(str(same)).stats()["repeated_passages"] == 1
    ids = write(tmp_path / "i.csv", "query,passage_id,passage,label\na?,s1,x,1\na?,s2,y,0\na?,s3,x,1\n")
    assert len(load_dataset(str(ids))) == 3


def test_a_column_named_twice_in_a_header_is_an_error(tmp_path):
    p = write(tmp_path / "d.csv", "query,passage,label,label\na?,x,1,0\na?,y,0,1\n")
    with pytest.raises(DataError, match=r"d.csv:1: column 'label' appears twice"):
        load_dataset(str(p))


@pytest.mark.parametrize("suffix,sep", [(".csv", ","), (".tsv", "\t")])
def test_the_streamed_reader_refuses_a_column_named_twice_as_the_loader_does(tmp_path, suffix, sep):
    from qadistill.stream import open_pairs

    p = write(tmp_path / f"d{suffix}", sep.join(["query", "passage", "label", "passage"]) + "\n" + sep.join(["a?", "x", "1", "y"]) + "\n")
    for labels in (True, False):  # score --data and distill --unlabelled read it as a stream; before, the first column won
        with pytest.raises(DataError, match=rf"d{suffix}:1: column 'passage' appears twice"):
            open_pairs(str(p), labels=labels).count()


def test_a_long_document_in_a_csv_field_reads(tmp_path):
    long = "word " * 60000  # 300,000 characters: over Python's csv default of 131,072
    p = write(tmp_path / "long.csv", f'query,passage,label\na?,"{long}",1\na?,short,0\n')
    ds = load_dataset(str(p))
    assert len(ds.pairs[0].passage) == len(long)


def test_a_jsonl_row_without_the_query_id_other_rows_have_is_refused(tmp_path):
    rows = [{"query_id": "q1", "query": "who?", "passage": "a king.", "label": 1},
            {"query_id": "q1", "query": "who?", "passage": "a dog.", "label": 0},
            {"query": "who?", "passage": "a cat.", "label": 0}]  # before: a query of its own, MAP over 2 queries
    p = tmp_path / "d.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=r"d.jsonl:3: no query_id, while line 1 has one") as ei:
        load_dataset(str(p))
    assert "give every row a query_id, or none" in ei.value.hint
    p.write_text("".join(json.dumps(r) + "\n" for r in rows[::-1]))
    with pytest.raises(DataError, match=r"d.jsonl:2: a query_id, while line 1 has none"):
        load_dataset(str(p))
    p.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "query_id"}) + "\n" for r in rows))
    assert len(load_dataset(str(p)).query_groups()) == 1  # none at all: grouped by text


def test_a_repeated_row_is_kept_as_the_source_has_it_with_or_without_passage_ids(tmp_path):
    """WikiQA dev repeats one (question, sentence) pair under two SentenceIDs: a file without sentence ids (the Hugging
    Face wiki_qa layout, a plain question/answer/label file) must score it as the release does, not refuse it."""
    rows = [{"query": "who?", "passage": "a king.", "label": 1}, {"query": "who?", "passage": "a dog.", "label": 0},
            {"query": "who?", "passage": "a king.", "label": 1}]
    p = tmp_path / "d.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ds = load_dataset(str(p))
    assert len(ds) == 3 and ds.stats()["repeated_passages"] == 1 and len({x.passage_id for x in ds.pairs}) == 3
    p.write_text("".join(json.dumps({**r, "passage_id": f"s{i}"}) + "\n" for i, r in enumerate(rows)))
    assert len(load_dataset(str(p))) == 3  # two candidates with one text, told apart by their ids (WikiQA has such)
    c = tmp_path / "d.csv"
    c.write_text("query,passage,label\nwho?,a king.,1\nwho?,a dog.,0\nwho?,a king.,1\n")
    assert load_dataset(str(c)).labels() == [1, 0, 1]
    c.write_text("query_id,query,passage,label\nq1,who?,a king.,1\n,who?,a dog.,0\n")
    with pytest.raises(DataError, match=r"d.csv:3: empty query_id"):
        load_dataset(str(c))


def test_eval_data_can_be_parquet_checked_like_every_other_format(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    def table(**cols):
        p = tmp_path / "d.parquet"
        pq.write_table(pa.table(cols), str(p))
        return str(p)

    ds = load_dataset(table(query_id=["q1", "q1", "q2", "q2"], query=["who?", "who?", "what?", "what?"],
                            passage=["a king.", "a dog.", "a cat.", "a hat."], label=[1, 0, 0, 1]))
    assert len(ds) == 4 and len(ds.query_groups()) == 2 and ds.labels() == [1, 0, 0, 1]
    assert len(load_dataset(table(query=["who?", "who?"], passage=["a.", "b."])).query_groups()) == 1  # by text, unlabelled
    with pytest.raises(DataError, match=r"d.parquet:2: label 2 is not 0 or 1"):
        load_dataset(table(query=["who?", "who?"], passage=["a.", "b."], label=[1, 2]))
    with pytest.raises(DataError, match=r"d.parquet:2: label nan is not 0 or 1"):
        load_dataset(table(query=["who?", "who?"], passage=["a.", "b."], label=[1.0, float("nan")]))
    assert load_dataset(table(query=["who?", "who?"], passage=["a.", "a."], label=[1, 1])).stats()["repeated_passages"] == 1
    with pytest.raises(DataError, match=r"d.parquet:2: the same passage for the same query has label 0 here, 1 on line 1"):
        load_dataset(table(query=["who?", "who?"], passage=["a.", "a."], label=[1, 0]))
    with pytest.raises(DataError, match=r"d.parquet:2: empty passage"):
        load_dataset(table(query=["who?", "who?"], passage=["a.", " "]))
    with pytest.raises(DataError, match=r"d.parquet: missing column 'passage'"):
        load_dataset(table(query=["who?"], body=["a."]))
    bad = tmp_path / "fake.parquet"
    bad.write_text("query,passage\nwho?,a.\n")
    with pytest.raises(DataError, match=r"fake.parquet: not a readable Parquet file"):
        load_dataset(str(bad))


def test_parquet_in_a_known_layout_loads_without_a_mapping_as_csv_does(tmp_path):
    """Hugging Face's microsoft/wiki_qa ships as Parquet with question/answer columns: read as its CSV is."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    from qadistill.stream import open_pairs

    p = tmp_path / "wiki_qa-test.parquet"
    pq.write_table(pa.table({"question_id": ["Q1", "Q1", "Q2", "Q2"], "question": ["who?", "who?", "what?", "what?"],
                             "document_title": ["t"] * 4, "answer": ["a king.", "a dog.", "a cat.", "a hat."],
                             "label": [1, 0, 0, 1]}), str(p))
    ds = load_dataset(str(p))
    assert [(x.query_id, x.passage, x.label) for x in ds.pairs][:2] == [("Q1", "a king.", 1), ("Q1", "a dog.", 0)]
    assert open_pairs(str(p)).count() == 4 and list(open_pairs(str(p)).rows())[2] == ("what?", "a cat.")
    t = tmp_path / "trec.parquet"
    pq.write_table(pa.table({"qtext": ["who?", "who?"], "label": [1, 0], "atext": ["a.", "b."]}), str(t))
    assert load_dataset(str(t)).labels() == [1, 0]
    x = tmp_path / "x.parquet"
    pq.write_table(pa.table({"q": ["who?"], "a": ["x."]}), str(x))
    with pytest.raises(DataError, match=r"x.parquet: missing column 'query'") as ei:
        load_dataset(str(x))
    assert "known layout (TrecQA: qtext, atext" in ei.value.hint and "found: q, a" in ei.value.hint


def test_a_streamed_parquet_file_checks_its_labels_unless_they_are_ignored(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    from qadistill.stream import open_pairs

    p = tmp_path / "d.parquet"
    pq.write_table(pa.table({"query": ["who?", "who?"], "passage": ["a.", "b."], "label": [1, 2]}), str(p))
    with pytest.raises(DataError, match=r"d.parquet:2: label 2 is not 0 or 1"):
        open_pairs(str(p)).count()
    assert open_pairs(str(p), labels=False).count() == 2  # an unlabelled pool: its labels are ignored


@pytest.mark.parametrize("spec", ["", "  "])
def test_an_empty_data_name_is_said_so_not_the_working_folder(spec):
    from qadistill.stream import open_pairs

    with pytest.raises(DataError, match="the data name is empty"):
        load_dataset(spec)
    with pytest.raises(DataError, match="the data name is empty"):
        open_pairs(spec)


def test_an_unlabelled_pair_in_labelled_data_is_named_by_its_line(tmp_path):
    from qadistill.splits import require_labelled

    rows = [{"query": "who?", "passage": "a.", "label": 1}, {"query": "who?", "passage": "b."}, {"query": "who?", "passage": "c.", "label": 0}]
    p = tmp_path / "d.jsonl"
    p.write_text("\n\n".join(json.dumps(r) for r in rows) + "\n")  # blank lines between: the line is the file's
    with pytest.raises(DataError, match=r"d.jsonl:3: test: 1 of 3 pairs have no label"):
        require_labelled(load_dataset(str(p)), "test")


def test_a_file_named_wikiqa_in_the_plain_layout_loads_by_its_header_not_its_name(tmp_path):
    """The file name used to decide: wikiqa_heldout.csv with query/passage columns went to the WikiQA TSV reader and
    failed on its missing QuestionID column."""
    from qadistill.stream import open_pairs

    f = write(tmp_path / "wikiqa_heldout.csv", "query_id,query,passage_id,passage,label\nq1,who,p1,me,1\nq1,who,p2,you,0\n")
    ds = load_dataset(str(f), "all")
    assert [(p.query_id, p.passage_id, p.label) for p in ds.pairs] == [("q1", "p1", 1), ("q1", "p2", 0)]
    assert list(open_pairs(str(f)).rows()) == [("who", "me"), ("who", "you")]
    tsv = write(tmp_path / "heldout.tsv", "QuestionID\tQuestion\tDocumentID\tDocumentTitle\tSentenceID\tSentence\tLabel\n"
                                          'Q1\twho\tD1\tT\tS1\tsaid "me" once\t1\nQ1\twho\tD1\tT\tS2\tyou\t0\n')
    ds = load_dataset(str(tsv), "all")  # any name: the WikiQA header picks the WikiQA reader (its quotes are text)
    assert [p.passage for p in ds.pairs] == ['said "me" once', "you"] and ds.pairs[0].title == "T"


@pytest.mark.parametrize("header,rows,ids", [
    ("qtext,label,atext", ["who,1,me", "who,0,you", "what,0,a", "what,1,b"], None),  # TrecQA raw
    ("QuestionID,Question,DocumentID,DocumentTitle,SentenceID,Sentence,Label",
     ["Q1,who,D,T,S1,me,1", "Q1,who,D,T,S2,you,0", "Q2,what,D,T,S3,a,0", "Q2,what,D,T,S4,b,1"], ["S1", "S2", "S3", "S4"]),  # WikiQA columns in a CSV
    ("question_id,question,document_title,answer,label",
     ["Q1,who,T,me,1", "Q1,who,T,you,0", "Q2,what,T,a,0", "Q2,what,T,b,1"], None),  # Hugging Face microsoft/wiki_qa
])
def test_known_qa_layouts_load_without_a_column_mapping_in_eval_and_in_the_stream(tmp_path, header, rows, ids):
    from qadistill.stream import open_pairs

    f = write(tmp_path / "held.csv", header + "\n" + "\n".join(rows) + "\n")
    ds = load_dataset(str(f), "all")
    assert [(p.query, p.passage, p.label) for p in ds.pairs] == [("who", "me", 1), ("who", "you", 0), ("what", "a", 0), ("what", "b", 1)]
    assert len(ds.query_groups()) == 2
    if ids:
        assert [p.passage_id for p in ds.pairs] == ids
    assert list(open_pairs(str(f)).rows()) == [("who", "me"), ("who", "you"), ("what", "a"), ("what", "b")]


def test_a_header_of_no_known_layout_names_the_columns_it_takes(tmp_path):
    f = write(tmp_path / "odd.csv", "q,a,y\nwho,me,1\n")
    with pytest.raises(DataError, match="missing column 'query'") as e:
        load_dataset(str(f), "all")
    assert "TrecQA: qtext, atext" in e.value.hint and "found: q, a, y" in e.value.hint
    both = write(tmp_path / "both.csv", "query,passage,qtext,atext,label\nwho,me,x,y,1\n")  # the plain names win
    assert load_dataset(str(both), "all").pairs[0].passage == "me"


@pytest.mark.parametrize("header,row1,row2", [
    ("question,sentence,label", "who,me,1", "who,you,0"),
    ("Query,Document,Is-Correct", "who,me,1", "who,you,0"),
    ("qid,Question Text,pid,Passage,is_relevant", "Q1,who,P1,me,1", "Q1,who,P2,you,0"),
    ("query,text,relevant", "who,me,1", "who,you,0"),  # the plain query name with a common passage name
])
def test_common_column_names_are_read_without_a_mapping(tmp_path, header, row1, row2):
    from qadistill.stream import open_pairs

    f = write(tmp_path / "held.csv", f"{header}\n{row1}\n{row2}\n")
    ds = load_dataset(str(f), "all")
    assert [(p.query, p.passage, p.label) for p in ds.pairs] == [("who", "me", 1), ("who", "you", 0)]
    assert list(open_pairs(str(f)).rows()) == [("who", "me"), ("who", "you")]


def test_a_field_two_columns_could_be_is_refused_naming_both(tmp_path):
    f = write(tmp_path / "squad.csv", "question,context,sentence,label\nwho,me,x,1\n")
    with pytest.raises(DataError, match="missing column 'passage'") as e:
        load_dataset(str(f), "all")
    assert "passage could be any of context, sentence: rename the one meant to passage" in e.value.hint


def test_a_wikiqa_tsv_with_another_passage_like_column_is_refused_as_its_csv_is(tmp_path):
    """WikiQA's TSV reader took `Sentence` beside a `context` column quietly, where the same columns in a .csv are
    refused as ambiguous."""
    from qadistill.stream import open_pairs

    head = "\t".join(["QuestionID", "Question", "DocumentID", "DocumentTitle", "SentenceID", "Sentence", "Label", "context"])
    f = write(tmp_path / "w.tsv", head + "\nQ1\twho?\tD1\tt\tS1\tme\t1\tthe context\n")
    for load in (lambda: load_dataset(str(f), "all"), lambda: open_pairs(str(f)).count()):
        with pytest.raises(DataError, match="more than one column could be the passage") as e:
            load()
        assert "passage could be any of Sentence, context" in e.value.hint


@pytest.mark.parametrize("header", ["question,context,answer,label", "question,answer,context,label",
                                    "qtext,atext,sentence,label", "Question,Sentence,Context,Label"])
def test_a_known_layouts_passage_beside_another_passage_like_column_is_refused_naming_both(tmp_path, header):
    """SQuAD-style reader data (question, context, answer, label) matched the Hugging Face wiki_qa layout by its
    question/answer columns, so `answer` (a few words) was scored as the passage with nothing said: MAP .472 for .510
    on a WikiQA dev sample, in every format. A layout's passage column beside another passage-like column is ambiguous
    as two such columns without a layout are."""
    from qadistill.stream import open_pairs

    cells = header.split(",")
    rows = [dict(zip(cells, ["who", "the long passage", "short", "1"])), dict(zip(cells, ["who", "another passage", "x", "0"]))]
    passage_like = [c for c in cells if c.lower() in ("context", "answer", "sentence", "atext")]
    csv_file = write(tmp_path / "reader.csv", header + "\n" + "\n".join(",".join(r.values()) for r in rows) + "\n")
    jsonl = write(tmp_path / "reader.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    for f in (csv_file, jsonl):
        for load in (lambda: load_dataset(str(f), "all"), lambda: open_pairs(str(f)).count()):
            with pytest.raises(DataError, match="passage") as e:
                load()
            assert f"passage could be any of {', '.join(passage_like)}" in e.value.hint


def test_a_fields_own_name_in_another_case_wins_over_its_synonyms(tmp_path):
    """`Label` beside `relevant` left the label unmapped as ambiguous, so every pair was unlabelled ("metrics need
    labels"): a column named as the field itself, in any case, is that field."""
    f = write(tmp_path / "d.csv", "Query,question,sentence,Label,relevant\nwho,x,me,1,0\nwho,x,you,0,1\n")
    ds = load_dataset(str(f), "all")
    assert [(p.query, p.passage, p.label) for p in ds.pairs] == [("who", "me", 1), ("who", "you", 0)]


def test_two_label_like_columns_are_named_when_no_label_is_read(tmp_path):
    """`relevant` and `correct` (no `label`): every pair unlabelled, and the hint said only "give labelled data"."""
    from qadistill.splits import require_labelled

    f = write(tmp_path / "a.csv", "question,sentence,relevant,correct\nwho,me,1,1\nwho,you,0,0\n")
    with pytest.raises(DataError, match="2 of 2 pairs have no label") as e:
        require_labelled(load_dataset(str(f), "all"), "split all")
    assert "label could be any of relevant, correct: rename the one meant to label" in e.value.hint


@pytest.mark.parametrize("name,text,error,hint", [
    ("tabs.csv", "query\tpassage\tlabel\nwho\tme\t1\n", "header is one column with tabs in it, but this .csv", "rename it to .tsv"),
    ("tabs.txt", "query\tpassage\tlabel\nwho\tme\t1\n", "with tabs in it, but this .txt file is read as comma", "rename it to .tsv"),
    ("semi.csv", "query;passage;label\nwho;me;1\n", "one column with semicolons in it", "write it with commas"),
    ("commas.tsv", "query,passage,label\nwho,me,1\n", "one column with commas in it, but this .tsv file is read as tab", "rename it to .csv"),
])
def test_a_file_with_another_delimiter_than_its_name_says_is_named_so(tmp_path, name, text, error, hint):
    from qadistill.stream import open_pairs

    f = write(tmp_path / name, text)
    for load in (lambda: load_dataset(str(f), "all"), lambda: open_pairs(str(f)).count()):
        with pytest.raises(DataError, match=error) as e:
            load()
        assert hint in e.value.hint


def test_utf16_and_other_file_kinds_get_what_to_do(tmp_path):
    from qadistill.stream import open_pairs

    u16 = tmp_path / "excel.csv"
    u16.write_text("query,passage,label\nwho,me,1\n", encoding="utf-16")
    arr = write(tmp_path / "rows.json", '[{"query": "who", "passage": "me", "label": 1}]')
    sheet = tmp_path / "rows.xlsx"
    sheet.write_bytes(b"PK\x03\x04")
    for load in (lambda p: load_dataset(str(p), "all"), lambda p: open_pairs(str(p)).count()):
        with pytest.raises(DataError, match="UTF-16 text") as e:
            load(u16)
        assert "iconv -f UTF-16 -t UTF-8" in e.value.hint
        with pytest.raises(DataError, match=r"rows.json: a .json file, which qadistill does not read") as e:
            load(arr)
        assert f"jq -c '.[]' {arr} > {tmp_path / 'rows.jsonl'}" in e.value.hint
        with pytest.raises(DataError, match=r"a .xlsx file") as e:
            load(sheet)
        assert "save the sheet as CSV" in e.value.hint


def test_jsonl_rows_with_common_field_names_load_as_csv_headers_do(tmp_path):
    from qadistill.stream import open_pairs

    rows = [{"question_id": "Q1", "question": "who", "answer": "me", "label": 1},
            {"question_id": "Q1", "question": "who", "answer": "you", "label": 0}]
    f = write(tmp_path / "wiki_qa.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    ds = load_dataset(str(f), "all")
    assert [(p.query_id, p.query, p.passage, p.label) for p in ds.pairs] == [("Q1", "who", "me", 1), ("Q1", "who", "you", 0)]
    assert list(open_pairs(str(f)).rows()) == [("who", "me"), ("who", "you")]
    odd = write(tmp_path / "odd.jsonl", json.dumps({"question": "who", "context": "me", "sentence": "x"}) + "\n")
    with pytest.raises(DataError, match=r"odd.jsonl:1: missing field\(s\) passage$") as e:
        load_dataset(str(odd), "all")
    assert "passage could be any of context, sentence" in e.value.hint


# ---------------------------------------------------------------------------------------------------------------------
# Own-data formats found by a new user's trial (each failed on the code before the fix)
# ---------------------------------------------------------------------------------------------------------------------
WQ_ROWS = [("Q1", "who wrote hamlet?", "D1-0", '"Hamlet" (play) is a tragedy.', "0"),
           ("Q1", "who wrote hamlet?", "D1-1", "Shakespeare wrote it.", "1"),
           ("Q2", "who wrote hamlet?", "D2-0", "A different question with the same text.", "1"),
           ("Q2", "who wrote hamlet?", "D2-1", '"Quoted in full."', "0")]


def test_a_qid_column_beside_a_known_layouts_question_and_answer_is_read_not_dropped(tmp_path):
    """qid,question,answer,label matched the microsoft/wiki_qa layout, which has question_id: qid was dropped and two
    questions sharing a text were silently merged; a sentence_id column beside it was dropped too."""
    import csv as csvmod

    f = tmp_path / "low.csv"
    with f.open("w", newline="") as fh:
        w = csvmod.writer(fh)
        w.writerow(["qid", "question", "sentence_id", "answer", "label"])
        w.writerows([q, t, s, p, lab] for q, t, s, p, lab in WQ_ROWS)
    ds = load_dataset(str(f))
    assert sorted(ds.query_groups()) == ["Q1", "Q2"] and [p.passage_id for p in ds.pairs] == ["D1-0", "D1-1", "D2-0", "D2-1"]
    jl = tmp_path / "qid.jsonl"
    jl.write_text("".join(json.dumps({"qid": q, "question": t, "sentence_id": s, "answer": p, "label": int(lab)}) + "\n"
                          for q, t, s, p, lab in WQ_ROWS))
    ds = load_dataset(str(jl))
    assert sorted(ds.query_groups()) == ["Q1", "Q2"] and ds.pairs[3].passage_id == "D2-1"
    jl.write_text("".join(json.dumps({"qid": q, "query": t, "passage": p}) + "\n" for q, t, _, p, _ in WQ_ROWS))
    assert sorted(load_dataset(str(jl)).query_groups()) == ["Q1", "Q2"]  # qid beside the JSONL names themselves


def test_a_passages_own_id_is_preferred_to_a_document_id_and_a_duplicated_id_names_its_column(tmp_path):
    f = tmp_path / "d.csv"
    f.write_text("question_id,question,document_id,sentence_id,sentence,label\nQ1,q?,D1,D1-0,a.,1\nQ1,q?,D1,D1-1,b.,0\n")
    assert [p.passage_id for p in load_dataset(str(f)).pairs] == ["D1-0", "D1-1"]
    f.write_text("question_id,question,document_id,sentence,label\nQ1,q?,D1,a.,1\nQ1,q?,D1,b.,0\n")
    with pytest.raises(DataError, match=r"d.csv:3: duplicated id .*read from .*column 'document_id' as passage_id") as e:
        load_dataset(str(f))
    assert "rename that column or drop it" in e.value.hint


def test_a_tsv_is_read_literally_quotes_as_text_unless_it_is_written_in_csv_quoting(tmp_path):
    """Real WikiQA sentences start with a quote: a tab-separated file with any header but WikiQA's own was parsed with
    CSV quoting (refused, or a sentence in quotes silently lost them). pandas/csv.writer TSVs still read."""
    import csv as csvmod

    plain = tmp_path / "plain.tsv"
    plain.write_text("query_id\tquery\tpassage\tlabel\n" + "".join(f"{q}\t{t}\t{p}\t{lab}\n" for q, t, _, p, lab in WQ_ROWS))
    want = [p for *_, p, _ in WQ_ROWS]
    assert [p.passage for p in load_dataset(str(plain)).pairs] == want
    for quoting in (csvmod.QUOTE_MINIMAL, csvmod.QUOTE_ALL):
        f = tmp_path / f"pandas{quoting}.tsv"
        with f.open("w", newline="") as fh:
            w = csvmod.writer(fh, delimiter="\t", quoting=quoting)
            w.writerow(["query_id", "query", "passage", "label"])
            w.writerows([q, t, p + ' and "more"\tafter a tab', lab] for q, t, _, p, lab in WQ_ROWS)
        assert [p.passage for p in load_dataset(str(f)).pairs] == [p + ' and "more"\tafter a tab' for p in want], quoting
    bad = tmp_path / "bad.tsv"
    bad.write_text("query\tpassage\tlabel\nq?\ta tab\tinside\t1\n")
    with pytest.raises(DataError, match=r"bad.tsv:2: 4 fields, expected 3"):
        load_dataset(str(bad))


def test_a_tsv_quoted_only_where_a_cell_holds_a_tab_and_a_line_break_is_said_to_look_csv_quoted(tmp_path):
    """csv.writer(delimiter="\\t") quotes only the cells that need it: a passage with a tab and a line break opens a
    quote on a line that still splits into the header's number of cells, which a literal .tsv reads as such, so the
    error was about the label ('b' is not 0 or 1) with nothing on the cause. The hint says the line looks CSV-quoted
    and how to write the file so that it reads."""
    import csv as csvmod

    f = tmp_path / "minimal.tsv"
    with f.open("w", newline="") as fh:
        w = csvmod.writer(fh, delimiter="\t")
        w.writerows([["query", "passage", "label"], ["who", "me", 1], ["who", "a\tb\nc", 0]])
    with pytest.raises(DataError, match=r"minimal.tsv:3: label 'b' is not 0 or 1") as e:
        load_dataset(str(f))
    assert "line 3 looks CSV-quoted" in e.value.hint and "QUOTE_ALL" in e.value.hint
    plain = write(tmp_path / "plain.tsv", "query\tpassage\tlabel\nwho\tme\tb\n")  # no quote: the plain label error
    with pytest.raises(DataError, match="label 'b' is not 0 or 1") as e:
        load_dataset(str(plain))
    assert "CSV-quoted" not in e.value.hint


def test_a_files_split_by_query_does_not_depend_on_the_order_of_its_rows(tmp_path):
    from qadistill.splits import load_split

    rows = [{"query_id": f"q{i}", "query": f"question {i}?", "passage_id": f"p{i}-{j}", "passage": f"passage {i} {j}",
             "label": int(j == 0)} for i in range(40) for j in range(3)]
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text("".join(json.dumps(r) + "\n" for r in rows))
    random_rows = list(rows)
    __import__("random").Random(1).shuffle(random_rows)
    b.write_text("".join(json.dumps(r) + "\n" for r in random_rows))
    for split in ("train", "dev", "test"):
        assert set(load_split(str(a), split).query_groups()) == set(load_split(str(b), split).query_groups()), split


def test_grouped_rows_graded_labels_and_bz2_xz_files_get_what_to_do(tmp_path):
    """A SelQA-style grouped JSONL row was told 'missing field passage' / 'put the text in quotes'; a `relevance`
    column was skipped without a word; .bz2/.xz files were called 'not UTF-8'."""
    import bz2
    import lzma

    from qadistill.splits import load_split, require_labelled

    g = tmp_path / "g.jsonl"
    g.write_text(json.dumps({"qid": "Q1", "question": "who?", "candidates": ["a.", "b."], "labels": [1, 0]}) + "\n")
    with pytest.raises(DataError, match=r"g.jsonl:1: field 'candidates' is a list of 2 texts: a grouped row") as e:
        load_dataset(str(g))
    assert "passage: $r.candidates[$i], label: $r.labels[$i]" in e.value.hint and "query: $r.question" in e.value.hint
    r = tmp_path / "r.tsv"
    r.write_text("query\tpassage\trelevance\nq?\ta.\t2\nq?\tb.\t0\n")
    with pytest.raises(DataError, match=r"r.tsv:2: split all: 2 of 2 pairs have no label") as e:
        require_labelled(load_split(str(r), None), "split all")
    assert "column 'relevance' is not read as a label" in e.value.hint
    (tmp_path / "y.csv.bz2").write_bytes(bz2.compress(b"query,passage,label\nq?,a.,1\nq?,b.,0\n"))
    (tmp_path / "y.jsonl.xz").write_bytes(lzma.compress(b'{"query": "q?", "passage": "a.", "label": 1}\n'))
    assert load_dataset(str(tmp_path / "y.csv.bz2")).labels() == [1, 0] and len(load_dataset(str(tmp_path / "y.jsonl.xz"))) == 1
    (tmp_path / "z.csv.bz2").write_bytes(b"query,passage\nq,p\n")
    with pytest.raises(DataError, match=r"z.csv.bz2: unreadable or truncated bzip2 file"):
        load_dataset(str(tmp_path / "z.csv.bz2"))


def test_a_wikiqa_tsv_without_its_document_columns_reads(tmp_path):
    """DocumentID and DocumentTitle are not needed to score; a WikiQA TSV without them was refused."""
    from qadistill.stream import open_pairs

    f = write(tmp_path / "w.tsv", "QuestionID\tQuestion\tSentenceID\tSentence\tLabel\nQ1\tq?\tS1\t\"Quoted\" (song)\t1\nQ1\tq?\tS2\tb.\t0\n")
    ds = load_dataset(str(f), "all")
    assert [p.passage for p in ds.pairs] == ['"Quoted" (song)', "b."] and ds.pairs[0].title is None
    assert open_pairs(str(f)).count() == 2


def test_a_file_without_a_header_row_is_told_to_add_one(tmp_path):
    f = write(tmp_path / "asnq.tsv", "how are epithelial tissues joined together\tthey are held by junctions of many kinds\t1\n")
    with pytest.raises(DataError, match=r"asnq.tsv:1: missing column 'query'") as e:
        load_dataset(str(f))
    assert "looks like data, not a header: add a header row naming the 3 columns, e.g. query,passage,label" in e.value.hint


def test_a_question_spaced_otherwise_is_one_question_and_an_invisible_passage_is_empty(tmp_path):
    """Without query ids, one TREC-QA question with a trailing space became a second query (dropped as all-negative,
    the MAP of the rest); a passage of only zero-width spaces was scored in eval while rank skipped the same line as
    blank. Rows group by the query's words; a text of only whitespace and zero-width characters is empty everywhere."""
    from qadistill.data import is_blank, load_dataset
    from qadistill.errors import DataError
    from qadistill.stream import open_pairs

    csv = tmp_path / "t.csv"
    csv.write_text("qtext,label,atext\nwho wrote hamlet?,1,shakespeare wrote it.\nwho wrote  hamlet? ,0,a king.\n"
                   "where is paris?,0,a river.\nwhere is paris?,1,in france.\n")
    ds = load_dataset(str(csv), split="all")
    assert len(ds.query_groups()) == 2 and ds.stats()["queries_with_pos_and_neg"] == 2
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text('{"query": "who wrote hamlet?", "passage": "shakespeare.", "label": 1}\n'
                     '{"query": " who wrote hamlet?", "passage": "a king.", "label": 0}\n')
    assert len(load_dataset(str(jsonl), split="all").query_groups()) == 1
    zw = tmp_path / "zw_q.csv"  # a question ending in a zero-width space, or with a soft hyphen: the same question
    zw.write_text("qtext,label,atext\nwho wrote hamlet?,1,shakespeare.\nwho wrote hamlet?\u200b,0,a king.\n"
                  "who wrote ham\u00adlet?,0,a queen.\n", encoding="utf-8")
    assert len(load_dataset(str(zw), split="all").query_groups()) == 1
    for blank in ("\u200b", " \u200b\u200c ", "\u00a0", "\u3000", "\ufeff\u2060", "\u00ad", " \u00ad\u200d"):
        assert is_blank(blank)
        bad = tmp_path / "zw.csv"
        bad.write_text(f"qtext,label,atext\nwho?,1,{blank}\nwho?,0,no.\n")
        with pytest.raises(DataError, match="zw.csv:2: empty passage"):
            load_dataset(str(bad), split="all")
        with pytest.raises(DataError, match="zw.csv:2: empty passage"):
            list(open_pairs(str(bad)).chunks(10))
    assert not is_blank("\u200ba")


def test_a_duplicated_id_names_the_query_by_its_text_when_the_file_has_no_query_ids(tmp_path):
    from qadistill.data import load_dataset
    from qadistill.errors import DataError

    f = tmp_path / "d.csv"
    f.write_text("question,docid,answer,label\nwho wrote hamlet?,D1,shakespeare.,1\nwho wrote hamlet?,D1,a king.,0\n")
    with pytest.raises(DataError) as ei:
        load_dataset(str(f), split="all")
    assert "query 'who wrote hamlet?', passage_id=D1" in ei.value.message and "query_id=q" not in ei.value.message


def test_a_missing_relative_path_says_where_it_was_looked_for(tmp_path, monkeypatch):
    """A recipe's `[data] name = "train.csv"` failed from another folder with "no such dataset or file" alone."""
    from qadistill.stream import open_pairs

    monkeypatch.chdir(tmp_path)
    for load in (lambda: load_dataset("train120.csv", "all"), lambda: open_pairs("train120.csv")):
        with pytest.raises(DataError, match="train120.csv: no such dataset or file") as e:
            load()
        assert f"read from the current folder, {tmp_path}" in e.value.hint
    with pytest.raises(DataError) as e:
        load_dataset(str(tmp_path / "abs.csv"), "all")
    assert "current folder" not in e.value.hint
