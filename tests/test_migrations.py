"""Migrations: head twice is a no-op; up -> down -> up keeps or rebuilds the schema correctly."""

from __future__ import annotations

import psycopg

from pyembed_db import migrate
from pyembed_db.load import load_rows

FUNCTIONS_SQL = (
    "select count(*) from pg_proc p join pg_namespace n on n.oid = p.pronamespace "
    "where n.nspname = 'pyembed'"
)


def _count(url: str, sql: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql).fetchone()
        assert row is not None
        return int(row[0])


def _schema_exists(url: str) -> bool:
    return _count(url, "select count(*) from pg_namespace where nspname = 'pyembed'") == 1


def test_upgrade_twice_is_a_no_op(empty_db_url: str) -> None:
    assert migrate.upgrade(empty_db_url) == migrate.head_revision()
    functions = _count(empty_db_url, FUNCTIONS_SQL)
    assert functions > 0
    assert migrate.upgrade(empty_db_url) == migrate.head_revision()
    assert _count(empty_db_url, FUNCTIONS_SQL) == functions


def test_up_down_up_with_data_present(empty_db_url: str) -> None:
    url = empty_db_url
    migrate.upgrade(url)
    with psycopg.connect(url) as conn:
        load_rows(conn, "users", ["external_id"], [{"external_id": "u1"}, {"external_id": "u2"}])
        load_rows(conn, "items", ["external_id", "title"], [{"external_id": "i1", "title": "A"}])

    # One step down drops functions and triggers but keeps the tables and their rows.
    assert migrate.downgrade(url) == "0001"
    assert _count(url, FUNCTIONS_SQL) == 0
    assert _count(url, "select count(*) from pyembed.users") == 2

    # Back up: the data is still there and the triggers work again.
    assert migrate.upgrade(url) == migrate.head_revision()
    with psycopg.connect(url) as conn:
        conn.execute("delete from pyembed.item_queue")
        conn.execute("update pyembed.items set title = 'B' where external_id = 'i1'")
        queued = conn.execute("select count(*) from pyembed.item_queue").fetchone()
    assert queued == (1,)
    assert _count(url, "select count(*) from pyembed.users") == 2

    # All the way down removes the schema; up again rebuilds an empty, working one.
    assert migrate.downgrade(url, "base") is None
    assert not _schema_exists(url)
    assert migrate.upgrade(url) == migrate.head_revision()
    assert _count(url, "select count(*) from pyembed.users") == 0
    assert _count(url, "select count(*) from pyembed.event_types") >= 7
