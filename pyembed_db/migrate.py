"""Schema migrations (Alembic), runnable from Python and from ``pyembed-db migrate``."""

from __future__ import annotations

import logging
from importlib import resources

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from .db import check_pgvector, connect, create_sa_engine

log = logging.getLogger(__name__)

VERSION_TABLE = "pyembed_alembic_version"


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(resources.files("pyembed_db.migrations")))
    return config


def head_revision() -> str:
    """The newest revision this package ships."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def current_revision(url: str | None = None) -> str | None:
    """The revision the database is at, or None before the first migration."""
    engine = create_sa_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(
                conn, opts={"version_table": VERSION_TABLE, "version_table_schema": "public"}
            )
            return ctx.get_current_revision()
    finally:
        engine.dispose()


def _run(url: str | None, action: str, revision: str) -> None:
    with connect(url) as conn:  # fails early, with a clear message, when pgvector is missing
        check_pgvector(conn)
    engine = create_sa_engine(url)
    try:
        with engine.begin() as conn:
            config = _config()
            config.attributes["connection"] = conn
            getattr(command, action)(config, revision)
    finally:
        engine.dispose()


def upgrade(url: str | None = None, revision: str = "head") -> str | None:
    """Migrate up to ``revision`` (default: head). A no-op when already there.

    Example::

        upgrade()            # pyembed-db migrate
    """
    _run(url, "upgrade", revision)
    return current_revision(url)


def downgrade(url: str | None = None, revision: str = "-1") -> str | None:
    """Migrate down to ``revision`` (default: one step; ``"base"`` removes everything)."""
    _run(url, "downgrade", revision)
    return current_revision(url)
