"""Simulated hash sharding of the catalog over several embedded PostgreSQL servers.

Each shard server holds the items whose ``item_id % N`` equals its number, with its own HNSW
index; a search fans out to every shard in parallel (one connection per shard) and merges the
per-shard top-k. In the same run, one server holding the whole catalog answers the same
queries. Reports recall@k against exact numpy ground truth and p50/p95 latency for both.

    .venv/bin/python bench/sharded_search.py --items 40000 --shards 4
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from pgvector.psycopg import register_vector

from pyembed_db import migrate, server

CATEGORIES = [f"cat{i:02d}" for i in range(20)]


def make_catalog(n: int, dim: int, seed: int) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(64, dim)).astype(np.float32)
    labels = rng.integers(0, len(centers), size=n)
    vectors = centers[labels] + 0.6 * rng.normal(size=(n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    zipf = rng.zipf(1.6, size=n) % len(CATEGORIES)
    return vectors, [CATEGORIES[z] for z in zipf]


def start_server(root: Path, name: str) -> str:
    url = server.start(root / name / "pgdata", stop_at_exit=True)
    migrate.upgrade(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("alter system set maintenance_work_mem = '1GB'")
        conn.execute("select pg_reload_conf()")
    return url


def fill(url: str, ids: np.ndarray, vectors: np.ndarray, categories: list[str], dim: int) -> None:
    with psycopg.connect(url) as conn:
        register_vector(conn)
        model_id = conn.execute(
            "insert into pyembed.embedding_models (name, dimensions, checksum, status) "
            "values ('bench', %s, repeat('0', 64), 'active') returning model_id",
            (dim,),
        ).fetchone()[0]
        with conn.cursor() as cur:
            # Items get the global id as external_id; identity ids differ per shard.
            with cur.copy("copy pyembed.items (external_id, category) from stdin") as copy:
                for i in ids:
                    copy.write_row((str(i), categories[i]))
            cur.execute("delete from pyembed.item_queue")
            cur.execute("create temp table v (external_id text, embedding vector)")
            with cur.copy("copy v from stdin with (format binary)") as copy:
                copy.set_types(["text", "vector"])
                for i in ids:
                    copy.write_row((str(i), vectors[i]))
            cur.execute(
                "insert into pyembed.item_embeddings (model_id, item_id, embedding, content_hash) "
                "select %s, i.item_id, v.embedding, '\\x00' from v "
                "join pyembed.items i using (external_id)",
                (model_id,),
            )
        conn.commit()
        conn.execute("select pyembed.ensure_model_index(%s)", (model_id,))
        conn.execute("analyze")
        conn.commit()


def search(conn: psycopg.Connection[Any], query: np.ndarray, k: int, filters: dict[str, Any]
           ) -> list[tuple[int, float]]:
    rows = conn.execute(
        "select external_id, distance from pyembed.search(%s, %s, %s::jsonb)",
        (query, k, json.dumps(filters)),
    ).fetchall()
    return [(int(ext), float(dist)) for ext, dist in rows]


def run(args: argparse.Namespace) -> dict[str, Any]:
    vectors, categories = make_catalog(args.items, args.dim, args.seed)
    rng = np.random.default_rng(args.seed + 1)
    picks = rng.integers(0, args.items, size=args.queries)
    # Near a catalog item, as real queries are (the same noise as bench/filtered_search.py).
    queries = vectors[picks] + 0.05 * rng.normal(size=(args.queries, args.dim)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    cats = np.array(categories)

    root = Path(tempfile.mkdtemp(prefix="pe-shards-", dir="/tmp"))
    try:
        t0 = time.perf_counter()
        single_url = start_server(root, "single")
        shard_urls = [start_server(root, f"shard{s}") for s in range(args.shards)]
        all_ids = np.arange(args.items)
        print(f"loading {args.items} x {args.dim} into 1 server and {args.shards} shards ...")
        fill(single_url, all_ids, vectors, categories, args.dim)
        for s, url in enumerate(shard_urls):
            fill(url, all_ids[all_ids % args.shards == s], vectors, categories, args.dim)
        print(f"  built in {time.perf_counter() - t0:.0f} s")

        results: dict[str, Any] = {"items": args.items, "dim": args.dim, "shards": args.shards,
                                   "queries": args.queries, "k": args.k, "cases": []}
        single = psycopg.connect(single_url, autocommit=True)
        shards = [psycopg.connect(u, autocommit=True) for u in shard_urls]
        for conn in [single, *shards]:
            register_vector(conn)
        pool = ThreadPoolExecutor(max_workers=args.shards)
        for label, filters in [("unfiltered", {}), ("category=cat03", {"category": "cat03"})]:
            mask = np.ones(args.items, bool) if not filters else cats == filters["category"]
            truth = []
            for q in queries:
                sims = vectors[mask] @ q
                ids = np.flatnonzero(mask)[np.argsort(-sims)[: args.k]]
                truth.append(set(ids.tolist()))
            for mode in ("single", "sharded"):
                latencies, recalls = [], []
                for q, expected in zip(queries, truth, strict=True):
                    start = time.perf_counter()
                    if mode == "single":
                        hits = search(single, q, args.k, filters)
                    else:
                        parts = pool.map(search, shards, [q] * len(shards),
                                         [args.k] * len(shards), [filters] * len(shards))
                        hits = sorted((h for part in parts for h in part), key=lambda h: h[1])
                        hits = hits[: args.k]
                    latencies.append(time.perf_counter() - start)
                    recalls.append(len({h[0] for h in hits} & expected) / len(expected))
                case = {"filter": label, "mode": mode, "recall": float(np.mean(recalls)),
                        "p50_ms": 1000 * float(np.percentile(latencies, 50)),
                        "p95_ms": 1000 * float(np.percentile(latencies, 95))}
                results["cases"].append(case)
        for conn in [single, *shards]:
            conn.close()
        return results
    finally:
        for name in ["single", *(f"shard{s}" for s in range(args.shards))]:
            server.stop(root / name / "pgdata")
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=40_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    results = run(args)
    base = {c["filter"]: c for c in results["cases"] if c["mode"] == "single"}
    print(f"\n{'filter':<16} {'mode':<8} {'recall@k':>8} {'p50 ms':>8} {'p95 ms':>8} "
          f"{'p50 x single':>12}")
    for c in results["cases"]:
        ratio = c["p50_ms"] / base[c["filter"]]["p50_ms"]
        print(f"{c['filter']:<16} {c['mode']:<8} {c['recall']:>8.3f} {c['p50_ms']:>8.2f} "
              f"{c['p95_ms']:>8.2f} {ratio:>12.2f}")
    out = Path(__file__).parent / "results" / f"sharded_search_{args.shards}.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"\nsaved {out}")


if __name__ == "__main__":
    main()
