"""Cost of declaring the item text columns once (pyembed.item_text_columns) in the items update
trigger, against the trigger that listed the five columns by hand, in the same run.

Three triggers: ``old`` (hand-written row comparison), ``jsonb`` (item_text_source(to_jsonb(row))
per row, a first version) and ``new`` (the installed one: the row comparison written from the
column list once per statement). MovieLens 100K items (titles, genres, year) repeated to ~100k
rows; two bulk updates timed per trigger, alternating, ROUNDS rounds: every title changed (every
item re-queued) and every price changed (nobody re-queued). Prints medians and ratios to ``old``.

    .venv/bin/python bench/item_text_trigger.py
"""

from __future__ import annotations

import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import psycopg

from pyembed_db import migrate, server
from pyembed_db.datasets.movielens import items

COPIES = 60
ROUNDS = 3
OLD_TRIGGER = """
create or replace function pyembed.items_enqueue_updated() returns trigger
language plpgsql security invoker set search_path to pg_catalog, pg_temp as $$
begin
    insert into pyembed.item_queue (item_id)
    select n.item_id from new_items n join old_items o using (item_id)
    where (n.title, n.body, n.category, n.tags, n.attributes)
          is distinct from (o.title, o.body, o.category, o.tags, o.attributes)
    on conflict (item_id) do update set enqueued_at = now(), not_before = now(), attempts = 0;
    return null;
end $$"""
JSONB_TRIGGER = OLD_TRIGGER.replace(
    "(n.title, n.body, n.category, n.tags, n.attributes)\n          is distinct from "
    "(o.title, o.body, o.category, o.tags, o.attributes)",
    "pyembed.item_text_source(to_jsonb(n)) is distinct from pyembed.item_text_source(to_jsonb(o))")
UPDATES = {"title": "update pyembed.items set title = title || '!'",
           "price": "update pyembed.items set price = coalesce(price, 0) + 1"}


def _timed(conn: psycopg.Connection, sql: str) -> float:
    conn.execute("truncate pyembed.item_queue")
    start = time.perf_counter()
    conn.execute(sql)
    return time.perf_counter() - start


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="pe-bench-", dir="/tmp"))
    url = server.start(tmp / "pgdata", stop_at_exit=True)
    try:
        migrate.upgrade(url)
        with psycopg.connect(url, autocommit=True) as conn:
            new_trigger = conn.execute(
                "select pg_get_functiondef('pyembed.items_enqueue_updated()'::regprocedure)"
            ).fetchone()[0]
            with conn.cursor() as cur:
                cur.executemany("insert into pyembed.items (external_id, title, category, tags, "
                                "attributes) values (%s, %s, %s, %s, %s::jsonb)",
                                [(r["external_id"], r["title"], r["category"], r["tags"],
                                  json.dumps(r["attributes"])) for r in items()])
            conn.execute(  # the same movies again under other ids, in one statement
                "insert into pyembed.items (external_id, title, category, tags, attributes) "
                "select c || '-' || external_id, title, category, tags, attributes "
                "from pyembed.items, generate_series(1, %s) c", (COPIES - 1,))
            n = conn.execute("select count(*) from pyembed.items").fetchone()[0]
            conn.execute("vacuum analyze pyembed.items")
            times: dict[tuple[str, str], list[float]] = {}
            for _ in range(ROUNDS):
                for name, definition in (("old", OLD_TRIGGER), ("jsonb", JSONB_TRIGGER),
                                         ("new", new_trigger)):
                    conn.execute(definition)
                    for what, sql in UPDATES.items():
                        times.setdefault((name, what), []).append(_timed(conn, sql))
        print(f"{n} items, median of {ROUNDS} rounds (seconds)")
        for what in UPDATES:
            old = statistics.median(times[("old", what)])
            cells = [f"{name} {statistics.median(times[(name, what)]):6.3f} s "
                     f"({statistics.median(times[(name, what)]) / old:.2f}x)"
                     for name in ("old", "jsonb", "new")]
            print(f"update every {what:5}  " + "  ".join(cells))
    finally:
        server.stop(tmp / "pgdata")
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
