"""Bulk loading of users, items and events from CSV, Parquet or JSON lines.

A load is all or nothing: rows are validated in Python (so errors can name the row), staged with
COPY, checked against the database (unknown users/items), and merged in one transaction. Users
and items are upserted by ``external_id``; events are appended.

Columns (header names; unknown columns are an error):

=======  ============================================================================
users    ``external_id`` (required), ``attributes`` (JSON object), ``created_at``
items    ``external_id`` (required), ``title``, ``body``, ``category``, ``tags``
         (list, JSON array or ``a|b|c``), ``price``, ``attributes``, ``created_at``
events   ``user``, ``item`` (external ids, required), ``event_type`` (required),
         ``value``, ``occurred_at``
=======  ============================================================================

Timestamps are ISO 8601 strings (naive ones are UTC) or Unix epoch seconds.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from tqdm import tqdm

from . import sqlfiles
from .errors import LoadError

log = logging.getLogger(__name__)

KINDS = ("users", "items", "events")
PRICE_LIMIT = Decimal(10) ** 12  # numeric(14, 2)
REAL_LIMIT = 3.4e38
FORMATS = ("csv", "tsv", "parquet", "jsonl")


class RowError(ValueError):
    """A value in one row is invalid; the loader adds the row number."""


@dataclass(frozen=True)
class _Spec:
    required: tuple[str, ...]
    optional: tuple[str, ...]
    stage_columns: tuple[str, ...]
    convert: Callable[[dict[str, Any]], tuple[Any, ...]]


def _text(value: Any, column: str, *, required: bool = False, max_len: int = 10_000_000) -> Any:
    if value is None or (isinstance(value, str) and value == "" and not required):
        if required:
            raise RowError(f"{column} is required")
        return None
    text = str(value)
    if required and not text.strip():
        raise RowError(f"{column} is required")
    if "\x00" in text:
        raise RowError(f"{column} contains a NUL character")
    _check_utf8(text, column)
    if len(text) > max_len:
        raise RowError(f"{column} is longer than {max_len} characters")
    return text


def _check_utf8(text: str, column: str) -> None:
    # Lone surrogates: undecodable bytes of a file (read with surrogateescape) or a bad str.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise RowError(f"{column}: not valid UTF-8 at character {exc.start}") from None


def _timestamp(value: Any, column: str) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    text = str(value).strip()
    try:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return datetime.fromtimestamp(value, tz=timezone.utc)
        if text.lstrip("-").replace(".", "", 1).isdigit():
            return datetime.fromtimestamp(float(text), tz=timezone.utc)
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):  # NaN, out of range, malformed
        raise RowError(f"{column}: not a timestamp: {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _json_object(value: Any, column: str) -> Jsonb:
    if value is None or value == "":
        return Jsonb({})
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise RowError(f"{column}: invalid JSON ({exc.msg})") from None
    if not isinstance(value, dict):
        raise RowError(f"{column}: must be a JSON object, got {type(value).__name__}")
    try:
        dumped = json.dumps(value, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise RowError(f"{column}: not valid JSON ({exc})") from None
    if "\\u0000" in dumped:  # json.dumps escapes NUL; jsonb cannot hold it
        raise RowError(f"{column} contains a NUL character")
    _check_utf8(dumped, column)
    return Jsonb(value)


def _tags(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        if value.lstrip().startswith("["):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise RowError(f"tags: invalid JSON array ({exc.msg})") from None
        else:
            value = [part.strip() for part in value.split("|")]
    if not isinstance(value, (list, tuple)) or not all(isinstance(t, str) for t in value):
        raise RowError("tags: must be a list of strings")
    return [t for t in value if t]


def _number(value: Any, column: str, *, kind: type = float) -> Any:
    if value is None or value == "":
        return None
    try:
        number = kind(str(value)) if kind is Decimal else kind(value)
    except (ValueError, TypeError, InvalidOperation):
        raise RowError(f"{column}: not a number: {value!r}") from None
    if not math.isfinite(float(number)):
        raise RowError(f"{column}: must be finite, got {value!r}")
    return number


def _real(value: Any, column: str) -> float | None:
    number = _number(value, column)
    if number is None:
        return None
    if abs(number) > REAL_LIMIT:
        raise RowError(f"{column}: out of range for a real, got {value!r}")
    return float(number)


def _user(row: dict[str, Any]) -> tuple[Any, ...]:
    return (
        _text(row.get("external_id"), "external_id", required=True, max_len=512),
        _json_object(row.get("attributes"), "attributes"),
        _timestamp(row.get("created_at"), "created_at"),
    )


def _item(row: dict[str, Any]) -> tuple[Any, ...]:
    price = _number(row.get("price"), "price", kind=Decimal)
    if price is not None and price < 0:
        raise RowError(f"price: must be >= 0, got {price}")
    if price is not None and price >= PRICE_LIMIT:
        raise RowError(f"price: must be < {PRICE_LIMIT:,}, got {price}")
    return (
        _text(row.get("external_id"), "external_id", required=True, max_len=512),
        _text(row.get("title"), "title"),
        _text(row.get("body"), "body"),
        _text(row.get("category"), "category", max_len=1000),
        _tags(row.get("tags")),
        price,
        _json_object(row.get("attributes"), "attributes"),
        _timestamp(row.get("created_at"), "created_at"),
    )


def _event(row: dict[str, Any]) -> tuple[Any, ...]:
    return (
        _text(row.get("user"), "user", required=True, max_len=512),
        _text(row.get("item"), "item", required=True, max_len=512),
        _text(row.get("event_type"), "event_type", required=True, max_len=63),
        _real(row.get("value"), "value"),
        _timestamp(row.get("occurred_at"), "occurred_at"),
    )


SPECS: dict[str, _Spec] = {
    "users": _Spec(
        ("external_id",),
        ("attributes", "created_at"),
        ("external_id", "attributes", "created_at"),
        _user,
    ),
    "items": _Spec(
        ("external_id",),
        ("title", "body", "category", "tags", "price", "attributes", "created_at"),
        ("external_id", "title", "body", "category", "tags", "price", "attributes", "created_at"),
        _item,
    ),
    "events": _Spec(
        ("user", "item", "event_type"),
        ("value", "occurred_at"),
        ("user_ext", "item_ext", "event_type", "value", "occurred_at"),
        _event,
    ),
}


def _check_columns(kind: str, columns: Iterable[str], source: str) -> None:
    spec = SPECS[kind]
    present = set(columns)
    missing = [c for c in spec.required if c not in present]
    if missing:
        raise LoadError(
            f"missing required column(s) {', '.join(missing)} for {kind}", source=source
        )
    unknown = sorted(present - set(spec.required) - set(spec.optional))
    if unknown:
        allowed = ", ".join(spec.required + spec.optional)
        raise LoadError(
            f"unknown column(s) {', '.join(unknown)}; {kind} take: {allowed}", source=source
        )


def detect_format(path: Path) -> str:
    """Guess the format from the file name (``.csv``, ``.tsv``, ``.parquet``, ``.jsonl``)."""
    name = path.name.lower()
    for suffix, fmt in [
        (".csv", "csv"),
        (".tsv", "tsv"),
        (".parquet", "parquet"),
        (".jsonl", "jsonl"),
        (".ndjson", "jsonl"),
        (".json", "jsonl"),
    ]:
        if name.endswith(suffix):
            return fmt
    raise LoadError(f"cannot tell the format of {path.name}: use --format", source=str(path))


def read_rows(path: Path, fmt: str | None = None) -> tuple[list[str], Iterator[dict[str, Any]]]:
    """Columns and an iterator of rows (dicts) of a CSV, TSV, Parquet or JSON-lines file."""
    fmt = fmt or detect_format(path)
    if not path.exists():
        raise LoadError("file not found", source=str(path))
    if fmt in ("csv", "tsv"):
        return _read_delimited(path, "," if fmt == "csv" else "\t")
    if fmt == "parquet":
        import pyarrow.parquet as pq

        parquet = pq.ParquetFile(path)
        columns = list(parquet.schema_arrow.names)
        rows = (row for batch in parquet.iter_batches(65_536) for row in batch.to_pylist())
        return columns, rows
    if fmt == "jsonl":
        return _read_jsonl(path)
    raise LoadError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}", source=str(path))


def _read_delimited(path: Path, delimiter: str) -> tuple[list[str], Iterator[dict[str, Any]]]:
    # The header is read on its own so that the row generator owns its file handle entirely
    # (a generator that is never started would otherwise leak an opened file). Rows are decoded
    # with surrogateescape: an undecodable byte then fails the check of its own row and column.
    with path.open("rb") as raw:
        header = raw.readline()
    try:
        columns = next(csv.reader([header.decode("utf-8-sig")], delimiter=delimiter), [])
    except UnicodeDecodeError as exc:
        raise LoadError(f"header is not valid UTF-8 ({exc.reason})", source=str(path)) from None

    def rows() -> Iterator[dict[str, Any]]:
        with path.open(newline="", encoding="utf-8-sig", errors="surrogateescape") as handle:
            reader = csv.DictReader(handle, delimiter=delimiter)
            for row in reader:
                if None in row:
                    raise LoadError(
                        f"more fields than the header has, at line {reader.line_num}",
                        source=str(path),
                    )
                yield row

    return columns, rows()


def _read_jsonl(path: Path) -> tuple[list[str], Iterator[dict[str, Any]]]:
    def parse() -> Iterator[tuple[int, dict[str, Any]]]:
        with path.open(encoding="utf-8", errors="strict") as handle:
            line_no = 0
            try:
                for line_no, line in enumerate(handle, 1):  # noqa: B007
                    if not line.strip():
                        continue
                    try:
                        obj = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise LoadError(
                            f"invalid JSON ({exc.msg})", row=line_no, source=str(path)
                        ) from None
                    if not isinstance(obj, dict):
                        raise LoadError(
                            "each line must be a JSON object", row=line_no, source=str(path)
                        )
                    yield line_no, obj
            except UnicodeDecodeError as exc:
                raise LoadError(
                    f"not valid UTF-8 after line {line_no} ({exc.reason})", source=str(path)
                ) from None

    records = list(parse())
    columns = sorted({key for _, obj in records for key in obj})
    return columns, (obj for _, obj in records)


def load_rows(
    conn: psycopg.Connection[Any],
    kind: str,
    columns: Iterable[str],
    rows: Iterable[dict[str, Any]],
    *,
    source: str = "<rows>",
    total: int | None = None,
    progress: bool = False,
) -> int:
    """Load ``rows`` (dicts keyed by column) of ``kind`` in one transaction; returns rows loaded.

    Raises :class:`LoadError` naming the first bad row; then nothing is written.

    Example::

        with connect() as conn:
            load_rows(conn, "users", ["external_id"], [{"external_id": "u1"}])
    """
    if kind not in SPECS:
        raise LoadError(f"unknown kind {kind!r}; use one of {', '.join(KINDS)}")
    spec = SPECS[kind]
    _check_columns(kind, columns, source)
    stage = f"stage_{kind}"
    seen: set[str] = set()
    count = 0
    try:
        with conn.transaction(), conn.cursor() as cur:
            cur.execute(sqlfiles.read("queries/load_stage.sql"))
            copy_sql = f"copy {stage} (row_no, {', '.join(spec.stage_columns)}) from stdin"
            bar = tqdm(total=total, desc=f"load {kind}", unit="row", disable=not progress)
            with bar, cur.copy(copy_sql) as copy:
                for row_no, row in enumerate(rows, 1):
                    try:
                        values = spec.convert(row)
                    except RowError as exc:
                        raise LoadError(str(exc), row=row_no, source=source) from None
                    if kind != "events":
                        if values[0] in seen:
                            raise LoadError(
                                f"duplicate external_id {values[0]!r}", row=row_no, source=source
                            )
                        seen.add(values[0])
                    copy.write_row((row_no, *values))
                    count = row_no
                    bar.update(1)
            if kind == "events":
                problem = cur.execute(sqlfiles.read("queries/load_check_events.sql")).fetchone()
                if problem:
                    raise LoadError(problem[1], row=problem[0], source=source)
            cur.execute(sqlfiles.read(f"queries/load_merge_{kind}.sql"))
    except (psycopg.errors.DataError, psycopg.errors.IntegrityError) as exc:
        raise LoadError(f"rejected by the database: {exc.diag.message_primary or exc}",
                        row=_copy_line(exc), source=source) from exc
    finally:
        close = getattr(rows, "close", None)
        if close is not None:  # a generator over an open file: release it now, not at GC
            close()
    log.info("loaded %d %s from %s", count, kind, source)
    return count


def _copy_line(exc: psycopg.Error) -> int | None:
    # Staged rows are written in order, so COPY's line number is the row number.
    found = re.search(r"COPY stage_\w+, line (\d+)", exc.diag.context or "")
    return int(found.group(1)) if found else None


def load_file(
    conn: psycopg.Connection[Any],
    kind: str,
    path: str | Path,
    *,
    fmt: str | None = None,
    progress: bool = False,
) -> int:
    """Load one CSV/TSV/Parquet/JSON-lines file of users, items or events; all or nothing.

    Example::

        load_file(conn, "items", "catalog.parquet")
    """
    path = Path(path)
    columns, rows = read_rows(path, fmt)
    return load_rows(conn, kind, columns, rows, source=str(path), progress=progress)
