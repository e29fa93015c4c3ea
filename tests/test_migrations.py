"""Migrations: frozen revisions, function files re-applied at head, fresh == upgraded catalogs,
refused destructive downgrades, a migration lock."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from importlib import resources

import psycopg
import pytest
from catalog import catalog

from pyembed_db import migrate, sqlfiles
from pyembed_db.errors import MigrationError
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


def _functions_state(url: str) -> str:
    with psycopg.connect(url) as conn:
        return migrate.functions_state(conn).state


def test_upgrade_twice_changes_nothing(new_db_url: str) -> None:
    assert migrate.upgrade(new_db_url) == migrate.head_revision()
    first = catalog(new_db_url)
    assert first["functions"]
    assert _functions_state(new_db_url) == "current"
    assert migrate.upgrade(new_db_url) == migrate.head_revision()
    assert catalog(new_db_url) == first


def test_fresh_install_and_upgrade_with_data_give_the_same_catalog(
        pg_admin_url: str, new_db_url: str) -> None:
    from conftest import create_database, drop_database

    migrate.upgrade(new_db_url)
    fresh = catalog(new_db_url)

    old = create_database(pg_admin_url)
    try:
        migrate.upgrade(old, "0001")
        with psycopg.connect(old) as conn:
            conn.execute("insert into pyembed.users (external_id) values ('u1'), ('u2')")
            conn.execute("insert into pyembed.items (external_id, title) values ('i1', 'A')")
            conn.execute("insert into pyembed.events (user_id, item_id, event_type) select "
                         "u.user_id, i.item_id, 'view' from pyembed.users u, pyembed.items i")
            # What an older release left: an outdated body and a function no file defines now.
            conn.execute("create function pyembed.status() returns table (name text, value bigint)"
                         " language sql as $$ select 'old', 0::bigint $$")
            conn.execute("create function pyembed.retired_helper() returns int "
                         "language sql as $$ select 1 $$")
        assert migrate.upgrade(old) == migrate.head_revision()
        assert catalog(old) == fresh
        assert _count(old, "select count(*) from pyembed.events") == 2
        with psycopg.connect(old) as conn:
            status = dict(conn.execute("select name, value from pyembed.status()").fetchall())
        assert status["users"] == 2
    finally:
        drop_database(pg_admin_url, old)


def test_a_function_edit_reaches_a_database_already_at_head(new_db_url: str) -> None:
    migrate.upgrade(new_db_url)
    with psycopg.connect(new_db_url) as conn:
        expected = conn.execute(
            "select pg_get_functiondef('pyembed.status()'::regprocedure)").fetchone()
        # The state an older release leaves: its own body and its own files' checksum.
        conn.execute("create or replace function pyembed.status() "
                     "returns table (name text, value bigint) language sql "
                     "as $$ select 'old', 0::bigint $$")
        conn.execute("update pyembed.installation set functions_sha256 = repeat('0', 64)")
    assert _functions_state(new_db_url) == "stale"

    assert migrate.upgrade(new_db_url) == migrate.head_revision()
    with psycopg.connect(new_db_url) as conn:
        now = conn.execute(
            "select pg_get_functiondef('pyembed.status()'::regprocedure)").fetchone()
    assert now == expected
    assert _functions_state(new_db_url) == "current"


def test_downgrade_keeps_data_and_refuses_to_drop_it_without_force(new_db_url: str) -> None:
    url = new_db_url
    migrate.upgrade(url)
    with psycopg.connect(url) as conn:
        load_rows(conn, "users", ["external_id"], [{"external_id": "u1"}, {"external_id": "u2"}])
        load_rows(conn, "items", ["external_id", "title"], [{"external_id": "i1", "title": "A"}])

    # Down to the base tables: refused (0004 drops the behavior models), then forced:
    # functions and triggers go, the users and items stay.
    with pytest.raises(MigrationError, match="0004"):
        migrate.downgrade(url, "0001")
    assert migrate.downgrade(url, "0001", force=True) == "0001"
    assert _count(url, FUNCTIONS_SQL) == 0
    assert _count(url, "select count(*) from pyembed.users") == 2
    assert _functions_state(url) == "missing"

    # Back up: the data is still there and the triggers work again.
    assert migrate.upgrade(url) == migrate.head_revision()
    with psycopg.connect(url) as conn:
        conn.execute("delete from pyembed.item_queue")
        conn.execute("update pyembed.items set title = 'B' where external_id = 'i1'")
        queued = conn.execute("select count(*) from pyembed.item_queue").fetchone()
    assert queued == (1,)

    # Past 0001 drops every row: refused (twice), nothing lost; then forced.
    for _ in range(2):
        with pytest.raises(MigrationError, match="drops data"):
            migrate.downgrade(url, "base")
    assert _count(url, "select count(*) from pyembed.users") == 2
    assert migrate.downgrade(url, "base", force=True) is None
    assert not _schema_exists(url)
    assert migrate.upgrade(url) == migrate.head_revision()
    assert _count(url, "select count(*) from pyembed.users") == 0
    assert _count(url, "select count(*) from pyembed.event_types") >= 7


def test_unknown_target_revision_is_a_clear_error(new_db_url: str) -> None:
    migrate.upgrade(new_db_url)
    with pytest.raises(MigrationError):
        migrate.upgrade(new_db_url, "nonsense")
    with pytest.raises(MigrationError, match="not a revision"):
        migrate.downgrade(new_db_url, "nonsense")
    with pytest.raises(MigrationError, match="cannot go"):
        migrate.downgrade(new_db_url, "-99", force=True)


def test_two_migrations_at_once_on_a_fresh_database(new_db_url: str) -> None:
    # Two processes, as two deploy scripts would be (Alembic's context is one per process).
    command = [sys.executable, "-m", "pyembed_db.cli.main", "--database-url", new_db_url,
               "migrate", "--json"]
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert [json.loads(out)["to"] for out, _ in outputs] == [migrate.head_revision()] * 2
    assert _functions_state(new_db_url) == "current"


def _released() -> dict[str, str]:
    text = sqlfiles.read("schema/RELEASED.sha256")
    return {line.split()[1]: line.split()[0] for line in text.splitlines()
            if line and not line.startswith("#")}


def _revision_files() -> dict[str, bytes]:
    files = {}
    for root, folder, suffix in (("pyembed_db.sql", "schema", ".sql"),
                                 ("pyembed_db.migrations", "versions", ".py")):
        for f in resources.files(root).joinpath(folder).iterdir():
            if f.name.endswith(suffix) and f.name[:4].isdigit():
                files[f"{folder}/{f.name}"] = f.read_bytes()
    return files


def test_released_revisions_are_frozen() -> None:
    released = _released()
    files = _revision_files()
    unlisted = sorted(set(files) - set(released))
    assert not unlisted, f"add these to sql/schema/RELEASED.sha256 when releasing: {unlisted}"
    for name, digest in released.items():
        assert name in files, f"{name} is released and must not be deleted"
        assert hashlib.sha256(files[name]).hexdigest() == digest, (
            f"{name} is released and frozen: change the schema with a new revision")


def test_cli_refuses_a_destructive_downgrade_without_force(new_db_url: str) -> None:
    migrate.upgrade(new_db_url)
    base = [sys.executable, "-m", "pyembed_db.cli.main", "--database-url", new_db_url,
            "migrate", "--down", "--to", "base"]
    refused = subprocess.run(base, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2
    assert "drops data" in refused.stderr and "Traceback" not in refused.stderr
    assert _schema_exists(new_db_url)
    forced = subprocess.run([*base, "--force"], capture_output=True, text=True, timeout=120)
    assert forced.returncode == 0, forced.stderr
    assert not _schema_exists(new_db_url)
