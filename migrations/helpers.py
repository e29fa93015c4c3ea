"""Helpers for revisions and env.py: run the package's .sql files inside Alembic's transaction."""

from __future__ import annotations

from typing import Any

from alembic import op
from sqlalchemy import Connection

from pyembed_db import __version__, sqlfiles

# Key of the transaction-level advisory lock every migration run holds.
MIGRATION_LOCK = 0x70796D6967  # "pymig"


def run_sql(text: str, params: dict[str, Any] | None = None,
            bind: Connection | None = None) -> None:
    # Through the driver cursor, so a file may hold many statements (without params) and `%`
    # needs no escaping. `bind`: env.py's connection; revisions use Alembic's.
    driver_conn = (bind or op.get_bind()).connection.driver_connection
    assert driver_conn is not None
    with driver_conn.cursor() as cur:
        cur.execute(text, params)


def run_sql_file(relative_path: str, params: dict[str, Any] | None = None,
                 bind: Connection | None = None) -> None:
    run_sql(sqlfiles.read(relative_path), params, bind)


def apply_functions(bind: Connection) -> None:
    """(Re)apply every idempotent function file, drop the functions no file creates any more,
    apply the grants, and record the files' checksum in ``pyembed.installation``."""
    for path in sqlfiles.function_files():
        run_sql_file(path, bind=bind)
    # Before the grants: a GRANT rewrites the catalog row of the function it names too.
    run_sql_file("migrate/drop_stale_functions.sql", bind=bind)
    run_sql_file(sqlfiles.GRANTS, bind=bind)
    run_sql_file("migrate/record_functions.sql",
                 {"sha256": sqlfiles.functions_sha256(), "package_version": __version__}, bind)


def drop_functions(bind: Connection) -> None:
    """Drop every function of schema pyembed (their triggers go with them)."""
    run_sql_file("migrate/drop_functions.sql", bind=bind)
