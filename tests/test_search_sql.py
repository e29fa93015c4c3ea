"""pyembed.filter_sql / search / search_plan / search_similar / search_text on a real server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import numpy as np
import psycopg
import pytest
from pgvector import Vector
from psycopg.types.json import Jsonb
from search_data import Catalog, load_catalog

from pyembed_db.db import connect

K = 10


@pytest.fixture(scope="module")
def catalog(module_db_url: str) -> Catalog:
    with connect(module_db_url) as c:
        return load_catalog(c, n=3000, dims=32)


@pytest.fixture
def db(db_url: str, catalog: Catalog) -> Iterator[psycopg.Connection[Any]]:
    with connect(db_url) as c:
        yield c
        c.rollback()


def search(db: psycopg.Connection[Any], q: np.ndarray, k: int = K, filters: Any = None,
           **kw: Any) -> list[tuple[Any, ...]]:
    args = ", ".join(f"{name} => %({name})s" for name in kw)
    sql = "select * from pyembed.search(%(q)s, %(k)s, %(f)s" + (", " + args if args else "") + ")"
    return db.execute(sql, {"q": Vector(q), "k": k, "f": json.dumps(filters or {}), **kw}
                      ).fetchall()


def plan(db: psycopg.Connection[Any], q: np.ndarray, filters: Any, k: int = K) -> dict[str, Any]:
    row = db.execute("select pyembed.explain_search(%s, %s, %s)",
                     (Vector(q), k, json.dumps(filters))).fetchone()
    assert row is not None
    return dict(row[0])


def force_index(db: psycopg.Connection[Any]) -> None:
    """As pgvector's own tests do: no seq scans, tiny ef_search (iterative scan must work)."""
    db.execute("set enable_seqscan = off")
    db.execute("set pyembed.search_ef_search = 4")
    db.execute("set pyembed.search_strategy = 'hnsw'")


def queries(catalog: Catalog, n: int = 8, seed: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(catalog.ids), size=n)
    return [catalog.vectors[i] + 0.05 * rng.normal(size=catalog.vectors.shape[1])
            for i in picks]


def masks(c: Catalog) -> dict[str, tuple[dict[str, Any], np.ndarray]]:
    cat, tags = np.array(c.category), c.tags
    created = np.array([d.timestamp() for d in c.created_at])
    cut = datetime.fromisoformat("2020-06-01T00:00:00+00:00").timestamp()
    return {
        "category eq": ({"category": "toys"}, cat == "toys"),
        "category eq op": ({"category": {"eq": "games"}}, cat == "games"),
        "category in": ({"category": {"in": ["rare", "food"]}}, np.isin(cat, ["rare", "food"])),
        "category not_in": ({"category": {"not_in": ["books"]}}, cat != "books"),
        "price range": ({"price": {"gte": 10, "lt": 12.5}},
                        (c.price >= 10) & (c.price < 12.5)),
        "created_at range": ({"created_at": {"gte": "2020-06-01T00:00:00Z"}}, created >= cut),
        "tags contains": ({"tags": {"contains": ["red", "eco"]}},
                          np.array([{"red", "eco"} <= set(t) for t in tags])),
        "tags array": ({"tags": ["premium"]}, np.array(["premium" in t for t in tags])),
        "tags overlaps": ({"tags": {"overlaps": ["limited", "sale"]}},
                          np.array([bool({"limited", "sale"} & set(t)) for t in tags])),
        "attributes": ({"attributes": {"color": "white", "rank": 3}},
                       np.array([col == "white" and j % 10 == 3
                                 for j, col in enumerate(c.color)])),
        "item_id in": ({"item_id": {"in": [int(x) for x in c.ids[:40]]}},
                       np.isin(c.ids, c.ids[:40])),
        "item_id not_in": ({"item_id": {"not_in": [int(x) for x in c.ids[:2900]]}},
                           ~np.isin(c.ids, c.ids[:2900])),
        "external_id": ({"external_id": {"in": ["it-5", "it-7"]}}, np.isin(c.ids, c.ids[[5, 7]])),
        "combined": ({"category": "books", "price": {"lte": 30}, "tags": {"contains": ["red"]}},
                     (cat == "books") & (c.price <= 30)
                     & np.array(["red" in t for t in tags])),
    }


@pytest.mark.parametrize("name", [
    "category eq", "category eq op", "category in", "category not_in", "price range",
    "created_at range", "tags contains", "tags array", "tags overlaps", "attributes",
    "item_id in", "item_id not_in", "external_id", "combined"])
def test_every_filter_matches_brute_force(db: psycopg.Connection[Any], catalog: Catalog,
                                          name: str) -> None:
    filters, mask = masks(catalog)[name]
    assert mask.sum() > 0, name
    db.execute("set pyembed.search_strategy = 'exact'")
    for q in queries(catalog, 3):
        got = [r[0] for r in search(db, q, K, filters)]
        assert got == catalog.brute_force(q, mask, K), name


def test_exactly_k_rows_at_every_selectivity_on_the_index_path(
        db: psycopg.Connection[Any], catalog: Catalog) -> None:
    force_index(db)
    cat = np.array(catalog.category)
    cases = [({"category": c}, cat == c) for c in ("rare", "food", "tools", "games", "books")]
    cases += [({"price": {"lt": p}}, catalog.price < p) for p in (0.1, 1, 10, 50, 101)]
    cases.append(({}, np.ones(len(cat), dtype=bool)))
    for filters, mask in cases:
        for q in queries(catalog, 3):
            rows = search(db, q, K, filters)
            assert len(rows) == min(K, int(mask.sum())), filters
            assert all(r[0] in set(catalog.ids[mask].tolist()) for r in rows)
            distances = [r[3] for r in rows]
            assert distances == sorted(distances)


def test_index_path_recall_vs_brute_force(db: psycopg.Connection[Any], catalog: Catalog) -> None:
    db.execute("set enable_seqscan = off")
    db.execute("set pyembed.search_strategy = 'hnsw'")
    cat = np.array(catalog.category)
    recalls = []
    for filters, mask in [({}, np.ones(len(cat), dtype=bool)), ({"category": "books"},
                                                                  cat == "books"),
                          ({"category": "music"}, cat == "music")]:
        for q in queries(catalog, 10):
            got = {r[0] for r in search(db, q, K, filters)}
            recalls.append(len(got & set(catalog.brute_force(q, mask, K))) / K)
    assert np.mean(recalls) >= 0.9


def test_the_hnsw_strategy_really_uses_the_index(db: psycopg.Connection[Any],
                                                 catalog: Catalog) -> None:
    p = plan(db, catalog.vectors[0], {"category": "books"})
    sql = db.execute("select pyembed.search_sql(%s, 'hnsw')", (json.dumps(p),)).fetchone()[0]
    db.execute("set enable_sort = off")
    with psycopg.RawCursor(db) as cur:
        params = (Jsonb({"category": "books"}), Vector(catalog.vectors[0]), [0], K, K)
        cur.execute("explain " + sql, params)
        text = "\n".join(r[0] for r in cur.fetchall())
    assert f"Index Scan using item_embeddings_hnsw_m{catalog.model_id}" in text


def test_strategy_follows_the_costs(db: psycopg.Connection[Any], catalog: Catalog) -> None:
    q = catalog.vectors[1]
    assert plan(db, q, {})["strategy"] == "hnsw"
    rare = plan(db, q, {"category": "rare"})
    assert rare["strategy"] == "exact"
    assert rare["costs"]["exact_ms"] <= rare["costs"]["hnsw_ms"]
    assert rare["estimated_rows"] < 50 and rare["rows"] == min(K, catalog.category.count("rare"))
    books = plan(db, q, {"category": "books"})  # ~1,500 of 3,000 rows
    assert books["strategy"] == "exact"  # cheaper than an index batch of ef_search 800
    db.execute("set pyembed.search_ef_search = 40")  # a cheap index path
    books = plan(db, q, {"category": "books"})
    assert books["strategy"] == "hnsw" and books["rows"] == K and not books["fallback"]
    assert books["costs"]["exact_ms"] > books["costs"]["hnsw_ms"]
    assert 0.4 < books["selectivity"] < 0.6 and books["fetch"] == 4 * K
    # Cost constants are settings: an expensive index makes the exact scan win.
    db.execute("set pyembed.search_cost_hnsw_tuple = 1")
    assert plan(db, q, {"category": "books"})["strategy"] == "exact"
    db.execute("reset pyembed.search_cost_hnsw_tuple")
    # The index path finds nothing within 1 scanned tuple: the exact scan takes over.
    db.execute("set pyembed.search_strategy = 'hnsw'")
    db.execute("set pyembed.search_max_scan_tuples = 1")
    db.execute("set pyembed.search_ef_search = 1")
    rare = plan(db, q, {"category": "rare"})
    assert rare["fallback"] and rare["rows"] == min(K, catalog.category.count("rare"))


@pytest.mark.parametrize("filters, message", [
    ({"colour": "red"}, "unknown filter key 'colour'"),
    ({"category; drop table pyembed.items --": "x"}, "unknown filter key"),
    ({"category": 3}, "filter category"),
    ({"category": {"like": "b%"}}, "filter category"),
    ({"category": {"in": ["a", 1]}}, "filter category in: every element must be a string"),
    ({"price": {"gte": "10"}}, "filter price gte: expected a number"),
    ({"price": {"between": [1, 2]}}, "filter price: unknown operator 'between'"),
    ({"price": 5}, "filter price"),
    ({"created_at": {"gte": "yesterday-ish"}}, "filter created_at gte: not a timestamp"),
    ({"tags": "red"}, "filter tags"),
    ({"tags": {"contains": "red"}}, "filter tags contains: expected a JSON array"),
    ({"attributes": ["color"]}, "filter attributes: expected an object"),
    ({"item_id": {"in": ["1; select 1"]}}, "filter item_id in: every element must be an integer"),
    (["category"], "filters must be a JSON object"),
])
def test_bad_filters_are_rejected_with_pe010(db: psycopg.Connection[Any], catalog: Catalog,
                                             filters: Any, message: str) -> None:
    with pytest.raises(psycopg.Error) as info:
        search(db, catalog.vectors[0], K, filters)
    assert info.value.sqlstate == "PE010"
    assert message in str(info.value)


def test_injection_in_values_is_harmless(db: psycopg.Connection[Any], catalog: Catalog) -> None:
    evil = "x'); delete from pyembed.items; --"
    before = db.execute("select count(*) from pyembed.items").fetchone()
    for filters in ({"category": evil}, {"category": {"in": [evil, "books'--"]}},
                    {"tags": {"contains": [evil]}}, {"attributes": {evil: evil}},
                    {"external_id": evil}, {"created_at": {"lt": "2021-01-01'; drop table x"}}):
        try:
            rows = search(db, catalog.vectors[0], K, filters)
        except psycopg.Error as exc:
            assert exc.sqlstate == "PE010"
            db.rollback()
            continue
        assert rows == []
        sql = db.execute("select pyembed.filter_sql(%s)", (json.dumps(filters),)).fetchone()
        assert sql is not None and "delete" not in sql[0] and "drop" not in sql[0]
    assert db.execute("select count(*) from pyembed.items").fetchone() == before
    assert db.execute("select to_regclass('pyembed.items') is not null").fetchone() == (True,)


@pytest.mark.parametrize("call, sqlstate, message", [
    ("pyembed.search('[1,2,3]', 10)", "PE011", "query has 3 dimensions"),
    ("pyembed.search(%(q)s, 0)", "PE012", "k must be between 1 and 1000"),
    ("pyembed.search(%(q)s, 1001)", "PE012", "k must be between 1 and 1000"),
    ("pyembed.search(%(q)s, null)", "PE012", "k must be between"),
    ("pyembed.search(%(q)s, 5, model_id => 999999)", "PE002", "unknown model_id 999999"),
    ("pyembed.search(%(q)s, 5, exclude_user => 999999)", "PE003", "unknown user_id 999999"),
    ("pyembed.search_similar(999999, 5)", "PE004", "unknown item_id 999999"),
    ("pyembed.search_text('', null, 5)", "PE012", "needs query_text"),
])
def test_bad_arguments_fail_clearly(db: psycopg.Connection[Any], catalog: Catalog, call: str,
                                    sqlstate: str, message: str) -> None:
    with pytest.raises(psycopg.Error) as info:
        db.execute(f"select * from {call}", {"q": Vector(catalog.vectors[0])}).fetchall()
    assert info.value.sqlstate == sqlstate
    assert message in str(info.value)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_never_reach_the_search(db: psycopg.Connection[Any], catalog: Catalog,
                                                 literal: str) -> None:
    text = "[" + ",".join([literal] + ["0.1"] * 31) + "]"
    with pytest.raises(psycopg.errors.DataException, match="not allowed in vector"):
        db.execute("select * from pyembed.search(%s::vector, 5)", (text,)).fetchall()


def test_exclude_user_removes_items_with_events(db: psycopg.Connection[Any],
                                                catalog: Catalog) -> None:
    q = catalog.vectors[10]
    top = [r[0] for r in search(db, q, K)]
    user = db.execute("insert into pyembed.users (external_id) values ('u-excl') "
                      "returning user_id").fetchone()[0]
    for item in top[:3]:
        db.execute("insert into pyembed.events (user_id, item_id, event_type) "
                   "values (%s, %s, 'view')", (user, item))
    # auto: no filter and default settings take search_unfiltered directly, without a plan
    results = {}
    for strategy in ("exact", "hnsw", "auto"):
        db.execute(f"set pyembed.search_strategy = '{strategy}'")
        got = results[strategy] = [r[0] for r in search(db, q, K, exclude_user=user)]
        assert len(got) == K and not set(got) & set(top[:3])
        assert got[:7] == top[3:]
    assert results["auto"] == results["hnsw"]


def test_search_similar_excludes_the_item(db: psycopg.Connection[Any], catalog: Catalog) -> None:
    source = int(catalog.ids[42])
    rows = db.execute("select item_id from pyembed.search_similar(%s, 5, %s)",
                      (source, '{"category": "books"}')).fetchall()
    mask = (np.array(catalog.category) == "books") & (catalog.ids != source)
    assert [r[0] for r in rows] == catalog.brute_force(catalog.vectors[42], mask, 5)


def test_search_similar_without_vector_is_pe004(db: psycopg.Connection[Any],
                                                catalog: Catalog) -> None:
    item = db.execute("insert into pyembed.items (external_id) values ('novec') "
                      "returning item_id").fetchone()[0]
    with pytest.raises(psycopg.Error, match="has no vector") as info:
        db.execute("select * from pyembed.search_similar(%s)", (item,)).fetchall()
    assert info.value.sqlstate == "PE004"


def test_hybrid_ranks_the_exact_keyword_match_first(db: psycopg.Connection[Any],
                                                    catalog: Catalog) -> None:
    far = int(np.argmin(catalog.vectors @ catalog.vectors[0]))  # the vector farthest from q
    db.execute("update pyembed.items set title = 'The Zyzzyva Chronicles' where item_id = %s",
               (int(catalog.ids[far]),))
    q = Vector(catalog.vectors[0])
    rows = db.execute("select item_id, text_rank, vector_rank from "
                      "pyembed.search_text('zyzzyva chronicles', %s, 5)", (q,)).fetchall()
    assert rows[0][0] == int(catalog.ids[far]) and rows[0][1] == 1
    assert len(rows) == 5 and all(r[2] is not None for r in rows[1:])
    vector_only = [r[0] for r in search(db, catalog.vectors[0], 4)]
    assert [r[0] for r in rows[1:]] == vector_only
    # Same filters apply to both lists: the match is not a "rare" item.
    rows = db.execute("select item_id from pyembed.search_text('zyzzyva', %s, 3, %s)",
                      (q, '{"category": "rare"}')).fetchall()
    assert int(catalog.ids[far]) not in {r[0] for r in rows}
    text_only = db.execute("select item_id, vector_rank from pyembed.search_text('zyzzyva')"
                           ).fetchall()
    assert text_only == [(int(catalog.ids[far]), None)]


def test_settings_are_restored_and_readers_can_search(db: psycopg.Connection[Any],
                                                      catalog: Catalog) -> None:
    db.execute("set local hnsw.ef_search = 33")
    db.execute("set pyembed.search_strategy = 'hnsw'")
    assert len(search(db, catalog.vectors[0], K, {"category": "books"})) == K
    settings = db.execute("select current_setting('hnsw.ef_search'), "
                          "current_setting('hnsw.iterative_scan'), "
                          "current_setting('enable_sort')").fetchone()
    assert settings == ("33", "off", "on")
    db.execute("reset pyembed.search_strategy")
    db.execute("set role pyembed_reader")
    q = Vector(catalog.vectors[0])
    assert len(db.execute("select * from pyembed.search(%s, 5, %s)",
                          (q, '{"tags": {"contains": ["red"]}, "price": {"lt": 50}}')).fetchall()
               ) == 5
    assert len(db.execute("select * from pyembed.search_similar(%s, 3)",
                          (int(catalog.ids[0]),)).fetchall()) == 3
    assert db.execute("select count(*) from pyembed.search_text('item', %s, 4)",
                      (q,)).fetchone() == (4,)


def test_unfiltered_search_runs_search_unfiltered(db: psycopg.Connection[Any],
                                                 catalog: Catalog) -> None:
    """Unfiltered HNSW searches go through pyembed.search_unfiltered (static SQL per model, a
    plan cached per session); it returns what the EXECUTE path returns, restores the settings,
    and readers may call it."""
    q = queries(catalog, 1)[0]
    p = plan(db, q, {})
    assert p["strategy"] == "hnsw" and p["function"] == "search_unfiltered"
    db.execute("set local hnsw.ef_search = 33")
    # A large ef_search makes the index look expensive next to sorting 3,000 vectors.
    db.execute("set local pyembed.search_ef_search = 1000")
    scans = "select pg_stat_get_xact_numscans(%s::regclass)"
    before = db.execute(scans, (f"pyembed.{p['index']}",)).fetchone()[0]
    for _ in range(7):  # past the plan cache's first executions: the cached plan is used too
        fast = search(db, q, K)
    # It really scanned the HNSW index each time (a generic plan could prefer a full sort).
    assert db.execute(scans, (f"pyembed.{p['index']}",)).fetchone()[0] == before + 7
    # An empty item_id not_in is a filter, so it takes the EXECUTE path; same rows, same order.
    assert fast == search(db, q, K, {"item_id": {"not_in": []}})
    assert plan(db, q, {"item_id": {"not_in": []}})["function"] is None
    assert [r[0] for r in fast] == catalog.brute_force(q, np.ones(len(catalog.ids), bool), K)
    assert db.execute("select current_setting('hnsw.ef_search'), "
                      "current_setting('plan_cache_mode')").fetchone() == ("33", "auto")
    db.execute("set role pyembed_reader")
    assert search(db, q, K) == fast


def test_search_unfiltered_follows_the_function_files(db_url: str, catalog: Catalog) -> None:
    """Re-applying the function files (every migration does) re-creates search_unfiltered, with
    a branch for each indexed model; a model without a branch takes the general path."""
    from pyembed_db import sqlfiles

    with connect(db_url, autocommit=True) as c:
        q = queries(catalog, 1)[0]
        expected = search(c, q, K)
        c.execute("drop function pyembed.search_unfiltered")
        c.execute("create function pyembed.search_unfiltered(filters jsonb, query vector, "
                  "excluded bigint[], fetch_n integer, k integer, ef_search integer, "
                  "max_scan_tuples integer, model_id integer, out ids bigint[], "
                  "out distances double precision[], out complete boolean) "
                  "language sql as 'select null::bigint[], null::float8[], null::boolean'")
        assert search(c, q, K) == expected  # no branch: the general path answers
        for path in sqlfiles.function_files():
            c.execute(sqlfiles.read(path))
        body = c.execute("select prosrc from pg_proc where proname = 'search_unfiltered'"
                         ).fetchone()[0]
        assert f"model_id = {catalog.model_id} then" in body
        assert search(c, q, K) == expected
