"""The filter grammar on attribute keys (typed ranges, eq/ne, in/not_in), `not`, and its errors,
against a Python reference of the same semantics, on a real server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import psycopg
import pytest
from pgvector import Vector
from search_data import clustered, make_model

import pyembed_db as pe
from pyembed_db.db import connect

N = 1500
DIMS = 16
EPOCH = datetime(2024, 1, 1, tzinfo=UTC)


def attributes(j: int, rng: np.random.Generator) -> dict[str, Any]:
    """Mixed types on purpose: `len` is sometimes a string or missing, `seen` sometimes junk."""
    a: dict[str, Any] = {"color": str(rng.choice(["red", "black", "white"])),
                         "score": round(float(rng.normal(3, 1)), 3), "ok": bool(j % 3 == 0)}
    if j % 17 == 0:
        a["len"] = "unknown"
    elif j % 23 != 0:
        a["len"] = int(rng.integers(0, 200))
    a["seen"] = ("soon" if j % 29 == 0
                 else (EPOCH + timedelta(hours=int(rng.integers(0, 24 * 90)))).isoformat())
    return a


@pytest.fixture(scope="module")
def catalog(module_db_url: str) -> dict[str, Any]:
    rng = np.random.default_rng(11)
    vectors = clustered(N, DIMS, 8, rng)
    attrs = [attributes(j, rng) for j in range(N)]
    with connect(module_db_url) as conn:
        model = make_model(conn, DIMS, name="filters")
        with conn.cursor().copy("copy pyembed.items (external_id, title, category, attributes) "
                                "from stdin") as copy:
            for j, a in enumerate(attrs):
                copy.write_row((f"f-{j}", f"item {j}", "c" + str(j % 5), json.dumps(a)))
        ids = np.array([r[0] for r in conn.execute(
            "select item_id from pyembed.items order by item_id")], dtype=np.int64)
        with conn.cursor().copy("copy pyembed.item_embeddings (model_id, item_id, embedding, "
                                "content_hash) from stdin") as copy:
            for item_id, v in zip(ids, vectors, strict=True):
                copy.write_row((model, int(item_id), "[" + ",".join(map(str, v)) + "]", b"x"))
        conn.execute("select pyembed.create_attribute_index('len', 'number')")
        conn.commit()
        conn.execute("analyze pyembed.items")
        conn.commit()
    return {"ids": ids, "vectors": vectors, "attrs": attrs, "model": model}


@pytest.fixture
def db(db_url: str, catalog: dict[str, Any]) -> Iterator[psycopg.Connection[Any]]:
    with connect(db_url) as c:
        c.execute("""create function pg_temp.matching(f jsonb) returns setof bigint
                     language plpgsql as $$ begin return query execute format(
                     'select i.item_id from pyembed.items i where %s', pyembed.filter_sql(f))
                     using f; end $$""")
        yield c
        c.rollback()


def typed(value: Any, kind: str) -> Any:
    """The Python reference of pyembed.attribute_<kind>: the value if of that type, else None."""
    if kind == "number":
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if kind == "boolean":
        return value if isinstance(value, bool) else None
    if kind == "timestamp":
        try:
            return datetime.fromisoformat(value) if isinstance(value, str) else None
        except ValueError:
            return None
    return value if isinstance(value, str) else None


def reference(attrs: dict[str, Any], filters: dict[str, Any]) -> bool:
    """Python semantics of the attribute grammar (docs/search.md)."""
    ops = {"eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "gt": lambda a, b: a > b,
           "gte": lambda a, b: a >= b, "lt": lambda a, b: a < b, "lte": lambda a, b: a <= b,
           "in": lambda a, b: a in b, "not_in": lambda a, b: a not in b}
    for key, spec in filters.items():
        if key == "not":
            if reference(attrs, spec):
                return False
            continue
        if key == "attributes":  # the nested form: one condition per attribute
            if not reference(attrs, {f"attributes.{k}": v for k, v in spec.items()}):
                return False
            continue
        name = key.removeprefix("attributes.")
        value = attrs.get(name)
        if not isinstance(spec, dict):
            if typed(value, "number" if isinstance(spec, (int, float)) and not isinstance(
                    spec, bool) else "boolean" if isinstance(spec, bool) else "text") != spec:
                return False
            continue
        kind = spec.get("type") or next(
            "number" if isinstance(v, (int, float)) and not isinstance(v, bool)
            else "boolean" if isinstance(v, bool) else "text"
            for v in ([x for x in spec.values() if not isinstance(x, list)]
                      or [x for v in spec.values() for x in v]))
        got = typed(value, kind)
        if got is None:
            return False
        for op, operand in spec.items():
            if op == "type":
                continue
            if kind == "timestamp":
                operand = datetime.fromisoformat(operand)
            if not ops[op](got, operand):
                return False
    return True


CASES: list[dict[str, Any]] = [
    {"attributes.len": {"gte": 60, "lte": 90}},
    {"attributes": {"len": {"gte": 60, "lte": 90}}},          # the nested form: same condition
    {"attributes.len": {"gt": 150}},
    {"attributes.len": {"lt": 5}},
    {"attributes.len": {"eq": 42}},
    {"attributes.len": 42},
    {"attributes.len": {"ne": 42}},
    {"attributes.len": {"in": [1, 2, 3, 100]}},
    {"attributes.len": {"not_in": [1, 2, 3]}},
    {"attributes.score": {"gte": 2.5, "lt": 3.25}},
    {"attributes.color": "red"},
    {"attributes.color": {"in": ["red", "white"]}},
    {"attributes.color": {"gte": "c"}},                        # text ranges
    {"attributes.ok": True},
    {"attributes.ok": {"ne": True}},
    {"attributes.seen": {"type": "timestamp", "gte": "2024-02-01T00:00:00+00:00",
                         "lt": "2024-03-01T00:00:00+00:00"}},
    {"not": {"attributes.color": "red"}},
    {"not": {"attributes.len": {"gte": 100}}},                 # missing / string len passes
    {"attributes.len": {"gte": 20}, "not": {"attributes.ok": True, "attributes.color": "black"}},
]


@pytest.mark.parametrize("filters", CASES, ids=[json.dumps(c) for c in CASES])
def test_attribute_filters_match_the_python_reference(db: psycopg.Connection[Any],
                                                      catalog: dict[str, Any],
                                                      filters: dict[str, Any]) -> None:
    got = {r[0] for r in db.execute("select * from pg_temp.matching(%s)", (json.dumps(filters),))}
    want = {int(i) for i, a in zip(catalog["ids"], catalog["attrs"], strict=True)
            if reference(a, filters)}
    assert want, "the case should match something"
    assert got == want


def test_nested_operator_object_is_a_range_not_a_silent_empty_result(
        db: psycopg.Connection[Any], catalog: dict[str, Any]) -> None:
    """`{"attributes": {"len": {"gte": 60, "lte": 90}}}` used to be JSON containment of that
    literal object: 0 rows, no error. Searches with it now return min(k, matching) rows."""
    mask = np.array([reference(a, {"attributes.len": {"gte": 60, "lte": 90}})
                     for a in catalog["attrs"]])
    q = catalog["vectors"][3]
    for strategy in ("exact", "hnsw"):
        db.execute(f"set pyembed.search_strategy = '{strategy}'")
        hits = pe.search(db, q, k=10, filters={"attributes": {"len": {"gte": 60, "lte": 90}}})
        dist = 1 - catalog["vectors"] @ (q / np.linalg.norm(q))
        best = {int(catalog["ids"][i]) for i in np.argsort(np.where(mask, dist, np.inf))[:10]}
        assert len(hits) == 10 and {h.item_id for h in hits} == best


def test_attribute_range_uses_the_expression_index(db: psycopg.Connection[Any],
                                                   catalog: dict[str, Any]) -> None:
    sql = db.execute("select pyembed.filter_sql(%s)",
                     ('{"attributes.len": {"gte": 190}}',)).fetchone()[0]
    db.execute("set enable_seqscan = off")
    plan = "\n".join(r[0] for r in db.execute(
        "explain select 1 from pyembed.items i where "
        + sql.replace("$1", "'{\"attributes.len\": {\"gte\": 190}}'::jsonb")))
    assert "items_attribute_len_number" in plan


@pytest.mark.parametrize("filters, message", [
    ({"attributes.len": {"gte": "60"}, "x": 1}, "unknown filter key 'x'"),
    ({"attributes.len": {"between": [1, 2]}}, "filter attributes.len: unknown operator 'between'"),
    ({"attributes.len": {"gte": 1, "lt": "z"}}, "operands of different types"),
    ({"attributes.len": {"type": "date", "gte": 1}}, "type: expected number, text, boolean or"),
    ({"attributes.ok": {"gt": True}}, "booleans take eq or ne"),
    ({"attributes.seen": {"type": "timestamp", "gte": "soon"}}, "not a timestamp: 'soon'"),
    ({"attributes.seen": {"type": "timestamp", "in": ["2024-01-01"]}}, "not for timestamp"),
    ({"attributes.len": {"in": [1, "2"]}}, "operands of different types"),
    ({"attributes.len": {"type": "number", "in": [1, "2"]}}, "every element must be a number"),
    ({"attributes.len": {}}, "expected a value or an object of operators"),
    ({"attributes.len": [1, 2]}, "expected a value or an object of operators"),
    ({"attributes.len x": 1}, "attribute keys are letters, digits and _"),
    ({"attributes.len')) or true --": 1}, "attribute keys are letters, digits and _"),
    ({"attributes": {"len": {"gte": 60, "color": "red"}}}, "mixes operators and keys"),
    ({"not": []}, "filter not: expected a non-empty filters object"),
    ({"not": {"colour": "red"}}, "unknown filter key 'colour'"),
])
def test_unsupported_filters_are_clear_errors(db: psycopg.Connection[Any],
                                              catalog: dict[str, Any], filters: dict[str, Any],
                                              message: str) -> None:
    q = Vector(catalog["vectors"][0])
    with pytest.raises(psycopg.Error) as info:
        db.execute("select * from pyembed.search(%s, 5, %s)", (q, json.dumps(filters))).fetchall()
    assert info.value.sqlstate == "PE010" and message in str(info.value)
    db.rollback()
    with pytest.raises(pe.InvalidInputError, match="filter"):
        pe.search(db, catalog["vectors"][0], k=5, filters=filters)
    db.rollback()


def test_attribute_values_stay_bound_parameters(db: psycopg.Connection[Any],
                                                catalog: dict[str, Any]) -> None:
    evil = "x'); delete from pyembed.items; --"
    before = db.execute("select count(*) from pyembed.items").fetchone()
    for filters in ({"attributes.color": evil}, {"attributes.color": {"in": [evil]}},
                    {"attributes.color": {"gte": evil}}, {"not": {"attributes.color": evil}}):
        sql = db.execute("select pyembed.filter_sql(%s)", (json.dumps(filters),)).fetchone()[0]
        assert "delete" not in sql
        db.execute("select * from pyembed.search(%s, 5, %s)",
                   (Vector(catalog["vectors"][0]), json.dumps(filters))).fetchall()
    assert db.execute("select count(*) from pyembed.items").fetchone() == before
