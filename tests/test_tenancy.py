"""Row-level security: a session of tenant A never sees or writes a row of tenant B."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest


@pytest.fixture(scope="module")
def tenants_url(db_url: str) -> str:
    with psycopg.connect(db_url) as owner:
        for tenant in ("acme", "globex"):
            owner.execute("select set_config('pyembed.tenant_id', %s, false)", (tenant,))
            owner.execute(
                "insert into pyembed.users (external_id) "
                "select 'u' || n from generate_series(1, 5) n"
            )
            owner.execute(
                "insert into pyembed.items (external_id, title, category) "
                "select 'i' || n, %s || ' item ' || n, 'c' || (n %% 3) "
                "from generate_series(1, 20) n",
                (tenant,),
            )
            owner.execute(
                "insert into pyembed.events (user_id, item_id, event_type) "
                "select u.user_id, i.item_id, 'view' from pyembed.users u join pyembed.items i "
                "on u.tenant_id = i.tenant_id where u.tenant_id = %s and i.external_id <= 'i3'",
                (tenant,),
            )
    return db_url


@pytest.fixture
def session(tenants_url: str) -> Iterator[Any]:
    conns: list[psycopg.Connection[Any]] = []

    def open_session(role: str, tenant: str | None) -> psycopg.Connection[Any]:
        conn = psycopg.connect(tenants_url, autocommit=True)
        conn.execute(f"set role {role}")
        if tenant is not None:
            conn.execute("select set_config('pyembed.tenant_id', %s, false)", (tenant,))
        conns.append(conn)
        return conn

    yield open_session
    for conn in conns:
        conn.close()


def test_same_external_ids_coexist_across_tenants(tenants_url: str) -> None:
    with psycopg.connect(tenants_url) as owner:
        rows = owner.execute(
            "select tenant_id, count(*) from pyembed.items where external_id = 'i1' group by 1"
        ).fetchall()
    assert sorted(rows) == [("acme", 1), ("globex", 1)]


@pytest.mark.parametrize("tenant", ["acme", "globex"])
def test_reader_sees_only_its_tenant(session: Any, tenant: str) -> None:
    reader = session("pyembed_reader", tenant)
    for table in ("users", "items", "events"):
        tenants = reader.execute(f"select distinct tenant_id from pyembed.{table}").fetchall()
        assert tenants == [(tenant,)], table
    titles = [r[0] for r in reader.execute("select title from pyembed.items").fetchall()]
    assert len(titles) == 20 and all(t.startswith(tenant) for t in titles)


def test_no_tenant_set_sees_no_tenant_rows(session: Any) -> None:
    reader = session("pyembed_reader", None)
    assert reader.execute("select count(*) from pyembed.items").fetchone() == (0,)


def test_writer_cannot_write_into_another_tenant(session: Any) -> None:
    writer = session("pyembed_writer", "acme")
    writer.execute("insert into pyembed.items (external_id, title) values ('new', 'acme new')")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        writer.execute(
            "insert into pyembed.items (tenant_id, external_id, title) "
            "values ('globex', 'sneaky', 'x')"
        )
    updated = writer.execute("update pyembed.items set title = 'x' where tenant_id = 'globex'")
    assert updated.rowcount == 0


def test_worker_sees_every_tenant(session: Any) -> None:
    worker = session("pyembed_worker", None)
    row = worker.execute("select count(distinct tenant_id) from pyembed.items").fetchone()
    assert row == (2,)
