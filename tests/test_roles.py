"""Least-privilege roles: reader reads, writer loads, worker maintains; nothing more."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb


@pytest.fixture
def as_role(db_url: str) -> Iterator[Any]:
    conns: list[psycopg.Connection[Any]] = []

    def open_as(role: str) -> psycopg.Connection[Any]:
        conn = psycopg.connect(db_url, autocommit=True)
        conn.execute(f"set role {role}")
        conns.append(conn)
        return conn

    yield open_as
    for conn in conns:
        conn.close()


def test_reader_reads_but_cannot_write_or_maintain(as_role: Any) -> None:
    reader = as_role("pyembed_reader")
    assert reader.execute("select count(*) from pyembed.items").fetchone() is not None
    assert dict(reader.execute("select * from pyembed.status()").fetchall())["items"] >= 0
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        reader.execute("insert into pyembed.items (external_id) values ('r1')")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        reader.execute("delete from pyembed.item_queue")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        reader.execute("select pyembed.ensure_model_index(1)")


def test_reader_runs_the_readme_lookups(as_role: Any) -> None:
    # README's first SQL examples; no model is registered here, so item_vector refuses with
    # pyembed's own error (PE0xx), not with a permission error (42501).
    reader = as_role("pyembed_reader")
    assert reader.execute("select * from pyembed.embedding_coverage()").fetchall() is not None
    with pytest.raises(psycopg.Error) as info:
        reader.execute("select pyembed.item_vector(1)")
    assert info.value.sqlstate is not None and info.value.sqlstate.startswith("PE")


def test_reader_cannot_call_any_maintenance_function(db_url: str, as_role: Any) -> None:
    with psycopg.connect(db_url) as owner:
        maintenance = [
            row[0]
            for row in owner.execute(
                "select p.proname from pg_proc p join pg_namespace n on n.oid = p.pronamespace "
                "where n.nspname = 'pyembed' and p.proname ~ '^(refresh|ensure|claim|enqueue)'"
            ).fetchall()
        ]
        can_execute = owner.execute(
            "select bool_or(has_function_privilege('pyembed_reader', p.oid, 'execute')) "
            "from pg_proc p join pg_namespace n on n.oid = p.pronamespace "
            "where n.nspname = 'pyembed' and p.proname ~ '^(refresh|ensure|claim|enqueue)'"
        ).fetchone()
    assert "ensure_model_index" in maintenance
    assert can_execute == (False,)


def test_writer_loads_and_its_inserts_queue_work(as_role: Any) -> None:
    writer = as_role("pyembed_writer")
    writer.execute("insert into pyembed.users (external_id) values ('w-user')")
    writer.execute("insert into pyembed.items (external_id, title) values ('w-item', 'Hat')")
    writer.execute(
        "insert into pyembed.events (user_id, item_id, event_type) "
        "select u.user_id, i.item_id, 'view' from pyembed.users u, pyembed.items i "
        "where u.external_id = 'w-user' and i.external_id = 'w-item'"
    )
    queued = writer.execute(
        "select (select count(*) from pyembed.item_queue q join pyembed.items i using (item_id) "
        "        where i.external_id = 'w-item'),"
        "       (select count(*) from pyembed.user_queue q join pyembed.users u using (user_id) "
        "        where u.external_id = 'w-user')"
    ).fetchone()
    assert queued == (1, 1)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        writer.execute("delete from pyembed.item_embeddings")


def test_worker_drains_queues(as_role: Any) -> None:
    worker = as_role("pyembed_worker")
    worker.execute("insert into pyembed.items (external_id, title) values ('k-item', 'Cap')")
    deleted = worker.execute(
        "delete from pyembed.item_queue q using pyembed.items i "
        "where q.item_id = i.item_id and i.external_id = 'k-item'"
    )
    assert deleted.rowcount == 1


def test_internal_search_sql_never_pastes_sql_from_its_arguments(as_role: Any) -> None:
    # Readers may call the helpers of pyembed.search with any jsonb; a plan carrying SQL text
    # (the old filter_sql key) or a hostile filter must not reach the statement.
    reader = as_role("pyembed_reader")
    plan = {"dimensions": 3, "model_id": 1, "storage": "vector", "distance": "cosine",
            "filter_sql": "true) or (select pg_sleep(5)) is null or (true"}
    for strategy in ("exact", "hnsw"):
        text = reader.execute("select pyembed.search_sql(%s, %s)",
                              (Jsonb(plan), strategy)).fetchone()
        assert text is not None and "pg_sleep" not in text[0]
    with pytest.raises(psycopg.Error) as info:
        reader.execute("select pyembed.search_sql(%s, 'exact')",
                       (Jsonb({**plan, "filters": {"x') or pg_sleep(5) is null --": 1}}),))
    assert info.value.sqlstate == "PE010"


def test_model_state_changes_run_as_worker_progress_as_reader(db_url: str, as_role: Any) -> None:
    # README "Re-embedding from SQL", statement by statement, as the roles it names.
    with psycopg.connect(db_url, autocommit=True) as owner:
        owner.execute("insert into pyembed.items (external_id, title) values ('re-item', 'Hat')")
        shadow, active = (owner.execute(
            "insert into pyembed.embedding_models (name, dimensions, checksum) "
            "values (%s, 3, repeat('0', 64)) returning model_id", (name,)).fetchone()[0]
            for name in ("roles-shadow", "roles-active"))
        items = owner.execute("select count(*) from pyembed.items").fetchone()[0]
    reader, writer, worker = (as_role(r) for r in
                              ("pyembed_reader", "pyembed_writer", "pyembed_worker"))
    for role in (reader, writer):
        for call in (f"select pyembed.reembed_model({shadow})",
                     f"select pyembed.set_model_status({shadow}, 'registered')"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                role.execute(call)
    try:
        assert worker.execute(f"select pyembed.reembed_model({shadow})").fetchone() == (items,)
        progress = f"select vectors, skipped, queued, status from pyembed.embedding_coverage() " \
                   f"where model_id = {shadow}"
        assert reader.execute(progress).fetchone() == (0, 0, items, "syncing")
        assert worker.execute(f"select pyembed.set_model_status({shadow}, 'registered')"
                              ).fetchone() == ("registered",)
        for status, sqlstate in (("active", "PE012"), ("bogus", "PE012"), (None, "PE012")):
            with pytest.raises(psycopg.Error) as info:
                worker.execute("select pyembed.set_model_status(%s, %s)", (shadow, status))
            assert info.value.sqlstate == sqlstate
        with pytest.raises(psycopg.Error) as info:
            worker.execute("select pyembed.reembed_model(-1)")
        assert info.value.sqlstate == "PE002"
        # Activation creates the model's HNSW index (owner-only DDL) through the SECURITY
        # DEFINER ensure_model_index: the worker can, readers and writers cannot.
        for role in (reader, writer):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                role.execute(f"select pyembed.activate_model({active}, true)")
        worker.execute(f"select pyembed.activate_model({active}, true)")
        assert reader.execute("select to_regclass(%s) is not null",
                              (f"pyembed.item_embeddings_hnsw_m{active}",)).fetchone() == (True,)
        # The active model keeps its status: reembed only queues, a status change is refused.
        assert worker.execute(f"select pyembed.reembed_model({active})").fetchone() == (items,)
        with pytest.raises(psycopg.Error) as info:
            worker.execute(f"select pyembed.set_model_status({active}, 'retired')")
        assert info.value.sqlstate == "PE005"
        assert reader.execute("select status from pyembed.embedding_models where model_id = %s",
                              (active,)).fetchone() == ("active",)
    finally:
        with psycopg.connect(db_url, autocommit=True) as owner:
            owner.execute(f"drop index if exists pyembed.item_embeddings_hnsw_m{active}")
            owner.execute("delete from pyembed.embedding_models where model_id = any(%s)",
                          ([shadow, active],))
            owner.execute("delete from pyembed.items where external_id = 're-item'")


def test_writer_updates_re_queue_items(as_role: Any) -> None:
    # The update trigger reads the text columns through pyembed.item_text_source as the writer.
    writer = as_role("pyembed_writer")
    writer.execute("insert into pyembed.items (external_id, title) values ('u-item', 'Hat')")
    queued_at = ("select q.enqueued_at from pyembed.item_queue q join pyembed.items i "
                 "using (item_id) where i.external_id = 'u-item'")
    before = writer.execute(queued_at).fetchone()
    writer.execute("update pyembed.items set title = 'Cap' where external_id = 'u-item'")
    after = writer.execute(queued_at).fetchone()
    assert before is not None and after is not None and after[0] > before[0]
