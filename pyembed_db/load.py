"""Bulk loading of users, items and events from CSV, TSV, Parquet or JSON lines.

A load is all or nothing: rows are validated in Python in column batches (so errors can name the
row: see :mod:`pyembed_db.load_values`), staged with a binary COPY into a temporary table and
merged with one set-based statement, in one transaction. Users and items are upserted by
``external_id``; events are appended, and an event whose user, item or event type does not exist
is reported by its row number.

Columns (header names; unknown columns are an error):

=======  ============================================================================
users    ``external_id`` (required), ``attributes`` (JSON object), ``created_at``
items    ``external_id`` (required), ``title``, ``body``, ``category``, ``tags``
         (list, JSON array or ``a|b|c``), ``price``, ``attributes``, ``created_at``
events   ``user``, ``item`` (external ids, required), ``event_type`` (required),
         ``value``, ``occurred_at``
=======  ============================================================================

Timestamps are ISO 8601 strings (naive ones are UTC) or Unix epoch seconds. Limits and the
plan of the merge: docs/loading.md.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any

import psycopg
from tqdm import tqdm

from . import load_values as v
from . import sqlfiles
from .errors import LoadError
from .load_formats import BATCH_ROWS, FORMATS, Batch, detect_format, read_batches

log = logging.getLogger(__name__)

KINDS = ("users", "items", "events")
__all__ = ["FORMATS", "KINDS", "detect_format", "load_file", "load_rows"]


@dataclass(frozen=True)
class _Column:
    name: str
    value: Callable[[Any], Any]  # one value -> staged value; raises RowError
    batch: Callable[[Sequence[Any]], list[Any] | None] | None = None  # the fast path


@dataclass(frozen=True)
class _Spec:
    required: tuple[str, ...]
    stage_columns: tuple[str, ...]
    stage_types: tuple[str, ...]  # binary COPY: 5x faster than text here (no parsing)
    columns: tuple[_Column, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)


def _id(name: str) -> _Column:
    return _Column(name, partial(v.text, column=name, required=True, max_len=v.ID_LIMIT),
                   partial(v.text_column, required=True, max_len=v.ID_LIMIT))


def _text(name: str, max_len: int = v.TEXT_LIMIT) -> _Column:
    return _Column(name, partial(v.text, column=name, max_len=max_len),
                   partial(v.text_column, required=False, max_len=max_len))


def _timestamp(name: str) -> _Column:
    return _Column(name, partial(v.timestamp, column=name), v.timestamp_column)


ATTRIBUTES = _Column("attributes", partial(v.json_object, column="attributes"))
SPECS: dict[str, _Spec] = {
    "users": _Spec(("external_id",), ("external_id", "attributes", "created_at"),
                   ("text", "text", "timestamptz"),
                   (_id("external_id"), ATTRIBUTES, _timestamp("created_at"))),
    "items": _Spec(
        ("external_id",),
        ("external_id", "title", "body", "category", "tags", "price", "attributes", "created_at"),
        ("text", "text", "text", "text", "text[]", "numeric", "text", "timestamptz"),
        (_id("external_id"), _text("title"), _text("body"), _text("category", 1000),
         _Column("tags", v.tags), _Column("price", v.price), ATTRIBUTES,
         _timestamp("created_at"))),
    "events": _Spec(
        ("user", "item", "event_type"),
        ("user_ext", "item_ext", "event_type", "value", "occurred_at"),
        ("text", "text", "text", "float4", "timestamptz"),
        (_id("user"), _id("item"),
         _Column("event_type", partial(v.text, column="event_type", required=True, max_len=63),
                 partial(v.text_column, required=True, max_len=63)),
         _Column("value", partial(v.real, column="value"), v.real_column),
         _timestamp("occurred_at"))),
}


def _check_columns(kind: str, columns: Iterable[str], source: str, *, required: bool = True,
                   row: int | None = None) -> None:
    spec = SPECS[kind]
    present = list(columns)
    missing = [c for c in spec.required if c not in present]
    if missing and required:
        raise LoadError(
            f"missing required column(s) {', '.join(missing)} for {kind}", source=source
        )
    repeated = sorted({c for c in present if present.count(c) > 1})
    if repeated:
        raise LoadError(f"duplicate column(s) {', '.join(repeated)}", source=source)
    unknown = sorted(set(present) - set(spec.names))
    if unknown:
        raise LoadError(f"unknown column(s) {', '.join(unknown)}; {kind} take: "
                        f"{', '.join(spec.names)}", row=row, source=source)


class _Converter:
    """Turns column batches into staged rows; remembers the external ids already seen."""

    def __init__(self, kind: str, source: str):
        self.kind = kind
        self.spec = SPECS[kind]
        self.source = source
        self.seen: set[str] = set()

    def rows(self, first: int, values: Mapping[str, Sequence[Any]]) -> list[tuple[Any, ...]]:
        """The staged rows (row number first) of one batch; LoadError names the first bad row."""
        _check_columns(self.kind, values, self.source, required=False, row=first)
        n = len(next(iter(values.values()), ()))
        error: tuple[int, str] | None = None
        out: list[list[Any]] = []
        for column in self.spec.columns:
            raw = values.get(column.name)
            converted = column.batch(raw) if column.batch and raw is not None else None
            if converted is None:
                converted, error = _each(column.value, raw, n, error)
            out.append(converted)
        if self.kind != "events":
            error = self._duplicate(out[0], error)
        if error is not None:
            raise LoadError(error[1], row=first + error[0], source=self.source)
        return list(zip(range(first, first + n), *out, strict=True))

    def _duplicate(self, ids: list[str], error: tuple[int, str] | None) -> tuple[int, str] | None:
        if len(set(ids)) == len(ids) and self.seen.isdisjoint(ids):
            self.seen.update(ids)
            return error
        for i, external_id in enumerate(ids):
            if error is not None and i >= error[0]:
                break
            if external_id in self.seen:
                return i, f"duplicate external_id {external_id!r}"
            self.seen.add(external_id)
        return error


def _each(convert: Callable[[Any], Any], raw: Sequence[Any] | None, n: int,
          error: tuple[int, str] | None) -> tuple[list[Any], tuple[int, str] | None]:
    """Convert value by value, up to the first error (of this column or an earlier row's)."""
    converted: list[Any] = []
    for i in range(error[0] if error else n):
        try:
            converted.append(convert(None if raw is None else raw[i]))
        except v.RowError as exc:
            return converted, (i, str(exc))
    return converted, error


def _dict_batches(rows: Iterable[Any], columns: list[str], source: str) -> Iterator[Batch]:
    it = iter(rows)
    first = 1
    while chunk := list(islice(it, BATCH_ROWS)):
        for i, row in enumerate(chunk):
            if not isinstance(row, Mapping):
                raise LoadError(f"each row must be a mapping of column to value, got "
                                f"{v.type_name(row)}", row=first + i, source=source)
        yield first, {c: [row.get(c) for row in chunk] for c in columns}
        first += len(chunk)


def load_rows(
    conn: psycopg.Connection[Any],
    kind: str,
    columns: Iterable[str],
    rows: Iterable[Mapping[str, Any]],
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
    columns = list(columns)
    _check_columns(kind, columns, source)
    try:
        return _load(conn, kind, _dict_batches(rows, columns, source), source, total, progress)
    finally:
        close = getattr(rows, "close", None)
        if close is not None:  # a generator over an open file: release it now, not at GC
            close()


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
    if kind not in SPECS:
        raise LoadError(f"unknown kind {kind!r}; use one of {', '.join(KINDS)}")
    path = Path(path)
    columns, batches = read_batches(path, fmt)
    try:
        _check_columns(kind, columns, str(path))
        return _load(conn, kind, batches, str(path), None, progress)
    finally:
        batches.close()


def _load(conn: psycopg.Connection[Any], kind: str, batches: Iterator[Batch], source: str,
          total: int | None, progress: bool) -> int:
    spec = SPECS[kind]
    converter = _Converter(kind, source)
    count = 0
    copy_sql = (f"copy stage_{kind} (row_no, {', '.join(spec.stage_columns)}) from stdin "
                "with (format binary)")
    try:
        with conn.transaction(), conn.cursor() as cur:
            cur.execute(sqlfiles.read("queries/load_settings.sql"))
            cur.execute(sqlfiles.read("queries/load_stage.sql"))
            bar = tqdm(total=total, desc=f"load {kind}", unit="row", disable=not progress)
            start = time.perf_counter()
            with bar, cur.copy(copy_sql) as copy:
                copy.set_types(["int8", *spec.stage_types])
                write = copy.write_row
                for first, values in batches:
                    rows = converter.rows(first, values)
                    for row in rows:
                        write(row)
                    bar.update(first + len(rows) - 1 - count)
                    count = first + len(rows) - 1
            log.info("staged %d %s in %.1f s", count, kind, time.perf_counter() - start)
            _merge(cur, kind, count, source)
    except (psycopg.errors.DataError, psycopg.errors.IntegrityError) as exc:
        raise LoadError(f"rejected by the database: {exc.diag.message_primary or exc}",
                        row=_copy_line(exc), source=source) from exc
    log.info("loaded %d %s from %s", count, kind, source)
    return count


def _merge(cur: psycopg.Cursor[Any], kind: str, staged: int, source: str) -> None:
    """Fresh statistics, then the merge; for events, a count that names the first bad row."""
    start = time.perf_counter()
    cur.execute(f"analyze pg_temp.stage_{kind}")
    if kind == "events":
        for (table,) in cur.execute(sqlfiles.read("queries/load_stale_targets.sql")).fetchall():
            log.info("analyzing %s before merging events", table)
            cur.execute(f"analyze {table}")  # regclass text from pg_class: a safe identifier
    log.info("analyzed in %.1f s", time.perf_counter() - start)
    start = time.perf_counter()
    cur.execute(sqlfiles.read(f"queries/load_merge_{kind}.sql"))
    merged = cur.rowcount
    log.info("merged %d %s in %.1f s", merged, kind, time.perf_counter() - start)
    if kind == "events" and merged != staged:
        problem = cur.execute(sqlfiles.read("queries/load_check_events.sql")).fetchone()
        raise LoadError(problem[1] if problem else f"{staged - merged} events not merged",
                        row=problem[0] if problem else None, source=source)


def _copy_line(exc: psycopg.Error) -> int | None:
    # Staged rows are written in order, so COPY's line number is the row number.
    found = re.search(r"COPY stage_\w+, line (\d+)", exc.diag.context or "")
    return int(found.group(1)) if found else None
