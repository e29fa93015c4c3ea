"""Filtered search on real embeddings: pyembed.search vs its own two paths, naive HNSW and a raw
exact scan, per natural (correlated) filter from 0.1% to 100% selectivity.

Corpora (bench/filtered_search_corpora.py): ``reviews`` (23k clothing reviews embedded by the
default model; filters on class, department, clothing id, rating, age, recommended; 200 held-out
review titles as queries) and ``glove`` (400k GloVe 50d word vectors; filters on frequency rank,
length and kind of word). Ground truth: exact cosine top-10 among the rows passing the filter,
computed with numpy over the same float32 vectors. Per filter it reports recall@10 mean and min,
rows returned (always min(k, matching)?), p50 / p95 of

  auto        pyembed.search (the strategy it chooses, reported too)
  exact       pyembed.search with pyembed.search_strategy = exact
  hnsw        pyembed.search with pyembed.search_strategy = hnsw
  naive       raw ``WHERE <filter> ORDER BY embedding <=> q LIMIT 10`` (pgvector defaults)
  raw_exact   raw exact scan (filter, then ORDER BY exact distance, no index on the vector)

and auto's p50 against the faster of exact and hnsw. Then the unfiltered SQL-face overhead
(``select * from pyembed.search(q, 10)`` vs the raw query at the same ef_search) and the cost
constants fitted to this run (``--calibrate`` prints them as settings).

``--functions-from main`` measures the function files of another git revision on the same
database (the "before" numbers). Own server in /tmp/pyembed-bench-real; built once.

    .venv/bin/python bench/filtered_search_real.py --corpus reviews --label after
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from filtered_search import build_index, ensure_server
from filtered_search_corpora import CORPORA, Corpus, FilterCase
from pgvector import Vector
from tqdm import tqdm

from pyembed_db import migrate, sqlfiles
from pyembed_db.db import connect, with_database
from pyembed_db.embed.item_text import ItemTextTemplate, content_hash

K = 10
RESULTS = Path(__file__).parent / "results"
METHODS = ("auto", "exact", "hnsw", "naive", "raw_exact")


def load(url: str, corpus: Corpus) -> None:
    """Items, their vectors (under the default model's row, or a 'given' one) and the index."""
    dims = corpus.vectors.shape[1]
    with connect(url) as conn:
        if corpus.model == "default":
            from pyembed_db.embed.models import register_default_model

            model_id = register_default_model(conn, activate=False).model_id
            conn.execute("update pyembed.embedding_models set status = 'active' "
                         "where model_id = %s", (model_id,))
        else:
            model_id = conn.execute(
                "insert into pyembed.embedding_models (name, dimensions, checksum, status) "
                "values (%s, %s, repeat('0', 64), 'active') returning model_id",
                (corpus.name, dims)).fetchone()[0]
        with conn.cursor().copy("copy pyembed.items (external_id, title, body, category, tags, "
                                "attributes) from stdin") as copy:
            for it in tqdm(corpus.items, desc="items", mininterval=2):
                copy.write_row((it["external_id"], it["title"], it["body"], it["category"],
                                it["tags"], json.dumps(it["attributes"])))
        conn.execute("truncate pyembed.item_queue")
        ids = dict(conn.execute("select external_id, item_id from pyembed.items").fetchall())
        template = ItemTextTemplate()
        with conn.cursor().copy("copy pyembed.item_embeddings (model_id, item_id, embedding, "
                                "content_hash) from stdin with (format binary)") as copy:
            copy.set_types(["int4", "int8", "vector", "bytea"])
            for it, v in tqdm(zip(corpus.items, corpus.vectors, strict=True),
                              total=len(corpus.items), desc="vectors", mininterval=2):
                copy.write_row((model_id, ids[it["external_id"]], v,
                                content_hash(template.render(it))))
        conn.commit()
        conn.autocommit = True
        conn.execute("vacuum analyze pyembed.items")
        conn.execute("vacuum analyze pyembed.item_embeddings")
        build_index(conn, model_id, "vector")


DROP_FUNCTIONS = """
do $$
declare
    fn regprocedure;
begin
    for fn in select p.oid::regprocedure from pg_proc p
              where p.pronamespace = 'pyembed'::regnamespace and p.prokind = 'f'
                and p.prorettype <> 'trigger'::regtype loop
        begin
            execute format('drop function %s', fn);
        exception when dependent_objects_still_exist then
            null;  -- used by an index (attribute expressions): kept
        end;
    end loop;
end
$$"""


def apply_functions(url: str, ref: str | None) -> None:
    """Re-apply sql/functions from the working tree, or from git revision ``ref``, after
    dropping the functions of the other one (an overload left behind would make calls
    ambiguous)."""
    root = Path(__file__).resolve().parents[1]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(DROP_FUNCTIONS)
        if ref is None:
            for path in sqlfiles.function_files():
                conn.execute(sqlfiles.read(path))
            return
        names = subprocess.run(["git", "ls-tree", "--name-only", ref, "sql/functions/"],
                               cwd=root, check=True, capture_output=True, text=True).stdout
        for name in sorted(n for n in names.split() if n.endswith(".sql")):
            text = subprocess.run(["git", "show", f"{ref}:{name}"], cwd=root, check=True,
                                  capture_output=True, text=True).stdout
            conn.execute(text)


def truth(vectors: np.ndarray, q: np.ndarray, mask: np.ndarray) -> list[int]:
    """Row numbers of the exact cosine top-k among ``mask``."""
    dist = 1.0 - (vectors @ q) / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(q))
    dist = np.where(mask, dist, np.inf)
    top = np.argpartition(dist, min(K, len(dist) - 1))[:K]
    return [int(i) for i in top[np.argsort(dist[top])] if np.isfinite(dist[i])]


def statements(model_id: int, dims: int) -> dict[str, str]:
    join = ("from pyembed.item_embeddings ie join pyembed.items i on i.item_id = ie.item_id "
            f"where ie.model_id = {model_id} and ")
    search = "select item_id from pyembed.search(%s, 10, %s::jsonb)"
    return {
        "auto": search, "exact": search, "hnsw": search,
        "naive": (f"select ie.item_id {join} ({{where}}) order by (ie.embedding::vector({dims})) "
                  f"<=> (%s::vector({dims})) limit {K}"),
        "raw_exact": f"select ie.item_id {join} ({{where}}) order by ie.embedding <=> %s "
                     f"limit {K}",
    }


def run(conn: psycopg.Connection[Any], method: str, sql: str, case: tuple[Any, ...],
        q: Vector) -> tuple[list[int], float, str | None]:
    filters, where, params, _ = case
    if method in ("naive", "raw_exact"):
        text, args = sql.format(where=where), [*params, q]
    else:
        text, args = sql, [q, json.dumps(filters)]
        conn.execute(f"set pyembed.search_strategy = '{'auto' if method == 'auto' else method}'")
    start = time.perf_counter()
    try:
        rows = conn.execute(text, args).fetchall()
    except psycopg.Error as exc:
        return [], (time.perf_counter() - start) * 1000, f"{exc.sqlstate}: {exc}".splitlines()[0]
    return [r[0] for r in rows], (time.perf_counter() - start) * 1000, None


def case_for(case: FilterCase, qi: int) -> tuple[Any, ...]:
    if case.per_query is not None:
        return case.per_query(qi)
    return case.filters, case.where, case.params, case.mask


def measure_case(conn: psycopg.Connection[Any], corpus: Corpus, ids: np.ndarray,
                 case: FilterCase, sql: dict[str, str], n_queries: int) -> dict[str, Any]:
    per_q = [case_for(case, qi) for qi in range(n_queries)]
    expected = [{int(ids[i]) for i in truth(corpus.vectors, corpus.query_vectors[qi], c[3])}
                for qi, c in enumerate(per_q)]
    matching = [int(c[3].sum()) for c in per_q]
    out: dict[str, Any] = {"filter": case.name, "matching": int(np.median(matching)),
                           "selectivity": float(np.median(matching)) / len(ids)}
    strategies: dict[str, int] = {}
    fallbacks = 0
    for qi, c in enumerate(per_q):
        try:
            plan = conn.execute("select pyembed.explain_search(%s, 10, %s::jsonb)",
                                [Vector(corpus.query_vectors[qi]), json.dumps(c[0])]).fetchone()[0]
            strategies[plan["strategy"]] = strategies.get(plan["strategy"], 0) + 1
            fallbacks += bool(plan.get("fallback"))
        except psycopg.Error:
            strategies["error"] = strategies.get("error", 0) + 1
    out["strategy"] = ", ".join(f"{s} {n}" for s, n in sorted(strategies.items()))
    out["fallbacks"] = fallbacks
    out["plan_example"] = plan if "plan" in locals() else None
    results: dict[str, dict[str, list[Any]]] = {
        m: {"recall": [], "rows_ok": [], "rows": [], "ms": [], "error": []} for m in METHODS}
    for rnd in range(2):  # round 0 warms the caches, round 1 is timed
        for qi, c in enumerate(per_q):
            q = Vector(corpus.query_vectors[qi])
            order = METHODS[qi % len(METHODS):] + METHODS[:qi % len(METHODS)]
            for m in order:
                got, ms, err = run(conn, m, sql[m], c, q)
                if rnd == 0:
                    continue
                r = results[m]
                r["recall"].append(len(set(got) & expected[qi]) / max(len(expected[qi]), 1))
                r["rows"].append(len(got))
                r["rows_ok"].append(len(got) == min(K, matching[qi]))
                r["ms"].append(ms)
                if err:
                    r["error"].append(err)
    conn.execute("reset pyembed.search_strategy")
    for m, r in results.items():
        out[m] = {"recall_mean": float(np.mean(r["recall"])),
                  "recall_min": float(np.min(r["recall"])),
                  "rows_min": int(np.min(r["rows"])), "rows_ok": bool(all(r["rows_ok"])),
                  "p50_ms": statistics.median(r["ms"]),
                  "p95_ms": float(np.percentile(r["ms"], 95)),
                  "errors": len(r["error"]), "error": r["error"][0] if r["error"] else None}
    best = min(out["exact"]["p50_ms"], out["hnsw"]["p50_ms"])
    out["auto_vs_best"] = out["auto"]["p50_ms"] / best
    return out


def unfiltered_overhead(conn: psycopg.Connection[Any], corpus: Corpus, model_id: int,
                        dims: int, n_queries: int) -> dict[str, float]:
    """``select item_id from pyembed.search(q, 10)`` vs the raw query at the same ef_search."""
    qs = [Vector(v) for v in corpus.query_vectors[:n_queries]]
    ef = conn.execute("select (pyembed.search_plan(%s, 10)->>'ef_search')::int",
                      [qs[0]]).fetchone()[0]
    raw = (f"select item_id from pyembed.item_embeddings where model_id = {model_id} "
           f"order by (embedding::vector({dims})) <=> (%s::vector({dims})) limit {K}")
    ours_sql = "select item_id from pyembed.search(%s, 10)"
    conn.execute(f"set hnsw.ef_search = {int(ef)}")
    ours, base = [], []
    for rnd in range(5):  # interleaved, alternating which goes first; round 0 warms
        for q in qs:
            pair = [(ours, ours_sql), (base, raw)]
            for out, sql in pair[:: 1 if rnd % 2 else -1]:
                start = time.perf_counter()
                conn.execute(sql, [q]).fetchall()
                if rnd:
                    out.append((time.perf_counter() - start) * 1000)
    conn.execute("reset hnsw.ef_search")
    return {"ef_search": ef, "pyembed_p50_ms": statistics.median(ours),
            "raw_p50_ms": statistics.median(base),
            "ratio": statistics.median(ours) / statistics.median(base)}


def calibrate(rows: list[dict[str, Any]], total: int) -> dict[str, float]:
    """Least-squares cost constants (ms) from the forced paths of this run:
    exact  = exact_fixed + exact_row * matching rows
    hnsw   = hnsw_fixed + hnsw_tuple * max(ef_search, fetch / selectivity) (tuples visited),
    with the ef_search and fetch of each filter's plan."""
    ex = [(r["matching"], r["exact"]["p50_ms"]) for r in rows if r["matching"] > 0]
    a = np.array([[1.0, m] for m, _ in ex])
    e0, e1 = np.linalg.lstsq(a, np.array([t for _, t in ex]), rcond=None)[0]

    def tuples(r: dict[str, Any]) -> float:
        plan = r.get("plan_example") or {}
        ef, fetch = plan.get("ef_search", 200), plan.get("fetch", K)
        return float(max(ef, fetch * total / max(r["matching"], 1)))

    hn = [(tuples(r), r["hnsw"]["p50_ms"]) for r in rows if r["matching"] > 0]
    b = np.array([[1.0, min(s, 1e6)] for s, _ in hn])
    h0, h1 = np.linalg.lstsq(b, np.array([t for _, t in hn]), rcond=None)[0]
    return {"exact_fixed_ms": float(e0), "exact_row_ms": float(e1),
            "hnsw_fixed_ms": float(h0), "hnsw_tuple_ms": float(h1)}


def print_rows(rows: list[dict[str, Any]]) -> None:
    print(f"\n{'filter':28} {'match':>6} {'sel':>7}  {'strategy':18} "
          + " ".join(f"{m:>22}" for m in METHODS) + "  auto/best")
    for r in rows:
        cells = []
        for m in METHODS:
            x = r[m]
            flag = "" if x["rows_ok"] else "!"
            cells.append(f"{x['recall_mean']:.3f}/{x['recall_min']:.2f}{flag} "
                         f"{x['p50_ms']:6.2f}/{x['p95_ms']:6.2f}")
        print(f"{r['filter'][:28]:28} {r['matching']:>6} {r['selectivity']:>7.2%}  "
              f"{r['strategy'][:18]:18} " + " ".join(f"{c:>22}" for c in cells)
              + f"  {r['auto_vs_best']:.2f}x")
    print("cells: recall mean/min (! = not always min(k, matching) rows), p50/p95 ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", choices=sorted(CORPORA), default="reviews")
    parser.add_argument("--label", default="after", help="results file suffix (before/after)")
    parser.add_argument("--functions-from", metavar="GIT_REF",
                        help="apply sql/functions of this revision (e.g. main) for the run")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--only", help="run only the filters whose name contains this")
    parser.add_argument("--limit", type=int, help="glove: the first N words only (own database)")
    parser.add_argument("--data-dir", default="/tmp/pyembed-bench-real")
    parser.add_argument("--shared-buffers", default="1GB")
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a pyembed.search_* setting for the run (experiments)")
    args = parser.parse_args()

    corpus = CORPORA[args.corpus](limit=args.limit) if args.limit else CORPORA[args.corpus]()
    admin = ensure_server(Path(args.data_dir) / "pgdata", args.shared_buffers)
    name = f"{args.corpus}{args.limit // 1000}k" if args.limit else args.corpus
    dbname = f"real_{name}"
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
        load(url, corpus)
    apply_functions(url, None)
    with psycopg.connect(url, autocommit=True) as c:  # what docs/search.md recommends
        for key in corpus.attribute_indexes:
            c.execute("select pyembed.create_attribute_index(%s, 'number')", (key,))
        c.execute("analyze pyembed.items")
    apply_functions(url, args.functions_from)
    try:
        with connect(url, autocommit=True) as conn:
            for setting in args.set:
                name, value = setting.split("=", 1)
                conn.execute("select set_config(%s, %s, false)", (f"pyembed.{name}", value))
            model_id = conn.execute("select pyembed.active_model_id()").fetchone()[0]
            dims = corpus.vectors.shape[1]
            ext = dict(conn.execute("select external_id, item_id from pyembed.items").fetchall())
            ids = np.array([ext[it["external_id"]] for it in corpus.items], dtype=np.int64)
            sql = statements(model_id, dims)
            cases = [c for c in corpus.cases if not args.only or args.only in c.name]
            rows = []
            for case in tqdm(cases, desc="filters"):
                rows.append(measure_case(conn, corpus, ids, case, sql, args.queries))
            overhead = unfiltered_overhead(conn, corpus, model_id, dims, args.queries)
    finally:
        if args.functions_from:
            apply_functions(url, None)
    print_rows(rows)
    print(f"\nunfiltered SQL face: pyembed.search p50 {overhead['pyembed_p50_ms']:.3f} ms vs raw "
          f"{overhead['raw_p50_ms']:.3f} ms at ef_search {overhead['ef_search']}: "
          f"{overhead['ratio']:.2f}x")
    constants = calibrate(rows, len(ids))
    print("fitted cost constants (ms): " + json.dumps({k: round(v, 5)
                                                     for k, v in constants.items()}))
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"filtered_search_real_{name}_{args.label}.json"
    path.write_text(json.dumps({"corpus": name, "items": len(ids), "dims": dims,
                                "queries": args.queries, "functions_from": args.functions_from,
                                "settings": args.set,
                                "rows": rows, "unfiltered": overhead, "fitted": constants},
                               indent=2, default=str))
    print(f"saved {path}")


if __name__ == "__main__":
    main()
