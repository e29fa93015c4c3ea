"""What ``pyembed-db status`` shows: row counts, queue depths, models, SQL function state."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row

from . import migrate, sqlfiles


@dataclass(frozen=True)
class DatabaseStatus:
    """Counts of ``pyembed.status()``, the registered models with their vector counts, and
    whether the SQL functions match this package (``current``, ``stale``...)."""

    counts: dict[str, int]
    models: list[dict[str, Any]]
    functions: str


def database_status(conn: psycopg.Connection[Any]) -> DatabaseStatus:
    """The state of a pyembed database, read in the caller's transaction.

    Example::

        status = database_status(conn)
        status.counts["items"], status.functions   # (1682, 'current')
    """
    counts = {str(name): int(value)
              for name, value in conn.execute("select name, value from pyembed.status()")}
    with conn.cursor(row_factory=dict_row) as cur:
        models = cur.execute(sqlfiles.read("queries/status_models.sql")).fetchall()
    return DatabaseStatus(counts, models, migrate.functions_state(conn).state)
