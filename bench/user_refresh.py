"""User-vector refresh: set-based SQL (pyembed.refresh_users) vs a per-user Python loop.

Data: MovieLens 100K ratings (from the recbole package) replicated ``--copies`` times with new
user ids (10 copies = 1M events, 9,430 users) over 1,682 items with synthetic 384-d unit
vectors under a fake active model (the refresh cost does not depend on where vectors came from).

Measured in the same run, on a private embedded server (``--data-dir``, not the tests'):
1. full refresh: ``select pyembed.refresh_users(batch => B)`` until the queue is empty (the
   pg_cron path, SQL only), and the worker path (``refresh_users``, one session: the same
   vectors in numpy from the events, plus the interest k-means);
2. baseline: a per-user Python loop that fetches each user's events with their item vectors
   and computes the same two vectors (long-term and short-term weighted, decayed means) in
   numpy, then writes them back; with the vectors fetched in psycopg's default text format, and
   in binary (the fastest psycopg path);
3. incremental: 1% new events for random users, then the queue drained again (only the users
   with new events are touched), vs the baseline loop over those users.
4. the full refresh again from 2 sessions at once (how 2 workers share it on 2 cores).
Vectors of both paths are compared (max abs difference) on the baseline's users.

    .venv/bin/python bench/user_refresh.py --copies 10
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from pgvector import Vector
from tqdm import tqdm

from pyembed_db import migrate, server, users
from pyembed_db.datasets import movielens
from pyembed_db.db import connect

DIM = 384
HALF_LIFE_S = 90 * 86400.0
WINDOW_S = 30 * 86400.0
TYPE_WEIGHT = {"rating": 1.0}
GAMMA = 0.5  # pyembed.negative_weight


def setup(url: str, copies: int, seed: int) -> dict[str, Any]:
    """Fake model, items with random vectors, ML-100K ratings replicated ``copies`` times."""
    rng = np.random.default_rng(seed)
    ratings = [(int(e["user"]), int(e["item"]), e["value"], e["occurred_at"])
               for e in movielens.events()]
    n_users = max(r[0] for r in ratings)
    n_items = max(r[1] for r in ratings)
    with connect(url) as conn:
        model_id = conn.execute(
            "insert into pyembed.embedding_models (name, dimensions, checksum, status) "
            "values ('bench', %s, repeat('0', 64), 'active') returning model_id", (DIM,)
        ).fetchone()[0]
        conn.execute("insert into pyembed.items (external_id) "
                     "select g::text from generate_series(1, %s) g", (n_items,))
        conn.execute("insert into pyembed.users (external_id) "
                     "select g::text from generate_series(1, %s) g", (n_users * copies,))
        vectors = rng.normal(size=(n_items, DIM)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        with conn.cursor() as cur, cur.copy(
                "copy pyembed.item_embeddings (model_id, item_id, embedding, content_hash) "
                "from stdin") as copy:
            for i, vec in enumerate(vectors, start=1):
                copy.write_row((model_id, i, Vector(vec).to_text(), b"\x00"))
        with conn.cursor() as cur, cur.copy(
                "copy pyembed.events (user_id, item_id, event_type, value, occurred_at) "
                "from stdin") as copy:
            for c in tqdm(range(copies), desc="events (copies)"):
                for user, item, value, ts in ratings:
                    copy.write_row((user + c * n_users, item, "rating", value,
                                    datetime.fromtimestamp(ts, timezone.utc)))
        conn.execute("delete from pyembed.item_queue")  # the vectors are there already
        conn.commit()
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("vacuum analyze")
    return {"model_id": model_id, "users": n_users * copies, "events": len(ratings) * copies,
            "items": n_items}


def sql_refresh(url: str, batch: int, interests: bool) -> tuple[int, float]:
    """Drain the queue with the SQL function, or with ``users.refresh_users`` (the worker's
    path: the same vectors computed in numpy, plus the interest k-means; one session);
    returns (users, seconds)."""
    with connect(url) as conn:
        start = time.perf_counter()
        if interests:
            done = users.refresh_users(conn, batch_size=batch)
            return done, time.perf_counter() - start
        done = 0
        while True:
            n = conn.execute("select pyembed.refresh_users(batch => %s)", (batch,)).fetchone()[0]
            conn.commit()
            done += n
            if n == 0:
                return done, time.perf_counter() - start


def user_vector(net: np.ndarray, x: np.ndarray) -> np.ndarray | None:
    """mean(liked) - gamma * mean(disliked) from per-item net weights, as in SQL; normalized."""
    pos, neg = net > 0, net < 0
    if not pos.any():
        return None
    v = net[pos] @ x[pos] / net[pos].sum()
    if neg.any():
        v = v + GAMMA * (net[neg] @ x[neg]) / -net[neg].sum()
    norm = np.linalg.norm(v)
    return (v / norm).astype(np.float32) if norm > 0 else None


def sql_refresh_parallel(url: str, batch: int, sessions: int) -> tuple[int, float]:
    """The pg_cron path from ``sessions`` connections at once (as several workers would run it):
    each claims its own batches with FOR UPDATE SKIP LOCKED; returns (users, seconds)."""
    from concurrent.futures import ThreadPoolExecutor

    def drain(_: int) -> int:
        with connect(url) as conn:
            done = 0
            while n := conn.execute("select pyembed.refresh_users(batch => %s)",
                                    (batch,)).fetchone()[0]:
                conn.commit()
                done += n
            conn.commit()
            return done

    start = time.perf_counter()
    with ThreadPoolExecutor(sessions) as pool:
        done = sum(pool.map(drain, range(sessions)))
    return done, time.perf_counter() - start


def baseline(url: str, user_ids: list[int], model_id: int, binary: bool,
             batch: int) -> tuple[int, float]:
    """Per-user Python loop: fetch events + vectors, compute the long-term and short-term
    vectors (weighted decayed means) in numpy, write them.

    Commits every ``batch`` users like the SQL path. ``binary`` fetches the vectors in binary
    (the fastest psycopg path); otherwise in psycopg's default text format.
    """
    events = 0
    with connect(url) as conn:
        start = time.perf_counter()
        for n, user_id in enumerate(tqdm(user_ids, desc="baseline users", leave=False), 1):
            rows = conn.execute(
                "select e.event_type, e.value, extract(epoch from e.occurred_at), ie.embedding, "
                "e.item_id "
                "from pyembed.events e join pyembed.item_embeddings ie "
                "on ie.model_id = %s and ie.item_id = e.item_id where e.user_id = %s",
                (model_id, user_id), binary=binary).fetchall()
            events += len(rows)
            if not rows:
                continue
            ts = np.array([float(r[2]) for r in rows])
            w = np.array([TYPE_WEIGHT[r[0]] * ((r[1] or 3) - 3) for r in rows])
            w = w * 0.5 ** ((ts.max() - ts) / HALF_LIFE_S)
            items, first, where = np.unique([r[4] for r in rows], return_index=True,
                                            return_inverse=True)
            x = np.stack([rows[i][3].to_numpy() for i in first])
            recent = ts >= ts.max() - WINDOW_S
            # Both vectors the SQL path writes: all events, and the short-term window.
            for kind, weights in (("long_term", w), ("short_term", np.where(recent, w, 0.0))):
                v = user_vector(np.bincount(where, weights=weights, minlength=len(items)), x)
                if v is not None:
                    conn.execute(
                        "insert into bench_baseline (user_id, kind, embedding) values (%s, %s, %s)"
                        " on conflict (user_id, kind) do update set embedding = excluded.embedding",
                        (user_id, kind, Vector(v)))
            if n % batch == 0:
                conn.commit()
        conn.commit()
        return events, time.perf_counter() - start


def compare(url: str, user_ids: list[int], model_id: int) -> float:
    with connect(url) as conn:
        row = conn.execute(
            "select max(abs(x - y)) from ("
            "  select unnest(ue.embedding::real[]) x, unnest(b.embedding::real[]) y"
            "  from pyembed.user_embeddings ue join bench_baseline b using (user_id, kind)"
            "  where ue.model_id = %s and ue.user_id = any(%s)) d",
            (model_id, user_ids)).fetchone()
    return float(row[0] or 0.0)


def add_new_events(url: str, share: float, total_events: int, n_users: int, n_items: int,
                   seed: int) -> tuple[int, list[int]]:
    rng = np.random.default_rng(seed + 1)
    n = int(total_events * share)
    user_ids = rng.integers(1, n_users + 1, size=n)
    item_ids = rng.integers(1, n_items + 1, size=n)
    values = rng.integers(1, 6, size=n)
    with connect(url) as conn:
        conn.execute(
            "insert into pyembed.events (user_id, item_id, event_type, value, occurred_at) "
            "select u, i, 'rating', v, '1998-05-01'::timestamptz "
            "from unnest(%s::bigint[], %s::bigint[], %s::real[]) as t(u, i, v)",
            (user_ids.tolist(), item_ids.tolist(), values.tolist()))
        conn.commit()
    return n, sorted(set(user_ids.tolist()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=10, help="ML-100K copies (10 = 1M events)")
    parser.add_argument("--batch", type=int, default=1000, help="users per refresh batch")
    parser.add_argument("--baseline-users", type=int, default=1500,
                        help="users in the baseline sample (rates are compared per event)")
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/pyembed-bench-user-refresh"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    url = server.start(args.data_dir / "pgdata", stop_at_exit=True)
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("drop database if exists bench_users with (force)")
        admin.execute("create database bench_users")
    url = url.replace("/postgres?", "/bench_users?")
    migrate.upgrade(url)
    info = setup(url, args.copies, args.seed)
    with connect(url) as conn:
        conn.execute("create table bench_baseline (user_id bigint, kind text, embedding vector, "
                     "primary key (user_id, kind))")
        conn.commit()
    print(f"{info['events']:,} events, {info['users']:,} users, {info['items']:,} items, "
          f"{DIM} d")

    n_sql, t_sql = sql_refresh(url, args.batch, interests=False)
    rng = np.random.default_rng(args.seed)
    sample = sorted(rng.choice(np.arange(1, info["users"] + 1), size=min(args.baseline_users,
                                                                         info["users"]),
                               replace=False).tolist())
    n_text_events, t_text = baseline(url, sample, info["model_id"], False, args.batch)
    n_base_events, t_base = baseline(url, sample, info["model_id"], True, args.batch)
    diff = compare(url, sample, info["model_id"])
    with connect(url) as conn:
        conn.execute("insert into pyembed.user_queue (user_id) select user_id from pyembed.users")
        conn.commit()
    n_worker, t_worker = sql_refresh(url, args.batch, interests=True)
    with connect(url) as conn:
        conn.execute("insert into pyembed.user_queue (user_id) select user_id from pyembed.users")
        conn.commit()
    n_par, t_par = sql_refresh_parallel(url, args.batch // 2, 2)

    new_events, touched = add_new_events(url, 0.01, info["events"], info["users"], info["items"],
                                         args.seed)
    with connect(url) as conn:
        queued = conn.execute("select count(*) from pyembed.user_queue").fetchone()[0]
        touched_events = conn.execute("select count(*) from pyembed.events where user_id = any(%s)",
                                      (touched,)).fetchone()[0]
    n_inc, t_inc = sql_refresh(url, args.batch, interests=False)
    inc_sample = touched[: args.baseline_users]
    n_inc_base_events, t_inc_base = baseline(url, inc_sample, info["model_id"], True,
                                             args.batch)

    sql_rate = info["events"] / t_sql
    base_rate = n_base_events / t_base
    inc_rate = touched_events / t_inc
    inc_base_rate = n_inc_base_events / t_inc_base
    results = {
        "events": info["events"], "users": info["users"], "dimensions": DIM,
        "full_sql": {"users": n_sql, "seconds": t_sql, "events_per_s": sql_rate},
        "full_sql_2_sessions": {"users": n_par, "seconds": t_par,
                                "events_per_s": info["events"] / t_par},
        "speedup_full_2_sessions": info["events"] / t_par / base_rate,
        "full_worker_with_interests": {"users": n_worker, "seconds": t_worker,
                                       "events_per_s": info["events"] / t_worker},
        "baseline_python_loop": {"users": len(sample), "events": n_base_events,
                                 "seconds": t_base, "events_per_s": base_rate},
        "baseline_python_loop_text_format": {"users": len(sample), "events": n_text_events,
                                             "seconds": t_text,
                                             "events_per_s": n_text_events / t_text},
        "speedup_full": sql_rate / base_rate,
        "speedup_full_vs_text_format": sql_rate / (n_text_events / t_text),
        "max_abs_diff_vs_baseline": diff,
        "incremental": {"new_events": new_events, "users_queued": queued,
                        "users_refreshed": n_inc, "events_of_those_users": touched_events,
                        "seconds": t_inc, "events_per_s": inc_rate,
                        "new_events_per_s": new_events / t_inc},
        "incremental_baseline": {"users": len(inc_sample), "events": n_inc_base_events,
                                 "seconds": t_inc_base, "events_per_s": inc_base_rate},
        "speedup_incremental": inc_rate / inc_base_rate,
    }
    print(json.dumps(results, indent=2))
    print(f"\nfull refresh   SQL {sql_rate:,.0f} events/s ({t_sql:.1f} s for {n_sql:,} users) | "
          f"worker+interests {info['events'] / t_worker:,.0f} events/s | "
          f"Python loop {base_rate:,.0f} events/s (binary) -> {sql_rate / base_rate:.1f}x, "
          f"{n_text_events / t_text:,.0f} events/s (text) -> "
          f"{sql_rate / (n_text_events / t_text):.1f}x")
    print(f"full refresh, 2 sessions at once: {info['events'] / t_par:,.0f} events/s "
          f"({t_par:.1f} s) -> {info['events'] / t_par / base_rate:.1f}x the binary loop")
    print(f"incremental    {new_events:,} new events -> {n_inc:,} users refreshed in {t_inc:.2f} s "
          f"({inc_rate:,.0f} events/s of those users) | Python loop (binary) "
          f"{inc_base_rate:,.0f} events/s -> {inc_rate / inc_base_rate:.1f}x")
    print(f"max |SQL - numpy| over {len(sample)} users: {diff:.2e}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
