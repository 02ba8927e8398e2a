"""Query–passage pair datasets: one type, several loaders, strict validation, a stable content fingerprint.

``load_dataset(spec, split)`` accepts a named dataset (``wikiqa``, ``trecqa``, resolved under QADISTILL_DATA_DIR),
a file path (``.tsv[.gz]`` in WikiQA layout, ``.jsonl``, ``.csv``/``.tsv`` with a column mapping) or ``hf:REPO_ID``
(a Hub dataset through the ``datasets`` library, for online users). Bad input raises ``DataError`` naming the file
and line; nothing half-loaded is ever returned.
"""

from __future__ import annotations

import codecs
import csv
import functools
import gzip
import hashlib
import io
import json
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from qadistill import paths
from qadistill.errors import DataError

JSONL_FIELDS = ("query_id", "query", "passage_id", "passage", "label")
WIKIQA_COLUMNS = ("QuestionID", "Question", "DocumentID", "DocumentTitle", "SentenceID", "Sentence", "Label")
WIKIQA_OPTIONAL = ("DocumentID", "DocumentTitle")  # not needed to score: a WikiQA TSV without them reads
NAMED = ("wikiqa", "trecqa")
WIKIQA_SPLITS = ("train", "dev", "test")


def named_default_split(name: str) -> str:
    """The split a named dataset (or ``hf:REPO``) is read in when none is given: test; TREC-QA's dev, the one split
    it has here (kept for validation)."""
    return "dev" if name == "trecqa" else "test"


@dataclass(frozen=True)
class QAPair:
    query_id: str
    query: str
    passage_id: str
    passage: str
    label: int | None  # 1 relevant, 0 not, None unlabelled
    title: str | None = None  # e.g. the WikiQA document title (used to build unlabelled pairs)
    line: int | None = field(default=None, compare=False, repr=False)  # where a loaded file holds it (for messages)


@dataclass
class QADataset:
    name: str
    split: str
    pairs: list[QAPair]
    path: str | None = None
    _fp: str | None = field(default=None, repr=False)
    columns: tuple[str, ...] = field(default=(), repr=False, compare=False)  # a file's header (JSONL: first row's keys)

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def labelled(self) -> bool:
        return all(p.label is not None for p in self.pairs)

    def fingerprint(self) -> str:
        """sha256 over the canonical rows (ids, texts, labels): equal content gives an equal fingerprint."""
        if self._fp is None:
            h = hashlib.sha256()
            for p in self.pairs:
                h.update(json.dumps([p.query_id, p.query, p.passage_id, p.passage, p.label], ensure_ascii=False).encode())
                h.update(b"\n")
            self._fp = h.hexdigest()
        return self._fp

    def query_groups(self) -> dict[str, list[int]]:
        groups: dict[str, list[int]] = {}
        for i, p in enumerate(self.pairs):
            groups.setdefault(p.query_id, []).append(i)
        return groups

    def labels(self) -> list[int]:
        return [int(p.label) if p.label is not None else -1 for p in self.pairs]

    def subset_queries(self, n: int, scorable: bool = False) -> "QADataset":
        """The first n queries (in file order) with all their pairs; with ``scorable``, the first n of those that have
        both a correct and a wrong candidate (the only ones MAP counts: in WikiQA test two in three have no answer)."""
        groups = self.query_groups()
        if scorable:
            groups = {q: idx for q, idx in groups.items() if {self.pairs[i].label for i in idx} >= {0, 1}}
        keep = set(list(groups)[:n])
        return QADataset(self.name, self.split + f"[:{n}q]", [p for p in self.pairs if p.query_id in keep], self.path,
                         columns=self.columns)

    def stats(self) -> dict:
        groups = self.query_groups()
        pos = sum(1 for p in self.pairs if p.label == 1)
        both = sum(
            1 for idx in groups.values() if any(self.pairs[i].label == 1 for i in idx) and any(self.pairs[i].label == 0 for i in idx)
        )
        texts = [(p.query_id, p.passage.strip()) for p in self.pairs]
        return {"pairs": len(self.pairs), "queries": len(groups), "positives": pos, "queries_with_pos_and_neg": both,
                "repeated_passages": len(texts) - len(set(texts))}


# ---------------------------------------------------------------------------------------------------------------------
COMPRESSED = {".gz": "gzip", ".bz2": "bzip2", ".xz": "xz"}  # a data file's compressions, by its last suffix


def open_binary(path: Path):
    """The file opened for reading bytes, decompressed as its suffix says (``COMPRESSED``)."""
    import bz2
    import lzma

    return {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}.get(path.suffix.lower(), open)(path, "rb")


def decompress_errors() -> tuple[type[BaseException], ...]:
    """What reading a truncated or corrupt compressed file raises (gzip, bzip2, xz)."""
    import lzma

    return (EOFError, gzip.BadGzipFile, zlib.error, lzma.LZMAError)


def compressed_problem(path: Path, exc: BaseException) -> DataError:
    kind = COMPRESSED.get(path.suffix.lower(), "compressed")
    return DataError(f"{path}: unreadable or truncated {kind} file ({exc})", "download the file again")


def _open_text(path: Path) -> io.TextIOBase:
    return io.TextIOWrapper(open_binary(path), encoding="utf-8-sig")


def _read_bytes(path: Path) -> bytes:
    """The file's bytes (decompressed for .gz, .bz2, .xz); a missing file, a folder or a truncated/corrupt compressed
    file is a DataError."""
    try:
        with open_binary(path) as fh:
            return fh.read()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found", "check the path, or set QADISTILL_DATA_DIR") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, not a data file", "pass the file inside it") from None
    except decompress_errors() as exc:
        raise compressed_problem(path, exc) from None
    except OSError as exc:  # bz2 reports a file that is not bzip2 as an OSError with no strerror
        if exc.strerror is None and path.suffix.lower() in COMPRESSED:
            raise compressed_problem(path, exc) from None
        raise DataError(f"{path}: cannot read ({exc.strerror})", "check the file's permissions") from None


NOT_UTF8_HINT = "convert the file to UTF-8, naming its real encoding: iconv -f CP1252 -t UTF-8 FILE > FILE_UTF8"


UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)  # Excel's / Notepad's "Unicode text": a NUL beside each ASCII letter


def utf16_problem(head: bytes, path: Path) -> DataError | None:
    """The error for a file that starts with a UTF-16 byte-order mark (Excel's "Unicode text" export), else None."""
    if head.startswith(UTF16_BOMS):
        return DataError(f"{path}: UTF-16 text (it starts with a UTF-16 byte-order mark); qadistill reads UTF-8",
                         f"convert it: iconv -f UTF-16 -t UTF-8 {path} > {path.with_name('utf8-' + path.name)}")
    return None


def _read_lines(path: Path) -> list[str]:
    r"""All lines, decoded (a leading BOM dropped; \n, \r\n and \r end a line, nothing else does: a U+2028 or a form feed
    inside a text stays in it). Bad UTF-8 or a NUL byte is a DataError naming the line (never a partial list)."""
    raw = _read_bytes(path)
    if (utf16 := utf16_problem(raw[:2], path)) is not None:
        raise utf16
    bom = len(codecs.BOM_UTF8) if raw.startswith(codecs.BOM_UTF8) else 0
    try:
        text = _one_newline(raw[bom:].decode("utf-8"))
    except UnicodeDecodeError as exc:
        line = _one_newline(raw[: bom + exc.start].decode("utf-8", "replace")).count("\n") + 1
        at = bom + exc.start  # a byte offset in the file, said as one: beside a line number it read as a column
        of = "the decompressed text" if Path(path).suffix.lower() in COMPRESSED else "the file"
        raise DataError(f"{path}:{line}: not UTF-8 text (byte 0x{raw[at]:02x} at offset {at} of {of})", NOT_UTF8_HINT) from None
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise DataError(f"{path}:{line}: NUL byte (a binary file, or UTF-16 text?)", "save the file as UTF-8 text")
    lines = text.split("\n")
    return lines[:-1] if lines[-1] == "" else lines


def _one_newline(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


LABEL_TEXT = {"false": 0, "true": 1}
LABEL_NUMBER = re.compile(r"([01])(?:\.0*)?")  # 0 or 1 with any number of decimal zeros ("1", "1.0", "1.00"), nothing else


def _label(raw, path, line) -> int | None:
    if raw is None or raw == "":
        return None
    # one rule for every format: 0/1 as a number (1, 1.0), as text ("1", "1.0") or as a boolean (true, "True")
    if isinstance(raw, bool):
        return int(raw)
    if isinstance(raw, (int, float)) and raw in (0, 1):
        return int(raw)
    s = str(raw).strip().lower()
    if s in LABEL_TEXT:
        return LABEL_TEXT[s]
    if m := LABEL_NUMBER.fullmatch(s):
        return int(m.group(1))
    raise DataError(f"{path}:{line}: label {raw!r} is not 0 or 1",
                    "labels must be 0 (not relevant) or 1 (relevant; true/false also read); for graded judgements (0-3, "
                    "1-4) or yes/no, write 1 for what you count as relevant and 0 for the rest")


def _query_named(p: QAPair, columns: dict[str, str] | None) -> str:
    """A pair's query as a message names it: its id where the file has an id column, else its text (the id was made
    from the text, and a made-up id would name nothing in the file)."""
    if columns is not None and "query_id" not in columns:
        text = p.query if len(p.query) <= 60 else p.query[:57] + "..."
        return f"query {text!r}"
    return f"query_id={p.query_id}"


def _id_note(columns: dict[str, str] | None) -> tuple[str, str]:
    """For a duplicated id: which columns were read as the ids (where they were not named query_id / passage_id), and
    what to do when the passage_id column is not a passage's own id."""
    named = {f: c for f, c in (columns or {}).items() if f in ("query_id", "passage_id") and c != f}
    if not named:
        return "", "ids must be unique per (query, passage)"
    note = " (read from " + ", ".join(f"column {c!r} as {f}" for f, c in named.items()) + ")"
    pid = named.get("passage_id")
    hint = (f"ids must be unique per (query, passage); if {pid!r} names something several passages share (a document), "
            f"it is not a passage id: rename that column or drop it") if pid else "ids must be unique per (query, passage)"
    return note, hint


def _visible(text: str) -> str:
    """``text`` without format characters (Unicode Cf: zero-width spaces and joiners, the BOM, soft hyphens), which
    BERT-style tokenizers drop before reading."""
    import unicodedata

    return "".join(c for c in text if unicodedata.category(c) != "Cf") if not text.isascii() else text


def is_blank(text: str) -> bool:
    """Whether a query or passage holds nothing to read: only whitespace (NBSP and ideographic spaces included) and
    format characters (zero-width spaces, soft hyphens). `rank` skips such a line; a data file's row is refused."""
    return not _visible(text).strip()


def query_key(text: str) -> str:
    """A query text as rows are grouped by it when the file has no query ids: without format characters, runs of
    whitespace as one space, none at the ends ("who wrote hamlet? " or with a zero-width space at its end is the
    question of "who wrote hamlet?", as the tokenizers here read it)."""
    return " ".join(_visible(text).split())


def _check(pairs: list[QAPair], lines: list[int], path, columns: dict[str, str] | None = None) -> None:
    """Every row's texts, ids and labels consistent. The same passage twice for one query with one label is kept as two
    candidates, as the source has them (WikiQA repeats a few sentences of a document under their own SentenceIDs, and
    its Hugging Face layout has no sentence ids), and counted in ``QADataset.stats`` (``repeated_passages``); with two
    labels it is an error. ``columns``: the field -> column map the rows were read with, named in a duplicated-id
    error."""
    seen: dict[tuple[str, str], int] = {}
    texts: dict[str, tuple[str, int]] = {}
    labels: dict[tuple[str, str], tuple[int, int]] = {}  # (query_id, passage text) -> (label, line)
    for p, ln in zip(pairs, lines):
        object.__setattr__(p, "line", ln)  # frozen pair: its place in the file is set once, here
        if is_blank(p.query):
            raise DataError(f"{path}:{ln}: empty query", "remove the row or fill in the query")
        if is_blank(p.passage):
            raise DataError(f"{path}:{ln}: empty passage", "remove the row or fill in the passage")
        text, first = texts.setdefault(p.query_id, (p.query, ln))
        if query_key(text) != query_key(p.query):  # the same words, spaced otherwise: one question
            raise DataError(
                f"{path}:{ln}: query_id {p.query_id!r} has another query text than on line {first}",
                "one query_id, one query text: give the other query its own id",
            )
        key = (p.query_id, p.passage_id)
        if key in seen:
            note, hint = _id_note(columns)
            raise DataError(
                f"{path}:{ln}: duplicated id ({_query_named(p, columns)}, passage_id={p.passage_id}){note}, first seen on line {seen[key]}",
                hint,
            )
        seen[key] = ln
        if p.label is not None:
            first_label, first_ln = labels.setdefault((p.query_id, p.passage.strip()), (p.label, ln))
            if first_label != p.label:
                raise DataError(f"{path}:{ln}: the same passage for the same query has label {p.label} here, {first_label} on line {first_ln}",
                                "one label per (query, passage): fix or remove one of the two rows")
    if not pairs:
        raise DataError(f"{path}: no rows", "the file holds a header only or is empty")


def wikiqa_columns(header_line: str | None, path: Path) -> tuple[dict[str, int], int]:
    """A WikiQA TSV header: each of WIKIQA_COLUMNS' index, and the number of columns."""
    if header_line is None:
        raise DataError(f"{path}: empty file", "expected a WikiQA TSV with a header")
    header = [c.strip() for c in header_line.split("\t")]
    missing = [c for c in WIKIQA_COLUMNS if c not in header and c not in WIKIQA_OPTIONAL]
    if missing:
        raise DataError(f"{path}:1: missing column(s) {', '.join(missing)}", f"a WikiQA TSV has the header {' '.join(WIKIQA_COLUMNS)}"
                        f" ({' and '.join(WIKIQA_OPTIONAL)} may be left out)")
    if note := ambiguity_note(header, ["passage"]):  # Sentence beside a `context`: as a CSV of these columns is refused
        raise DataError(f"{path}:1: more than one column could be the passage", f"{note}found: {', '.join(header)}")
    return {c: header.index(c) for c in WIKIQA_COLUMNS if c in header}, len(header)


def wikiqa_cells(line: str, width: int, path: Path, ln: int) -> list[str] | None:
    """One WikiQA TSV line as its cells (plain tabs, no quoting); None for a blank line."""
    if not line.strip():
        return None
    cells = line.split("\t")
    if len(cells) < width or any(c.strip() for c in cells[width:]):
        raise DataError(f"{path}:{ln}: {len(cells)} fields, expected {width}",
                        "check for a truncated or mis-tabbed line (a tab inside a text?)")
    return cells


def load_wikiqa_tsv(path: Path, name: str = "wikiqa", split: str = "") -> QADataset:
    lines = _read_lines(path)
    col, width = wikiqa_columns(lines[0] if lines else None, path)
    pairs, lns = [], []
    for ln, line in enumerate(lines[1:], start=2):
        cells = wikiqa_cells(line, width, path, ln)
        if cells is None:
            continue
        pairs.append(
            QAPair(
                cells[col["QuestionID"]], cells[col["Question"]], cells[col["SentenceID"]], cells[col["Sentence"]],
                _label(cells[col["Label"]], path, ln), title=cells[col["DocumentTitle"]] if "DocumentTitle" in col else None,
            )
        )
        lns.append(ln)
    _check(pairs, lns, path)
    return QADataset(name, split or path.name, pairs, str(path))


class _DuplicateKey(ValueError):
    pass


def _no_duplicate_keys(items: list[tuple[str, object]]) -> dict:
    row: dict = {}
    for k, v in items:
        if k in row:
            raise _DuplicateKey(k)
        row[k] = v
    return row


def header_cells(line: str, delim: str, path: Path) -> list[str]:
    """A CSV/TSV header's column names; a name given twice is refused (which column is meant would be a guess)."""
    header = [h.strip() for h in _csv_cells(line, delim, path, 1)]
    twice = next((h for i, h in enumerate(header) if h and h in header[:i]), None)
    if twice is not None:
        raise DataError(f"{path}:1: column '{twice}' appears twice in the header", "give every column its own name (which one is meant is unclear)")
    return header


def _json_row(line: str, path: Path, ln: int) -> dict:
    try:
        row = json.loads(line, object_pairs_hook=_no_duplicate_keys)
    except _DuplicateKey as exc:
        raise DataError(f"{path}:{ln}: field '{exc}' appears twice", "keep one value per field") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{ln}: invalid JSON ({exc.msg}, column {exc.colno})", "one JSON object per line") from None
    except (ValueError, RecursionError) as exc:  # e.g. an integer of more than 4300 digits, or nesting thousands deep
        raise DataError(f"{path}:{ln}: invalid JSON ({str(exc)[:80]})", "one JSON object per line") from None
    if not isinstance(row, dict):
        raise DataError(f"{path}:{ln}: expected a JSON object", "one JSON object per line")
    written = row
    if not set(JSONL_FIELDS) <= row.keys():  # other common field names, as a CSV header's (header_columns): qid, ...
        names = {f: c for f, c in _row_columns(tuple(row)).items() if c != f and c in row}
        if names:
            row = {**{c: v for c, v in row.items() if c not in names.values()}, **{f: row[c] for f, c in names.items()}}
    if not isinstance(row.get("passage"), str) and (grouped := _grouped_row(written, row, path, ln)) is not None:
        raise grouped
    missing = [f for f in ("query", "passage") if f not in row]
    if missing:
        raise DataError(f"{path}:{ln}: missing field(s) {', '.join(missing)}",
                        ambiguity_note(list(row), missing) + f"JSONL rows have the fields {', '.join(JSONL_FIELDS)}")
    for f in ("query", "passage"):
        if not isinstance(row[f], str):
            raise DataError(f"{path}:{ln}: field '{f}' is {_a(_json_type(row[f]))}, expected a string", "put the text in quotes")
    for f in ("query", "passage", "query_id", "passage_id"):
        if isinstance(row.get(f), str) and not _encodable(row[f]):
            raise DataError(f"{path}:{ln}: field '{f}' holds an unpaired surrogate escape (like \\ud800)",
                            "a character beyond U+FFFF is written as a pair of escapes, or as itself in UTF-8")
    return row


def _grouped_row(written: dict, row: dict, path: Path, ln: int) -> DataError | None:
    """The error for one object per question with its candidates in a list of texts (a SelQA-style export), with the
    jq line that flattens it into pairs (``written``: the row's own field names; ``row``: mapped onto ours), else None."""
    if "query" not in row:
        return None
    listed = next((k for k, v in written.items() if isinstance(v, list) and v and all(isinstance(x, str) for x in v)
                   and v is not row["query"]), None)
    if listed is None:
        return None
    q = next((k for k, v in written.items() if v is row["query"]), "query")
    n = len(written[listed])
    lab = next((k for k, v in written.items() if isinstance(v, list) and len(v) == n and k != listed
                and all(isinstance(x, (int, float, bool)) for x in v)), None)
    label = f", label: $r.{lab}[$i]" if lab else ""
    return DataError(f"{path}:{ln}: field '{listed}' is a list of {n} texts: a grouped row (a question with its "
                     "candidates), while qadistill reads one (query, passage) pair per row",
                     f"flatten it, e.g. jq -c '. as $r | range($r.{listed} | length) as $i | {{query: $r.{q}, passage: "
                     f"$r.{listed}[$i]{label}}}' {path.name} > pairs.jsonl")


@functools.lru_cache(maxsize=64)
def _row_columns(keys: tuple[str, ...]) -> dict[str, str]:
    """``header_columns`` of a JSONL row's keys, once per key set (a file's rows share one); read-only."""
    return header_columns(list(keys))


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _json_type(v: object) -> str:
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    return {str: "string", list: "list", dict: "object", type(None): "null"}.get(type(v), type(v).__name__)


def _a(kind: str) -> str:
    return kind if kind == "null" else ("an " if kind[0] in "aeiou" else "a ") + kind


class _IdTypes:
    """JSONL ids may be strings or integers, but not both for one id: 1 and "1" would silently become one query."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.first: dict[tuple[str, str], tuple[object, int]] = {}

    def get(self, row: dict, field_name: str, default: str, ln: int) -> str:
        if field_name not in row:
            return default
        v = row[field_name]
        if isinstance(v, bool) or not isinstance(v, (str, int)):
            raise DataError(f"{self.path}:{ln}: {field_name} is {_a(_json_type(v))}, expected a string or an integer",
                            f"give every row a string (or integer) {field_name}, or leave it out")
        first, first_ln = self.first.setdefault((field_name, str(v)), (v, ln))
        if type(first) is not type(v):
            raise DataError(
                f"{self.path}:{ln}: {field_name} {v!r} is {_a(_json_type(v))}, on line {first_ln} it is the {_json_type(first)} {first!r}",
                f"use one type for every {field_name} in the file (all strings or all integers): they would be merged",
            )
        return str(v)


def load_jsonl(path: Path, name: str | None = None, split: str = "") -> QADataset:
    pairs, lns = [], []
    ids = _IdTypes(path)
    with_qid: dict[bool, int] = {}  # whether a row has a query_id -> its first line
    first_keys: list[str] = []  # the first row's field names, as written (a graded label column is named from them)
    for ln, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            continue
        row = _json_row(line, path, ln)  # a bad row fails here, before its keys are read again below
        if not first_keys:
            first_keys = list(json.loads(line))
        has = "query_id" in row
        with_qid.setdefault(has, ln)
        if len(with_qid) == 2:
            without, with_ = with_qid[False], with_qid[True]
            raise DataError(f"{path}:{max(without, with_)}: "
                            + (f"no query_id, while line {with_} has one" if without > with_ else f"a query_id, while line {without} has none")
                            + ": the row without one would be a query of its own (grouped by its text, apart from its id's rows)",
                            "give every row a query_id, or none (rows are then grouped by query text)")
        pairs.append(
            QAPair(
                ids.get(row, "query_id", query_key(row["query"]), ln), row["query"], ids.get(row, "passage_id", f"p{ln}", ln), row["passage"],
                _label(row.get("label"), path, ln),
            )
        )
        lns.append(ln)
    _check(pairs, lns, path)
    return QADataset(name or path.stem, split or path.stem, pairs, str(path), columns=tuple(first_keys))


def load_parquet(path: Path, columns: dict[str, str] | None = None, name: str | None = None, split: str = "") -> QADataset:
    """A Parquet file with the JSONL field names as columns (``columns`` renames them) or a known layout's
    (``header_columns``, as CSV/TSV), checked as every other format
    (errors name the row, 1-based). Missing query ids group rows by query text."""
    from qadistill.stream import _parquet_file

    f, cols = _parquet_file(path, columns)  # not Parquet, or no query/passage column: a one-line error
    present = {k: c for k, c in cols.items() if c in f.schema_arrow.names}
    ids = _IdTypes(path)
    pairs, rows, n = [], [], 0
    for rb in f.iter_batches(batch_size=8192, columns=list(present.values())):
        table = {k: col.to_pylist() for k, col in zip(present, rb.columns)}  # the batch's columns in ``present``'s order
        for i in range(rb.num_rows):
            n += 1
            r = {k: v[i] for k, v in table.items()}
            for k in ("query", "passage"):
                if not isinstance(r[k], str):
                    raise DataError(f"{path}:{n}: {k} is {_a(_json_type(r[k]))}, not text (row {n})", "store the texts as string columns")
            for k in ("query_id", "passage_id"):
                if k in r and (r[k] is None or (isinstance(r[k], str) and not r[k].strip())):
                    raise DataError(f"{path}:{n}: empty {cols[k]} (row {n})", f"give every row its {k}, or drop the column")
            r = {k: v for k, v in r.items() if v is not None or k == "label"}
            pairs.append(QAPair(ids.get(r, "query_id", query_key(r["query"]), n), r["query"], ids.get(r, "passage_id", f"p{n}", n),
                                r["passage"], _label(r.get("label"), path, n)))
            rows.append(n)
    _check(pairs, rows, path)
    return QADataset(name or path.name.split(".")[0], split or path.stem, pairs, str(path), columns=tuple(f.schema_arrow.names))


CSV_FIELD_LIMIT = 2**27  # characters in one CSV/TSV field (Python's default, 131,072, refuses long real documents)


class _UnclosedQuote(DataError):
    """A line that ends inside a quoted field: an error for a header, the next line's turn for a CSV record."""


def _csv_cells(line: str, delim: str, path: Path, ln: int) -> list[str]:
    """One line's cells. A line that ends inside a quoted field raises ``_UnclosedQuote``: a header must fit its line,
    a record may go on (``delimited_records`` joins the next line)."""
    if csv.field_size_limit() < CSV_FIELD_LIMIT:
        csv.field_size_limit(CSV_FIELD_LIMIT)
    try:
        return next(csv.reader([line], delimiter=delim, strict=True), [])
    except csv.Error as exc:
        problem, hint = str(exc), 'quote a field that holds the delimiter "like, this" and double a quote inside it: ""'
        if problem == "unexpected end of data":
            raise _UnclosedQuote(f"{path}:{ln}: unclosed quote (a quoted field must end on its line)",
                                 "if the field holds a line break, put spaces in its place (a row is one line here), or "
                                 'write the file as JSONL, whose strings escape it; a quote inside a quoted field is doubled: ""') from None
        if problem.startswith("field larger than field limit"):
            raise DataError(f"{path}:{ln}: a field is longer than {csv.field_size_limit():,} characters",
                            "split the document into passages (a model reads a few hundred tokens of it at most)") from None
        raise DataError(f"{path}:{ln}: bad quoting ({problem})", hint) from None


MAX_RECORD_LINES = 1000  # lines one CSV record may span (a quoted field with line breaks); past it: an unclosed quote
_QUOTED_CELL = re.compile(r'"(?:[^"]|"")*"')  # one cell in CSV quoting: "text", a quote inside it doubled


def _all_quoted(cells: list[str]) -> bool:
    """Every cell in CSV quoting ("text"): a line written with csv.QUOTE_ALL."""
    return all(len(c) >= 2 and _QUOTED_CELL.fullmatch(c) for c in cells)


def tsv_is_quoted(header_line: str) -> bool:
    """A tab-separated file whose header cells are all in quotes ("query"<TAB>"passage"): written with CSV quoting
    throughout (csv.QUOTE_ALL, QUOTE_NONNUMERIC), so every line is read with it."""
    return _all_quoted(header_line.split("\t"))


def _literal_tsv(line: str, width: int) -> list[str] | None:
    """A TSV line's cells split on tabs, quotes kept as text (WikiQA's and ASNQ's releases: `"Hello" (song)`), or None
    where the line is in CSV quoting instead: not ``width`` cells, a cell in quotes with a doubled quote inside
    (``"He said ""hi"" "``, as csv writers and pandas write a text with quotes), or every cell in quotes."""
    cells = line.split("\t")
    if len(cells) != width or any(c[:1] == '"' and '""' in c[1:-1] and _QUOTED_CELL.fullmatch(c) for c in cells):
        return None
    return None if _all_quoted(cells) else cells


def delimited_records(lines: Iterable[tuple[int, str]], delim: str, width: int, path: Path,
                      quoted: bool = False) -> Iterator[tuple[int, list[str]]]:
    """(the first line's number, cells) of every non-blank record of a CSV/TSV body (header excluded). A .tsv is read
    literally, quotes as text (``_literal_tsv``), unless ``quoted`` (``tsv_is_quoted``) or the line is in CSV quoting.
    CSV quoting follows RFC 4180 as Excel, pandas and csv.writer write it: a quoted field may hold the delimiter, a
    doubled quote and line breaks (the record then spans lines, at most MAX_RECORD_LINES). A record with the wrong
    number of cells or broken quoting is a DataError naming its first line; a record of empty cells is skipped."""
    it = iter(lines)
    for ln, line in it:
        if not line.strip():
            continue
        if delim == "\t" and not quoted and (cells := _literal_tsv(line, width)) is not None:
            yield ln, cells
            continue
        text, spanned = line, 1
        while True:
            try:
                cells = _csv_cells(text, delim, path, ln)
                break
            except _UnclosedQuote:
                nxt = next(it, None) if spanned < MAX_RECORD_LINES else None
                if nxt is None:
                    why = "the file ends" if spanned < MAX_RECORD_LINES else f"{MAX_RECORD_LINES:,} lines"
                    raise DataError(f"{path}:{ln}: unclosed quote (a quoted field opened here is still open after {why})",
                                    'close the quote, or double a quote that is part of the text: ""') from None
                text, spanned = text + "\n" + nxt[1], spanned + 1
            except DataError:
                tabs = len(line.split("\t"))
                if delim == "\t" and not quoted and tabs != width:  # said as the tab count, not a quoting detail
                    raise DataError(f"{path}:{ln}: {tabs} fields, expected {width}",
                                    "check for a truncated or mis-tabbed line (a tab inside a text?)") from None
                raise
        if all(not c.strip() for c in cells):  # a line of delimiters only (",,"): blank
            continue
        if len(cells) != width:
            raise DataError(f"{path}:{ln}: {len(cells)} fields, expected {width}", "check quoting on that line")
        yield ln, cells


# Headers read without a column mapping, tried in this order when a file has neither a 'query' nor a 'passage'
# column: field -> the file's column. TrecQA's raw release, WikiQA's columns in a CSV (or a TSV whose cells are
# quoted), and the Hugging Face microsoft/wiki_qa columns.
KNOWN_LAYOUTS = {
    "TrecQA": {"query": "qtext", "passage": "atext", "label": "label"},
    "WikiQA": {"query_id": "QuestionID", "query": "Question", "passage_id": "SentenceID", "passage": "Sentence", "label": "Label"},
    "wiki_qa": {"query_id": "question_id", "query": "question", "passage": "answer", "label": "label"},
}


def field_columns(columns: dict[str, str] | None = None) -> dict[str, str]:
    """Field -> column name: the JSONL field names, with the caller's renames."""
    return {**{f: f for f in JSONL_FIELDS}, **(columns or {})}


# Other common names of a field, matched ignoring case, spaces and dashes, for a field whose JSONL name the header
# lacks (and a known layout does not give); a field that two columns could be is left unmapped (the missing-column
# hint names both), except that a passage's own id (a sentence's, an answer's) is preferred to a document's, which
# several passages of one document may share (WikiQA's DocumentID against its SentenceID).
COLUMN_SYNONYMS = {
    "query": ("question", "qtext", "query_text", "question_text", "querytext"),
    "passage": ("answer", "sentence", "atext", "document", "doc", "text", "context", "candidate", "passage_text",
                "answer_text", "sentence_text", "doc_text", "document_text"),
    "label": ("labels", "relevant", "is_relevant", "is_correct", "correct"),  # yes/no names only: graded ones are not 0/1
    "query_id": ("qid", "question_id", "questionid", "queryid"),
    "passage_id": ("pid", "sentence_id", "sentenceid", "answer_id", "answerid", "passageid", "candidate_id",
                   "docid", "doc_id", "document_id", "documentid"),
}
DOCUMENT_IDS = ("docid", "doc_id", "document_id", "documentid")  # passage_id names second to a passage's own id
# Columns that hold a relevance judgement under a graded or score-like name: not read as 0/1 labels, but named in
# the error when a file has no label column (so the user knows which column to rename, or to binarise first).
GRADED_NAMES = ("relevance", "rel", "grade", "rating", "score", "judgement", "judgment", "qrel", "relevance_label")


def graded_columns(names: Iterable[str]) -> list[str]:
    """The columns among ``names`` with a graded or score-like name (``GRADED_NAMES``), never read as 0/1 labels."""
    return [c for c in names if _norm(c) in GRADED_NAMES]


def _norm(name: str) -> str:
    return name.strip().lower().replace("-", "_").replace(" ", "_")


def synonym_candidates(header: list[str], field: str) -> list[str]:
    """The header's columns that ``COLUMN_SYNONYMS`` names for ``field`` (or its own name in another case); for
    passage_id, a passage's own id where there is one, a document's id only where there is none."""
    names = {field, *COLUMN_SYNONYMS[field]}
    found = [h for h in header if _norm(h) in names]
    if own := [h for h in found if _norm(h) == field]:  # the field's own name in another case (`Label`) is that field
        return own
    if field == "passage_id" and any(_norm(h) not in DOCUMENT_IDS for h in found):
        found = [h for h in found if _norm(h) not in DOCUMENT_IDS]
    return found


def header_columns(header: list[str], columns: dict[str, str] | None = None) -> dict[str, str]:
    """Field -> column name for a CSV/TSV header or a Parquet schema: ``field_columns(columns)``; with no mapping
    given, the first of ``KNOWN_LAYOUTS`` whose query and passage columns the header has (when it has neither a
    'query' nor a 'passage' column) gives every field whose column the header has, and any other field whose JSONL
    name the header lacks takes the one column ``COLUMN_SYNONYMS`` names for it (so a `qid` or `sentence_id` beside
    a layout's `question`/`answer` is read, never dropped). A query or passage that two columns could be (a layout's
    or not) is left unmapped, so that the missing-column error names both."""
    if columns:
        return field_columns(columns)
    out = field_columns()
    if "query" not in header and "passage" not in header:
        layout = next((lay for lay in KNOWN_LAYOUTS.values() if lay["query"] in header and lay["passage"] in header), {})
        # a layout's text column beside another that could be it (wiki_qa's `answer` beside a reader file's `context`)
        # is as ambiguous as two such columns without a layout: left to the synonyms below, which leave it unmapped
        out.update({f: c for f, c in layout.items()
                    if c in header and (f not in ("query", "passage") or len(synonym_candidates(header, f)) < 2)})
    taken = {c for c in out.values() if c in header}
    for fname, name in out.items():
        if name not in header:
            found = [h for h in synonym_candidates(header, fname) if h not in taken]
            if len(found) == 1:
                out[fname] = found[0]
                taken.add(found[0])
    return out


def ambiguity_note(names: list[str], fields) -> str:
    """For each of ``fields`` that several of ``names`` could be (``synonym_candidates``), the columns to choose
    from, as the start of a hint ("" when none is ambiguous)."""
    twice = [(f, c) for f in fields if len(c := synonym_candidates(names, f)) > 1]
    if not twice:
        return ""
    return ("; ".join(f"{f} could be any of {', '.join(c)}" for f, c in twice)
            + f": rename the one meant to {' / '.join(f for f, _ in twice)}; ")


def looks_like_data(header: list[str]) -> bool:
    """A first line that is a row, not a header (ASNQ's TSVs have none): a cell is a 0/1 label or a sentence."""
    return any(h.strip() in ("0", "1") or len(h.split()) > 4 for h in header)


def header_hint(header: list[str], columns: dict[str, str]) -> str:
    if looks_like_data(header):
        n = len(header)
        names = ",".join(["query", "passage", "label"][:n] + [f"extra{i}" for i in range(max(0, n - 3))])
        return (f"the first line looks like data, not a header: add a header row naming the {n} columns, e.g. {names} "
                f"(in the file's order; query and passage are required)")
    found = ", ".join(h[:40] for h in header[:12]) or "nothing"
    if note := ambiguity_note(header, [f for f in ("query", "passage") if columns[f] not in header]):
        return f"{note}found: {found}"  # the file has the columns, more than one for a field: the layouts are no help
    optional = ", ".join(columns[f] for f in ("query_id", "passage_id", "label"))
    known = "; ".join(f"{name}: {c['query']}, {c['passage']}" for name, c in KNOWN_LAYOUTS.items())
    return (f"the header row must name the columns {columns['query']} and {columns['passage']} (optional: {optional}), "
            f"or the query and passage columns of a known layout ({known}); found: {found}")


def require_columns(names: list[str], columns: dict[str, str] | None, where: str) -> dict[str, str]:
    """Field -> column for a header or schema (``header_columns``), its query and passage columns required: a missing
    one is a DataError at ``where`` ("FILE:1" for a header line, "FILE" for a Parquet schema)."""
    cols = header_columns(names, columns)
    for need in ("query", "passage"):
        if cols[need] not in names:
            raise DataError(f"{where}: missing column '{cols[need]}' (for {need})", header_hint(names, cols))
    return cols


def delimited_header(line: str, delim: str, path: Path, columns: dict[str, str] | None) -> tuple[list[str], dict[str, str]]:
    """A CSV/TSV header line's column names and the field -> column map (``require_columns``); a header that is one
    cell holding another delimiter is refused as such (``delimiter_problem``)."""
    header = header_cells(line, delim, path)
    if (bad := delimiter_problem(header, delim, path)) is not None:
        raise bad
    return header, require_columns(header, columns, f"{path}:1")


def load_delimited(path: Path, columns: dict[str, str] | None = None, name: str | None = None, split: str = "") -> QADataset:
    """CSV/TSV with a header. ``columns`` maps our fields (query, passage, label, query_id, passage_id) to the file's
    column names; by default the JSONL field names are used, or a known layout's (``header_columns``). Missing query
    ids group rows by query text."""
    lines = _read_lines(path)
    delim = "\t" if ".tsv" in path.suffixes else ","
    if not lines:
        raise DataError(f"{path}: empty file", "expected a header row")
    header, columns = delimited_header(lines[0], delim, path, columns)
    idx = {f: header.index(c) for f, c in columns.items() if c in header}
    pairs, lns = [], []
    body = enumerate(lines[1:], start=2)
    for ln, cells in delimited_records(body, delim, len(header), path, delim == "\t" and tsv_is_quoted(lines[0])):
        q = cells[idx["query"]]
        if "query_id" in idx and not cells[idx["query_id"]].strip():
            raise DataError(f"{path}:{ln}: empty {columns['query_id']}", "give every row its query's id (or drop the column: rows are "
                            "then grouped by query text)")
        pairs.append(
            QAPair(
                cells[idx["query_id"]] if "query_id" in idx else "q" + hashlib.sha1(query_key(q).encode()).hexdigest()[:10],
                q,
                cells[idx["passage_id"]] if "passage_id" in idx else f"p{ln}",
                cells[idx["passage"]],
                _tsv_label(cells, idx, path, ln) if delim == "\t" else (_label(cells[idx["label"]], path, ln) if "label" in idx else None),
            )
        )
        lns.append(ln)
    _check(pairs, lns, path, columns={f: c for f, c in columns.items() if f in idx})
    return QADataset(name or path.stem, split or path.stem, pairs, str(path), columns=tuple(header))


def _tsv_label(cells: list[str], idx: dict[str, int], path: Path, ln: int) -> int | None:
    """A .tsv row's label (``_label``); a bad one on a line read literally whose cell opens a quote is said to look
    CSV-quoted: csv.writer and pandas quote only a cell that holds a tab, a quote or a line break, and a quoted cell
    with a tab and a line break can leave a first line of the right number of cells, read as text."""
    if "label" not in idx:
        return None
    try:
        return _label(cells[idx["label"]], path, ln)
    except DataError as exc:
        if any(c[:1] == '"' for c in cells):
            quoted = (f"line {ln} looks CSV-quoted (a cell opens with a quote): a .tsv is read as text unless it is quoted "
                      "throughout; write every cell quoted (csv.QUOTE_ALL; pandas: quoting=csv.QUOTE_ALL) or write a .csv; else ")
            raise DataError(exc.message, quoted + (exc.hint or "")) from None
        raise


def load_hub_dataset(repo_id: str, split: str) -> QADataset:
    """A Hub dataset with question/answer(sentence)/label columns (e.g. microsoft/wiki_qa), via `datasets`."""
    try:
        import datasets  # noqa: F401
        from datasets import load_dataset as hf_load
    except ImportError:
        from qadistill.errors import MissingPackageError

        raise MissingPackageError("Hub datasets need the `datasets` library, which is not installed",
                                  "pip install datasets (or use a local file)") from None
    try:
        ds = hf_load(repo_id, split=split)
    except Exception as exc:
        raise DataError(f"cannot load Hub dataset {repo_id} split {split}: {type(exc).__name__}", "check the name and your network") from None
    cols = ds.column_names
    qcol = next((c for c in ("question", "query") if c in cols), None)
    pcol = next((c for c in ("answer", "sentence", "passage") if c in cols), None)
    if qcol is None or pcol is None:
        raise DataError(f"{repo_id}: no question/answer columns in {cols}", "use a file with a column mapping instead")
    pairs = []
    for i, row in enumerate(ds):
        pairs.append(
            QAPair(str(row.get("question_id", row[qcol])), row[qcol], str(row.get("passage_id", i)), row[pcol],
                   _label(row.get("label"), repo_id, i + 1), title=row.get("document_title"))
        )
    _check(pairs, list(range(1, len(pairs) + 1)), f"hf:{repo_id}")
    return QADataset(repo_id, split, pairs, f"hf:{repo_id}")


def named_path(name: str, split: str) -> Path:
    root = paths.data_dir()
    if root is None:
        raise DataError(f"dataset '{name}' needs QADISTILL_DATA_DIR", "set QADISTILL_DATA_DIR to the folder holding wikiqa/ and trecqa/")
    if name == "wikiqa":
        if split not in WIKIQA_SPLITS:
            raise DataError(f"wikiqa has no split '{split}'", "use train, dev or test (--split, or a recipe's data.*_split)")
        for cand in (root / "wikiqa" / f"WikiQA-{split}.tsv.gz", root / "wikiqa" / f"WikiQA-{split}.tsv"):
            if cand.exists():
                return cand
        raise DataError(f"WikiQA {split} not found: no WikiQA-{split}.tsv(.gz) in {root / 'wikiqa'}",
                        f"put the WikiQA release files there, or point QADISTILL_DATA_DIR (now {root}) at the folder holding wikiqa/")
    if name == "trecqa":
        p = root / "trecqa" / f"{split}.csv"
        if not p.exists():
            have = sorted(x.stem for x in (root / "trecqa").glob("*.csv")) if (root / "trecqa").is_dir() else []
            raise DataError(f"trecqa has no split '{split}' under {root / 'trecqa'}", f"available: {', '.join(have) or 'none'}")
        return p
    raise DataError(f"unknown dataset '{name}'", f"use one of {', '.join(NAMED)}, a file path, or hf:REPO_ID")


def data_hint(spec: str | None = None) -> str:
    """What --data takes; for a relative path that is not there, where it was looked for (a recipe's relative path
    is read from the folder a command runs in, not the recipe's)."""
    where = ""
    if spec and not Path(spec).expanduser().is_absolute() and spec not in NAMED and not spec.startswith("hf:"):
        where = f" (a relative path is read from the current folder, {Path.cwd()}: give an absolute one in a recipe)"
    return f"use one of {', '.join(NAMED)}, a .jsonl/.tsv/.csv/.parquet path, or hf:REPO_ID" + where


def check_data_name(spec: str) -> None:
    """Path("") is the working folder: an empty name is said to be empty, not "a folder"."""
    if not spec.strip():
        raise DataError("the data name is empty", data_hint())


# File kinds qadistill does not read, each with how to get one it does.
OTHER_FORMATS = {
    ".json": "qadistill reads JSON Lines (one object per line, .jsonl); convert an array of objects with: jq -c '.[]' {path} > {jsonl}",
    ".xlsx": "save the sheet as CSV (UTF-8) with a header row query,passage,label",
    ".xls": "save the sheet as CSV (UTF-8) with a header row query,passage,label",
    ".ods": "save the sheet as CSV (UTF-8) with a header row query,passage,label",
    ".zip": "unzip it and pass the data file inside",
    ".tar": "unpack it and pass the data file inside",
    ".pkl": "write the data as JSONL, CSV/TSV or Parquet",
    ".pickle": "write the data as JSONL, CSV/TSV or Parquet",
    ".feather": "write the data as Parquet (pyarrow.parquet.write_table) or JSONL",
    ".arrow": "write the data as Parquet (pyarrow.parquet.write_table) or JSONL",
}


def file_format(path: Path) -> str:
    """How a data file is read, by its name: "jsonl", "parquet" or "delimited" (CSV/TSV, the default); a kind qadistill
    does not read (``OTHER_FORMATS``: .json, a spreadsheet, an archive, a pickle) is a DataError saying what to do."""
    suffixes = "".join(path.suffixes).lower()
    inner = next((suffixes[: -len(c)] for c in COMPRESSED if suffixes.endswith(c)), suffixes)  # x.jsonl.xz -> .jsonl
    if inner.endswith(".jsonl"):
        return "jsonl"
    if suffixes.endswith(".parquet"):
        return "parquet"
    kind = next((k for k in OTHER_FORMATS if inner.endswith(k)), None)
    if kind is not None:
        raise DataError(f"{path}: a {kind} file, which qadistill does not read",
                        OTHER_FORMATS[kind].format(path=path, jsonl=path.with_name(path.name.split(".")[0] + ".jsonl")))
    return "delimited"


DELIMITERS = {"\t": ("tabs", "tab-separated", ".tsv"), ",": ("commas", "comma-separated", ".csv"),
              ";": ("semicolons", "semicolon-separated", None), "|": ("bars", "bar-separated", None)}


def delimiter_problem(header: list[str], delim: str, path: Path) -> DataError | None:
    """The error for a header that is one cell holding another delimiter (a tab- or ;-separated file named .csv, a
    comma-separated one named .tsv), else None."""
    if len(header) != 1:
        return None
    other = next((d for d in DELIMITERS if d != delim and d in header[0]), None)
    if other is None:
        return None
    name, ext = DELIMITERS[other][0], DELIMITERS[other][2]
    plain, mine, _ = DELIMITERS[delim]
    fix = f"rename it to {ext}" if ext else f"write it with {plain}"
    kind = "".join(s for s in path.suffixes if s.lower() not in COMPRESSED) or "file without an extension"
    how = "a .tsv file is read as tab-separated, any other as comma-separated"
    return DataError(f"{path}:1: the header is one column with {name} in it, but this {kind} file is read as {mine}",
                     f"{fix} ({how})")


def load_dataset(spec: str, split: str = "test", columns: dict[str, str] | None = None) -> QADataset:
    check_data_name(spec)
    if spec.startswith("hf:"):
        return load_hub_dataset(spec[3:], split)
    if spec in NAMED:
        path = named_path(spec, split)
        if spec == "wikiqa":
            return load_wikiqa_tsv(path, "wikiqa", split)
        return load_delimited(path, KNOWN_LAYOUTS["TrecQA"], "trecqa", split)
    path = Path(spec).expanduser()
    if not path.exists():
        raise DataError(f"{spec}: no such dataset or file", data_hint(spec))
    kind = file_format(path)
    if kind == "jsonl":
        return load_jsonl(path, split=split)
    if kind == "parquet":
        return load_parquet(path, columns, split=split)
    if columns is None and _looks_like_wikiqa(path):
        return load_wikiqa_tsv(path, path.stem, split)
    return load_delimited(path, columns, split=split)


def _looks_like_wikiqa(path: Path) -> bool:
    """The file's header is WikiQA's, tab-separated (QuestionID and Sentence among its cells): the WikiQA TSV reader,
    whose cells hold quotes that are text, not CSV quoting, and which names any WikiQA column missing. The file's name
    does not decide: wikiqa_heldout.csv may be any layout."""
    try:
        with _open_text(path) as fh:
            first = fh.readline().rstrip("\r\n")
    except Exception:
        return False
    return {"QuestionID", "Sentence"} <= {c.strip() for c in first.split("\t")}


def unique(seq: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(seq))
