"""A text snapshot of everything pyembed-db puts in a database, for comparing two databases."""

from __future__ import annotations

from typing import Any

import psycopg

# Each query lists one kind of object of schema pyembed (plus the roles' grants on them) in a
# form that is independent of OIDs and creation order.
CATALOG_QUERIES: dict[str, str] = {
    "columns": """
        select c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.attgenerated
        from pg_attribute a
        join pg_class c on c.oid = a.attrelid
        left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
        where c.relnamespace = 'pyembed'::regnamespace and c.relkind in ('r', 'p', 'v', 'm')
          and a.attnum > 0 and not a.attisdropped
        order by 1, 2""",
    "indexes": """
        select indexname, indexdef from pg_indexes where schemaname = 'pyembed' order by 1""",
    "constraints": """
        select c.relname, k.conname, pg_get_constraintdef(k.oid)
        from pg_constraint k join pg_class c on c.oid = k.conrelid
        where c.relnamespace = 'pyembed'::regnamespace order by 1, 2""",
    "functions": """
        select p.oid::regprocedure::text, md5(pg_get_functiondef(p.oid)),
               coalesce(p.proacl::text, '')
        from pg_proc p where p.pronamespace = 'pyembed'::regnamespace order by 1""",
    "triggers": """
        select tgname, pg_get_triggerdef(t.oid) from pg_trigger t
        join pg_class c on c.oid = t.tgrelid
        where c.relnamespace = 'pyembed'::regnamespace and not t.tgisinternal order by 1, 2""",
    "policies": """
        select tablename, policyname, permissive, roles::text, cmd, qual, with_check
        from pg_policies where schemaname = 'pyembed' order by 1, 2""",
    "tables": """
        select relname, relkind, relrowsecurity, relforcerowsecurity, coalesce(relacl::text, '')
        from pg_class where relnamespace = 'pyembed'::regnamespace
          and relkind in ('r', 'p', 'v', 'm', 'S') order by 1""",
    "schema": """select nspname, coalesce(nspacl::text, '') from pg_namespace
                 where nspname = 'pyembed'""",
}


def catalog(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every kind of object of schema pyembed, as sorted rows."""
    with psycopg.connect(url) as conn:
        return {kind: conn.execute(query).fetchall() for kind, query in CATALOG_QUERIES.items()}
