"""Scale: load, embed, refresh, evaluate, search and recommend at 100k, 1M and 10M events.

Synthetic data with realistic skew, deterministic in ``--seed`` and cached under ``--data-dir``:

=======  ========  ========  =======
size     events    items     users
=======  ========  ========  =======
100k     100,000   10,000    2,000
1M       1M        100,000   20,000
10M      10M       1M        200,000
=======  ========  ========  =======

Item popularity is Zipf (p ~ 1/rank^1.05), user activity a power law (Pareto weights, shape
1.2), event types mostly views; item titles are 3 to 9 real English words (the model
vocabulary), with a Zipf category, 0-3 tags and a log-normal price.

Steps, each timed with the peak memory (psutil, sampled every 0.2 s) of the client process and
of the server backends (resident minus shared pages, summed over the postmaster's children):

- ``load_users`` / ``load_items`` / ``load_events``: ``pyembed-db load <kind> file.csv``, a
  subprocess running the installed CLI (the path a user takes);
- ``embed``: the default int8 model over a fixed sample of 10,000 items, extrapolated to the
  catalog; the other items then get synthetic vectors near a sampled item's (cheap, and the
  later steps only need vectors of the right shape and clustering);
- ``index``: the HNSW build (``pyembed.ensure_model_index``);
- ``refresh_users``: :func:`pyembed_db.refresh_users` over every user with events (a full
  refresh: ``every_user=True``, two sessions as ``refresh-users`` runs by default);
- ``evaluate``: :func:`pyembed_db.evaluate` (last 10 events per user held out);
- ``search`` / ``recommend``: p50 latency of :func:`pyembed_db.search` (a vector query) and
  :func:`pyembed_db.recommend` (30 queries after 5 warm-up ones).

The growth exponent of a step between two sizes is log(t2 / t1) / log(n2 / n1), with n the
number of events (items for the item steps); 1.0 is linear. Results accumulate in
``bench/results/scale.json`` under ``--label`` (``before`` = the loader of main before issue 12,
run with that checkout's interpreter); ``--resume`` skips the steps already there. The plot
``scale.png`` is redrawn from the JSON after every step.

    .venv/bin/python bench/scale.py --sizes 100k,1M --label after
    .venv/bin/python bench/scale.py --sizes 10M --label after --resume   # hours: run it alone
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import psycopg

RESULTS = Path(__file__).parent / "results"
SIZES = {"100k": (100_000, 10_000, 2_000), "1M": (1_000_000, 100_000, 20_000),
         "10M": (10_000_000, 1_000_000, 200_000)}
EVENT_TYPES = {"view": 0.70, "click": 0.15, "add_to_cart": 0.05, "purchase": 0.04,
               "like": 0.03, "rating": 0.03}
EMBED_SAMPLE = 10_000
EVALUATE_USERS = 20_000
DIM = 384
STEPS = ["load_users", "load_items", "load_events", "embed", "index", "refresh_users",
         "evaluate", "search", "recommend"]
# What each step's size is counted in (for throughput and growth exponents).
SCALE_OF = {"load_users": "users", "load_items": "items", "embed": "items", "index": "items",
            "search": "items"}


# ----------------------------------------------------------------------------------- data

def vocabulary() -> list[str]:
    """Whole English words of the default model's tokenizer (real words, real token counts)."""
    from tokenizers import Tokenizer

    from pyembed_db.embed.models import DEFAULT_MODEL, resolve_path

    vocab = Tokenizer.from_file(str(resolve_path(DEFAULT_MODEL["tokenizer"]))).get_vocab()
    return sorted(w for w in vocab if w.isalpha() and w.isascii() and len(w) >= 3)


def zipf(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Probabilities 1/rank^exponent over n outcomes, ranks shuffled over the ids."""
    p = 1.0 / np.arange(1, n + 1) ** exponent
    return rng.permutation(p / p.sum())


def generate(size: str, root: Path, seed: int) -> dict[str, Path]:
    """Write users.csv, items.csv and events.csv for ``size`` once (cached in ``root``)."""
    n_events, n_items, n_users = SIZES[size]
    out = root / f"data-{size}-s{seed}"
    paths = {kind: out / f"{kind}.csv" for kind in ("users", "items", "events")}
    if (out / "done").exists():
        return paths
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    print(f"generating {size}: {n_users:,} users, {n_items:,} items, {n_events:,} events",
          flush=True)
    with paths["users"].open("w") as f:
        f.write("external_id,attributes\n")
        segments = rng.integers(0, 12, size=n_users)
        f.writelines(f'u{u},"{{""segment"": ""s{s}""}}"\n' for u, s in enumerate(segments))
    _write_items(paths["items"], n_items, rng)
    _write_events(paths["events"], n_events, n_items, n_users, rng)
    (out / "done").touch()
    return paths


def _write_items(path: Path, n_items: int, rng: np.random.Generator) -> None:
    words = np.array(vocabulary())
    categories = zipf(40, 1.0, rng)
    with path.open("w") as f:
        f.write("external_id,title,category,tags,price\n")
        for start in range(0, n_items, 100_000):
            n = min(100_000, n_items - start)
            lengths = rng.integers(3, 10, size=n)
            picks = words[rng.integers(0, len(words), size=int(lengths.sum()))].tolist()
            cats = rng.choice(40, size=n, p=categories)
            n_tags = rng.integers(0, 4, size=n)
            prices = np.round(np.exp(rng.normal(3.3, 1.0, size=n)), 2)
            pos = 0
            lines = []
            for j in range(n):
                title = " ".join(picks[pos:pos + lengths[j]])
                pos += lengths[j]
                tags = "|".join(f"t{t}" for t in rng.integers(0, 200, size=n_tags[j]))
                lines.append(f"i{start + j},{title},c{cats[j]:02d},{tags},{prices[j]}\n")
            f.writelines(lines)


def _write_events(path: Path, n_events: int, n_items: int, n_users: int,
                  rng: np.random.Generator) -> None:
    item_p = zipf(n_items, 1.05, rng)
    activity = rng.pareto(1.2, size=n_users) + 1.0
    user_p = activity / activity.sum()
    types = np.array(list(EVENT_TYPES))
    type_p = np.array(list(EVENT_TYPES.values()))
    start = np.datetime64("2024-01-01T00:00:00")
    with path.open("w") as f:
        f.write("user,item,event_type,value,occurred_at\n")
        for first in range(0, n_events, 1_000_000):
            n = min(1_000_000, n_events - first)
            users = rng.choice(n_users, size=n, p=user_p)
            items = rng.choice(n_items, size=n, p=item_p)
            kinds = types[rng.choice(len(types), size=n, p=type_p)]
            ratings = rng.integers(1, 6, size=n)
            seconds = np.sort(rng.integers(0, 365 * 86400, size=n))
            stamps = np.datetime_as_string(start + seconds.astype("timedelta64[s]"), unit="s")
            f.writelines(
                f"u{u},i{i},{k},{r if k == 'rating' else ''},{s}Z\n"
                for u, i, k, r, s in zip(users.tolist(), items.tolist(), kinds.tolist(),
                                         ratings.tolist(), stamps.tolist(), strict=True))


# ---------------------------------------------------------------------------- measurement

APP = "pyembed-scale"  # application_name of every connection the bench measures


class PeakMemory:
    """Peak resident memory of the client processes and of the measured backends (MB), and
    the CPU seconds those backends used (the machine is shared: CPU time is the steadier
    measure). Measured backends: the connections named ``APP`` and their parallel workers, so
    autovacuum and other databases' sessions on the server are not counted."""

    def __init__(self, admin_url: str, clients: Callable[[], list[int]]):
        self.admin = psycopg.connect(admin_url, autocommit=True)
        self.clients = clients
        self.client_mb = 0.0
        self.server_mb = 0.0
        self._cpu_start: dict[int, float] = {}
        self._cpu_last: dict[int, float] = {}
        for pid in self._backends():  # sessions open before the step count from now
            self._cpu_start[pid] = self._cpu_last[pid] = _cpu(pid) or 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.admin.close()

    def _backends(self) -> list[int]:
        rows = self.admin.execute(
            "select pid from pg_stat_activity where application_name = %(app)s or leader_pid "
            "in (select pid from pg_stat_activity where application_name = %(app)s)",
            {"app": APP}).fetchall()
        return [int(r[0]) for r in rows]

    def _run(self) -> None:
        while True:
            self.sample()
            if self._stop.wait(0.2):
                return

    def sample(self) -> None:
        client = sum(_rss(pid, private=False) for pid in self.clients())
        backends = self._backends()
        server = sum(_rss(pid, private=True) for pid in backends)
        self.client_mb = max(self.client_mb, client / 2**20)
        self.server_mb = max(self.server_mb, server / 2**20)
        for pid in backends:
            cpu = _cpu(pid)
            if cpu is not None:
                self._cpu_start.setdefault(pid, 0.0)  # a new backend: all of its CPU
                self._cpu_last[pid] = cpu

    @property
    def server_cpu(self) -> float:
        """CPU seconds of the backends while sampled (a backend that exits loses < 0.2 s)."""
        return sum(self._cpu_last[pid] - self._cpu_start[pid] for pid in self._cpu_last)


def _cpu(pid: int) -> float | None:
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    return float(times.user + times.system)


def _rss(pid: int, *, private: bool) -> int:
    try:
        info = psutil.Process(pid).memory_info()
    except psutil.Error:
        return 0
    return int(info.rss - info.shared) if private else int(info.rss)


def named(url: str) -> str:
    """``url`` with the bench's application_name (its backends are the measured ones)."""
    return f"{url}{'&' if '?' in url else '?'}application_name={APP}"


def run_cli(args: list[str], admin_url: str) -> dict[str, float]:
    """Run ``pyembed-db args`` in a subprocess; seconds, CPU and peak memory."""
    command = [sys.executable, "-m", "pyembed_db.cli.main", *args]
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PGAPPNAME": APP})
    with PeakMemory(admin_url, lambda: [proc.pid]) as peak:
        out, err = proc.communicate()
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}): {err.strip()}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    client_cpu = (after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime)
    return {"seconds": seconds, "client_mb": peak.client_mb, "server_mb": peak.server_mb,
            "client_cpu": client_cpu, "server_cpu": peak.server_cpu}


@contextlib.contextmanager
def measured(admin_url: str) -> Iterator[dict[str, float]]:
    """Time, CPU and peak memory of a block run in this process and its children (on
    ``named`` connections)."""
    result: dict[str, float] = {}
    me = psutil.Process()
    cpu = sum(me.cpu_times()[:4])  # with the reaped children: refresh_users(jobs=2) forks
    start = time.perf_counter()
    with PeakMemory(admin_url, lambda: [me.pid, *(c.pid for c in me.children(True))]) as peak:
        yield result
    result.update(seconds=time.perf_counter() - start, client_mb=peak.client_mb,
                  server_mb=peak.server_mb, client_cpu=sum(me.cpu_times()[:4]) - cpu,
                  server_cpu=peak.server_cpu)


def call(fn: Callable[..., Any], *args: Any, **optional: Any) -> Any:
    """Call a public function with the optional keywords its current signature accepts."""
    accepted = inspect.signature(fn).parameters
    return fn(*args, **{k: v for k, v in optional.items() if k in accepted})


# ---------------------------------------------------------------------------------- steps

def step_embed(url: str, admin: str, n_items: int, seed: int) -> dict[str, Any]:
    """Embed a fixed 10k-item sample for real, extrapolate; synthetic vectors for the rest."""
    import pyembed_db as pe
    from pyembed_db.embed.sync import drain

    with pe.connect(named(url)) as conn:
        model = pe.register_default_model(conn)
        sample = min(EMBED_SAMPLE, n_items)
        conn.execute("delete from pyembed.item_queue where item_id not in "
                     "(select item_id from pyembed.items order by item_id limit %s)", (sample,))
        conn.commit()
        with measured(admin) as result:
            done = drain(conn)
        result.update(sample=done, sample_seconds=result["seconds"],
                      seconds=result["seconds"] * n_items / max(done, 1))
        # Bulk vectors go in without the HNSW index (built, and timed, by the next step).
        drop = conn.execute("select 'drop index if exists pyembed.' || "
                            "quote_ident(pyembed.model_index_name(%s, 'vector'))",
                            (model.model_id,)).fetchone()[0]
        conn.execute(drop)
        _synthetic_vectors(conn, model.model_id, seed)
    return result


def _synthetic_vectors(conn: psycopg.Connection[Any], model_id: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    rows = conn.execute("select embedding from pyembed.item_embeddings where model_id = %s",
                        (model_id,)).fetchall()
    real = np.array([r[0].to_numpy() for r in rows], dtype=np.float32)
    missing = [r[0] for r in conn.execute(
        "select item_id from pyembed.items i where not exists (select from "
        "pyembed.item_embeddings e where e.item_id = i.item_id and e.model_id = %s) "
        "order by item_id", (model_id,))]
    print(f"  synthetic vectors for {len(missing):,} items", flush=True)
    copy_sql = ("copy pyembed.item_embeddings (model_id, item_id, embedding, content_hash) "
                "from stdin with (format binary)")
    for first in range(0, len(missing), 50_000):
        ids = missing[first:first + 50_000]
        x = real[rng.integers(0, len(real), size=len(ids))]
        x = x + 0.3 * rng.normal(size=x.shape).astype(np.float32) / math.sqrt(DIM)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        with conn.cursor().copy(copy_sql) as copy:
            copy.set_types(["int4", "int8", "vector", "bytea"])
            for item_id, vec in zip(ids, x, strict=True):
                copy.write_row((model_id, item_id, vec, b"synthetic"))
    conn.execute("delete from pyembed.item_queue")
    conn.commit()
    conn.autocommit = True
    conn.execute("vacuum analyze pyembed.item_embeddings")
    conn.autocommit = False


def step_index(url: str, admin: str) -> dict[str, Any]:
    import pyembed_db as pe

    with pe.connect(named(url), autocommit=True) as conn:
        model_id = conn.execute("select pyembed.active_model_id()").fetchone()[0]
        # Room for the whole graph (1M x 384 at m 32: 3.8 GB): pgvector builds many times
        # slower once the graph spills out of maintenance_work_mem.
        conn.execute("set pyembed.index_build_memory = '6GB'")
        with measured(admin) as result:
            conn.execute("select pyembed.ensure_model_index(%s)", (model_id,))
    return result


def step_refresh(url: str, admin: str) -> dict[str, Any]:
    import pyembed_db as pe

    with pe.connect(named(url)) as conn, measured(admin) as result:
        result["users"] = call(pe.refresh_users, conn, every_user=True, jobs=2, progress=False)
        conn.commit()
    return result


def step_evaluate(url: str, admin: str, n_users: int) -> dict[str, Any]:
    import pyembed_db as pe

    # Past 20k users a fixed sample of 20k is scored (`evaluate --users`): each pass over the
    # users is one pyembed.recommend call per user, and ALS / item-kNN score users x catalog.
    sample = EVALUATE_USERS if n_users > EVALUATE_USERS else None
    with pe.connect(named(url)) as conn:
        # A behavior default builds the trained model's index (1M x 64 at 10M events: 2.6 GB).
        conn.execute("set pyembed.index_build_memory = '6GB'")
        conn.commit()  # evaluate starts with a rollback, which would undo an uncommitted SET
        with measured(admin) as result:
            report = call(pe.evaluate, conn, holdout=10, k=10, progress=False, max_users=sample)
    result["scored_users"] = report["split"]["users"]
    result["recall"] = {f"{r['method']}{'' if r['exclude_seen'] else ' (seen)'}": r["recall"]
                        for r in report.get("results", [])}
    return result


def step_latency(url: str, admin: str, what: str, seed: int) -> dict[str, Any]:
    """p50 / p95 of 30 searches (vector queries) or recommendations, after 5 warm-up calls."""
    import pyembed_db as pe

    rng = np.random.default_rng(seed)
    with pe.connect(named(url)) as conn:
        if what == "search":
            rows = conn.execute("select embedding from pyembed.item_embeddings "
                                "order by random() limit 35").fetchall()
            args = [r[0].to_numpy() + rng.normal(0, 0.02, DIM).astype(np.float32) for r in rows]
            run: Callable[[Any], Any] = lambda q: pe.search(conn, q, k=10)  # noqa: E731
        else:
            rows = conn.execute("select external_id from pyembed.users u where exists "
                                "(select from pyembed.events e where e.user_id = u.user_id) "
                                "order by random() limit 35").fetchall()
            args = [r[0] for r in rows]
            run = lambda u: pe.recommend(conn, u, k=10)  # noqa: E731
        times = []
        with measured(admin) as result:
            for n, arg in enumerate(args):
                start = time.perf_counter()
                run(arg)
                conn.commit()
                if n >= 5:
                    times.append((time.perf_counter() - start) * 1000)
        result.update(p50_ms=statistics.median(times),
                      p95_ms=float(np.percentile(times, 95)), seconds=statistics.median(times)
                      / 1000)
    return result


# --------------------------------------------------------------------------- merge plans

# The merge before issue 12 (sql/queries/load_merge_events.sql on main), for its plan.
OLD_MERGE = """
insert into pyembed.events (user_id, item_id, event_type, value, occurred_at)
select u.user_id, i.item_id, s.event_type, s.value, coalesce(s.occurred_at, now())
from stage_events s
join pyembed.users u on u.external_id = s.user_ext
    and u.tenant_id is not distinct from nullif(current_setting('pyembed.tenant_id', true), '')
join pyembed.items i on i.external_id = s.item_ext
    and i.tenant_id is not distinct from nullif(current_setting('pyembed.tenant_id', true), '')
order by s.row_no"""
FOREIGN_KEYS = """
alter table pyembed.events
    add constraint events_user_id_fkey foreign key (user_id) references pyembed.users
        on delete cascade not valid,
    add constraint events_item_id_fkey foreign key (item_id) references pyembed.items
        on delete cascade not valid,
    add constraint events_event_type_fkey foreign key (event_type)
        references pyembed.event_types not valid"""


def explain_merges(url: str, events: Path, out: Path) -> None:
    """EXPLAIN the old and new merge of ``events`` staged by the loader (all rolled back)."""
    from pyembed_db import sqlfiles
    from pyembed_db.load import SPECS, _Converter
    from pyembed_db.load_formats import read_batches

    new_merge = sqlfiles.read("queries/load_merge_events.sql")
    sections = []
    with psycopg.connect(url) as conn:
        backend = psutil.Process(conn.info.backend_pid)

        def explain(title: str, sql: str, analyze: bool = True) -> None:
            cpu = _cpu(backend.pid) or 0.0
            start = time.perf_counter()
            options = "analyze, buffers, costs off" if analyze else "costs on"
            plan = [r[0] for r in conn.execute(f"explain ({options}) {sql}")]
            took = (f"  ({time.perf_counter() - start:.1f} s wall, "
                    f"{(_cpu(backend.pid) or 0.0) - cpu:.1f} s backend cpu)" if analyze else "")
            sections.append(f"== {title}{took}\n" + "\n".join(plan))
            print(sections[-1].split("\n")[0], flush=True)

        def stage(rows: int | None) -> None:
            conn.execute(sqlfiles.read("queries/load_settings.sql"))
            conn.execute(sqlfiles.read("queries/load_stage.sql"))
            converter = _Converter("events", str(events))
            columns, batches = read_batches(events)
            copy_sql = ("copy stage_events (row_no, user_ext, item_ext, event_type, value, "
                        "occurred_at) from stdin with (format binary)")
            with conn.cursor().copy(copy_sql) as copy:
                copy.set_types(["int8", *SPECS["events"].stage_types])
                for first, values in batches:
                    for row in converter.rows(first, values):
                        if rows is None or row[0] <= rows:
                            copy.write_row(row)
            conn.execute("analyze pg_temp.stage_events")

        stage(None)
        conn.execute("analyze pyembed.users")
        conn.execute("analyze pyembed.items")
        explain("old merge (before issue 12) on fresh statistics: its tenant condition is "
                "estimated at 1 user and 1 item", OLD_MERGE, analyze=False)
        explain("new merge on the same statistics: estimates", new_merge, analyze=False)
        conn.execute("alter table pyembed.events disable trigger events_check_references_inserted")
        conn.execute(FOREIGN_KEYS)
        explain("new merge, 1M events, with the three per-row foreign keys of before issue 12",
                new_merge)
        conn.rollback()
        stage(None)
        explain("new merge, 1M events, statement-level reference checks (current)",
                new_merge)
        conn.rollback()
        stage(100)
        explain("new merge, 100 staged events: index probes", new_merge, analyze=False)
        conn.rollback()
    out.write_text("\n\n".join(sections) + "\n")


# -------------------------------------------------------------------------------- driving

def ensure_server(pgdata: Path, shared_buffers: str) -> str:
    """Start the bench server with ``shared_buffers`` (restarting it once to apply it)."""
    from pyembed_db import server

    url = server.start(pgdata)
    with psycopg.connect(url, autocommit=True) as conn:
        current = conn.execute("show shared_buffers").fetchone()[0]
        if current.lower() != shared_buffers.lower():
            conn.execute(f"alter system set shared_buffers = '{shared_buffers}'")
    if current.lower() != shared_buffers.lower():
        server.stop(pgdata)
        url = server.start(pgdata)
    return url


def fresh_database(admin_url: str, name: str) -> str:
    from pyembed_db import migrate
    from pyembed_db.db import with_database

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')
        conn.execute(f'create database "{name}"')
    url = with_database(admin_url, name)
    migrate.upgrade(url)
    return url


def run_size(size: str, args: argparse.Namespace, admin: str, results: dict[str, Any]) -> None:
    from pyembed_db.db import with_database

    n_events, n_items, _ = SIZES[size]
    done = results.setdefault(args.label, {}).setdefault(size, {})
    steps = [s for s in args.steps if not (args.resume and s in done)]
    if not steps:
        return
    paths = generate(size, Path(args.data_dir), args.seed)
    name = f"scale_{args.label}_{size}".lower()
    url = with_database(admin, name)
    if any(s.startswith("load_") for s in steps):
        url = fresh_database(admin, name)
        steps = [s for s in STEPS if s in args.steps]  # a fresh database: every step again
    else:
        from pyembed_db import migrate

        migrate.upgrade(url)  # resumed: the function files of this checkout
    for step in steps:
        print(f"[{args.label} {size}] {step}...", flush=True)
        if step.startswith("load_"):
            kind = step.removeprefix("load_")
            result = run_cli(["--database-url", url, "load", kind, str(paths[kind]),
                              "--no-progress", "--json"], admin)
        elif step == "embed":
            result = step_embed(url, admin, n_items, args.seed)
        elif step == "index":
            result = step_index(url, admin)
        elif step == "refresh_users":
            result = step_refresh(url, admin)
        elif step == "evaluate":
            result = step_evaluate(url, admin, SIZES[size][2])
        else:
            result = step_latency(url, admin, step, args.seed)
        result["n"] = count(size, step)
        done[step] = result
        print(f"  {describe(step, result)}", flush=True)
        save(results)


def count(size: str, step: str) -> int:
    n_events, n_items, n_users = SIZES[size]
    return {"users": n_users, "items": n_items}.get(SCALE_OF.get(step, ""), n_events)


def describe(step: str, r: dict[str, Any]) -> str:
    if "p50_ms" in r:
        return f"p50 {r['p50_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms"
    rate = r["n"] / r["seconds"] if r["seconds"] else float("nan")
    return (f"{r['seconds']:.1f} s ({rate:,.0f} rows/s; cpu: client {r.get('client_cpu', 0):.1f} "
            f"s, server {r.get('server_cpu', 0):.1f} s), peak memory: client "
            f"{r['client_mb']:.0f} MB, server backends {r['server_mb']:.0f} MB")


def growth(sizes: dict[str, Any], step: str) -> list[tuple[int, int, float]]:
    """(n1, n2, exponent) of ``step`` between consecutive measured sizes."""
    points = [(sizes[s][step]["n"], sizes[s][step]["seconds"]) for s in SIZES
              if s in sizes and step in sizes[s]]
    return [(n1, n2, math.log(t2 / t1) / math.log(n2 / n1))
            for (n1, t1), (n2, t2) in zip(points, points[1:], strict=False)]


def exponents(results: dict[str, Any]) -> list[str]:
    """Growth exponent of each step between consecutive measured sizes, per label."""
    return [f"{label:>7} {step:<14} {n1:>11,} -> {n2:>11,}  exponent {slope:.2f}"
            for label, sizes in results.items() for step in STEPS
            for n1, n2, slope in growth(sizes, step)]


def markdown(results: dict[str, Any], label: str = "after") -> str:
    """The ``label`` results as a markdown table: one row per step, one column per size."""
    sizes = [s for s in SIZES if s in results.get(label, {})]
    lines = ["| step | " + " | ".join(f"{s} events" for s in sizes) + " | exponent |",
             "| --- |" + " --- |" * (len(sizes) + 1)]
    for step in STEPS:
        cells = []
        for size in sizes:
            r = results[label][size].get(step)
            if r is None:
                cells.append("-")
                continue
            cells.append(f"p50 {r['p50_ms']:.1f} ms" if "p50_ms" in r else
                         f"{r['seconds']:,.1f} s ({r['n'] / r['seconds']:,.0f}/s, "
                         f"{max(r.get('client_mb', 0), r.get('server_mb', 0)) / 1024:.1f} GB)")
        slopes = [slope for *_, slope in growth(results[label], step)]
        lines.append(f"| {step} | " + " | ".join(cells) + " | "
                     + (" / ".join(f"{x:.2f}" for x in slopes) or "-") + " |")
    return "\n".join(lines)


def save(results: dict[str, Any]) -> None:
    """Write the results of this run over the file's (another run may have added others)."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "scale.json"
    merged = json.loads(path.read_text()) if path.exists() else {}
    for label, sizes in results.items():
        for size, steps in sizes.items():
            merged.setdefault(label, {}).setdefault(size, {}).update(steps)
    path.write_text(json.dumps(merged, indent=1, sort_keys=True) + "\n")
    plot(merged, RESULTS / "scale.png")


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 6))
    for label, sizes in sorted(results.items()):
        for step in STEPS:
            points = [(sizes[s][step]["n"], sizes[s][step]["seconds"]) for s in SIZES
                      if s in sizes and step in sizes[s]]
            if points:
                xs, ys = zip(*points, strict=True)
                style = "--" if label == "before" else "-"
                ax.plot(xs, ys, style, marker="o", label=f"{step} ({label})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("rows (events; items for item steps; users for load_users)")
    ax.set_ylabel("seconds (p50 for search / recommend)")
    ax.set_title("pyembed-db at scale (2 cores); slope 1 = linear")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100k,1M,10M", help="comma-separated: 100k,1M,10M")
    parser.add_argument("--steps", default=",".join(STEPS), help="comma-separated subset")
    parser.add_argument("--label", default="after", help="results key (before / after)")
    parser.add_argument("--resume", action="store_true", help="skip steps already measured")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--data-dir", default="/tmp/pyembed-bench-scale")
    parser.add_argument("--shared-buffers", default="1GB")
    parser.add_argument("--explain", metavar="SIZE",
                        help="only EXPLAIN the old and new events merge on the loaded database "
                        "of SIZE into results/scale_plans.txt")
    args = parser.parse_args()
    args.steps = [s for s in args.steps.split(",") if s]
    unknown = set(args.steps) - set(STEPS) or set(args.sizes.split(",")) - set(SIZES)
    if unknown:
        parser.error(f"unknown: {', '.join(sorted(unknown))}")
    pgdata = Path(args.data_dir) / "pgdata"
    admin_url = ensure_server(pgdata, args.shared_buffers)
    if args.explain:
        from pyembed_db.db import with_database

        url = with_database(admin_url, f"scale_{args.label}_{args.explain}".lower())
        events = generate(args.explain, Path(args.data_dir), args.seed)["events"]
        explain_merges(url, events, RESULTS / "scale_plans.txt")
        return
    path = RESULTS / "scale.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    for size in args.sizes.split(","):
        run_size(size, args, admin_url, results)
    print("\n".join(exponents(json.loads(path.read_text()))))
    print(markdown(json.loads(path.read_text()), args.label))
    print(f"saved {RESULTS / 'scale.json'} and {RESULTS / 'scale.png'}")


if __name__ == "__main__":
    main()
