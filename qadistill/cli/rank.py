from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from qadistill.api import BACKENDS
from qadistill.cli._common import Format, FormatOpt, dim, err_console, out_console, print_json, table
from qadistill.cli.errors import handle_errors
from qadistill.errors import UserInputError

Backend = Enum("Backend", {b.replace("-", "_"): b for b in BACKENDS}, type=str)  # the API's vocabulary, shown and validated


JSONL_SUFFIXES = (".jsonl", ".ndjson")


def read_passages(source: str) -> tuple[list[str], list[str] | None]:
    """(passages, ids or None) of a passage file or stdin (see ``read_numbered``)."""
    texts, ids, _ = read_numbered(source)
    return texts, ids


def read_numbered(source: str) -> tuple[list[str], list[str] | None, list[int]]:
    """Passages one per line, or JSONL objects with "passage"/"text" (and optional "id" or "passage_id"), with the 1-based input line
    of each (blank lines are skipped, so a passage's position and its line differ after one). '-' reads stdin."""
    if source == "-":
        if sys.stdin.isatty():  # nothing piped in: waiting on the keyboard would look like a hang
            raise UserInputError("no passages: --passages is not given and nothing is piped in",
                                 "pass -p FILE (one passage per line), or pipe them: cat passages.txt | qadistill rank MODEL -q ...")
        raw = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read().encode()
        name = "stdin"
    else:
        p = Path(source).expanduser()
        if p.is_dir():
            raise UserInputError(f"passage file {p} is a folder", "pass a text file with one passage per line, or - for stdin")
        if not p.is_file():
            raise UserInputError(f"passage file {p} does not exist", "pass a text file with one passage per line, or - for stdin")
        raw, name = p.read_bytes(), str(p)
    from qadistill.data import UTF16_BOMS, is_blank

    if raw.startswith(UTF16_BOMS):
        raise UserInputError(f"{name} is UTF-16 text (it starts with a UTF-16 byte-order mark); qadistill reads UTF-8",
                             f"convert it: iconv -f UTF-16 -t UTF-8 {name} > passages-utf8.txt")
    if b"\x00" in raw[:4096]:
        raise UserInputError(f"{name} is not a text file", "pass a UTF-8 text file, one passage per line")
    try:
        text = raw.decode("utf-8-sig")  # a byte-order mark is not part of the first passage
    except UnicodeDecodeError:
        raise UserInputError(f"{name} is not UTF-8 text", "convert it to UTF-8") from None
    # \n, \r\n and old-Mac \r end a line (as data files are read); a line of spaces or invisible characters is blank
    lines_all = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    numbered = [(n, line) for n, line in enumerate(lines_all, 1) if not is_blank(line)]
    lines = [line for _, line in numbered]
    suffix = "" if source == "-" else Path(source).suffix.lower()
    # JSONL: by the file's name (.jsonl/.ndjson), else by a first line that is a JSON object -- or that starts like one
    # outside a .txt file (a broken first row must not turn the rows into plain-text passages) -- then every line is JSON
    if lines and (suffix in JSONL_SUFFIXES or _json_object_line(lines[0])
                  or (suffix != ".txt" and lines[0].lstrip().startswith('{"'))):
        why = (f"a {suffix} file" if suffix in JSONL_SUFFIXES else f"line {numbered[0][0]} starts a JSON object")
        return (*_jsonl_rows(name, numbered, why), [i for i, _ in numbered])
    return lines, None, [i for i, _ in numbered]


def _jsonl_rows(name: str, numbered: list[tuple[int, str]], why: str) -> tuple[list[str], list[str]]:
    """(passages, ids) of JSONL lines (each with its line in the input); ``why`` says why the input is read as JSONL."""
    passages, ids, seen = [], [], {}
    for row_no, (i, line) in enumerate(numbered, 1):  # i: the line in the file (blank lines count), for messages
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserInputError(f"{name}:{i}: invalid JSON ({e.msg} at column {e.colno}; {why}, so every line must "
                                 "be a JSON object)",
                                 "one JSON object per line; plain passages go in a .txt file, one per line") from None
        if not isinstance(row, dict):
            raise UserInputError(f"{name}:{i}: expected a JSON object", "JSONL rows look like {\"id\": \"a\", \"passage\": \"...\"}")
        field = "passage" if "passage" in row else "text" if "text" in row else None
        if field is None:
            raise UserInputError(f"{name}:{i}: no \"passage\" or \"text\" field", "JSONL rows look like {\"id\": \"a\", \"passage\": \"...\"}")
        txt = row[field]
        if not isinstance(txt, str) or not txt.strip():
            raise UserInputError(f"{name}:{i}: field {field!r} must be non-empty text (got {json.dumps(txt)[:40]})",
                                 "give every passage some text")
        raw_id = row.get("id", row.get("passage_id", row_no))  # eval-format rows name it passage_id
        if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)):
            raise UserInputError(f"{name}:{i}: id {json.dumps(raw_id)[:40]} is not a string or a whole number",
                                 "give each passage a string (or integer) id, or none")
        pid = str(raw_id)
        if pid in seen:
            raise UserInputError(f"{name}:{i}: id {pid!r} was already used on line {seen[pid]}", "ids must be unique")
        seen[pid] = i
        passages.append(txt)
        ids.append(pid)
    return passages, ids


def _json_object_line(line: str) -> bool:
    if not line.lstrip().startswith("{"):
        return False
    try:
        return isinstance(json.loads(line), dict)
    except json.JSONDecodeError:
        return False


@handle_errors
def rank(
    model: Annotated[str, typer.Argument(help="Zoo name, built artifact, local folder or Hub id.")],
    query: Annotated[str, typer.Option("--query", "-q", help="The question.")],
    passages: Annotated[str, typer.Option("--passages", "-p", help="File with one passage per line (or JSONL with ids); - for stdin.")] = "-",
    top_k: Annotated[int | None, typer.Option("--top-k", "-k", min=1)] = None,
    backend: Annotated[Backend, typer.Option(help="auto: the fastest built variant that passed its parity check.")] = Backend.auto,
    max_length: Annotated[int | None, typer.Option(min=8, help="Truncate pairs to this many tokens (default: the model's).")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Pairs per batch at most (pairs are sorted by length; each batch is padded to its longest only).")] = 32,
    batch_tokens: Annotated[int | None, typer.Option(min=1, help="Padded tokens per batch at most (default: no bound but --batch-size).")] = None,
    sessions: Annotated[int, typer.Option(min=1, help="ONNX models: spread the batches over N single-thread sessions (throughput on long lists; same scores).")] = 1,
    fmt: FormatOpt = Format.table,
) -> None:
    """Rank passages for a query with a model (fastest built variant by default)."""
    from qadistill.api import load

    if not query.strip():
        raise UserInputError("the query is empty", "pass a question, e.g. --query \"who wrote hamlet?\"")
    texts, ids, line_nos = read_numbered(passages)
    if not texts:
        raise UserInputError("no passages to rank", "pass passages one per line in a file or on stdin")
    m = load(model, backend=backend.value, max_length=max_length, batch_size=batch_size, batch_tokens=batch_tokens, sessions=sessions)
    ranked = m.rank(query, texts, top_k=top_k, ids=ids)
    cut = m.over_length(query, texts)
    if fmt is Format.json:
        print_json({"model": m.name, "backend": m.backend_name, "score_kind": m.score_kind, "max_length": m.max_length,
                    "over_length": cut, "query": query,
                    "results": [{"rank": r.rank, "index": r.index, "line": line_nos[r.index], "id": r.id, "score": r.score,
                                 "passage": r.passage} for r in ranked]})
        return
    out_console().print(table(f"{m.name} ({m.backend_name}): {query}", ["rank", "score" if m.score_kind == "logit" else m.score_kind, "#", "passage"],
                              [[r.rank, f"{r.score:.4f}", r.id or r.index, _shown(r.passage)] for r in ranked]))
    if cut:
        err_console().print(dim(f"{cut} of {len(texts)} passages are longer than {m.name}'s max length ({m.max_length} "
                                "tokens with the query) and were cut, longest first: their scores are of the cut text"))
    if any(len(r.passage) > SHOWN_CHARS for r in ranked):
        err_console().print(dim(f"passages over {SHOWN_CHARS} characters are shown cut (… ); --format json has them whole"))


SHOWN_CHARS = 400  # a passage cell longer than this is cut in the table (a 9,000-word passage filled 1,023 lines)


def _shown(passage: str) -> str:
    return passage if len(passage) <= SHOWN_CHARS else passage[:SHOWN_CHARS].rstrip() + " …"
