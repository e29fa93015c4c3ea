"""Connections: psycopg 3 with pgvector types, SQLAlchemy engines, and the pgvector check."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import psycopg
from pgvector.psycopg import register_vector

from .errors import ConfigurationError
from .server import database_url

if TYPE_CHECKING:
    from sqlalchemy import Engine

log = logging.getLogger(__name__)

SCHEMA = "pyembed"
MIN_PGVECTOR = (0, 8)


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".") if part.isdigit())


def check_pgvector(conn: psycopg.Connection[Any]) -> str:
    """Return the pgvector version usable on this server, or raise :class:`ConfigurationError`.

    Accepts an installed extension or one that ``CREATE EXTENSION vector`` could install.
    """
    row = conn.execute(
        "select coalesce(installed_version, default_version) "
        "from pg_available_extensions where name = 'vector'"
    ).fetchone()
    if row is None or row[0] is None:
        raise ConfigurationError(
            "pgvector is not available on this PostgreSQL server: install pgvector >= 0.8 "
            "(e.g. use the pgvector/pgvector Docker image) or unset DATABASE_URL to use the "
            "embedded server"
        )
    if _version_tuple(row[0]) < MIN_PGVECTOR:
        raise ConfigurationError(f"pgvector {row[0]} is too old: pyembed-db needs >= 0.8")
    return str(row[0])


def _register_vector_if_installed(conn: psycopg.Connection[Any]) -> None:
    installed = conn.execute("select 1 from pg_extension where extname = 'vector'").fetchone()
    if installed:
        register_vector(conn)


def connect(url: str | None = None, *, autocommit: bool = False) -> psycopg.Connection[Any]:
    """Open a psycopg connection with pgvector types registered.

    Example::

        with connect() as conn:
            conn.execute("select count(*) from pyembed.items").fetchone()
    """
    conn = psycopg.connect(url or database_url(), autocommit=autocommit)
    try:
        check_pgvector(conn)
        _register_vector_if_installed(conn)
        if not autocommit:
            conn.commit()
    except BaseException:
        conn.close()
        raise
    return conn


def sqlalchemy_url(url: str) -> str:
    """Turn a libpq URL into one SQLAlchemy routes to psycopg 3."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    raise ConfigurationError(f"not a PostgreSQL URL: {url!r}")


def create_sa_engine(url: str | None = None, **kwargs: Any) -> Engine:
    """A SQLAlchemy 2 engine on psycopg 3 whose connections know the pgvector types."""
    # Imported here: only the ORM needs SQLAlchemy, and it costs every CLI command 0.2 s.
    from sqlalchemy import create_engine, event

    engine = create_engine(sqlalchemy_url(url or database_url()), **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        _register_vector_if_installed(dbapi_conn)
        dbapi_conn.commit()

    return engine


def with_database(url: str, dbname: str) -> str:
    """The same server URL pointing at another database (``dbname`` must be a plain name)."""
    from urllib.parse import urlsplit, urlunsplit

    if not dbname.replace("_", "").isalnum():
        raise ValueError(f"not a plain database name: {dbname!r}")
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, parts.query, parts.fragment))
