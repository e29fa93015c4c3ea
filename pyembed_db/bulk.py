"""Bulk writes into the vector tables at COPY speed, under row-level security.

PostgreSQL refuses ``COPY ... FROM`` on a table with row-level security for every role the
policies apply to, the worker role included. So the rows are copied (binary) into a temporary
table shaped like the target and moved with one ``INSERT ... SELECT``, which checks the
policies like any insert. One statement per batch, where an ``executemany`` of the same rows
costs a round of parsing and planning per row.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import psycopg

from . import sqlfiles

UserEmbeddingRow = tuple[int, int, str, int, np.ndarray, float, int, int]
"""(model_id, user_id, kind, slot, embedding, weight, event_count, event_watermark)"""

ItemEmbeddingRow = tuple[int, int, np.ndarray, bytes]
"""(model_id, item_id, embedding, content_hash)"""

_USER_TYPES = ["integer", "bigint", "text", "smallint", "vector", "real", "integer", "bigint"]
_ITEM_TYPES = ["integer", "bigint", "vector", "bytea"]


def insert_user_embeddings(conn: psycopg.Connection[Any], rows: Iterable[UserEmbeddingRow]) -> int:
    """Insert (or replace) user vectors in the caller's transaction; returns rows written.

    Example::

        insert_user_embeddings(conn, [(1, 42, "long_term", 0, vector, 1.0, 12, 9001)])
    """
    return _stage_and_move(conn, "user_embeddings", _USER_TYPES, rows)


def insert_item_embeddings(conn: psycopg.Connection[Any], rows: Iterable[ItemEmbeddingRow]) -> int:
    """Insert new item vectors in the caller's transaction; returns rows written.

    Example::

        insert_item_embeddings(conn, [(3, 7, vector, b"trained")])
    """
    return _stage_and_move(conn, "item_embeddings", _ITEM_TYPES, rows)


def _stage_and_move(conn: psycopg.Connection[Any], table: str, types: list[str],
                    rows: Iterable[tuple[Any, ...]]) -> int:
    with conn.cursor() as cur:
        cur.execute(sqlfiles.read(f"queries/stage_{table}.sql"))
        with cur.copy(sqlfiles.read(f"queries/stage_{table}_copy.sql")) as copy:
            copy.set_types(types)
            for row in rows:
                copy.write_row(row)
        cur.execute(sqlfiles.read(f"queries/stage_{table}_move.sql"))
        return cur.rowcount
