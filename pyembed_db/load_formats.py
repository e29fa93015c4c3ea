"""Readers of the loader's file formats, yielding rows in column batches.

A reader returns the header (column names) and an iterator of :data:`Batch`: the number of the
batch's first row (1-based, header excluded) and its values by column. Column batches let the
loader validate a whole column with a few C-level passes instead of one Python call per value.

- CSV: RFC 4180 quoting (``"a, b"``, ``""`` for a quote), fields may span lines.
- TSV: no quoting at all: a field is everything between two tabs, so a ``"`` is an ordinary
  character; a field cannot hold a tab or a line break.
- Parquet: read in record batches; nested values arrive as lists and dicts.
- JSON lines: one object per line; blank lines are skipped.

A CSV/TSV field may hold up to :data:`FIELD_LIMIT` characters (the longest text the loader
accepts); a longer one is a row-numbered error.

Example::

    columns, batches = read_batches(Path("events.csv"))
    for first_row, values in batches:
        print(first_row, len(values["user"]))
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Generator, Iterator
from itertools import chain, islice
from pathlib import Path
from typing import Any

from .errors import LoadError
from .load_values import TEXT_LIMIT

Batch = tuple[int, dict[str, list[Any]]]
Batches = Generator[Batch, None, None]
BATCH_ROWS = 2_000  # rows parsed by the csv module: small enough to stay in the CPU caches
CHUNK_CHARS = 1 << 18  # characters of a plain CSV/TSV chunk split at once
FIELD_LIMIT = TEXT_LIMIT
FORMATS = ("csv", "tsv", "parquet", "jsonl")
SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".jsonl": "jsonl",
            ".ndjson": "jsonl", ".json": "jsonl"}


def detect_format(path: Path) -> str:
    """Guess the format from the file name (``.csv``, ``.tsv``, ``.parquet``, ``.jsonl``)."""
    name = path.name.lower()
    for suffix, fmt in SUFFIXES.items():
        if name.endswith(suffix):
            return fmt
    raise LoadError(f"cannot tell the format of {path.name}: use --format", source=str(path))


def read_batches(path: Path, fmt: str | None = None) -> tuple[list[str], Batches]:
    """Columns and column batches of a CSV, TSV, Parquet or JSON-lines file."""
    fmt = fmt or detect_format(path)
    if fmt not in FORMATS:
        raise LoadError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}",
                        source=str(path))
    if not path.exists():
        raise LoadError("file not found", source=str(path))
    if path.is_dir():
        raise LoadError("is a directory, not a file", source=str(path))
    if fmt == "parquet":
        return _parquet(path)
    if fmt == "jsonl":
        return _jsonl(path)
    dialect: dict[str, Any] = {"delimiter": ","}
    if fmt == "tsv":
        dialect = {"delimiter": "\t", "quoting": csv.QUOTE_NONE}
    return _delimited(path, dialect)


def _delimited(path: Path, dialect: dict[str, Any]) -> tuple[list[str], Batches]:
    # The header is read on its own so that the batch generator owns its file handle entirely
    # (a generator that is never started would otherwise leak an opened file). Rows are decoded
    # with surrogateescape: an undecodable byte then fails the check of its own row and column.
    csv.field_size_limit(max(csv.field_size_limit(), FIELD_LIMIT))
    with path.open("rb") as raw:
        header = raw.readline()
    try:
        columns = next(csv.reader([header.decode("utf-8-sig")], **dialect), [])
    except UnicodeDecodeError as exc:
        raise LoadError(f"header is not valid UTF-8 ({exc.reason})", source=str(path)) from None
    except csv.Error as exc:
        raise LoadError(f"header: {_csv_message(exc)}", source=str(path)) from None
    return columns, _delimited_batches(path, dialect, columns)


def _delimited_batches(path: Path, dialect: dict[str, Any], columns: list[str]) -> Batches:
    """Plain chunks are split with two C-level string operations; from the first chunk that
    needs real CSV parsing (a quote, a blank or ragged line, a lone CR...) on, the csv module."""
    sep = dialect["delimiter"]
    quotes = dialect.get("quoting") != csv.QUOTE_NONE
    with path.open(newline="", encoding="utf-8-sig", errors="surrogateescape") as handle:
        handle.readline()  # the header
        row_no = 0
        carry = ""
        while chunk := handle.read(CHUNK_CHARS):
            text = carry + chunk
            cut = text.rfind("\n")
            if cut < 0 and len(text) <= 4 * CHUNK_CHARS:
                carry = text
                continue
            values = _split(text[:cut], sep, len(columns), quotes) if cut >= 0 else None
            if values is None:
                rest = chain(io.StringIO(text + handle.readline(), newline=""), handle)
                yield from _csv_batches(rest, dialect, columns, row_no, path)
                return
            carry = text[cut + 1:]
            yield row_no + 1, dict(zip(columns, values, strict=True))
            row_no += len(values[0])
        if carry:
            yield from _csv_batches(iter([carry]), dialect, columns, row_no, path)


def _split(body: str, sep: str, width: int, quotes: bool) -> list[list[str]] | None:
    """The columns of complete lines without quotes or blank lines; None when that fails."""
    if "\r" in body:
        body = body.replace("\r\n", "\n").removesuffix("\r")
    if (not body or (quotes and '"' in body) or "\r" in body or "\n\n" in body
            or body[0] == "\n" or body[-1] == "\n"):
        return None
    cells = body.replace("\n", sep).split(sep)
    if len(cells) != (body.count("\n") + 1) * width:
        return None
    return [cells[i::width] for i in range(width)]


def _csv_batches(lines: Iterator[str], dialect: dict[str, Any], columns: list[str],
                 row_no: int, path: Path) -> Batches:
    """Batches parsed by the csv module; ``row_no`` rows (one line each) came before."""
    width = len(columns)
    lines_before = row_no + 1  # the header and one line per row
    reader = csv.reader(lines, **dialect)
    batch: list[list[Any]] = []
    try:
        for fields in reader:
            if not fields:  # a blank line
                continue
            row_no += 1
            if len(fields) != width:
                if len(fields) > width:
                    raise LoadError(f"more fields than the header has, at line "
                                    f"{lines_before + reader.line_num}", source=str(path))
                batch.append([*fields, *[None] * (width - len(fields))])
            else:
                batch.append(fields)
            if len(batch) == BATCH_ROWS:
                yield row_no - len(batch) + 1, _transpose(batch, columns)
                batch = []
    except csv.Error as exc:
        raise LoadError(_csv_message(exc), row=row_no + 1, source=str(path)) from None
    if batch:
        yield row_no - len(batch) + 1, _transpose(batch, columns)


def _transpose(rows: list[list[Any]], columns: list[str]) -> dict[str, list[Any]]:
    return dict(zip(columns, map(list, zip(*rows, strict=True)), strict=True))


def _csv_message(exc: csv.Error) -> str:
    if "field larger than field limit" in str(exc):
        return f"a field is longer than {FIELD_LIMIT:,} characters"
    return f"malformed line ({exc})"


def _parquet(path: Path) -> tuple[list[str], Batches]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise LoadError(f"not a readable Parquet file ({exc})", source=str(path)) from None
    columns = list(parquet.schema_arrow.names)

    def batches() -> Batches:
        row_no = 1
        for batch in parquet.iter_batches(BATCH_ROWS):
            yield row_no, {name: batch.column(i).to_pylist() for i, name in enumerate(columns)}
            row_no += batch.num_rows

    return columns, batches()


def _jsonl(path: Path) -> tuple[list[str], Batches]:
    """Columns: the keys of the first batch; a later batch may bring more (checked by the loader).

    Batches are keyed by column name (a JSON object cannot repeat a key).
    """
    records = _jsonl_records(path)
    first = list(islice(records, BATCH_ROWS))
    columns = sorted({key for obj in first for key in obj})

    def batches() -> Batches:
        row_no = 1
        rows = chain(first, records)
        while chunk := list(islice(rows, BATCH_ROWS)):
            keys = sorted({key for obj in chunk for key in obj})
            yield row_no, {key: [obj.get(key) for obj in chunk] for key in keys}
            row_no += len(chunk)

    return columns, batches()


def _jsonl_records(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8", errors="strict") as handle:
        row_no = 0
        try:
            for line in handle:
                if not line.strip():
                    continue
                row_no += 1
                yield _json_line(line, row_no, path)
        except UnicodeDecodeError as exc:
            raise LoadError(f"not valid UTF-8 after row {row_no} ({exc.reason})",
                            source=str(path)) from None


def _json_line(line: str, row_no: int, path: Path) -> dict[str, Any]:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise LoadError(f"invalid JSON ({exc.msg})", row=row_no, source=str(path)) from None
    except RecursionError:
        raise LoadError("JSON nested too deeply", row=row_no, source=str(path)) from None
    if not isinstance(obj, dict):
        raise LoadError("each line must be a JSON object", row=row_no, source=str(path))
    return obj
