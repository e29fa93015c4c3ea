"""One real PostgreSQL per test session; one fresh, migrated database per test module.

With ``DATABASE_URL`` set, that server is used instead of the embedded one (the URL must
allow CREATE DATABASE).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pyembed_db import migrate, server
from pyembed_db.db import connect, with_database


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    """URL of the maintenance database of the session's server."""
    if os.environ.get("DATABASE_URL"):
        yield os.environ["DATABASE_URL"]
        return
    # A short path: the server's Unix socket lives in this directory (108-byte limit).
    data_dir = Path(tempfile.mkdtemp(prefix="pe-", dir="/tmp"))
    url = server.start(data_dir / "pgdata", stop_at_exit=True)
    yield url
    server.stop(data_dir / "pgdata")
    shutil.rmtree(data_dir, ignore_errors=True)


def create_database(admin_url: str, prefix: str = "t") -> str:
    """Create an empty database on the session server and return its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    return with_database(admin_url, name)


def drop_database(admin_url: str, url: str) -> None:
    name = url.rsplit("/", 1)[1].split("?", 1)[0]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')


@pytest.fixture(scope="module")
def empty_db_url(pg_admin_url: str) -> Iterator[str]:
    """A fresh database with nothing in it (not migrated)."""
    url = create_database(pg_admin_url)
    yield url
    drop_database(pg_admin_url, url)


@pytest.fixture
def new_db_url(pg_admin_url: str) -> Iterator[str]:
    """A fresh empty database (not migrated) private to one test."""
    url = create_database(pg_admin_url)
    yield url
    drop_database(pg_admin_url, url)


@pytest.fixture(scope="module")
def db_url(pg_admin_url: str) -> Iterator[str]:
    """A fresh database migrated to head, private to the test module."""
    url = create_database(pg_admin_url)
    migrate.upgrade(url)
    yield url
    drop_database(pg_admin_url, url)


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A connection to the module's database (pgvector types registered), rolled back after."""
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
