"""Alembic environment: migrates the connection given by `pyembed_db.migrate`, or DATABASE_URL."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from pyembed_db.db import create_sa_engine

VERSION_TABLE = "pyembed_alembic_version"


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        version_table=VERSION_TABLE,
        version_table_schema="public",
        transaction_per_migration=False,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_sa_engine()
    with engine.connect() as connection:
        _run(connection)
        connection.commit()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("pyembed-db migrations run online only")
run_migrations_online()
