"""Bad input on every face of the product: SQL functions, Python API, CLI and loader.

Every case asserts the exact error a user gets (a ``pyembed_db.errors`` class, or a psycopg
error with its SQLSTATE, plus a message they can act on) and that the database is exactly as it
was: row count and md5 of every row of every table (:meth:`Guarded.unchanged`). Injection
attempts that are valid input (a filter value, a search text) must simply match nothing, and
are checked the same way. The cases are tables (``pytest.param`` with readable ids), one per
face; the ones marked "BUG" in the final report fail until the product is fixed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
from psycopg import sql
from psycopg.pq import TransactionStatus
from psycopg.types.json import Jsonb
from search_data import CATEGORIES, TAGS
from users_data import add_events, add_items, add_user

import pyembed_db as pe
from pyembed_db.db import connect
from pyembed_db.embed import load_active_encoder, register_default_model
from pyembed_db.errors import InvalidInputError, LoadError, ModelError, NotFoundError

ROOT = Path(__file__).resolve().parents[1]
DIMS = 384  # all-MiniLM-L6-v2, the real default model: text queries are really embedded
T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)

# Query vectors as a psql user writes them (text literals cast to vector by the function call).
Q = "[" + ",".join(["0.05"] * DIMS) + "]"
NAN_Q = "[NaN" + ",0.05" * (DIMS - 1) + "]"
INF_Q = "[Infinity" + ",0.05" * (DIMS - 1) + "]"
ONE_MB = " ".join(f"w{i:06d}" for i in range(125_001))  # 1,000,007 characters of words
VEC = [0.05] * DIMS
DROP_ITEMS_KEY = "category; drop table pyembed.items --"
DELETE_VALUE = "x'); delete from pyembed.items; --"
DROP_USERS_ID = "1; drop table pyembed.users"


# ----------------------------------------------------------------------------- world, guards


@pytest.fixture(scope="module")
def world(module_db_url: str) -> None:
    """50 items with categories/tags/prices and synthetic vectors for the real default model
    (active), one item without a vector, users alice/bob (with events and vectors) and carol."""
    with connect(module_db_url) as conn:
        model = register_default_model(conn)
        assert model.status == "active" and model.dimensions == DIMS
        rng = np.random.default_rng(17)
        ids = add_items(conn, model.model_id, rng.normal(size=(50, DIMS)), "it",
                        [CATEGORIES[n % 6] for n in range(50)])
        conn.cursor().executemany(
            "update pyembed.items set price = %s, tags = %s, attributes = %s where item_id = %s",
            [(round(1 + 1.5 * n, 2), [TAGS[n % 8], TAGS[(n + 3) % 8]],
              Jsonb({"color": ["red", "black"][n % 2], "rank": n % 5}), item_id)
             for n, item_id in enumerate(ids)])
        conn.execute("insert into pyembed.items (external_id, title) values ('novec', 'queued')")
        alice, bob = add_user(conn, "alice"), add_user(conn, "bob")
        add_user(conn, "carol")
        add_events(conn, [(alice, i, "purchase", None, T0) for i in ids[:5]]
                   + [(bob, i, "rating", 5.0, T0) for i in ids[10:15]])
        conn.commit()
        assert pe.refresh_users(conn) == 2


def snapshot(conn: psycopg.Connection[Any]) -> dict[str, tuple[int, str]]:
    """Row count and md5 of all rows (as text, sorted) of every table outside pg_catalog."""
    tables = conn.execute(
        "select schemaname, tablename from pg_tables "
        "where schemaname <> 'information_schema' and schemaname !~ '^pg_' order by 1, 2"
    ).fetchall()
    query = sql.SQL(" union all ").join(
        sql.SQL("select {name}, count(*), "
                "md5(coalesce(string_agg(t::text, '|' order by t::text), '')) "
                "from {schema}.{table} t").format(
            name=sql.Literal(f"{s}.{t}"), schema=sql.Identifier(s), table=sql.Identifier(t))
        for s, t in tables)
    return {str(r[0]): (int(r[1]), str(r[2])) for r in conn.execute(query)}


@dataclass
class Guarded:
    """The module's database, with a connection that watches it (autocommit: always fresh)."""

    url: str
    watch: psycopg.Connection[Any]

    @contextmanager
    def unchanged(self) -> Iterator[None]:
        """Asserts that the block leaves every table (and the set of tables) as it was."""
        before = snapshot(self.watch)
        yield
        after = snapshot(self.watch)
        changed = sorted(t for t in before.keys() | after.keys() if before.get(t) != after.get(t))
        assert not changed, f"the database changed: {changed}"
        assert len(before) >= 13  # every pyembed table (and the alembic version) was compared

    @contextmanager
    def session(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection whose transaction is committed afterwards when still possible, so that
        a partial write by a call that failed would reach the database and be caught."""
        with connect(self.url) as conn:
            yield conn
            if conn.info.transaction_status == TransactionStatus.INERROR:
                conn.rollback()
            else:
                conn.commit()

    @contextmanager
    def case(self) -> Iterator[psycopg.Connection[Any]]:
        """One bad-input case: a session, and the database unchanged after it."""
        with self.unchanged(), self.session() as conn:
            yield conn


@pytest.fixture
def db(world: None, db_url: str) -> Iterator[Guarded]:
    with psycopg.connect(db_url, autocommit=True) as watch:
        yield Guarded(db_url, watch)


def test_the_world_is_what_the_cases_assume(db: Guarded) -> None:
    """Guards the fixtures: ids 999999 / model 999 are unknown, user 1 is alice, it0/it1 and
    novec (no vector) exist, alice has vectors."""
    with db.session() as conn:
        row = conn.execute(
            "select (select count(*) from pyembed.items), (select count(*) from "
            "pyembed.item_embeddings), (select external_id from pyembed.users where user_id = 1), "
            "(select count(*) from pyembed.items where external_id in ('it0', 'it1', 'novec')), "
            "(select count(*) > 0 from pyembed.user_embeddings where user_id = 1), "
            "(select max(item_id) from pyembed.items) < 999999, "
            "(select max(model_id) from pyembed.embedding_models) < 999").fetchone()
        assert row == (51, 50, "alice", 3, True, True, True)


# ------------------------------------------------------------------- 1. SQL functions directly

SQL_CASES = [
    # query vectors
    pytest.param("select * from pyembed.search('[1,2,3]', 5)", {},
                 "PE011", "query has 3 dimensions", id="search: wrong dimension"),
    pytest.param("select * from pyembed.search(%(nan)s, 5)", {},
                 "22000", "NaN not allowed in vector", id="search: NaN component"),
    pytest.param("select * from pyembed.search(%(inf)s, 5)", {},
                 "22000", "infinite value not allowed in vector", id="search: Infinity component"),
    pytest.param("select * from pyembed.search(null, 5)", {},
                 "PE011", "query vector is null", id="search: null vector"),
    pytest.param("select pyembed.check_query_vector('[1,2,3]')", {},
                 "PE011", "query vector has 3 dimensions", id="check_query_vector: wrong dim"),
    # k
    pytest.param("select * from pyembed.search(%(q)s, 0)", {},
                 "PE012", "k must be between 1 and 1000, got 0", id="search: k=0"),
    pytest.param("select * from pyembed.search(%(q)s, -5)", {},
                 "PE012", "k must be between 1 and 1000, got -5", id="search: k<0"),
    pytest.param("select * from pyembed.search(%(q)s, 100000000)", {},
                 "PE012", "got 100000000", id="search: huge k"),
    pytest.param("select * from pyembed.search(%(q)s, 'ten')", {},
                 "22P02", 'invalid input syntax for type integer: "ten"', id="search: k is text"),
    # filters
    pytest.param("select * from pyembed.search(%(q)s, 5, '[1, 2]')", {},
                 "PE010", "filters must be a JSON object, got array", id="search: filters array"),
    pytest.param("""select * from pyembed.search(%(q)s, 5, '"books"')""", {},
                 "PE010", "filters must be a JSON object, got string", id="search: filters str"),
    pytest.param("""select * from pyembed.search(%(q)s, 5, '{"colour": "red"}')""", {},
                 "PE010", "unknown filter key 'colour'", id="search: unknown filter key"),
    pytest.param("""select * from pyembed.search(%(q)s, 5, '{"price": {"gte": "cheap"}}')""", {},
                 "PE010", "filter price gte: expected a number, got string",
                 id="search: price is a string"),
    pytest.param("""select * from pyembed.search(%(q)s, 5, '{"price": {"between": [1, 2]}}')""",
                 {}, "PE010", "filter price: unknown operator 'between'",
                 id="search: unknown operator"),
    pytest.param("""select * from pyembed.search(%(q)s, 5, '{"category": 5}')""", {},
                 "PE010", "filter category: expected a string", id="search: category is a number"),
    pytest.param("""select * from pyembed.search(%(q)s, 5, '{"item_id": {"in": ["1"]}}')""", {},
                 "PE010", "filter item_id in: every element must be an integer id",
                 id="search: item_id in strings"),
    pytest.param("""select * from pyembed.search(%(q)s, 5,
                                                 '{"created_at": {"gte": "not-a-date"}}')""", {},
                 "PE010", "filter created_at gte: not a timestamp: 'not-a-date'",
                 id="search: created_at not a timestamp"),
    pytest.param("""select pyembed.explain_search(%(q)s, 5, '{"tags": "red"}')""", {},
                 "PE010", "filter tags: expected", id="explain_search: tags is a string"),
    pytest.param("""select * from pyembed.search(%(q)s, 5, '{"attributes": [1]}')""", {},
                 "PE010", "filter attributes: expected an object", id="search: attributes array"),
    # injection attempts that are refused
    pytest.param("select * from pyembed.search(%(q)s, 5, %(f)s)",
                 {"f": json.dumps({DROP_ITEMS_KEY: "x"})},
                 "PE010", f"unknown filter key '{DROP_ITEMS_KEY}'",
                 id="search: injection in filter key"),
    pytest.param("select * from pyembed.search(%(q)s, 5, %(f)s)",
                 {"f": json.dumps({"price": {"gte) or true; --": 1}})},
                 "PE010", "unknown operator 'gte) or true; --'",
                 id="search: injection in operator"),
    pytest.param("select pyembed.filter_sql(%(f)s)", {"f": json.dumps({'x" = 1 or true --': 1})},
                 "PE010", "unknown filter key 'x\" = 1 or true --'",
                 id="filter_sql: injection in key"),
    # ids
    pytest.param("select * from pyembed.search(%(q)s, 5, '{}', 999999)", {},
                 "PE003", "unknown user_id 999999", id="search: unknown exclude_user"),
    pytest.param("select * from pyembed.search(%(q)s, 5, '{}', %(u)s)", {"u": DROP_USERS_ID},
                 "22P02", f'invalid input syntax for type bigint: "{DROP_USERS_ID}"',
                 id="search: injection in exclude_user"),
    pytest.param("select * from pyembed.search(%(q)s, 5, model_id => 999)", {},
                 "PE002", "unknown model_id 999", id="search: unknown model"),
    pytest.param("select * from pyembed.search_similar(999999, 5)", {},
                 "PE004", "unknown item_id 999999", id="search_similar: unknown item"),
    pytest.param("select * from pyembed.search_similar("
                 "(select item_id from pyembed.items where external_id = 'novec'), 5)", {},
                 "PE004", "has no vector for model", id="search_similar: item without vector"),
    pytest.param("select * from pyembed.search_similar(1, 0)", {},
                 "PE012", "k must be between 1 and 1000, got 0", id="search_similar: k=0"),
    # hybrid text
    pytest.param("select * from pyembed.search_text('', null, 5)", {},
                 "PE012", "search_text needs query_text with words or a query vector",
                 id="search_text: empty text, no vector"),
    pytest.param("select * from pyembed.search_text('red', null, 5, rrf_k => 0)", {},
                 "PE012", "rrf_k must be >= 1, got 0", id="search_text: rrf_k=0"),
    pytest.param("select pyembed.user_id('no such user')", {},
                 "PE003", "unknown user 'no such user'", id="user_id: unknown external id"),
    pytest.param("select pyembed.item_ids(array['it0', 'no such item', null])", {},
                 "PE004", "unknown item 'no such item'", id="item_ids: unknown external id"),
    pytest.param("select pyembed.item_ids(array[null])", {},
                 "PE004", "unknown item null", id="item_ids: null external id"),
    pytest.param("select * from pyembed.search_text(%(big)s, null, 5)", {},
                 "PE012", "query_text is too long", id="search_text: 1 MB text"),
    pytest.param("select * from pyembed.search_text(repeat('\"star wars\" or -c ', 500), "
                 "null, 5)", {}, "PE012", "query_text is too complex",
                 id="search_text: thousands of operators under the length limit"),
    pytest.param("select * from pyembed.mmr(array(select generate_series(1, 5000)::bigint), "
                 "null, null, 10, 0.5)", {}, "PE012", "at most 4000 candidates",
                 id="mmr: unbounded candidates"),
    pytest.param("select * from pyembed.mmr('{1}', '{1}', array['[1,0]'::vector], 10, 2)", {},
                 "PE012", "diversity must be between 0 and 1", id="mmr: diversity 2"),
    # recommendations
    pytest.param("select * from pyembed.recommend(999999, 5)", {},
                 "PE003", "unknown user_id 999999", id="recommend: unknown user"),
    pytest.param("select * from pyembed.recommend(%(u)s, 5)", {"u": DROP_USERS_ID},
                 "22P02", f'invalid input syntax for type bigint: "{DROP_USERS_ID}"',
                 id="recommend: injection in user id"),
    pytest.param("select * from pyembed.recommend(1, 5, '[1]')", {},
                 "PE010", "filters must be a JSON object, got array",
                 id="recommend: jsonb array filters"),
    pytest.param("select * from pyembed.recommend(1, 0)", {},
                 "PE012", "k must be between 1 and 1000, got 0", id="recommend: k=0"),
    pytest.param("select * from pyembed.recommend(1, 5, diversity => 2)", {},
                 "PE012", "diversity must be between 0 and 1, got 2", id="recommend: diversity=2"),
    pytest.param("select * from pyembed.recommend(1, 5, diversity => 'NaN')", {},
                 "PE012", "diversity must be between 0 and 1, got NaN",
                 id="recommend: diversity=NaN"),
    pytest.param("select * from pyembed.recommend(1, 5, vectors => 'everything')", {},
                 "PE012", "vectors must be auto, long_term, short_term or interest",
                 id="recommend: unknown vectors kind"),
    pytest.param("select * from pyembed.recommend(1, 5, positive => array[999999::bigint])", {},
                 "PE004", "unknown item_id 999999", id="recommend: unknown positive item"),
    pytest.param("select * from pyembed.recommend(1, 5, model_id => 999)", {},
                 "PE002", "unknown model_id 999", id="recommend: unknown model"),
    pytest.param("select * from pyembed.popular_items(0)", {},
                 "PE012", "k must be between 1 and 1000, got 0", id="popular_items: k=0"),
    pytest.param("""select * from pyembed.popular_items(5, '{"nope": 1}')""", {},
                 "PE010", "unknown filter key 'nope'", id="popular_items: unknown filter key"),
    pytest.param("select * from pyembed.popular_items(5, '{}', 999999)", {},
                 "PE003", "unknown user_id 999999", id="popular_items: unknown exclude_user"),
    # user vectors
    pytest.param("select pyembed.refresh_user(999999)", {},
                 "PE003", "unknown user_id 999999", id="refresh_user: unknown user"),
    pytest.param("select pyembed.refresh_user(%(u)s)", {"u": DROP_USERS_ID},
                 "22P02", f'invalid input syntax for type bigint: "{DROP_USERS_ID}"',
                 id="refresh_user: injection in user id"),
    pytest.param("select pyembed.refresh_user(1, model_id => 999)", {},
                 "PE002", "unknown model_id 999", id="refresh_user: unknown model"),
    pytest.param("select pyembed.refresh_user(1) from "
                 "(select set_config('pyembed.half_life', 'forever', true)) s", {},
                 "PE012", "setting pyembed.half_life must be an interval", id="setting: half_life"),
    pytest.param("select pyembed.refresh_user(1) from "
                 "(select set_config('pyembed.negative_weight', '-3', true)) s", {},
                 "PE012", "setting pyembed.negative_weight must be between 0 and 10",
                 id="setting: negative_weight out of range"),
    pytest.param("select pyembed.popularity_half_life() from "
                 "(select set_config('pyembed.popularity_half_life', 'soon', true)) s", {},
                 "PE012", "setting pyembed.popularity_half_life must be an interval",
                 id="setting: popularity_half_life"),
    pytest.param("select pyembed.refresh_user(1, half_life => 'forever')", {},
                 "22007", 'invalid input syntax for type interval: "forever"',
                 id="refresh_user: half_life is not an interval"),
    pytest.param("select pyembed.refresh_users(batch => 0)", {},
                 "PE012", "batch must be >= 1, got 0", id="refresh_users: batch=0"),
    pytest.param("select pyembed.refresh_users(since => 'last tuesday')", {},
                 "22007", "invalid input syntax for type timestamp with time zone",
                 id="refresh_users: since is not a timestamp"),
    # vectors, models, weights
    pytest.param("select pyembed.item_vector(999999)", {},
                 "PE004", "unknown item_id 999999", id="item_vector: unknown item"),
    pytest.param("select pyembed.item_vector("
                 "(select item_id from pyembed.items where external_id = 'novec'))", {},
                 "PE004", "has no vector for model", id="item_vector: not embedded yet"),
    pytest.param("select pyembed.item_vector(1, 999)", {},
                 "PE002", "unknown model_id 999", id="item_vector: unknown model"),
    pytest.param("select pyembed.ensure_model_index(pyembed.active_model_id(), 'fancy')", {},
                 "22023", "storage must be vector, halfvec or bit, got fancy",
                 id="ensure_model_index: unknown storage"),
    pytest.param("select pyembed.event_weight('teleport')", {},
                 "PE012", "unknown event type teleport", id="event_weight: unknown type"),
    pytest.param("select pyembed.event_weight('rating', 'five')", {},
                 "22P02", 'invalid input syntax for type real: "five"',
                 id="event_weight: value is text"),
    pytest.param("select pyembed.event_weight('rating', 'NaN')", {},
                 "PE012", "value must be a finite number", id="event_weight: NaN value"),
]


@pytest.mark.parametrize(("query", "args", "sqlstate", "message"), SQL_CASES)
def test_sql_function_refuses(db: Guarded, query: str, args: dict[str, Any], sqlstate: str,
                              message: str) -> None:
    params = {"q": Q, "nan": NAN_Q, "inf": INF_Q, "big": ONE_MB, **args}
    with db.case() as conn:
        with pytest.raises(psycopg.Error) as info:
            conn.execute(query, params).fetchall()
        assert info.value.sqlstate == sqlstate, info.value.diag.message_primary
        assert message in (info.value.diag.message_primary or "")


SQL_HARMLESS = [
    pytest.param("select * from pyembed.search(%(q)s, 5, %(f)s)",
                 {"f": json.dumps({"category": DELETE_VALUE})}, id="search: injection in value"),
    pytest.param("select * from pyembed.search(%(q)s, 5, %(f)s)",
                 {"f": json.dumps({"attributes": {"a'); drop table pyembed.items; --": 1}})},
                 id="search: injection in attributes key"),
    pytest.param("select * from pyembed.search(%(q)s, 5, %(f)s)",
                 {"f": json.dumps({"external_id": {"in": ["it1' or '1'='1"]}})},
                 id="search: injection in external_id list"),
    pytest.param("""select * from pyembed.search(%(q)s, 5, '{"category": {"in": []}}')""", {},
                 id="search: empty IN list matches nothing"),
    pytest.param("select * from pyembed.search_text(%(t)s, null, 5)", {"t": DELETE_VALUE},
                 id="search_text: injection in text"),
    pytest.param("select * from pyembed.recommend(1, 5, %(f)s)",
                 {"f": json.dumps({"category": DELETE_VALUE})}, id="recommend: injection in value"),
    pytest.param("select * from pyembed.popular_items(5, %(f)s)",
                 {"f": json.dumps({"tags": {"overlaps": [DELETE_VALUE]}})},
                 id="popular_items: injection in value"),
]


@pytest.mark.parametrize(("query", "args"), SQL_HARMLESS)
def test_sql_injection_value_is_harmless(db: Guarded, query: str, args: dict[str, Any]) -> None:
    with db.case() as conn:
        assert conn.execute(query, {"q": Q, **args}).fetchall() == []


# ------------------------------------------------------------------------------ 2. Python API


def encode(texts: Any) -> Callable[[psycopg.Connection[Any]], Any]:
    return lambda c: load_active_encoder(c).encoder.encode(texts)


PYTHON_CASES = [
    # values PostgreSQL cannot hold or that overflow its types: clear errors, not driver errors
    pytest.param(lambda c: pe.recommend(c, "ab\x00c"), InvalidInputError,
                 "user id contains a NUL character", id="recommend: NUL in user id"),
    pytest.param(lambda c: pe.recommend(c, "ab\udc80"), InvalidInputError,
                 "user id is not valid UTF-8", id="recommend: lone surrogate in user id"),
    pytest.param(lambda c: pe.search(c, VEC, filters={"category": "a\x00b"}), InvalidInputError,
                 "filters contains a NUL character", id="search: NUL in filter value"),
    pytest.param(lambda c: pe.search(c, VEC, filters={"category\udc80": "a"}),
                 InvalidInputError, "filters is not valid UTF-8", id="search: surrogate key"),
    pytest.param(lambda c: pe.recommend(c, 2**63), InvalidInputError,
                 "user_id must be between", id="recommend: user_id 2^63"),
    pytest.param(lambda c: pe.search_similar(c, 2**63), InvalidInputError,
                 "item_id must be between", id="search_similar: item_id 2^63"),
    pytest.param(lambda c: pe.recommend(c, "alice", model_id=2**40), InvalidInputError,
                 "model_id must be between 1 and 2147483647", id="recommend: model_id 2^40"),
    pytest.param(lambda c: pe.search_text(c, "red", rrf_k=1.5), InvalidInputError,
                 "rrf_k must be an integer, got float", id="search_text: rrf_k 1.5"),
    pytest.param(lambda c: pe.recommend(c, "alice", diversity="x"), InvalidInputError,
                 "diversity must be a number between 0 and 1", id="recommend: diversity 'x'"),
    pytest.param(lambda c: pe.recommend(c, "alice", popularity=float("nan")), InvalidInputError,
                 "popularity must be between 0 and 1", id="recommend: popularity NaN"),
    pytest.param(lambda c: pe.search(c, [0.1] * 16001), InvalidInputError,
                 "query vector has 16001 dimensions", id="search: 16,001 dimensions"),
    pytest.param(lambda c: pe.search(c, "\u200b\u200f\ufeff\u2060"), InvalidInputError,
                 "empty text query", id="search: only invisible characters"),
    pytest.param(lambda c: pe.search_text(c, "\u200b\ufeff"), InvalidInputError,
                 "empty text query", id="search_text: only invisible characters"),
    pytest.param(lambda c: pe.search(c, [0.1, 0.2, 0.3]), InvalidInputError,
                 "query has 3 dimensions", id="search: wrong dimension"),
    pytest.param(lambda c: pe.search(c, [float("nan"), *VEC[1:]]), InvalidInputError,
                 "query vector contains NaN or Infinity", id="search: NaN component"),
    pytest.param(lambda c: pe.search(c, [float("inf"), *VEC[1:]]), InvalidInputError,
                 "query vector contains NaN or Infinity", id="search: Infinity component"),
    pytest.param(lambda c: pe.search(c, [VEC]), InvalidInputError,
                 "query must be a non-empty 1-D vector", id="search: 2-D query"),
    pytest.param(lambda c: pe.search(c, ""), InvalidInputError, "empty text query",
                 id="search: empty text"),
    pytest.param(lambda c: pe.search(c, " \n\t"), InvalidInputError, "empty text query",
                 id="search: blank text"),
    pytest.param(lambda c: pe.search(c, "caf\ud800e"), InvalidInputError, "not valid UTF-8",
                 id="search: lone surrogate in text"),
    pytest.param(lambda c: pe.search(c, VEC, k=0), InvalidInputError,
                 "k must be between 1 and 1000, got 0", id="search: k=0"),
    pytest.param(lambda c: pe.search(c, VEC, k=10**9), InvalidInputError,
                 "k must be between 1 and 1000, got 1000000000", id="search: huge k"),
    pytest.param(lambda c: pe.search(c, VEC, k="10"), InvalidInputError,
                 "k must be an integer", id="search: k is a string"),
    pytest.param(lambda c: pe.search(c, VEC, k=2.5), InvalidInputError,
                 "k must be an integer", id="search: k is a float"),
    pytest.param(lambda c: pe.search(c, VEC, filters=["category"]), InvalidInputError,
                 "filters must be a JSON object, got array", id="search: filters is a list"),
    pytest.param(lambda c: pe.search(c, VEC, filters={"colour": "red"}), InvalidInputError,
                 "unknown filter key 'colour'", id="search: unknown filter key"),
    pytest.param(lambda c: pe.search(c, VEC, filters={"price": {"lt": float("nan")}}),
                 InvalidInputError, "NaN", id="search: NaN in filters"),
    pytest.param(lambda c: pe.search(c, VEC, filters={DROP_ITEMS_KEY: "x"}), InvalidInputError,
                 f"unknown filter key '{DROP_ITEMS_KEY}'", id="search: injection in filter key"),
    pytest.param(lambda c: pe.search(c, VEC, exclude_user="nobody"), NotFoundError,
                 "unknown user 'nobody'", id="search: unknown exclude_user external id"),
    pytest.param(lambda c: pe.search(c, VEC, exclude_user=999999), NotFoundError,
                 "unknown user_id 999999", id="search: unknown exclude_user id"),
    pytest.param(lambda c: pe.search(c, VEC, model_id=999), NotFoundError,
                 "unknown model_id 999", id="search: unknown model"),
    pytest.param(lambda c: pe.search_similar(c, 1.5), InvalidInputError,
                 "an item is an int item_id or a str external id", id="search_similar: float id"),
    pytest.param(lambda c: pe.search(c, ["a", "b"]), InvalidInputError,
                 "query must be a text or a vector of numbers", id="search: vector of strings"),
    pytest.param(lambda c: pe.search_text(c, "word " * 3000, vector=False), InvalidInputError,
                 "at most 10000 characters", id="search_text: text over 10000 characters"),
    pytest.param(lambda c: pe.search_similar(c, "ghost"), NotFoundError,
                 "unknown item 'ghost'", id="search_similar: unknown external id"),
    pytest.param(lambda c: pe.search_similar(c, 999999), NotFoundError,
                 "unknown item_id 999999", id="search_similar: unknown item_id"),
    pytest.param(lambda c: pe.search_similar(c, "novec"), NotFoundError,
                 "has no vector for model", id="search_similar: item without vector"),
    pytest.param(lambda c: pe.search_text(c, ""), InvalidInputError, "empty text query",
                 id="search_text: empty text"),
    pytest.param(lambda c: pe.search_text(c, "the of and", vector=False), InvalidInputError,
                 "needs query_text with words", id="search_text: stop words only"),
    pytest.param(lambda c: pe.explain_search(c, VEC, filters={"tags": "red"}), InvalidInputError,
                 "filter tags: expected", id="explain_search: tags is a string"),
    pytest.param(lambda c: pe.recommend(c, "nobody"), NotFoundError, "unknown user 'nobody'",
                 id="recommend: unknown external id"),
    pytest.param(lambda c: pe.recommend(c, 999999), NotFoundError, "unknown user_id 999999",
                 id="recommend: unknown user_id"),
    pytest.param(lambda c: pe.recommend(c, DROP_USERS_ID), NotFoundError,
                 f"unknown user '{DROP_USERS_ID}'", id="recommend: injection in user id"),
    pytest.param(lambda c: pe.recommend(c, "alice", k=0), InvalidInputError,
                 "k must be between 1 and 1000, got 0", id="recommend: k=0"),
    pytest.param(lambda c: pe.recommend(c, "alice", k="five"), InvalidInputError,
                 "k must be an integer", id="recommend: k is a word"),
    pytest.param(lambda c: pe.recommend(c, "alice", diversity=1.5), InvalidInputError,
                 "diversity must be between 0 and 1, got 1.5", id="recommend: diversity=1.5"),
    pytest.param(lambda c: pe.recommend(c, "alice", vectors="all"), InvalidInputError,
                 "vectors must be one of auto, long_term", id="recommend: unknown vectors kind"),
    pytest.param(lambda c: pe.recommend(c, "alice", positive=["ghost"]), NotFoundError,
                 "unknown item 'ghost'", id="recommend: unknown positive example"),
    pytest.param(lambda c: pe.recommend(c, "alice", filters="category=books"), InvalidInputError,
                 "filters must be a JSON object, got string", id="recommend: filters is a str"),
    pytest.param(lambda c: pe.recommend(c, "alice", model_id=999), NotFoundError,
                 "unknown model_id 999", id="recommend: unknown model"),
    pytest.param(lambda c: pe.refresh_user(c, "nobody"), NotFoundError, "unknown user 'nobody'",
                 id="refresh_user: unknown external id"),
    pytest.param(lambda c: pe.refresh_user(c, 999999), NotFoundError, "unknown user_id 999999",
                 id="refresh_user: unknown user_id"),
    pytest.param(lambda c: pe.refresh_user(c, 1.0), InvalidInputError,
                 "a user is an int user_id or a str external id", id="refresh_user: float id"),
    pytest.param(lambda c: pe.refresh_user(c, "alice", model_id=999), NotFoundError,
                 "unknown model_id 999", id="refresh_user: unknown model"),
    pytest.param(lambda c: pe.activate_model(c, "nope"), NotFoundError,
                 "no embedding model 'nope'", id="activate_model: unknown name"),
    pytest.param(lambda c: pe.activate_model(c, "all-MiniLM-L6-v2", "nope"), NotFoundError,
                 "no embedding model 'all-MiniLM-L6-v2:nope'",
                 id="activate_model: unknown version"),
    pytest.param(encode(["ok", ""]), InvalidInputError, "text 1 is empty",
                 id="Encoder.encode: empty text"),
    pytest.param(encode(["ok", "\udcff"]), InvalidInputError, "text 1 is not valid UTF-8",
                 id="Encoder.encode: lone surrogate"),
    pytest.param(encode("hello"), InvalidInputError, "list of strings",
                 id="Encoder.encode: a str, not a list"),
    pytest.param(encode([42]), InvalidInputError, "text 0 is not a string",
                 id="Encoder.encode: a number"),
]


@pytest.mark.parametrize(("call", "error", "message"), PYTHON_CASES)
def test_python_api_refuses(db: Guarded, call: Callable[[psycopg.Connection[Any]], Any],
                            error: type[Exception], message: str) -> None:
    with db.case() as conn:
        with pytest.raises(Exception) as info:
            call(conn)
        assert type(info.value) is error, f"{type(info.value).__name__}: {info.value}"
        assert message in str(info.value)


PYTHON_HARMLESS = [
    pytest.param(lambda c: pe.search(c, VEC, filters={"category": DELETE_VALUE}), 0,
                 id="search: injection in filter value"),
    pytest.param(lambda c: pe.search(c, DELETE_VALUE, filters={"external_id": DROP_USERS_ID}), 0,
                 id="search: injection as text and value"),
    pytest.param(lambda c: pe.recommend(c, "alice", filters={"category": DELETE_VALUE}), 0,
                 id="recommend: injection in filter value"),
    pytest.param(lambda c: pe.search(c, ONE_MB, k=3), 3, id="search: 1 MB text is truncated"),
]


@pytest.mark.parametrize(("call", "hits"), PYTHON_HARMLESS)
def test_python_api_extreme_but_valid_input_is_harmless(
        db: Guarded, call: Callable[[psycopg.Connection[Any]], Any], hits: int) -> None:
    with db.case() as conn:
        assert len(call(conn)) == hits


# ------------------------------------------------------------------------------------ 3. CLI

EVENTS_UNKNOWN_USER = b"user,item,event_type\nalice,it1,view\nnobody,it1,view\n"
ITEMS_BAD_UTF8 = b"external_id,title\nnew-1,ok\nnew-2,caf\xe9\n"
EVENTS_HUGE_TS = b'{"user": "alice", "item": "it1", "event_type": "view", "occurred_at": 1e20}\n'

CLI_CASES = [
    pytest.param(["search", "--similar-to", "it0", "--filter", json.dumps({DROP_ITEMS_KEY: 1})],
                 {}, [f"unknown filter key '{DROP_ITEMS_KEY}'"],
                 id="search: injection in filter key"),
    pytest.param(["search", "--similar-to", "it0", "--filter", "not json"], {},
                 ["argument --filter: not valid JSON", "'not json'"],
                 id="search: filter is not JSON"),
    pytest.param(["evaluate", "--cutoff", "last tuesday"], {},
                 ["argument --cutoff: not an ISO 8601 timestamp"], id="evaluate: bad cutoff"),
    pytest.param(["search", "--similar-to", "it0", "--filter", '{"price": {"lt": NaN}}'], {},
                 ["NaN"], id="search: NaN in filter"),
    pytest.param(["search", "--similar-to", "ghost"], {}, ["unknown item 'ghost'"],
                 id="search: unknown item"),
    pytest.param(["search", b"caf\xff"], {}, ["not valid UTF-8"],
                 id="search: invalid UTF-8 argument"),
    pytest.param(["recommend", DROP_USERS_ID], {}, [f"unknown user '{DROP_USERS_ID}'"],
                 id="recommend: injection in user id"),
    pytest.param(["refresh-users", "--batch", "0"], {}, ["batch must be >= 1, got 0"],
                 id="refresh-users: batch=0"),
    pytest.param(["model", "activate", "nope"], {}, ["no embedding model 'nope'"],
                 id="model activate: unknown model"),
    pytest.param(["recommend", b"\xff\xfe"], {}, ["not valid UTF-8"],
                 id="recommend: undecodable user id"),
    pytest.param(["worker", "--interval", "-1", "--once"], {},
                 ["--batch-size and --interval must be positive"], id="worker: interval -1"),
    pytest.param(["model", "register", "/etc/passwd", "--tokenizer", "/etc/passwd",
                  "--name", "x"], {}, ["cannot load tokenizer /etc/passwd"],
                 id="model register: not a tokenizer"),
    pytest.param(["migrate", "--to", "nonsense"], {}, ["nonsense"], id="migrate: unknown rev"),
    pytest.param(["load", "events", "{tmp}/events.csv"], {"events.csv": EVENTS_UNKNOWN_USER},
                 ["events.csv: row 2: unknown user 'nobody'"], id="load: unknown user in event"),
    pytest.param(["load", "items", "{tmp}/items.csv"], {"items.csv": ITEMS_BAD_UTF8},
                 ["row 2", "not valid UTF-8"], id="load: invalid UTF-8 bytes"),
    pytest.param(["load", "events", "{tmp}/events.jsonl"], {"events.jsonl": EVENTS_HUGE_TS},
                 ["row 1: occurred_at: not a timestamp"], id="load: huge numeric timestamp"),
]


def run_cli(db_url: str, args: list[str | bytes], tmp: Path) -> subprocess.CompletedProcess[str]:
    argv = [a.replace("{tmp}", str(tmp)) if isinstance(a, str) else a for a in args]
    return subprocess.run(
        [sys.executable, "-m", "pyembed_db.cli.main", "--database-url", db_url, *argv],
        capture_output=True, text=True, errors="replace", cwd=ROOT, timeout=120,
        env={**os.environ, "PYEMBED_THREADS": "1"})


@pytest.mark.parametrize(("args", "files", "messages"), CLI_CASES)
def test_cli_exits_2_with_a_message(db: Guarded, tmp_path: Path, args: list[str | bytes],
                                    files: dict[str, bytes], messages: list[str]) -> None:
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    with db.unchanged():
        result = run_cli(db.url, args, tmp_path)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, result.stderr
    assert all(m in result.stderr for m in messages), result.stderr


def test_cli_injection_in_filter_value_is_harmless(db: Guarded, tmp_path: Path) -> None:
    with db.unchanged():
        result = run_cli(db.url, ["search", "--similar-to", "it0", "--json", "--filter",
                                  json.dumps({"category": DELETE_VALUE})], tmp_path)
    assert (result.returncode, result.stderr) == (0, "")
    assert json.loads(result.stdout) == []


# --------------------------------------------------------------------------------- 4. loader

LOADER_CASES = [
    pytest.param("events", "events.csv", "user,item\nalice,it1\n", None,
                 "missing required column(s) event_type for events", id="missing column"),
    pytest.param("items", "items.csv", "external_id,colour\nnew-1,red\n", None,
                 "unknown column(s) colour", id="unknown column"),
    pytest.param("events", "events.csv", EVENTS_UNKNOWN_USER, 2, "unknown user 'nobody'",
                 id="unknown user in event"),
    pytest.param("events", "events.csv", "user,item,event_type\nalice,ghost,view\n", 1,
                 "unknown item 'ghost'", id="unknown item in event"),
    pytest.param("events", "events.csv", "user,item,event_type\nalice,it1,teleport\n", 1,
                 "unknown event type 'teleport'", id="unknown event type"),
    pytest.param("events", "events.csv",
                 f"user,item,event_type\n\"{DELETE_VALUE}\",it1,view\n", 1,
                 "unknown user 'x''); delete from pyembed.items; --'", id="injection in user id"),
    pytest.param("events", "events.csv", "user,item,event_type,occurred_at\n"
                 "alice,it1,view,2024-01-01\nalice,it1,view,yesterday-ish\n", 2,
                 "occurred_at: not a timestamp: 'yesterday-ish'", id="malformed timestamp"),
    pytest.param("events", "events.jsonl", EVENTS_HUGE_TS, 1, "occurred_at: not a timestamp",
                 id="huge numeric timestamp"),
    pytest.param("events", "events.csv",
                 "user,item,event_type,value\nalice,it1,rating,4\nalice,it1,rating,nan\n", 2,
                 "value: must be finite", id="NaN value"),
    pytest.param("events", "events.jsonl",
                 '{"user": "alice", "item": "it1", "event_type": "rating", "value": 1e300}\n', 1,
                 "value", id="value out of range for real"),
    pytest.param("users", "users.csv", "external_id,attributes\nnew-u1,{oops\n", 1,
                 "attributes: invalid JSON", id="bad JSON attributes"),
    pytest.param("users", "users.csv", 'external_id,attributes\nnew-u1,"[1, 2]"\n', 1,
                 "attributes: must be a JSON object, got list", id="attributes not an object"),
    pytest.param("users", "users.jsonl", '{"external_id": "new-u1"}\n'
                 '{"external_id": "new-u2", "attributes": {"a": "\\u0000"}}\n', 2,
                 "attributes", id="NUL escape in attributes"),
    pytest.param("items", "items.csv", "external_id,price\nnew-1,5\nnew-2,-3\n", 2,
                 "price: must be >= 0, got -3", id="negative price"),
    pytest.param("items", "items.csv", "external_id,price\nnew-1,cheap\n", 1,
                 "price: not a number: 'cheap'", id="price is not a number"),
    pytest.param("items", "items.csv", "external_id,price\nnew-1,inf\n", 1,
                 "price: must be finite", id="Infinity price"),
    pytest.param("items", "items.csv", "external_id,price\nnew-1,5\nnew-2,1e20\n", 2,
                 "price", id="price too large for numeric(14,2)"),
    pytest.param("items", "items.jsonl", '{"external_id": "new-1", "tags": 5}\n', 1,
                 "tags: must be a list of strings", id="tags not a list"),
    pytest.param("users", "users.csv", "external_id\nd1\nd2\nd1\n", 3,
                 "duplicate external_id 'd1'", id="duplicate keys"),
    pytest.param("users", "users.csv", "external_id\nnew-u1\n  \n", 2,
                 "external_id is required", id="blank external_id"),
    pytest.param("users", "users.csv", "external_id\n" + "x" * 600 + "\n", 1,
                 "external_id is longer than 512 characters", id="external_id too long"),
    pytest.param("items", "items.csv", "external_id,title\nnew-1,a\x00b\n", 1,
                 "title contains a NUL character", id="NUL character"),
    pytest.param("items", "items.csv", ITEMS_BAD_UTF8, 2, "not valid UTF-8",
                 id="invalid UTF-8 bytes"),
    pytest.param("users", "users.jsonl", '{"external_id": "new-u1"}\n{"external_id": \n', 2,
                 "invalid JSON", id="bad JSON line"),
    pytest.param("users", "users.jsonl", '["new-u1"]\n', 1, "each line must be a JSON object",
                 id="JSON line is not an object"),
    pytest.param("users", "users.csv", "external_id\nnew-u1,extra\n", None,
                 "more fields than the header has, at line 2", id="more fields than header"),
    pytest.param("users", "users.xml", "<users/>", None, "cannot tell the format of users.xml",
                 id="unknown format"),
]


@pytest.mark.parametrize(("kind", "name", "content", "row", "message"), LOADER_CASES)
def test_load_file_refuses_and_names_the_row(db: Guarded, tmp_path: Path, kind: str, name: str,
                                             content: str | bytes, row: int | None,
                                             message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with db.case() as conn:
        with pytest.raises(Exception) as info:
            pe.load_file(conn, kind, path)
        assert type(info.value) is LoadError, f"{type(info.value).__name__}: {info.value}"
        assert (info.value.row, info.value.source) == (row, str(path)), str(info.value)
        assert message in str(info.value)


def test_load_file_missing_file(db: Guarded, tmp_path: Path) -> None:
    with db.case() as conn, pytest.raises(LoadError, match="not found"):
        pe.load_file(conn, "users", tmp_path / "nothing.csv")


LOAD_ROWS_CASES = [
    pytest.param("products", ["external_id"], [{"external_id": "new-1"}], None,
                 "unknown kind 'products'", id="unknown kind"),
    pytest.param("users", ["external_id"], [{"external_id": "new-u1"}, {"external_id": "b\ud800"}],
                 2, "external_id: not valid UTF-8", id="lone surrogate in id"),
    pytest.param("users", ["external_id", "attributes"],
                 [{"external_id": "new-u1", "attributes": {"k": "\ud800"}}], 1,
                 "attributes", id="lone surrogate in attributes"),
    pytest.param("events", ["user", "item", "event_type", "occurred_at"],
                 [{"user": "alice", "item": "it1", "event_type": "view",
                   "occurred_at": float("inf")}], 1,
                 "occurred_at: not a timestamp", id="Infinity timestamp"),
]


@pytest.mark.parametrize(("kind", "columns", "rows", "row", "message"), LOAD_ROWS_CASES)
def test_load_rows_refuses_and_names_the_row(db: Guarded, kind: str, columns: list[str],
                                             rows: list[dict[str, Any]], row: int | None,
                                             message: str) -> None:
    with db.case() as conn:
        with pytest.raises(Exception) as info:
            pe.load_rows(conn, kind, columns, rows)
        assert type(info.value) is LoadError, f"{type(info.value).__name__}: {info.value}"
        assert info.value.row == row, str(info.value)
        assert message in str(info.value)


# ------------------------------------------- SQL and Python: no active model (PE001 / ModelError)

NO_MODEL_CASES = [
    pytest.param(lambda c: c.execute("select * from pyembed.search(%s, 5)", (Q,)).fetchall(),
                 psycopg.Error, id="SQL search"),
    pytest.param(lambda c: c.execute("select * from pyembed.recommend(1, 5)").fetchall(),
                 psycopg.Error, id="SQL recommend"),
    pytest.param(lambda c: pe.search(c, VEC), ModelError, id="Python search, vector"),
    pytest.param(lambda c: pe.search(c, "space adventure"), ModelError, id="Python search, text"),
    pytest.param(lambda c: pe.refresh_user(c, "alice"), ModelError, id="Python refresh_user"),
]


@pytest.mark.parametrize(("call", "error"), NO_MODEL_CASES)
def test_no_active_model(db: Guarded, call: Callable[[psycopg.Connection[Any]], Any],
                         error: type[Exception]) -> None:
    """PE001 / ModelError, seen inside a transaction that retires the model and rolls back."""
    with db.case() as conn:
        conn.execute("update pyembed.embedding_models set status = 'registered' "
                     "where status = 'active'")
        with pytest.raises(Exception) as info:
            call(conn)
        assert isinstance(info.value, error), f"{type(info.value).__name__}: {info.value}"
        assert "no active embedding model" in str(info.value)
        if error is psycopg.Error:
            assert getattr(info.value, "sqlstate", None) == "PE001"
        conn.rollback()


def test_argument_check_examples_run() -> None:
    import doctest

    from pyembed_db import arguments

    result = doctest.testmod(arguments)
    assert result.failed == 0 and result.attempted >= 5


@pytest.mark.parametrize("value", ["abc", "0", "-2", "1.5"])
def test_bad_thread_count_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch,
                                                   value: str) -> None:
    from pyembed_db import ConfigurationError, load_settings

    monkeypatch.setenv("PYEMBED_THREADS", value)
    with pytest.raises(ConfigurationError, match="PYEMBED_THREADS must be a positive integer"):
        load_settings()
