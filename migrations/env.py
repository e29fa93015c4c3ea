"""Alembic environment: migrates the connection given by `pyembed_db.migrate`, or DATABASE_URL.

Two kinds of SQL, the pgai way: the revisions under versions/ are incremental and frozen once
released (sql/schema/RELEASED.sha256), and the idempotent function files (sql/functions/) belong
to the newest revision. So after every run that ends at head the function files are re-applied
(an edited function reaches databases already at head), and after any downgrade they are
dropped: the functions of an older revision come from that release's own `migrate`.
"""

from __future__ import annotations

from typing import Any

from alembic import context
from alembic.script import ScriptDirectory
from pyembed_db.migrations.helpers import MIGRATION_LOCK, apply_functions, drop_functions
from sqlalchemy import Connection

from pyembed_db.db import create_sa_engine

VERSION_TABLE = "pyembed_alembic_version"


def _run(connection: Connection) -> None:
    steps: list[bool] = []

    def record_step(*, step: Any, **_: Any) -> None:
        steps.append(bool(step.is_upgrade))

    context.configure(
        connection=connection,
        version_table=VERSION_TABLE,
        version_table_schema="public",
        transaction_per_migration=False,
        on_version_apply=record_step,
    )
    with context.begin_transaction():
        # Two `migrate` at once on a fresh database would both create the version table.
        connection.exec_driver_sql(f"select pg_advisory_xact_lock({MIGRATION_LOCK})")
        context.run_migrations()
        heads = set(context.get_context().get_current_heads())
        script_heads = set(ScriptDirectory.from_config(context.config).get_heads())
        if not all(steps):
            drop_functions(connection)
        elif heads == script_heads:
            apply_functions(connection)


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
