"""Strategy choice under correlated filters, bad query vectors in every face, k = 1000 for
"more like this", and the unfiltered fast path, on a real server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import psycopg
import pytest
from pgvector import Vector
from search_data import make_model

import pyembed_db as pe
from pyembed_db.cli.main import main
from pyembed_db.db import connect

DIMS = 16
NEAR, FAR = 9000, 3000  # items around +e0 (category A) and around -e0 (category B)


@pytest.fixture(scope="module")
def catalog(module_db_url: str) -> dict[str, Any]:
    """Two separated clusters: a filter on B is anti-correlated with queries near A."""
    rng = np.random.default_rng(5)
    x = rng.normal(scale=0.35, size=(NEAR + FAR, DIMS))
    x[:NEAR, 0] += 1
    x[NEAR:, 0] -= 1
    vectors = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    category = ["A"] * NEAR + ["B"] * FAR
    with connect(module_db_url) as conn:
        model = make_model(conn, DIMS, name="strategy", index=False)
        with conn.cursor().copy("copy pyembed.items (external_id, title, category) "
                                "from stdin") as copy:
            for j, c in enumerate(category):
                copy.write_row((f"s-{j}", f"item {j}", c))
        ids = np.array([r[0] for r in conn.execute(
            "select item_id from pyembed.items order by item_id")], dtype=np.int64)
        with conn.cursor().copy("copy pyembed.item_embeddings (model_id, item_id, embedding, "
                                "content_hash) from stdin with (format binary)") as copy:
            copy.set_types(["int4", "int8", "vector", "bytea"])
            for item_id, v in zip(ids, vectors, strict=True):
                copy.write_row((model, int(item_id), v, b"x"))
        conn.execute("select pyembed.ensure_model_index(%s)", (model,))
        conn.commit()
        conn.execute("analyze pyembed.items")
        conn.commit()
    return {"ids": ids, "vectors": vectors, "category": np.array(category), "model": model}


@pytest.fixture
def db(db_url: str, catalog: dict[str, Any]) -> Iterator[psycopg.Connection[Any]]:
    with connect(db_url) as c:
        yield c
        c.rollback()


def brute(catalog: dict[str, Any], q: np.ndarray, mask: np.ndarray, k: int) -> list[int]:
    dist = 1 - catalog["vectors"] @ (q / np.linalg.norm(q))
    order = np.lexsort((catalog["ids"], np.where(mask, dist, np.inf)))
    return [int(catalog["ids"][i]) for i in order[:min(k, int(mask.sum()))]]


def explain(db: psycopg.Connection[Any], q: np.ndarray, filters: Any, k: int = 10
            ) -> dict[str, Any]:
    return dict(db.execute("select pyembed.explain_search(%s, %s, %s)",
                           (Vector(q), k, json.dumps(filters))).fetchone()[0])


def test_anti_correlated_filter_ends_on_the_exact_path(db: psycopg.Connection[Any],
                                                       catalog: dict[str, Any]) -> None:
    """3,000 rows pass `category = B` (more than the old fixed threshold of 2,000, which sent
    such a filter to the index and let the iterative scan walk through the 9,000 A items
    first). Now the index scan is bounded by the costs, and for queries in A, where no B row
    is near, it stops early and the exact path answers: exact results, every time."""
    db.execute("set enable_seqscan = off")  # the index path, as pgvector's own tests force it
    mask = catalog["category"] == "B"
    for q in catalog["vectors"][:5]:
        e = explain(db, q, {"category": "B"})
        assert e["costs"]["exact_ms"] > 0 and e["costs"]["hnsw_ms"] > 0
        assert "exact ~" in e["reason"] and "hnsw ~" in e["reason"]
        assert e["strategy"] == "exact" or e["fallback"], e
        assert e["max_scan_tuples"] < NEAR  # never a scan through the whole A cluster
        hits = db.execute("select item_id from pyembed.search(%s, 10, %s)",
                          (Vector(q), '{"category": "B"}')).fetchall()
        assert [h[0] for h in hits] == brute(catalog, q, mask, 10)


def test_correlated_filter_of_the_same_size_stays_on_the_index(db: psycopg.Connection[Any],
                                                              catalog: dict[str, Any]) -> None:
    """A filter as large as B but around the query (B items queried from B) needs a few hundred
    index tuples: the index path answers without falling back. (With the default ef_search of
    800 the exact scan of 3,000 16-d rows is cheaper, and chosen: a smaller one here.)"""
    db.execute("set enable_seqscan = off")
    db.execute("set pyembed.search_ef_search = 100")
    mask = catalog["category"] == "B"
    recalls = []
    for q in catalog["vectors"][NEAR:NEAR + 5]:
        e = explain(db, q, {"category": "B"})
        assert e["strategy"] == "hnsw" and not e["fallback"] and e["rows"] == 10, e
        hits = {r[0] for r in db.execute("select item_id from pyembed.search(%s, 10, %s)",
                                         (Vector(q), '{"category": "B"}'))}
        recalls.append(len(hits & set(brute(catalog, q, mask, 10))) / 10)
    assert np.mean(recalls) >= 0.9


def test_selective_filter_takes_the_exact_path_with_its_costs(db: psycopg.Connection[Any],
                                                             catalog: dict[str, Any]) -> None:
    ids = [int(i) for i in catalog["ids"][:30]]
    e = explain(db, catalog["vectors"][0], {"item_id": {"in": ids}})
    assert e["strategy"] == "exact" and e["costs"]["exact_ms"] < e["costs"]["hnsw_ms"]
    assert e["rows"] == 10 and e["estimated_rows"] == 30
    e = explain(db, catalog["vectors"][0], {"category": "A"})  # 9,000 rows
    assert e["strategy"] == "exact" and e["costs"]["exact_ms"] < e["costs"]["hnsw_ms"]
    db.execute("set pyembed.search_ef_search = 100")  # a cheaper index path
    e = explain(db, catalog["vectors"][0], {"category": "A"})
    assert e["strategy"] == "hnsw" and e["costs"]["exact_ms"] > e["costs"]["hnsw_ms"]


@pytest.mark.parametrize("call", [
    "select * from pyembed.search(%(z)s, 5)",
    "select * from pyembed.search(%(z)s, 5, '{\"category\": \"B\"}')",
    "select pyembed.explain_search(%(z)s, 5)",
    "select pyembed.search_plan(%(z)s, 5)",
    "select * from pyembed.search_text('item', %(z)s, 5)",
    "select * from pyembed.search(%(tiny)s, 5)",
])
def test_zero_query_vectors_are_errors_under_cosine(db: psycopg.Connection[Any],
                                                    catalog: dict[str, Any], call: str) -> None:
    zero, tiny = Vector(np.zeros(DIMS)), Vector(np.full(DIMS, 1e-9))
    with pytest.raises(psycopg.Error, match="query vector is zero") as info:
        db.execute(call, {"z": zero, "tiny": tiny}).fetchall()
    assert info.value.sqlstate == "PE011"


def test_zero_vectors_in_python_and_the_cli(db_url: str, db: psycopg.Connection[Any],
                                           catalog: dict[str, Any],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    zero = np.zeros(DIMS)
    for face in (lambda: pe.search(db, zero), lambda: pe.explain_search(db, zero),
                 lambda: pe.search_text(db, "item", query=zero)):
        with pytest.raises(pe.InvalidInputError, match="query vector is zero"):
            face()
        db.rollback()
    # An item whose stored vector is zero: "more like this" refuses it too.
    item = db.execute("insert into pyembed.items (external_id, category) values ('zero', 'A') "
                      "returning item_id").fetchone()[0]
    db.execute("insert into pyembed.item_embeddings (model_id, item_id, embedding, content_hash)"
               " values (%s, %s, %s, 'x')", (catalog["model"], item, Vector(zero)))
    db.commit()
    try:
        with pytest.raises(pe.InvalidInputError, match="query vector is zero"):
            pe.search_similar(db, "zero")
        db.rollback()
        assert main(["--database-url", db_url, "search", "--similar-to", "zero"]) == 2
        assert "query vector is zero" in capsys.readouterr().err
    finally:
        db.rollback()
        db.execute("delete from pyembed.items where item_id = %s", (item,))
        db.commit()


def test_zero_vector_is_fine_under_inner_product(db: psycopg.Connection[Any],
                                                 catalog: dict[str, Any]) -> None:
    """The zero-vector check is per distance: inner product has no direction to lose."""
    model = db.execute("insert into pyembed.embedding_models (name, dimensions, checksum, "
                       "distance) values ('behavior', %s, repeat('0', 64), 'ip') "
                       "returning model_id", (DIMS,)).fetchone()[0]
    db.execute("insert into pyembed.item_embeddings (model_id, item_id, embedding, content_hash) "
               "select %s, item_id, embedding, content_hash from pyembed.item_embeddings "
               "where model_id = %s and item_id <= 50", (model, catalog["model"]))
    db.execute("select pyembed.ensure_model_index(%s)", (model,))
    for filters in ("{}", '{"category": "A"}'):
        rows = db.execute("select distance from pyembed.search(%s, 5, %s, model_id => %s)",
                          (Vector(np.zeros(DIMS)), filters, model)).fetchall()
        assert len(rows) == 5 and all(r[0] == 0 for r in rows)


def test_similar_items_accept_k_1000(db_url: str, db: psycopg.Connection[Any],
                                     catalog: dict[str, Any],
                                     capsys: pytest.CaptureFixture[str]) -> None:
    source = int(catalog["ids"][7])
    everything = np.ones(len(catalog["ids"]), dtype=bool) & (catalog["ids"] != source)
    rows = db.execute("select item_id from pyembed.search_similar(%s, 1000)",
                      (source,)).fetchall()
    assert len(rows) == 1000 and source not in {r[0] for r in rows}
    truth = set(brute(catalog, catalog["vectors"][7], everything, 1000))
    assert len({r[0] for r in rows} & truth) >= 990
    hits = pe.search_similar(db, "s-7", k=1000, filters={"category": "B"})
    assert len(hits) == 1000 and {h.item_id for h in hits} <= set(
        int(i) for i in catalog["ids"][catalog["category"] == "B"])
    assert main(["--database-url", db_url, "search", "--similar-to", "s-7", "--k", "1000",
                 "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 1000
    with pytest.raises(psycopg.Error, match="k must be between 1 and 1000, got 1001"):
        db.execute("select * from pyembed.search_similar(%s, 1001)", (source,)).fetchall()


def test_unfiltered_searches_skip_the_plan(db: psycopg.Connection[Any],
                                           catalog: dict[str, Any]) -> None:
    """search_unfiltered answers plain searches (static SQL per model, plans cached per session)
    with the rows of the general path, scanning the HNSW index each time."""
    q = catalog["vectors"][3]
    index = f"pyembed.item_embeddings_hnsw_m{catalog['model']}"
    scans = "select pg_stat_get_xact_numscans(%s::regclass)"
    before = db.execute(scans, (index,)).fetchone()[0]
    fast = [db.execute("select item_id, distance from pyembed.search(%s, 10)",
                       (Vector(q),)).fetchall() for _ in range(7)][-1]
    assert db.execute(scans, (index,)).fetchone()[0] == before + 7
    db.execute("set pyembed.search_strategy = 'hnsw'")  # a setting: the general path
    general = db.execute("select item_id, distance from pyembed.search(%s, 10)",
                         (Vector(q),)).fetchall()
    assert [r[0] for r in fast] == [r[0] for r in general]
    assert [r[0] for r in fast] == brute(catalog, q, np.ones(len(catalog["ids"]), bool), 10)
    db.execute("set role pyembed_reader")
    assert db.execute("select item_id, distance from pyembed.search(%s, 10)",
                      (Vector(q),)).fetchall() == fast


def reloptions(db: psycopg.Connection[Any], index: str) -> list[str]:
    return list(db.execute("select reloptions from pg_class where oid = %s::regclass",
                           (index,)).fetchone()[0])


def test_model_index_is_built_for_recall(db: psycopg.Connection[Any],
                                         catalog: dict[str, Any]) -> None:
    """m 32 / ef_construction 200 by default (pgvector's 16 / 64 left text queries far from the
    catalog at recall 0.6 whatever ef_search); settings override them, out of range is PE012."""
    assert reloptions(db, f"pyembed.item_embeddings_hnsw_m{catalog['model']}") == [
        "m=32", "ef_construction=200"]
    model = make_model(db, DIMS, name="strategy-small-graph", index=False)
    db.execute("set local pyembed.index_hnsw_m = 8")
    db.execute("set local pyembed.index_hnsw_ef_construction = 10")  # raised to 2 m
    index = db.execute("select pyembed.ensure_model_index(%s)", (model,)).fetchone()[0]
    assert reloptions(db, f"pyembed.{index}") == ["m=8", "ef_construction=16"]
    db.execute("set local pyembed.index_hnsw_m = 1")
    with pytest.raises(psycopg.Error, match="index_hnsw_m must be between 2 and 100") as err:
        db.execute("select pyembed.ensure_model_index(%s, 'halfvec')", (model,))
    assert err.value.sqlstate == "PE012"


def test_ef_search_is_larger_under_a_filter(db: psycopg.Connection[Any],
                                            catalog: dict[str, Any]) -> None:
    """600 candidates unfiltered, 800 under a filter (the iterative scan's later batches are
    less precise); pyembed.search_ef_search still overrides both."""
    q = Vector(catalog["vectors"][0])
    plan = "select pyembed.search_plan(%s, 10, %s)->>'ef_search'"
    assert db.execute(plan, (q, "{}")).fetchone()[0] == "600"
    assert db.execute(plan, (q, '{"category": "A"}')).fetchone()[0] == "800"
    assert db.execute("select pyembed.search_plan(%s, 500)->>'ef_search'",
                      (q,)).fetchone()[0] == "1000"
    db.execute("set pyembed.search_ef_search = 64")
    assert db.execute(plan, (q, '{"category": "A"}')).fetchone()[0] == "64"


def test_plain_and_excluding_searches_agree_with_brute_force(db: psycopg.Connection[Any],
                                                             catalog: dict[str, Any]) -> None:
    """The plain path runs one index batch (no iterative scan); excluding items, or a tiny
    ef_search, still continues the scan until k rows are collected."""
    q = catalog["vectors"][NEAR + 7]
    everything = np.ones(len(catalog["ids"]), bool)
    expected = brute(catalog, q, everything, 30)
    plain = [r[0] for r in db.execute("select item_id from pyembed.search(%s, 20)",
                                      (Vector(q),))]
    assert plain == expected[:20]
    source = expected[0]
    similar = [r[0] for r in db.execute("select item_id from pyembed.search_similar(%s, 20)",
                                        (source,))]
    assert similar == expected[1:21]
    db.execute("set pyembed.search_ef_search = 5")
    db.execute("set pyembed.search_strategy = 'hnsw'")
    e = explain(db, q, {}, k=25)
    assert e["strategy"] == "hnsw" and e["rows"] == 25 and not e["fallback"], e
