"""Helpers for revisions: run the package's .sql files inside Alembic's transaction."""

from __future__ import annotations

from alembic import op

from pyembed_db import sqlfiles


def run_sql(text: str) -> None:
    # Through the driver cursor without parameters, so a file may hold many statements and
    # `%` needs no escaping.
    driver_conn = op.get_bind().connection.driver_connection
    assert driver_conn is not None
    with driver_conn.cursor() as cur:
        cur.execute(text)


def run_sql_file(relative_path: str) -> None:
    run_sql(sqlfiles.read(relative_path))


def apply_functions() -> None:
    """(Re)apply every idempotent function file; revisions that change functions call this."""
    for path in sqlfiles.function_files():
        run_sql_file(path)


def drop_functions() -> None:
    """Drop every function of schema pyembed (their triggers go with them)."""
    run_sql(
        """
        do $$
        declare f regprocedure;
        begin
            for f in select p.oid::regprocedure from pg_proc p
                     join pg_namespace n on n.oid = p.pronamespace
                     where n.nspname = 'pyembed'
            loop
                execute format('drop function if exists %s cascade', f);
            end loop;
        end $$;
        """
    )
