"""Soak: workers, writers and searchers at once for a fixed time, with faults; then invariants.

On a private embedded server (``--data-dir``, loopback Unix socket only), with the real default
model (all-MiniLM-L6-v2 int8, registered like ``pyembed-db model register --default``):

1. setup: synthetic catalog and users with events, embedded and refreshed in this process
   (timed: a single-process baseline for the worker figures);
2. for ``--seconds``: ``--workers`` ``pyembed-db worker`` processes, ``--writers`` processes
   inserting / updating items (text and price-only) and inserting events and new users, and
   ``--searchers`` processes calling ``pe.search`` (text), ``pe.search_similar`` and
   ``pe.recommend``; every ``--kill-every`` seconds a random worker connection is terminated
   with ``pg_terminate_backend`` (0 disables);
3. drain: writers and searchers stop, the workers empty the queues, then get SIGTERM;
4. invariants: queues empty, no failed queue row, every item has exactly one vector with the
   content hash of its current text, every user with events has vectors whose watermark is
   their latest event, searches raised only the expected errors (``search_similar`` on an
   item not embedded yet), every worker exited 0.

Prints throughput (items / users handled per second by the workers, events made visible in
user vectors per second, searches per second with p50 / p95 latency), the anomalies, and
writes JSON to ``bench/results/soak.json``. Exits 1 when an invariant does not hold.

    .venv/bin/python bench/soak.py --seconds 60
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

import pyembed_db as pe
from pyembed_db import migrate, server
from pyembed_db.db import connect
from pyembed_db.embed import active_model, drain, register_default_model
from pyembed_db.embed.sync import stale_items
from pyembed_db.jobs import APP_NAME

WORDS = ["red", "blue", "green", "black", "steel", "oak", "linen", "wool", "leather", "glass",
         "solar", "compact", "travel", "kitchen", "garden", "office", "outdoor", "vintage",
         "smart", "wireless", "ceramic", "bamboo", "carbon"]
NOUNS = ["lamp", "chair", "kettle", "jacket", "backpack", "speaker", "desk", "mug", "blanket",
         "drill", "tent", "watch", "bottle", "knife", "camera", "shelf", "rug", "headphones",
         "bicycle", "charger"]
CATEGORIES = ["home", "outdoor", "kitchen", "office", "sport", "audio", "fashion", "tools"]
EVENT_TYPES = ["view", "click", "add_to_cart", "purchase", "like"]  # all positive: every user
RESULTS = Path(__file__).parent / "results" / "soak.json"          # with events gets vectors


def _title(rng: random.Random) -> str:
    return f"{rng.choice(WORDS).title()} {rng.choice(WORDS)} {rng.choice(NOUNS)}"


def _item_row(rng: random.Random, external_id: str) -> tuple[Any, ...]:
    category = rng.choice(CATEGORIES)
    return (external_id, _title(rng), f"A {rng.choice(WORDS)} {rng.choice(NOUNS)} for {category}",
            category, [rng.choice(WORDS), category], round(rng.uniform(5, 500), 2))


def setup(url: str, n_items: int, n_users: int, seed: int) -> dict[str, Any]:
    """Catalog, users and events; embedded and refreshed here (timed)."""
    rng = random.Random(seed)
    with connect(url) as conn:
        register_default_model(conn)
        conn.cursor().executemany(
            "insert into pyembed.items (external_id, title, body, category, tags, price) "
            "values (%s, %s, %s, %s, %s, %s)", [_item_row(rng, f"i{i}") for i in range(n_items)])
        conn.execute("insert into pyembed.users (external_id) "
                     "select 'u' || g from generate_series(1, %s) g", (n_users,))
        conn.cursor().executemany(
            "insert into pyembed.events (user_id, item_id, event_type) values (%s, %s, %s)",
            [(u, rng.randint(1, n_items), rng.choice(EVENT_TYPES))
             for u in range(1, n_users + 1) for _ in range(rng.randint(3, 15))])
        conn.commit()
        start = time.perf_counter()
        embedded = drain(conn, batch_size=64)
        t_embed = time.perf_counter() - start
        start = time.perf_counter()
        refreshed = pe.refresh_users(conn)
        t_refresh = time.perf_counter() - start
    return {"items": n_items, "users": n_users, "embed_items_per_s": embedded / t_embed,
            "refresh_users_per_s": refreshed / t_refresh}


# -- load generators (each in its own process) ------------------------------------------------

def writer(url: str, seconds: float, seed: int) -> dict[str, Any]:
    """Random writes, each its own transaction, until ``seconds`` have passed."""
    rng = random.Random(seed)
    ops: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    events = 0
    end = time.monotonic() + seconds
    with connect(url, autocommit=True) as conn:
        while time.monotonic() < end:
            max_item, max_user = conn.execute(
                "select (select max(item_id) from pyembed.items), "
                "(select max(user_id) from pyembed.users)").fetchone() or (1, 1)
            op = rng.choices(["insert_item", "update_text", "update_price", "events", "new_user"],
                             [20, 20, 10, 45, 5])[0]
            try:
                events += _write(conn, rng, op, max_item, max_user, f"w{seed}-{ops[op]}")
                ops[op] += 1
            except psycopg.Error as exc:
                errors[f"{op}: {type(exc).__name__}"] += 1
            time.sleep(rng.uniform(0.0, 0.02))
    return {"ops": dict(ops), "events": events, "errors": dict(errors)}


def _write(conn: psycopg.Connection[Any], rng: random.Random, op: str, max_item: int,
           max_user: int, new_id: str) -> int:
    """One write; returns the number of events inserted."""
    item = rng.randint(1, max_item)
    if op == "insert_item":
        conn.execute("insert into pyembed.items (external_id, title, body, category, tags, price) "
                     "values (%s, %s, %s, %s, %s, %s)", _item_row(rng, new_id))
    elif op == "update_text":
        conn.execute("update pyembed.items set title = %s where item_id = %s",
                     (_title(rng), item))
    elif op == "update_price":
        conn.execute("update pyembed.items set price = %s where item_id = %s",
                     (round(rng.uniform(5, 500), 2), item))
    else:
        n = rng.randint(1, 5) if op == "events" else 3
        with conn.transaction():
            user = rng.randint(1, max_user)
            if op == "new_user":
                row = conn.execute("insert into pyembed.users (external_id) values (%s) "
                                   "returning user_id", (new_id,)).fetchone()
                user = int(row[0]) if row else user
            conn.cursor().executemany(
                "insert into pyembed.events (user_id, item_id, event_type) values (%s, %s, %s)",
                [(user, rng.randint(1, max_item), rng.choice(EVENT_TYPES)) for _ in range(n)])
        return n
    return 0


def searcher(url: str, seconds: float, seed: int) -> dict[str, Any]:
    """Random searches and recommendations until ``seconds`` have passed; latencies in ms."""
    rng = random.Random(seed)
    latency: dict[str, list[float]] = {"search": [], "similar": [], "recommend": []}
    errors: Counter[str] = Counter()
    end = time.monotonic() + seconds
    with connect(url, autocommit=True) as conn:
        for n in itertools.count():
            if time.monotonic() >= end:
                break
            if n % 50 == 0:  # new items and users keep arriving
                max_item, max_user = conn.execute(
                    "select (select max(item_id) from pyembed.items), "
                    "(select max(user_id) from pyembed.users)").fetchone() or (1, 1)
            kind = rng.choices(list(latency), [40, 30, 30])[0]
            start = time.perf_counter()
            try:
                if kind == "search":
                    filters = {"category": rng.choice(CATEGORIES)} if rng.random() < 0.5 else None
                    pe.search(conn, f"{rng.choice(WORDS)} {rng.choice(NOUNS)}", 10, filters)
                elif kind == "similar":
                    pe.search_similar(conn, rng.randint(1, max_item), 10)
                else:
                    pe.recommend(conn, rng.randint(1, max_user), 10)
            except (pe.PyembedError, psycopg.Error) as exc:
                errors[f"{kind}: {type(exc).__name__}"] += 1
                continue
            latency[kind].append((time.perf_counter() - start) * 1000)
    return {"latency": latency, "errors": dict(errors)}


# -- faults, sampling, workers ---------------------------------------------------------------

def killer(url: str, every: float, stop: threading.Event, seed: int, log: list[str]) -> None:
    """About every ``every`` seconds, terminate one random worker connection; logs the state
    it was in (``idle in transaction`` / ``active``: mid-batch; ``idle``: between batches or
    the LISTEN connection)."""
    rng = random.Random(seed)
    with psycopg.connect(url, autocommit=True) as conn:
        while not stop.wait(every * rng.uniform(0.5, 1.5)):
            row = conn.execute(
                "select pid, state, pg_terminate_backend(pid) "
                "from (select * from pg_stat_activity where application_name like %s "
                "      and datname = current_database() order by random() limit 1) a",
                (f"{APP_NAME} %",)).fetchone()
            if row:
                log.append(str(row[1]))


def sampler(url: str, stop: threading.Event, samples: list[tuple[float, int, int]]) -> None:
    """Queue depths once a second."""
    start = time.monotonic()
    with psycopg.connect(url, autocommit=True) as conn:
        while not stop.wait(1.0):
            row = conn.execute("select (select count(*) from pyembed.item_queue), "
                               "(select count(*) from pyembed.user_queue)").fetchone()
            if row:
                samples.append((round(time.monotonic() - start, 1), int(row[0]), int(row[1])))


def start_workers(url: str, n: int, batch: int, log_dir: Path) -> list[subprocess.Popen[str]]:
    """``pyembed-db worker`` processes, one onnxruntime thread each (2-core machine)."""
    cli = str(Path(sys.executable).parent / "pyembed-db")
    env = {**os.environ, "PYEMBED_THREADS": "1"}
    procs = []
    for i in range(n):
        with (log_dir / f"worker{i}.log").open("w") as err:
            procs.append(subprocess.Popen(
                [cli, "--database-url", url, "worker", "--batch-size", str(batch),
                 "--interval", "5", "--json"], stdout=subprocess.PIPE, stderr=err, text=True,
                env=env))
    return procs


def stop_workers(procs: list[subprocess.Popen[str]]) -> list[dict[str, Any]]:
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    results = []
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        results.append({"exit": proc.returncode, **(json.loads(out) if out.strip() else {})})
    return results


def wait_drained(url: str, timeout: float) -> float:
    """Seconds until both queues are empty (and stay so for a second)."""
    start = time.monotonic()
    empty_since: float | None = None
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() - start < timeout:
            row = conn.execute("select (select count(*) from pyembed.item_queue) + "
                               "(select count(*) from pyembed.user_queue)").fetchone()
            now = time.monotonic()
            if row != (0,):
                empty_since = None
            elif empty_since is None:
                empty_since = now
            elif now - empty_since >= 1.0:
                return empty_since - start
            time.sleep(0.1)
    return float("nan")


# -- invariants and report -------------------------------------------------------------------

def check(url: str) -> list[str]:
    """The invariants; returns the anomalies found."""
    anomalies = []
    with connect(url) as conn:
        for table in ("item_queue", "user_queue"):
            row = conn.execute(f"select count(*), count(*) filter (where attempts > 0) "
                               f"from pyembed.{table}").fetchone()
            if row and row[0]:
                anomalies.append(f"{table}: {row[0]} rows left ({row[1]} failed)")
        model = active_model(conn)
        assert model is not None
        stale = stale_items(conn, model)
        if stale:
            anomalies.append(f"{len(stale)} items without a current vector, e.g. {stale[:10]}")
        # Every vector of a user (long-term, short-term, interests) covers their last event.
        lagging = conn.execute(
            "select u.user_id, max(e.event_id), min(ue.event_watermark) "
            "from pyembed.users u join pyembed.events e using (user_id) "
            "left join pyembed.user_embeddings ue on ue.user_id = u.user_id "
            "and ue.model_id = %s group by u.user_id "
            "having max(e.event_id) is distinct from min(ue.event_watermark) "
            "or max(e.event_id) is distinct from max(ue.event_watermark)",
            (model.model_id,)).fetchall()
        if lagging:
            anomalies.append(f"{len(lagging)} users whose vectors miss events "
                             f"(user, last event, lowest watermark), e.g. {lagging[:10]}")
    return anomalies


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    p50, p95 = np.percentile(values, [50, 95])
    return {"n": len(values), "p50_ms": round(float(p50), 1), "p95_ms": round(float(p95), 1)}


def report(args: argparse.Namespace, base: dict[str, Any], workers: list[dict[str, Any]],
           writes: list[dict[str, Any]], searches: list[dict[str, Any]], kills: list[str],
           samples: list[tuple[float, int, int]], t_drain: float,
           anomalies: list[str]) -> dict[str, Any]:
    elapsed = args.seconds + t_drain
    done: Counter[str] = Counter()
    for w in workers:
        done.update(w.get("done", {}))
    events = sum(w["events"] for w in writes)
    search_errors: Counter[str] = Counter()
    latency: dict[str, list[float]] = {}
    for s in searches:
        search_errors.update(s["errors"])
        for kind, values in s["latency"].items():
            latency.setdefault(kind, []).extend(values)
    unexpected = {k: v for k, v in search_errors.items() if k != "similar: NotFoundError"}
    if unexpected:
        anomalies.append(f"unexpected search errors: {unexpected}")
    write_errors: Counter[str] = Counter()
    for w in writes:
        write_errors.update(w["errors"])
    if write_errors:
        anomalies.append(f"write errors: {dict(write_errors)}")
    if any(w["exit"] != 0 for w in workers):
        anomalies.append(f"worker exit codes: {[w['exit'] for w in workers]}")
    n_searches = sum(len(v) for v in latency.values())
    return {
        "settings": {k: v for k, v in vars(args).items() if k not in ("data_dir", "json")},
        "setup": base,
        "seconds": args.seconds, "drain_seconds": round(t_drain, 1),
        "items_handled_per_s": round(done["embed_items"] / elapsed, 1),
        "users_refreshed_per_s": round(done["refresh_users"] / elapsed, 1),
        "events_refreshed_per_s": round(events / elapsed, 1),
        "searches_per_s": round(n_searches / args.seconds, 1),
        "latency": {k: _percentiles(v) for k, v in latency.items()},
        "worker_done": dict(done), "reconnects": sum(w.get("reconnects", 0) for w in workers),
        "kills": dict(Counter(kills)),
        "writes": {"ops": dict(sum((Counter(w["ops"]) for w in writes), Counter())),
                   "events": events},
        "search_errors": dict(search_errors),
        "max_queue": {"items": max((s[1] for s in samples), default=0),
                      "users": max((s[2] for s in samples), default=0)},
        "queue_samples": samples,
        "anomalies": anomalies,
    }


def print_report(r: dict[str, Any]) -> None:
    print(f"setup (1 process, all cores): embed {r['setup']['embed_items_per_s']:.0f} items/s, "
          f"refresh {r['setup']['refresh_users_per_s']:.0f} users/s")
    print(f"soak {r['seconds']} s + drain {r['drain_seconds']} s, "
          f"{r['settings']['workers']} workers, {sum(r['kills'].values())} connections "
          f"terminated {r['kills'] or ''}, {r['reconnects']} reconnects")
    print(f"  workers: {r['items_handled_per_s']} items/s, {r['users_refreshed_per_s']} users/s; "
          f"{r['events_refreshed_per_s']} events/s made visible in user vectors")
    print(f"  writes: {r['writes']['ops']} ({r['writes']['events']} events); max queue "
          f"{r['max_queue']['items']} items / {r['max_queue']['users']} users")
    print(f"  searches: {r['searches_per_s']}/s, " + ", ".join(
        f"{k} p50 {v.get('p50_ms')} ms p95 {v.get('p95_ms')} ms" for k, v in r["latency"].items())
        + f"; errors {r['search_errors'] or 'none'}")
    print("anomalies: " + ("; ".join(r["anomalies"]) or "none"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--writers", type=int, default=2)
    parser.add_argument("--searchers", type=int, default=2)
    parser.add_argument("--kill-every", type=float, default=5.0,
                        help="seconds between pg_terminate_backend of a worker connection")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/pe-soak"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args()

    url = server.start(args.data_dir / "pgdata", stop_at_exit=True)
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("drop database if exists soak with (force)")
        admin.execute("create database soak")
    url = url.replace("/postgres?", "/soak?")
    migrate.upgrade(url)
    base = setup(url, args.items, args.users, args.seed)
    log_dir = args.data_dir / "logs"
    log_dir.mkdir(exist_ok=True)

    stop_sampling, stop_faults = threading.Event(), threading.Event()
    kills: list[str] = []
    samples: list[tuple[float, int, int]] = []
    threads = [threading.Thread(target=sampler, args=(url, stop_sampling, samples))]
    if args.kill_every > 0:
        threads.append(threading.Thread(
            target=killer, args=(url, args.kill_every, stop_faults, args.seed, kills)))
    workers = start_workers(url, args.workers, args.batch_size, log_dir)
    spawn = multiprocessing.get_context("spawn")  # no fork of a process with threads running
    with ProcessPoolExecutor(args.writers + args.searchers, mp_context=spawn) as pool:
        for t in threads:
            t.start()
        w = [pool.submit(writer, url, args.seconds, args.seed + i) for i in range(args.writers)]
        s = [pool.submit(searcher, url, args.seconds, args.seed + 100 + i)
             for i in range(args.searchers)]
        writes, searches = [f.result() for f in w], [f.result() for f in s]
    stop_faults.set()  # no faults while draining: the drain time measures catching up
    t_drain = wait_drained(url, timeout=600)
    stop_sampling.set()
    for t in threads:
        t.join()
    worker_stats = stop_workers(workers)
    anomalies = check(url)
    result = report(args, base, worker_stats, writes, searches, kills, samples, t_drain,
                    anomalies)
    print_report(result)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 1 if result["anomalies"] else 0


if __name__ == "__main__":
    sys.exit(main())
