"""pyembed_db.search (Python API), the ORM helpers, the CLI, storage options and 384-d vectors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import psycopg
import pytest
from search_data import Catalog, load_catalog
from sqlalchemy import select
from sqlalchemy.orm import Session

import pyembed_db as pe
from pyembed_db.cli.main import main
from pyembed_db.db import connect, create_sa_engine
from pyembed_db.orm import Item, ItemEmbedding


@pytest.fixture(scope="module")
def catalog(module_db_url: str) -> Catalog:
    with connect(module_db_url) as c:
        return load_catalog(c, n=2000, dims=32)


@pytest.fixture
def db(db_url: str, catalog: Catalog) -> Iterator[psycopg.Connection[Any]]:
    with connect(db_url) as c:
        yield c
        c.rollback()


def test_search_returns_hits_nearest_first(db: psycopg.Connection[Any], catalog: Catalog) -> None:
    hits = pe.search(db, catalog.vectors[5].tolist(), k=5, filters={"category": "books"})
    mask = np.array(catalog.category) == "books"
    assert [h.item_id for h in hits] == catalog.brute_force(catalog.vectors[5], mask, 5)
    assert all(isinstance(h, pe.SearchHit) for h in hits)
    assert hits[0].external_id.startswith("it-") and hits[0].distance <= hits[-1].distance


@pytest.mark.parametrize("query, message", [
    ([float("nan")] + [0.1] * 31, "NaN or Infinity"),
    ([float("inf")] + [0.1] * 31, "NaN or Infinity"),
    ([[0.1] * 32], "1-D"),
    ([], "non-empty"),
    ([0.1] * 31, "query has 31 dimensions, model"),
])
def test_bad_vectors_raise_invalid_input(db: psycopg.Connection[Any], catalog: Catalog,
                                         query: Any, message: str) -> None:
    with pytest.raises(pe.InvalidInputError, match=message):
        pe.search(db, query)


def test_errors_are_translated(db: psycopg.Connection[Any], catalog: Catalog) -> None:
    q = catalog.vectors[0]
    cases: list[tuple[dict[str, Any], type[Exception], str]] = [
        ({"k": 0}, pe.InvalidInputError, "k must be"),
        ({"k": 10**6}, pe.InvalidInputError, "k must be"),
        ({"filters": {"colour": "red"}}, pe.InvalidInputError, "unknown filter key 'colour'"),
        ({"model_id": 424242}, pe.NotFoundError, "unknown model_id"),
        ({"exclude_user": "nobody"}, pe.NotFoundError, "unknown user"),
        ({"exclude_user": 424242}, pe.NotFoundError, "unknown user_id 424242"),
    ]
    for kwargs, error, message in cases:
        with pytest.raises(error, match=message):
            pe.search(db, q, **kwargs)
        db.rollback()
    with pytest.raises(pe.NotFoundError, match="unknown item"):
        pe.search_similar(db, "no-such-item")


def test_similar_hybrid_and_explain(db: psycopg.Connection[Any], catalog: Catalog) -> None:
    similar = pe.search_similar(db, "it-7", k=3)
    assert int(catalog.ids[7]) not in {h.item_id for h in similar} and len(similar) == 3
    db.execute("update pyembed.items set title = 'Quokka Quest' where external_id = 'it-1999'")
    hybrid = pe.search_text(db, "quokka", k=3, query=catalog.vectors[0])
    assert hybrid[0].external_id == "it-1999" and hybrid[0].text_rank == 1
    assert isinstance(hybrid[0], pe.HybridHit)
    plan = pe.explain_search(db, catalog.vectors[0], filters={"category": "rare"})
    assert plan["strategy"] == "exact" and plan["rows"] == min(10, catalog.category.count("rare"))


def test_orm_helper_and_distance_operator(db_url: str, catalog: Catalog) -> None:
    engine = create_sa_engine(db_url)
    q = catalog.vectors[11]
    with Session(engine) as session:
        pairs = pe.search_items(session, q, k=4, filters={"price": {"lt": 50}})
        assert [item.item_id for item, _ in pairs] == catalog.brute_force(
            q, catalog.price < 50, 4)
        assert all(isinstance(item, Item) and float(item.price or 0) < 50 for item, _ in pairs)
        stmt = (select(Item, ItemEmbedding.embedding.cosine_distance(q).label("d"))
                .join(ItemEmbedding)
                .where(ItemEmbedding.model_id == catalog.model_id, Item.price < 50)
                .order_by(ItemEmbedding.embedding.cosine_distance(q))
                .limit(4))
        rows = session.execute(stmt).all()
        assert [r.Item.item_id for r in rows] == [item.item_id for item, _ in pairs]
        assert np.allclose([r.d for r in rows], [d for _, d in pairs])
    engine.dispose()


def test_cli_search_similar_explain_and_errors(db_url: str, catalog: Catalog,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--database-url", db_url, "search"]
    assert main(base + ["--similar-to", "it-3", "--k", "4", "--json",
                        "--filter", '{"tags": {"contains": ["red"]}}']) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 4 and all("red" in catalog.tags[int(r["external_id"][3:])]
                                  for r in rows)
    assert main(base + ["--similar-to", "it-3", "--filter", '{"size": 1}']) == 2
    assert "unknown filter key 'size'" in capsys.readouterr().err
    assert main(base) == 2
    assert "give a query text" in capsys.readouterr().err


@pytest.mark.parametrize("storage", ["halfvec", "bit"])
def test_quantized_storage_recall(db_url: str, catalog: Catalog, storage: str) -> None:
    with connect(db_url) as conn:
        model = conn.execute("select pyembed.active_model_id()").fetchone()[0]
        index = conn.execute("select pyembed.ensure_model_index(%s, %s)",
                             (model, storage)).fetchone()[0]
        assert index.endswith("_" + storage)
        plan = pe.explain_search(conn, catalog.vectors[0])
        assert plan["storage"] == storage and plan["index"] == index and plan["rows"] == 10
        rng = np.random.default_rng(9)
        recalls = []
        for i in rng.integers(0, len(catalog.ids), size=10):
            q = catalog.vectors[i] + 0.05 * rng.normal(size=32)
            got = pe.search(conn, q, k=10)
            truth = catalog.brute_force(q, np.ones(len(catalog.ids), dtype=bool), 10)
            recalls.append(len({h.item_id for h in got} & set(truth)) / 10)
            # Distances are always exact (re-ranked with the full vectors).
            exact = 1 - catalog.vectors[np.searchsorted(catalog.ids, got[0].item_id)] @ (
                q / np.linalg.norm(q))
            assert abs(got[0].distance - exact) < 1e-4
        conn.rollback()  # back to float32 storage for the other tests
        assert np.mean(recalls) >= 0.9, recalls


def test_384_dimensions(pg_admin_url: str) -> None:
    from conftest import create_database, drop_database

    from pyembed_db import migrate

    url = create_database(pg_admin_url, "s384")
    try:
        migrate.upgrade(url)
        with connect(url) as conn:
            cat = load_catalog(conn, n=1000, dims=384, prefix="d")
            rng = np.random.default_rng(4)
            everything = np.ones(len(cat.ids), dtype=bool)
            # A cheap index path: with the default ef_search (800) 1,000 rows scan faster.
            conn.execute("set pyembed.search_ef_search = 40")
            for i in rng.integers(0, len(cat.ids), size=5):
                q = cat.vectors[i] + 0.02 * rng.normal(size=384)
                plan = pe.explain_search(conn, q, filters={"category": {"not_in": ["rare"]}})
                assert plan["strategy"] == "hnsw" and plan["rows"] == 10
                got = [h.item_id for h in pe.search(conn, q)]
                assert len(set(got) & set(cat.brute_force(q, everything, 10))) >= 9
    finally:
        drop_database(pg_admin_url, url)


def test_index_build_memory_is_raised_for_the_build_only(db_url: str, catalog: Catalog) -> None:
    """ensure_model_index raises maintenance_work_mem to what the graph needs (capped by
    pyembed.index_build_memory) for its build only: the caller's value is back afterwards,
    and a malformed cap is a clear error that builds nothing."""
    with connect(db_url) as conn:
        model = conn.execute("select pyembed.active_model_id()").fetchone()[0]
        conn.execute("set maintenance_work_mem = '1MB'")
        conn.execute("set pyembed.index_build_memory = '300MB'")
        index = conn.execute("select pyembed.ensure_model_index(%s, 'halfvec')",
                             (model,)).fetchone()[0]
        assert conn.execute("select to_regclass('pyembed.' || %s)", (index,)).fetchone()[0]
        assert conn.execute("show maintenance_work_mem").fetchone() == ("1MB",)
        conn.rollback()
        conn.execute("set maintenance_work_mem = '3GB'")  # more than the cap: kept as it is
        conn.execute("select pyembed.ensure_model_index(%s, 'halfvec')", (model,))
        assert conn.execute("show maintenance_work_mem").fetchone() == ("3GB",)
        conn.rollback()
        conn.execute("set pyembed.index_build_memory = 'lots'")
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            conn.execute("select pyembed.ensure_model_index(%s, 'halfvec')", (model,))
        conn.rollback()
        assert conn.execute("select to_regclass('pyembed.' || %s)", (index,)).fetchone() == \
            (None,)
