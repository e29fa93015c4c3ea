"""One real PostgreSQL per test session; every test gets a database no other test touched.

Databases are cloned with ``CREATE DATABASE ... TEMPLATE`` (a fraction of a second):

- ``template_db_url`` (session): migrated to head once;
- ``module_db_url`` (module): a clone of it, where a test module's module-scoped fixtures
  build their shared data (they commit there, then close every connection);
- ``db_url`` (function): a clone of the module's database, private to one test and dropped
  after it, so a test may commit anything without another test seeing it.

A module-scoped fixture that writes data must take ``module_db_url`` (never ``db_url``), and
every test of the module must see the same data whatever ran before it: make such a fixture
``autouse`` when some tests of the module do not ask for it. ``conn`` is a connection to the
test's own database. With ``DATABASE_URL`` set, that server is used instead of the embedded one
(the URL must allow CREATE DATABASE).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest

from pyembed_db import migrate, server
from pyembed_db.db import connect, with_database

# Durability is not what these tests check: without fsync, cloning and dropping a database
# costs ~0.25 s instead of ~0.5 s (idle machine). Only the session's own throwaway server is
# changed.
FAST_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    """URL of the maintenance database of the session's server."""
    if os.environ.get("DATABASE_URL"):
        yield os.environ["DATABASE_URL"]
        return
    # A short path: the server's Unix socket lives in this directory (108-byte limit).
    data_dir = Path(tempfile.mkdtemp(prefix="pe-", dir="/tmp"))
    url = server.start(data_dir / "pgdata", stop_at_exit=True)
    with psycopg.connect(url, autocommit=True) as conn:
        for name, value in FAST_SETTINGS.items():
            conn.execute(f"alter system set {name} = {value}")
        conn.execute("select pg_reload_conf()")
    yield url
    server.stop(data_dir / "pgdata")
    shutil.rmtree(data_dir, ignore_errors=True)


def database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def create_database(admin_url: str, prefix: str = "t", template: str | None = None) -> str:
    """Create a database on the session server (empty, or a copy of ``template``'s database)
    and return its URL. The template must have no other connection open."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    copy = f' template "{database_name(template)}"' if template else ""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'create database "{name}"{copy}')
    return with_database(admin_url, name)


def drop_database(admin_url: str, url: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{database_name(url)}" with (force)')


@pytest.fixture(scope="session")
def template_db_url(pg_admin_url: str) -> Iterator[str]:
    """A database migrated to head once per session; only ever cloned, never used directly."""
    url = create_database(pg_admin_url, "head")
    migrate.upgrade(url)
    yield url
    drop_database(pg_admin_url, url)


@pytest.fixture
def new_db_url(pg_admin_url: str) -> Iterator[str]:
    """A fresh empty database (not migrated) private to one test."""
    url = create_database(pg_admin_url)
    yield url
    drop_database(pg_admin_url, url)


@pytest.fixture(scope="module")
def module_db_url(pg_admin_url: str, template_db_url: str) -> Iterator[str]:
    """A database migrated to head where the module's module-scoped fixtures build shared data.

    Tests never use it directly: ``db_url`` gives each one a copy.
    """
    url = create_database(pg_admin_url, "m", template=template_db_url)
    yield url
    drop_database(pg_admin_url, url)


@pytest.fixture
def clone_db(pg_admin_url: str) -> Iterator[Callable[[str], str]]:
    """``clone_db(url)``: a copy of that database private to the test, dropped after it."""
    made: list[str] = []

    def clone(source_url: str) -> str:
        made.append(create_database(pg_admin_url, "c", template=source_url))
        return made[-1]

    yield clone
    for url in made:
        drop_database(pg_admin_url, url)


@pytest.fixture
def db_url(module_db_url: str, clone_db: Callable[[str], str]) -> str:
    """A copy of the module's database (migrated, plus the module's shared data), private to
    the test. Pytest sets up module-scoped fixtures before it, so their data is in the copy."""
    return clone_db(module_db_url)


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A connection to the test's database (pgvector types registered), rolled back after."""
    with connect(db_url) as connection:
        yield connection
        connection.rollback()


@pytest.fixture(scope="session")
def exported_minilm(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """all-MiniLM-L6-v2 exported from its safetensors checkpoint: fp32 and selective int8.

    Needs the ``export`` extra (torch), which ``make test`` installs.
    """
    from pyembed_db.embed.export import default_checkpoint, export_checkpoint

    return export_checkpoint(default_checkpoint(), tmp_path_factory.mktemp("minilm"),
                             quantize=True)
