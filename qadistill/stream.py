"""Query–passage pairs read as a stream, for scoring data sets of any size: a file is read row by row and handed out
in chunks, never held whole in memory as Python objects. Rows are validated as `qadistill.data` validates them (the
same messages, naming the file and line); checks that need the whole file (duplicate ids) are left to the loaders.

Formats: JSONL (``.jsonl[.gz]``), WikiQA TSV, CSV/TSV with a header (``.csv``, ``.tsv``, ``[.gz]``), Parquet
(``.parquet``, through pyarrow when it is installed). A named data set (wikiqa, trecqa) or ``hf:REPO`` is loaded as
`qadistill.data` loads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from qadistill import data as _data
from qadistill.errors import DataError


@dataclass
class PairStream:
    """Pairs of one data source: ``rows()`` yields (query, passage) in file order; ``count()`` reads it once through."""

    spec: str
    split: str
    name: str
    format: str  # jsonl | wikiqa-tsv | csv | tsv | parquet | dataset
    path: Path | None = None
    columns: dict | None = None
    labels: bool = True  # False: a label column is not read at all (an unlabelled pool, whose labels are ignored)

    @property
    def label(self) -> str:
        return f"{self.name}/{self.split}" if self.split else self.name

    def rows(self) -> Iterator[tuple[str, str]]:
        if self.format == "dataset":
            ds = _data.load_dataset(self.spec, self.split or _data.named_default_split(self.spec), self.columns)
            yield from ((p.query, p.passage) for p in ds.pairs)
        elif self.format == "jsonl":
            yield from _jsonl_rows(self.path, self.labels)
        elif self.format == "parquet":
            yield from _parquet_rows(self.path, self.columns, labels=self.labels)
        elif self.format == "wikiqa-tsv":
            yield from _wikiqa_rows(self.path, self.labels)
        else:
            yield from _delimited_rows(self.path, "\t" if self.format == "tsv" else ",", self.columns, self.labels)

    def chunks(self, size: int) -> Iterator[tuple[list[str], list[str]]]:
        """(queries, passages) of ``size`` pairs at a time (the last chunk may be shorter)."""
        qs: list[str] = []
        ps: list[str] = []
        for q, p in self.rows():
            qs.append(q)
            ps.append(p)
            if len(qs) == size:
                yield qs, ps
                qs, ps = [], []
        if qs:
            yield qs, ps

    def count(self) -> int:
        """The number of pairs: one validating pass (bad input fails here, before any scoring)."""
        n = sum(1 for _ in self.rows())
        if n == 0:
            raise DataError(f"{self.path or self.spec}: no rows", "the file holds a header only or is empty")
        return n


def open_pairs(spec: str, split: str | None = None, columns: dict | None = None, labels: bool = True) -> PairStream:
    """The pair stream of a file path, a named data set (wikiqa, trecqa) or hf:REPO; ``labels=False``: any label
    column is ignored, not checked (an unlabelled pool)."""
    _data.check_data_name(spec)
    if spec.startswith("hf:") or spec in _data.NAMED:
        return PairStream(spec, split or _data.named_default_split(spec), spec[3:] if spec.startswith("hf:") else spec, "dataset",
                          None, columns)
    path = Path(spec).expanduser()
    if not path.exists():
        raise DataError(f"{spec}: no such dataset or file", _data.data_hint(spec))
    if path.is_dir():
        raise DataError(f"{path}: is a folder, not a data file", "pass the file inside it")
    if split not in (None, "", "all"):  # a stream reads a file whole: it is not cut by query as eval/distill cut it
        raise DataError(f"--split {split}: a file is read whole here, it has no '{split}' split",
                        f"drop --split (or pass --split all), or cut {path.name} into its own files first")
    kind = _data.file_format(path)
    stem = path.name.split(".")[0]
    if kind == "jsonl":
        fmt = "jsonl"
    elif kind == "parquet":
        fmt = "parquet"
        _parquet_file(path, columns)  # not Parquet, or no such columns: a one-line error now
    elif columns is None and _data._looks_like_wikiqa(path):
        fmt = "wikiqa-tsv"
    else:
        fmt = "tsv" if ".tsv" in path.suffixes else "csv"
    return PairStream(spec, "", stem, fmt, path, columns, labels)


def _pyarrow(path: Path):
    try:
        import pyarrow.parquet as pq
    except ImportError:
        from qadistill.errors import MissingPackageError

        raise MissingPackageError(f"{path}: reading Parquet needs the pyarrow package, which is not installed",
                                  "pip install pyarrow (or convert the file to JSONL)") from None
    return pq


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    r"""(line number, line) without its newline; \n, \r\n and \r end a line (as `qadistill.data` reads files). Each line
    is decoded on its own, so a bad byte is reported on its own line."""
    import codecs

    try:
        fh = _data.open_binary(path)
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})", "check the file's permissions") from None
    ln = 0
    with fh:
        try:
            for i, raw in enumerate(fh):
                if i == 0 and raw.startswith(codecs.BOM_UTF8):
                    raw = raw[len(codecs.BOM_UTF8):]
                if i == 0 and (utf16 := _data.utf16_problem(raw[:2], path)) is not None:
                    raise utf16
                raw = raw[:-1] if raw.endswith(b"\n") else raw
                parts = raw.split(b"\r")
                if len(parts) > 1 and parts[-1] == b"":
                    parts.pop()  # the \r of a \r\n
                for part in parts:
                    ln += 1
                    try:
                        line = part.decode("utf-8")
                    except UnicodeDecodeError:
                        raise DataError(f"{path}:{ln}: not UTF-8 text", _data.NOT_UTF8_HINT) from None
                    if "\x00" in line:
                        raise DataError(f"{path}:{ln}: NUL byte (a binary file, or UTF-16 text?)", "save the file as UTF-8 text")
                    yield ln, line
        except _data.decompress_errors() as exc:
            raise _data.compressed_problem(path, exc) from None
        except OSError as exc:  # bz2: not a bzip2 file
            if exc.strerror is None and path.suffix.lower() in _data.COMPRESSED:
                raise _data.compressed_problem(path, exc) from None
            raise


def _checked(q: str, p: str, path, ln: int) -> tuple[str, str]:
    if _data.is_blank(q):
        raise DataError(f"{path}:{ln}: empty query", "remove the row or fill in the query")
    if _data.is_blank(p):
        raise DataError(f"{path}:{ln}: empty passage", "remove the row or fill in the passage")
    return q, p


def _jsonl_rows(path: Path, labels: bool = True) -> Iterator[tuple[str, str]]:
    for ln, line in _lines(path):
        if not line.strip():
            continue
        row = _data._json_row(line, path, ln)
        if labels:
            _data._label(row.get("label"), path, ln)
        yield _checked(row["query"], row["passage"], path, ln)


def _delimited_rows(path: Path, delim: str, columns: dict | None, labels: bool = True) -> Iterator[tuple[str, str]]:
    """CSV/TSV with a header: the query and passage columns named by ``columns`` (``data.header_columns``: the caller's
    renames, else the JSONL names or a known layout); a label column, where there is one and ``labels`` is on, must hold 0/1."""
    it = _lines(path)
    first = next(it, None)
    if first is None:
        raise DataError(f"{path}: empty file", "expected a header row")
    header, columns = _data.delimited_header(first[1], delim, path, columns)
    qi, pi = header.index(columns["query"]), header.index(columns["passage"])
    li = header.index(columns["label"]) if labels and columns.get("label") in header else None
    for ln, cells in _data.delimited_records(it, delim, len(header), path, delim == "\t" and _data.tsv_is_quoted(first[1])):
        if li is not None:
            _data._label(cells[li], path, ln)
        yield _checked(cells[qi], cells[pi], path, ln)


def _wikiqa_rows(path: Path, labels: bool = True) -> Iterator[tuple[str, str]]:
    """WikiQA TSV: plain tab-separated cells (no quoting), as ``data.load_wikiqa_tsv`` reads them."""
    it = _lines(path)
    first = next(it, None)
    col, width = _data.wikiqa_columns(first[1] if first else None, path)
    for ln, line in it:
        cells = _data.wikiqa_cells(line, width, path, ln)
        if cells is None:
            continue
        if labels:
            _data._label(cells[col["Label"]], path, ln)
        yield _checked(cells[col["Question"]], cells[col["Sentence"]], path, ln)


def _parquet_file(path: Path, columns: dict | None):
    """(the opened ParquetFile, field -> column): readable as Parquet, with the query and passage columns. The columns
    are ``data.header_columns`` of its schema: the caller's mapping, or a known layout's when none is given."""
    pq = _pyarrow(path)
    try:
        f = pq.ParquetFile(str(path))
    except Exception as exc:  # pyarrow's ArrowInvalid / OSError: not Parquet, truncated
        raise DataError(f"{path}: not a readable Parquet file ({str(exc).splitlines()[0][:120]})",
                        "check the file (a truncated copy?), or give it the extension of its real format") from None
    return f, _data.require_columns(f.schema_arrow.names, columns, str(path))


def _parquet_rows(path: Path, columns: dict | None, batch: int = 8192, labels: bool = True) -> Iterator[tuple[str, str]]:
    """The query and passage columns; a label column, where there is one and ``labels`` is on, must hold 0/1 (as in
    every other format)."""
    f, columns = _parquet_file(path, columns)
    with_label = labels and columns.get("label") in f.schema_arrow.names
    wanted = [columns["query"], columns["passage"]] + ([columns["label"]] if with_label else [])
    row = 0
    for rb in f.iter_batches(batch_size=batch, columns=wanted):
        qs, ps = rb.column(0).to_pylist(), rb.column(1).to_pylist()
        ys = rb.column(2).to_pylist() if with_label else [None] * len(qs)
        for q, p, y in zip(qs, ps, ys):
            row += 1
            if not isinstance(q, str) or not isinstance(p, str):
                raise DataError(f"{path}: row {row}: query and passage must be strings", "store the texts as string columns")
            if with_label:
                _data._label(y, path, row)  # "FILE:ROW: label ..." as load_dataset says it
            yield _checked(q, p, f"{path}: row", row)
