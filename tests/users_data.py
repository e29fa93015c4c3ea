"""Small synthetic data for the users / recommend / evaluate tests (not a test module)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
import psycopg
from pgvector import Vector

DIM = 16


def add_model(conn: psycopg.Connection[Any], name: str = "t") -> int:
    """A fake active 16-d model (no ONNX file: vectors are inserted directly)."""
    conn.execute("update pyembed.embedding_models set status = 'retired' where status = 'active'")
    row = conn.execute(
        "insert into pyembed.embedding_models (name, dimensions, checksum, status) "
        "values (%s, %s, repeat('0', 64), 'active') returning model_id", (name, DIM)
    ).fetchone()
    assert row is not None
    return int(row[0])


def unit(v: Any) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64)
    return a / np.linalg.norm(a)


def add_items(conn: psycopg.Connection[Any], model_id: int, vectors: np.ndarray, prefix: str,
              categories: list[str] | None = None) -> list[int]:
    """Items ``{prefix}{i}`` with the given vectors; returns their item ids."""
    ids = []
    for i, vec in enumerate(vectors):
        row = conn.execute(
            "insert into pyembed.items (external_id, title, category) values (%s, %s, %s) "
            "returning item_id",
            (f"{prefix}{i}", f"{prefix} title {i}", categories[i] if categories else None),
        ).fetchone()
        assert row is not None
        ids.append(int(row[0]))
        conn.execute(
            "insert into pyembed.item_embeddings (model_id, item_id, embedding, content_hash) "
            "values (%s, %s, %s, '\\x00')", (model_id, row[0], Vector(unit(vec).astype(np.float32)))
        )
    return ids


def add_user(conn: psycopg.Connection[Any], external_id: str) -> int:
    row = conn.execute("insert into pyembed.users (external_id) values (%s) returning user_id",
                       (external_id,)).fetchone()
    assert row is not None
    return int(row[0])


def add_events(conn: psycopg.Connection[Any],
               rows: list[tuple[int, int, str, float | None, datetime]]) -> None:
    """Events (user_id, item_id, event_type, value, occurred_at) in one statement."""
    with conn.cursor() as cur:
        cur.execute(
            "insert into pyembed.events (user_id, item_id, event_type, value, occurred_at) "
            "select * from unnest(%s::bigint[], %s::bigint[], %s::text[], %s::real[], "
            "%s::timestamptz[])",
            [list(col) for col in zip(*rows, strict=True)],
        )


def user_vector(conn: psycopg.Connection[Any], user_id: int, kind: str = "long_term",
                model_id: int | None = None) -> np.ndarray | None:
    row = conn.execute(
        "select embedding from pyembed.user_embeddings where user_id = %s and kind = %s "
        "and slot = 0 and model_id = coalesce(%s, pyembed.active_model_id())",
        (user_id, kind, model_id),
    ).fetchone()
    return None if row is None else np.asarray(row[0].to_numpy(), dtype=np.float64)
