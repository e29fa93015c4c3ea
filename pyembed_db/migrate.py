"""Schema migrations (Alembic), runnable from Python and from ``pyembed-db migrate``.

Revisions under ``migrations/versions`` are incremental and frozen once released; the function
files under ``sql/functions`` are re-applied after every run that ends at head and dropped by
any downgrade (see ``migrations/env.py``). Every run holds an advisory lock, so two ``migrate``
at once simply take turns.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import TYPE_CHECKING, Any

import psycopg

from . import sqlfiles
from .db import check_pgvector, connect, create_sa_engine
from .errors import MigrationError

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

log = logging.getLogger(__name__)

VERSION_TABLE = "pyembed_alembic_version"


# Alembic is imported where it is used: it is a third of the start-up time of every CLI
# command, and only `migrate` and `status` need it.

def _config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(resources.files("pyembed_db.migrations")))
    return config


def _script() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config())


def head_revision() -> str:
    """The newest revision this package ships."""
    head = _script().get_current_head()
    assert head is not None
    return head


def current_revision(url: str | None = None) -> str | None:
    """The revision the database is at, or None before the first migration."""
    from alembic.runtime.migration import MigrationContext

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
    from alembic import command
    from alembic.util import CommandError

    with connect(url) as conn:  # fails early, with a clear message, when pgvector is missing
        check_pgvector(conn)
    engine = create_sa_engine(url)
    try:
        with engine.begin() as conn:
            config = _config()
            config.attributes["connection"] = conn
            getattr(command, action)(config, revision)
    except CommandError as exc:
        raise MigrationError(str(exc)) from exc
    finally:
        engine.dispose()


def upgrade(url: str | None = None, revision: str = "head") -> str | None:
    """Migrate up to ``revision`` (default: head) and re-apply the function files.

    Running it again is safe: the revisions are skipped and the functions re-applied.

    Example::

        upgrade()            # pyembed-db migrate
    """
    _run(url, "upgrade", revision)
    return current_revision(url)


def revisions_to_undo(current: str | None, target: str) -> list[str]:
    """The revisions a downgrade from ``current`` to ``target`` undoes, newest first.

    ``target`` is a revision id, ``"base"`` or ``"-N"`` (N steps down).

    Example::

        revisions_to_undo("0003", "-2")   # ["0003", "0002"]
    """
    script = _script()
    chain: list[str] = []
    rev = current
    while rev is not None:
        chain.append(rev)
        rev = script.get_revision(rev).down_revision  # type: ignore[assignment]
    if target == "base":
        return chain
    if target.startswith("-") and target[1:].isdigit():
        steps = int(target[1:])
        if steps > len(chain):
            raise MigrationError(f"cannot go {steps} revisions down from {current or 'base'}")
        return chain[:steps]
    if target not in chain:
        raise MigrationError(f"{target!r} is not a revision below {current or 'base'}")
    return chain[: chain.index(target)]


def downgrade(url: str | None = None, revision: str = "-1", *, force: bool = False) -> str | None:
    """Migrate down to ``revision`` (default: one step; ``"base"`` removes everything).

    A downgrade that would drop data (for example past ``0001``, which drops schema
    ``pyembed``) raises :class:`MigrationError` unless ``force`` is true. Any downgrade drops the
    SQL functions: an older release's ``migrate`` re-creates its own.

    Example::

        downgrade(revision="0002")
        downgrade(revision="base", force=True)   # drops schema pyembed and every row
    """
    script = _script()
    undo = revisions_to_undo(current_revision(url), revision)
    destructive = [r for r in undo
                   if getattr(script.get_revision(r).module, "destroys_data", True)]
    if destructive and not force:
        raise MigrationError(
            f"downgrading to {revision} undoes revision {', '.join(destructive)}, which drops "
            "data (0001: schema pyembed and every row; 0004: the behavior models); pass "
            "force=True (`migrate --down --force`)")
    _run(url, "downgrade", revision)
    return current_revision(url)


@dataclass(frozen=True)
class FunctionsState:
    """Whether the database runs this package's function files.

    ``state``: ``current``, ``stale`` (another release's files: run ``pyembed-db migrate``) or
    ``missing`` (not migrated to head).
    """

    state: str
    installed_sha256: str | None
    package_sha256: str
    installed_by: str | None
    applied_at: datetime | None


def functions_state(conn: psycopg.Connection[Any]) -> FunctionsState:
    """Compare the function files recorded in the database with the installed package's.

    Example::

        if functions_state(conn).state != "current":
            print("run pyembed-db migrate")
    """
    wanted = sqlfiles.functions_sha256()
    try:
        with conn.transaction():
            row = conn.execute(sqlfiles.read("migrate/functions_state.sql")).fetchone()
    except psycopg.errors.UndefinedTable:
        row = None
    if row is None:
        return FunctionsState("missing", None, wanted, None, None)
    state = "current" if row[0] == wanted else "stale"
    return FunctionsState(state, row[0], wanted, row[1], row[2])
