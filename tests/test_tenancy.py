"""Row-level security: a session of tenant A never sees or writes a row of tenant B."""

from __future__ import annotations

import json
import random
import re
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import psycopg
import pytest


@pytest.fixture(scope="module")
def tenants_url(db_url: str) -> str:
    with psycopg.connect(db_url) as owner:
        for tenant in ("acme", "globex"):
            owner.execute("select set_config('pyembed.tenant_id', %s, false)", (tenant,))
            owner.execute(
                "insert into pyembed.users (external_id) "
                "select 'u' || n from generate_series(1, 5) n"
            )
            owner.execute(
                "insert into pyembed.items (external_id, title, category) "
                "select 'i' || n, %s || ' item ' || n, 'c' || (n %% 3) "
                "from generate_series(1, 20) n",
                (tenant,),
            )
            owner.execute(
                "insert into pyembed.events (user_id, item_id, event_type) "
                "select u.user_id, i.item_id, 'view' from pyembed.users u join pyembed.items i "
                "on u.tenant_id = i.tenant_id where u.tenant_id = %s and i.external_id <= 'i3'",
                (tenant,),
            )
    return db_url


@pytest.fixture
def session(tenants_url: str) -> Iterator[Any]:
    conns: list[psycopg.Connection[Any]] = []

    def open_session(role: str, tenant: str | None) -> psycopg.Connection[Any]:
        conn = psycopg.connect(tenants_url, autocommit=True)
        conn.execute(f"set role {role}")
        if tenant is not None:
            conn.execute("select set_config('pyembed.tenant_id', %s, false)", (tenant,))
        conns.append(conn)
        return conn

    yield open_session
    for conn in conns:
        conn.close()


def test_same_external_ids_coexist_across_tenants(tenants_url: str) -> None:
    with psycopg.connect(tenants_url) as owner:
        rows = owner.execute(
            "select tenant_id, count(*) from pyembed.items where external_id = 'i1' group by 1"
        ).fetchall()
    assert sorted(rows) == [("acme", 1), ("globex", 1)]


@pytest.mark.parametrize("tenant", ["acme", "globex"])
def test_reader_sees_only_its_tenant(session: Any, tenant: str) -> None:
    reader = session("pyembed_reader", tenant)
    for table in ("users", "items", "events"):
        tenants = reader.execute(f"select distinct tenant_id from pyembed.{table}").fetchall()
        assert tenants == [(tenant,)], table
    titles = [r[0] for r in reader.execute("select title from pyembed.items").fetchall()]
    assert len(titles) == 20 and all(t.startswith(tenant) for t in titles)


def test_no_tenant_set_sees_no_tenant_rows(session: Any) -> None:
    reader = session("pyembed_reader", None)
    assert reader.execute("select count(*) from pyembed.items").fetchone() == (0,)


def test_writer_cannot_write_into_another_tenant(session: Any) -> None:
    writer = session("pyembed_writer", "acme")
    writer.execute("insert into pyembed.items (external_id, title) values ('new', 'acme new')")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        writer.execute(
            "insert into pyembed.items (tenant_id, external_id, title) "
            "values ('globex', 'sneaky', 'x')"
        )
    updated = writer.execute("update pyembed.items set title = 'x' where tenant_id = 'globex'")
    assert updated.rowcount == 0


def test_worker_sees_every_tenant(session: Any) -> None:
    worker = session("pyembed_worker", None)
    row = worker.execute("select count(distinct tenant_id) from pyembed.items").fetchone()
    assert row == (2,)


@pytest.fixture
def bound_login(tenants_url: str) -> Iterator[Any]:
    """Login roles (member of a pyembed group) bound to a tenant with pyembed.bind_tenant."""
    made: list[str] = []

    def login(group: str, tenant: str) -> psycopg.Connection[Any]:
        name = f"t_{group[8:]}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(tenants_url, autocommit=True) as owner:
            owner.execute(f"create role {name} login in role {group}")
            owner.execute("select pyembed.bind_tenant(%s, %s)", (name, tenant))
        made.append(name)
        return psycopg.connect(tenants_url, user=name, autocommit=True)

    yield login
    with psycopg.connect(tenants_url, autocommit=True) as owner:
        for name in made:
            owner.execute("delete from pyembed.tenant_roles where role_name = %s", (name,))
            owner.execute(f"drop owned by {name}")
            owner.execute(f"drop role {name}")


def test_bound_reader_cannot_switch_tenant(bound_login: Any) -> None:
    with bound_login("pyembed_reader", "acme") as reader:
        # the binding set the role's default, so the session starts in its tenant
        assert reader.execute("show pyembed.tenant_id").fetchone() == ("acme",)
        for setting in ("globex", ""):
            reader.execute("select set_config('pyembed.tenant_id', %s, false)", (setting,))
            assert reader.execute("select pyembed.current_tenant()").fetchone() == ("acme",)
            for table in ("users", "items", "events"):
                tenants = reader.execute(
                    f"select distinct tenant_id from pyembed.{table}").fetchall()
                assert tenants == [("acme",)], (setting, table)
        # nor can it read the bindings of other roles, or rebind itself
        assert reader.execute("select count(*) from pyembed.tenant_roles").fetchone() == (1,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            reader.execute("select pyembed.bind_tenant(current_user, 'globex')")


def test_binding_bounds_statement_and_idle_time_unless_already_set(
        bound_login: Any, tenants_url: str) -> None:
    with bound_login("pyembed_reader", "acme") as reader:
        assert reader.execute("show statement_timeout").fetchone() == ("1min",)
        assert reader.execute("show idle_in_transaction_session_timeout").fetchone() == ("5min",)
        name = reader.execute("select current_user").fetchone()[0]
    with psycopg.connect(tenants_url, autocommit=True) as owner:
        database = owner.execute("select current_database()").fetchone()[0]
        owner.execute(f"alter role {name} in database {database} set statement_timeout = '5s'")
        owner.execute("select pyembed.bind_tenant(%s, 'globex')", (name,))  # keeps 5s
    with psycopg.connect(tenants_url, user=name, autocommit=True) as again:
        assert again.execute("show statement_timeout").fetchone() == ("5s",)
        assert again.execute("select pyembed.current_tenant()").fetchone() == ("globex",)
        # what the limit is for: a query past it is cancelled, not left running
        with pytest.raises(psycopg.errors.QueryCanceled):
            again.execute("set statement_timeout = '100ms'; select pg_sleep(1)")


def test_bound_writer_cannot_write_into_another_tenant(bound_login: Any) -> None:
    with bound_login("pyembed_writer", "globex") as writer:
        writer.execute("insert into pyembed.users (external_id) values ('bound-1')")
        assert writer.execute("select tenant_id from pyembed.users where external_id = 'bound-1'"
                              ).fetchone() == ("globex",)
        writer.execute("set pyembed.tenant_id = 'acme'")
        for sql in ("insert into pyembed.users (external_id) values ('bound-2')",
                    "insert into pyembed.users (tenant_id, external_id) values ('acme', 'b3')"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                writer.execute(sql)
        updated = writer.execute("update pyembed.users set attributes = '{}' "
                                 "where tenant_id = 'acme'")
        assert updated.rowcount == 0


def test_only_administrators_bind_tenants(session: Any) -> None:
    worker = session("pyembed_worker", None)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        worker.execute("select pyembed.bind_tenant('pyembed_reader', 'acme')")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        worker.execute("insert into pyembed.tenant_roles values ('pyembed_reader', 'acme')")


# --- Fuzzed proof that the SQL functions (SECURITY INVOKER) obey row-level security -----------
#
# Two tenants share external ids, categories, tags and title words; half of globex's vectors are
# near-duplicates of acme's and item ids interleave, so a search that ignored RLS would almost
# surely return the other tenant's twin. Untenanted rows (tenant_id NULL) are mixed in too.

DIMS = 16
PER_TENANT = 900
CATEGORIES = ["books", "music", "games", "toys", "rare"]
TAGS = ["red", "green", "blue", "new", "sale", "eco"]
COLORS = ["red", "black", "white"]
BRANDS = ["zeta", "omni", "kilo", "nova"]
WORDS = ["lamp", "chair", "garden", "river", "copper", "velvet", "rocket", "meadow", "canyon",
         "harbor", "maple", "cobalt", "saffron", "granite", "orbit", "willow"]
TENANTS = ("acme", "globex")
EPOCH = datetime(2020, 1, 1, tzinfo=timezone.utc)
STRATEGIES = ("exact", "hnsw", "auto")


@dataclass
class World:
    """What the owner sees after the load, item arrays in item_id order (all tenants)."""

    model_id: int
    index: str
    ids: np.ndarray
    tenant: np.ndarray          # '' for untenanted rows
    external: list[str]
    category: list[str | None]
    price: np.ndarray           # nan when NULL
    created: np.ndarray         # epoch seconds
    tags: np.ndarray            # bool (items, TAGS)
    attributes: list[dict[str, Any]]
    vectors: np.ndarray         # unit rows; zeros without a vector
    has_vector: np.ndarray
    popularity: np.ndarray      # cached score, 0 when not cached
    liked: np.ndarray           # has an event with a positive weight (live popularity)
    user_tenant: dict[int, str]
    seen: dict[int, set[int]]
    kinds: dict[int, set[str]]

    def tenant_of(self, item_id: int) -> str:
        return str(self.tenant[np.searchsorted(self.ids, item_id)])

    def own(self, tenant: str) -> np.ndarray:
        return self.tenant == tenant

    def ids_mask(self, ids: Any) -> np.ndarray:
        return np.isin(self.ids, np.asarray(list(ids), dtype=np.int64))

    def users_of(self, tenant: str) -> list[int]:
        return sorted(u for u, t in self.user_tenant.items() if t == tenant)

    def mask(self, filters: dict[str, Any]) -> np.ndarray:
        """Brute-force evaluation of the filter grammar (README, "Search")."""
        m = np.ones(len(self.ids), dtype=bool)
        for key, spec in filters.items():
            m &= self._condition(key, spec)
        return m

    def _condition(self, key: str, spec: Any) -> np.ndarray:
        if key in ("category", "external_id"):
            column = self.category if key == "category" else self.external
            if isinstance(spec, str) or "eq" in spec:
                value = spec if isinstance(spec, str) else spec["eq"]
                return np.array([v == value for v in column])
            values = set(spec.get("in", spec.get("not_in", [])))
            if "in" in spec:
                return np.array([v in values for v in column])
            return np.array([v is not None and v not in values for v in column])
        if key in ("price", "created_at"):
            column = self.price if key == "price" else self.created
            m = np.ones(len(self.ids), dtype=bool)
            for op, raw in spec.items():
                bound = raw if key == "price" else datetime.fromisoformat(raw).timestamp()
                m &= {"gt": np.greater, "gte": np.greater_equal, "lt": np.less,
                      "lte": np.less_equal, "eq": np.equal}[op](column, bound)
            return m
        if key == "tags":
            op, values = ("contains", spec) if isinstance(spec, list) else next(iter(spec.items()))
            cols = self.tags[:, [TAGS.index(t) for t in values]]
            return cols.all(axis=1) if op == "contains" else cols.any(axis=1)
        if key == "attributes":
            return np.array([all(a.get(k) == v for k, v in spec.items())
                             for a in self.attributes])
        op, values = next(iter(spec.items()))      # item_id
        return self.ids_mask(values) if op == "in" else ~self.ids_mask(values)


def _item_rows(rng: np.random.Generator) -> list[tuple[Any, ...]]:
    """(tenant, external_id, vector or None, title, body, category, tags, price, created, attrs)"""
    centers = rng.normal(size=(12, DIMS))

    def near_center() -> np.ndarray:
        return centers[rng.integers(12)] + 0.5 * rng.normal(size=DIMS)

    def attributes() -> tuple[Any, ...]:
        words = rng.choice(WORDS, size=7)
        category = (None if rng.random() < 0.05 else
                    str(rng.choice(CATEGORIES, p=[0.45, 0.25, 0.15, 0.12, 0.03])))
        return (" ".join(words[:3]), " ".join(words[3:]), category,
                [t for t in TAGS if rng.random() < 0.3], round(float(rng.uniform(0, 100)), 2),
                EPOCH + timedelta(hours=int(rng.integers(0, 24 * 730))),
                json.dumps({"color": str(rng.choice(COLORS)), "brand": str(rng.choice(BRANDS)),
                            "rank": int(rng.integers(0, 10))}))

    rows: list[tuple[Any, ...]] = []
    for j in range(PER_TENANT):
        base = near_center()
        # Even j: globex's item is acme's twin (cosine distance ~1e-4) -- the leak bait.
        twin = base + 0.01 * rng.normal(size=DIMS) if j % 2 == 0 else near_center()
        for tenant, vec in (("acme", base), ("globex", twin)):
            rows.append((tenant, f"sku-{j}", None if rng.random() < 0.03 else vec,
                         *attributes()))
    rows += [(None, f"sku-{j}", near_center(), *attributes()) for j in range(40)]
    return [rows[i] for i in rng.permutation(len(rows))]   # interleaved item ids


def _load(owner: psycopg.Connection[Any], rng: np.random.Generator) -> int:
    model_id = owner.execute(
        "insert into pyembed.embedding_models (name, dimensions, checksum, status) "
        "values ('tenancy-fuzz', %s, repeat('0', 64), 'active') returning model_id", (DIMS,)
    ).fetchone()[0]
    rows = _item_rows(rng)
    with owner.cursor().copy(
        "copy pyembed.items (tenant_id, external_id, title, body, category, tags, price, "
        "created_at, attributes) from stdin"
    ) as copy:
        for tenant, ext, _vec, *rest in rows:
            copy.write_row((tenant, ext, *rest))
    item_id = {(t, e): i for i, t, e in owner.execute(
        "select item_id, tenant_id, external_id from pyembed.items where external_id ~ '^sku-'")}
    with owner.cursor().copy(
        "copy pyembed.item_embeddings (model_id, item_id, embedding, content_hash) from stdin"
    ) as copy:
        for tenant, ext, vec, *_ in rows:
            if vec is not None:
                copy.write_row((model_id, item_id[tenant, ext],
                                "[" + ",".join(map(str, vec / np.linalg.norm(vec))) + "]", b"x"))
    now = datetime.now(timezone.utc)
    for tenant in TENANTS:
        with owner.cursor().copy("copy pyembed.users (tenant_id, external_id) from stdin") as copy:
            for n in range(40):
                copy.write_row((tenant, f"cust-{n}"))
        users = [r[0] for r in owner.execute(
            "select user_id from pyembed.users where tenant_id = %s and external_id ~ '^cust-'",
            (tenant,))]
        items = [i for (t, _), i in item_id.items() if t == tenant]
        with owner.cursor().copy(
            "copy pyembed.events (tenant_id, user_id, item_id, event_type, value, occurred_at) "
            "from stdin"
        ) as copy:
            for user in users:
                types = (["dislike"] if rng.random() < 0.1 else
                         ["view", "click", "add_to_cart", "purchase", "like", "dislike", "rating"])
                for _ in range(int(rng.integers(0, 25))):
                    kind = str(rng.choice(types))
                    copy.write_row((tenant, user, int(rng.choice(items)), kind,
                                    int(rng.integers(1, 6)) if kind == "rating" else None,
                                    now - timedelta(hours=float(rng.uniform(0, 24 * 120)))))
    owner.commit()
    return int(model_id)


def _snapshot(owner: psycopg.Connection[Any], model_id: int, index: str) -> World:
    rows = owner.execute(
        "select i.item_id, coalesce(i.tenant_id, ''), i.external_id, i.category, i.tags, "
        "       i.price::float8, extract(epoch from i.created_at)::float8, i.attributes, "
        "       ie.embedding::text, coalesce(p.score, 0) "
        "from pyembed.items i "
        "left join pyembed.item_embeddings ie on ie.item_id = i.item_id and ie.model_id = %s "
        "left join pyembed.item_popularity p on p.item_id = i.item_id order by i.item_id",
        (model_id,)).fetchall()
    vectors = np.array([json.loads(r[8]) if r[8] else [0.0] * DIMS for r in rows])
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    liked: set[int] = set()
    seen: dict[int, set[int]] = {}
    for user, item, weight in owner.execute(
            "select e.user_id, e.item_id, pyembed.rule_weight(t.weight, e.event_type, e.value) "
            "from pyembed.events e join pyembed.event_types t using (event_type)"):
        seen.setdefault(user, set()).add(item)
        if weight > 0:
            liked.add(item)
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    return World(
        model_id=model_id, index=index, ids=ids,
        tenant=np.array([r[1] for r in rows], dtype=object), external=[r[2] for r in rows],
        category=[r[3] for r in rows],
        price=np.array([np.nan if r[5] is None else r[5] for r in rows]),
        created=np.array([r[6] for r in rows]),
        tags=np.array([[t in r[4] for t in TAGS] for r in rows], dtype=bool),
        attributes=[r[7] for r in rows], vectors=vectors,
        has_vector=np.array([r[8] is not None for r in rows]),
        popularity=np.array([r[9] for r in rows]), liked=np.isin(ids, list(liked)),
        user_tenant=dict(owner.execute(
            "select user_id, coalesce(tenant_id, '') from pyembed.users").fetchall()),
        seen=seen,
        kinds={u: set(k) for u, k in owner.execute(
            "select user_id, array_agg(kind) from pyembed.user_embeddings where model_id = %s "
            "group by user_id", (model_id,))})


@pytest.fixture(scope="module")
def world(tenants_url: str) -> World:
    """Both tenants' catalogs, events, refreshed user vectors, popularity cache, HNSW index."""
    with psycopg.connect(tenants_url) as owner:
        model_id = _load(owner, np.random.default_rng(11))
        owner.execute("set role pyembed_worker")     # the worker sees every tenant
        while owner.execute("select pyembed.refresh_users()").fetchone()[0]:
            pass
        owner.execute("select pyembed.refresh_popularity()")
        owner.execute("reset role")
        index = owner.execute("select pyembed.ensure_model_index(%s)", (model_id,)).fetchone()[0]
        owner.commit()
        owner.execute("analyze")
        owner.commit()
        return _snapshot(owner, model_id, index)


def _vector_text(v: np.ndarray) -> str:
    return "[" + ",".join(f"{x:.7g}" for x in v) + "]"


def _reader(url: str, tenant: str | None) -> psycopg.Connection[Any]:
    conn = psycopg.connect(url, autocommit=True)
    conn.execute("set role pyembed_reader")
    if tenant is not None:
        conn.execute("select set_config('pyembed.tenant_id', %s, false)", (tenant,))
    return conn


class Fuzz:
    """Seeded random calls of the read-only functions as pyembed_reader, each checked against
    the owner-side snapshot: only the session's tenant's items, min(k, passing rows) of them."""

    def __init__(self, world: World, reader: psycopg.Connection[Any],
                 owner: psycopg.Connection[Any], seed: int) -> None:
        self.w, self.conn, self.owner = world, reader, owner
        self.rnd = random.Random(seed)
        self.np_rng = np.random.default_rng(seed)
        self.calls: Counter[tuple[str, str]] = Counter()
        self.index_scans: dict[str, list[int]] = {"exact": [], "hnsw": [], "auto": []}
        self.fallbacks = 0
        self.baited = 0            # searches whose top k over all tenants has foreign rows
        self.text_matches: dict[str, np.ndarray] = {}
        self.with_vector = {t: np.flatnonzero(world.own(t) & world.has_vector)
                            for t in (*TENANTS, "")}
        self.last: tuple[Any, ...] = ()
        self.settings: dict[str, Any] = {}

    # --- random arguments ---------------------------------------------------------------
    def filters(self) -> dict[str, Any]:
        rnd, w = self.rnd, self.w
        makers = {
            "category": lambda: rnd.choice([
                rnd.choice(CATEGORIES), {"eq": rnd.choice(CATEGORIES)},
                {"in": rnd.sample(CATEGORIES, rnd.randint(1, 3))},
                {"not_in": rnd.sample(CATEGORIES, rnd.randint(1, 2))}]),
            "external_id": lambda: rnd.choice([
                f"sku-{rnd.randrange(PER_TENANT)}", {"not_in": ["i1", "i2", "sku-1"]},
                {"in": [f"sku-{rnd.randrange(PER_TENANT)}" for _ in range(rnd.randint(1, 40))]
                 + ["i3"]}]),
            "price": lambda: rnd.choice([
                {"gte": round(rnd.uniform(0, 60), 2), "lt": round(rnd.uniform(40, 100), 2)},
                {"gt": round(rnd.uniform(0, 100), 2)}, {"lte": round(rnd.uniform(0, 30), 2)},
                {"eq": float(w.price[rnd.choice(self.with_vector["acme"])])}]),
            "created_at": lambda: {rnd.choice(["gte", "lt"]): (
                EPOCH + timedelta(days=rnd.randint(0, 730))).isoformat()},
            "tags": lambda: rnd.choice([
                rnd.sample(TAGS, rnd.randint(1, 2)), {"contains": rnd.sample(TAGS, 1)},
                {"overlaps": rnd.sample(TAGS, rnd.randint(1, 3))}]),
            "attributes": lambda: rnd.choice([
                {"color": rnd.choice(COLORS)}, {"brand": rnd.choice(BRANDS)},
                {"color": rnd.choice(COLORS), "rank": rnd.randrange(10)}]),
            "item_id": lambda: {rnd.choice(["in", "in", "not_in"]): [
                int(i) for i in rnd.sample(list(w.ids), rnd.randint(1, 80))]},
        }
        keys = rnd.sample(list(makers), rnd.choice([0, 0, 1, 1, 1, 2, 2, 3]))
        return {key: makers[key]() for key in keys}

    def query(self, tenant: str) -> tuple[str, np.ndarray]:
        """A random vector, or (mostly) one right next to an item of another or this tenant."""
        r = self.rnd.random()
        if r < 0.25:
            v = self.np_rng.normal(size=DIMS)
        else:
            others = [t for t in (*TENANTS, "") if t != tenant]
            source = self.rnd.choice(others) if r < 0.7 else tenant
            v = (self.w.vectors[self.rnd.choice(self.with_vector[source])]
                 + 0.01 * self.np_rng.normal(size=DIMS))
        return _vector_text(v), v / np.linalg.norm(v)

    def user(self, tenant: str, p: float) -> int | None:
        return self.rnd.choice(self.w.users_of(tenant)) if self.rnd.random() < p else None

    def seen(self, user: int | None) -> np.ndarray:
        return self.w.ids_mask(self.w.seen.get(user, set()) if user else set())

    def passing(self, tenant: str, filters: dict[str, Any], user: int | None) -> np.ndarray:
        """Items a search may return: this tenant's, with a vector, passing, not seen."""
        return (self.w.own(tenant) & self.w.mask(filters) & self.w.has_vector
                & ~self.seen(user))

    # --- calls and checks -------------------------------------------------------------------
    def call(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        self.last = (sql, params, self.settings)
        return self.conn.execute(sql, params).fetchall()

    def check(self, ids: list[int], tenant: str, expected: int) -> None:
        leaked = [(i, self.w.tenant_of(i)) for i in ids if self.w.tenant_of(i) != tenant]
        assert not leaked, f"{tenant} got other tenants' items {leaked}: {self.last}"
        assert len(set(ids)) == len(ids), f"duplicate ids {ids}: {self.last}"
        assert len(ids) == expected, f"{len(ids)} rows, expected {expected}: {self.last}"

    def check_distances(self, rows: list[tuple[Any, ...]], q: np.ndarray) -> None:
        got = np.array([r[1] for r in rows])
        idx = np.searchsorted(self.w.ids, [r[0] for r in rows])
        # The genuine distances of the returned items; their order is checked by
        # test_hnsw_results_come_back_best_first.
        assert np.allclose(got, 1 - self.w.vectors[idx] @ q, atol=1e-5), self.last

    def search(self, tenant: str, strategy: str) -> bool:
        k, f, user = self.rnd.randint(1, 50), self.filters(), self.user(tenant, 0.25)
        qtext, q = self.query(tenant)
        rows = self.call(
            "select item_id, distance from pyembed.search(%s::vector, %s, %s::jsonb, %s)",
            (qtext, k, json.dumps(f), user))
        passing = self.passing(tenant, f, user)
        self.check([r[0] for r in rows], tenant, min(k, int(passing.sum())))
        self.check_distances(rows, q)
        anyone = np.flatnonzero(self.w.mask(f) & self.w.has_vector & ~self.seen(user))
        nearest = anyone[np.argsort(1 - self.w.vectors[anyone] @ q)[:k]]
        self.baited += bool(np.any(self.w.tenant[nearest] != tenant))
        if strategy == "exact":
            best = np.sort(1 - self.w.vectors[passing] @ q)[:k]
            assert np.allclose([r[1] for r in rows], best, atol=1e-5), self.last
        return True

    def search_similar(self, tenant: str, strategy: str) -> bool:
        k, f, user = self.rnd.randint(1, 50), self.filters(), self.user(tenant, 0.25)
        source = int(self.rnd.choice(self.with_vector[tenant]))
        rows = self.call(
            "select item_id, distance from pyembed.search_similar(%s, %s, %s::jsonb, %s)",
            (int(self.w.ids[source]), k, json.dumps(f), user))
        passing = self.passing(tenant, f, user)
        self.check([r[0] for r in rows], tenant, min(k, int(passing.sum() - passing[source])))
        self.check_distances(rows, self.w.vectors[source])
        assert int(self.w.ids[source]) not in [r[0] for r in rows], self.last
        return True

    def text_mask(self, text: str) -> np.ndarray:
        if text not in self.text_matches:
            ids = self.owner.execute(
                "select coalesce(array_agg(item_id), '{}') from pyembed.items "
                "where search_text @@ websearch_to_tsquery('english', %s)", (text,)).fetchone()
            self.text_matches[text] = self.w.ids_mask(ids[0])
        return self.text_matches[text]

    def search_text(self, tenant: str, strategy: str) -> bool:
        k, f, user = self.rnd.randint(1, 50), self.filters(), self.user(tenant, 0.2)
        a, b = self.rnd.sample(WORDS, 2)
        text = self.rnd.choice([a, f"{a} {b}", f"{a} or {b}", f"{a} -{b}", f'"{a} {b}"'])
        qtext = self.query(tenant)[0] if self.rnd.random() < 0.5 else None
        rows = self.call(
            "select item_id, text_rank, vector_rank "
            "from pyembed.search_text(%s, %s::vector, %s, %s::jsonb, %s)",
            (text, qtext, k, json.dumps(f), user))
        by_text = self.text_mask(text) & self.w.own(tenant) & self.w.mask(f) & ~self.seen(user)
        by_vector = self.passing(tenant, f, user) if qtext else np.zeros_like(by_text)
        self.check([r[0] for r in rows], tenant, min(k, int((by_text | by_vector).sum())))
        for item_id, text_rank, vector_rank in rows:
            i = np.searchsorted(self.w.ids, item_id)
            assert text_rank is None or by_text[i], self.last
            assert vector_rank is None or by_vector[i], self.last
        return qtext is not None

    def popular_order(self, candidates: np.ndarray) -> list[int]:
        idx = np.flatnonzero(candidates & (self.w.popularity > 0))
        return [int(self.w.ids[i]) for i in sorted(
            idx, key=lambda i: (-self.w.popularity[i], self.w.ids[i]))]

    def recommend(self, tenant: str, strategy: str) -> bool:
        rnd, w = self.rnd, self.w
        user = rnd.choice(w.users_of(tenant))
        k, f = rnd.randint(1, 50), (self.filters() if rnd.random() < 0.6 else {})
        exclude_seen, vectors = rnd.random() < 0.8, rnd.choice(
            ["auto", "auto", "long_term", "short_term", "interest"])
        diversity = round(rnd.random(), 2) if rnd.random() < 0.4 else 0.0
        popularity = round(rnd.random(), 2) if rnd.random() < 0.4 else 0.0
        examples = [int(w.ids[i]) for i in rnd.sample(list(self.with_vector[tenant]), 5)]
        positive = examples[:rnd.choice([0, 0, 1, 3])] or None
        negative = examples[3:3 + rnd.choice([0, 0, 1, 2])] or None
        rows = self.call(
            "select item_id, source from pyembed.recommend(%s, %s, %s::jsonb, exclude_seen => %s, "
            "diversity => %s::real, positive => %s::bigint[], negative => %s::bigint[], "
            "vectors => %s, popularity => %s::real)",
            (user, k, json.dumps(f), exclude_seen, diversity, positive, negative, vectors,
             popularity))
        base = w.own(tenant) & w.mask(f) & ~self.seen(user if exclude_seen else None)
        kinds = w.kinds.get(user, set())
        has_query = ("interest" in kinds or "long_term" in kinds) if vectors == "auto" \
            else vectors in kinds
        if not has_query and not positive:
            self.check([r[0] for r in rows], tenant, min(k, len(self.popular_order(base))))
            assert {r[1] for r in rows} <= {"popular"}, self.last
            return False
        not_example = ~w.ids_mask((positive or []) + (negative or []))
        by_vector = base & w.has_vector & not_example
        union = int(by_vector.sum())
        if popularity > 0 and union < k:
            popular = self.popular_order(base)[:min(4 * k, 1000)]
            union = int((by_vector | (w.ids_mask(popular) & not_example)).sum())
        self.check([r[0] for r in rows], tenant, min(k, union))
        return True

    def popular_items(self, tenant: str, strategy: str) -> bool:
        k, f, user = self.rnd.randint(1, 50), self.filters(), self.user(tenant, 0.3)
        half_life = self.rnd.choice([None, None, "45 days"])
        rows = self.call(
            "select item_id from pyembed.popular_items(%s, %s::jsonb, %s, %s::interval)",
            (k, json.dumps(f), user, half_life))
        base = self.w.own(tenant) & self.w.mask(f) & ~self.seen(user)
        ids = [r[0] for r in rows]
        if half_life is None:                  # the cache: its exact order is known
            self.check(ids, tenant, len(self.popular_order(base)[:k]))
            assert ids == self.popular_order(base)[:k], self.last
        else:
            self.check(ids, tenant, min(k, int((base & self.w.liked).sum())))
        return False

    def explain_search(self, tenant: str, strategy: str) -> bool:
        k, f, user = self.rnd.randint(1, 50), self.filters(), self.user(tenant, 0.25)
        plan = self.call("select pyembed.explain_search(%s::vector, %s, %s::jsonb, %s)",
                         (self.query(tenant)[0], k, json.dumps(f), user))[0][0]
        assert plan["rows"] == min(k, int(self.passing(tenant, f, user).sum())), (plan, self.last)
        assert strategy == "auto" or plan["strategy"] == strategy, (plan, self.last)
        if plan["counted_rows"] is not None:      # a bounded count of this tenant's rows only
            own = int((self.w.own(tenant) & self.w.mask(f)).sum())
            assert plan["counted_rows"] == min(own, plan["count_limit"]), plan
        self.fallbacks += plan["fallback"]
        return True

    # --- the loop ---------------------------------------------------------------------------
    def index_scans_now(self) -> int:
        return int(self.conn.execute("select pg_stat_get_xact_numscans(%s::regclass)",
                                     (f"pyembed.{self.w.index}",)).fetchone()[0])

    def run(self, calls: int) -> None:
        functions = [(self.search, 8), (self.search_similar, 2), (self.search_text, 2),
                     (self.recommend, 3), (self.popular_items, 1.5), (self.explain_search, 1.5)]
        for n in range(calls):
            tenant, strategy = self.rnd.choice(TENANTS), STRATEGIES[n % 3]
            fn = self.rnd.choices([f for f, _ in functions], [w for _, w in functions])[0]
            # Settings local to the call's transaction, as behind a pooler; the tenant is
            # switched on the same connection, so cached plans are reused across tenants.
            self.settings = {"tenant_id": tenant, "search_strategy": strategy,
                             "search_exact_rows": self.rnd.choice([None, None, 20, 100, 400]),
                             "search_ef_search": self.rnd.choice([None, None, 5, 40]),
                             "search_max_scan_tuples": self.rnd.choice([None, None, None, 60])}
            with self.conn.transaction():
                for name, value in self.settings.items():
                    self.conn.execute("select set_config(%s, %s, %s)",
                                      (f"pyembed.{name}", str(value or ""),
                                       name != "tenant_id" or self.rnd.random() < 0.5))
                before = self.index_scans_now()
                searched = fn(tenant, strategy)
                if searched:
                    self.index_scans[strategy].append(self.index_scans_now() - before)
            self.calls[fn.__name__, strategy] += 1


def test_fuzzed_functions_return_only_the_sessions_tenant(world: World, tenants_url: str) -> None:
    """540 seeded calls of search, search_similar, search_text, recommend, popular_items and
    explain_search, with random k, filters, users, examples and search settings, strategies
    exact / hnsw / auto in turn, the tenant switched call by call on one reader connection."""
    with _reader(tenants_url, None) as reader, psycopg.connect(tenants_url,
                                                                autocommit=True) as owner:
        fuzz = Fuzz(world, reader, owner, seed=20240611)
        fuzz.run(540)
    by_function = Counter(name for name, _ in fuzz.calls.elements())
    assert min(by_function.values()) >= 20 and len(by_function) == 6, by_function
    # The data is bait: without RLS most searches would have returned the other tenant's rows.
    assert fuzz.baited > 0.8 * by_function["search"], (fuzz.baited, by_function)
    # Both strategies really ran: forced exact never touches the HNSW index, forced hnsw
    # always scans it (then falls back to exact when it finds fewer than k).
    assert fuzz.index_scans["exact"] and not any(fuzz.index_scans["exact"])
    assert fuzz.index_scans["hnsw"] and all(fuzz.index_scans["hnsw"]), fuzz.index_scans["hnsw"]
    assert any(fuzz.index_scans["auto"]) and not all(fuzz.index_scans["auto"])
    assert fuzz.fallbacks > 0


def _sqlstate(conn: psycopg.Connection[Any], query: str,
              params: tuple[Any, ...]) -> tuple[str, str]:
    """(SQLSTATE, message with the numbers blanked) of a call expected to fail."""
    try:
        conn.execute(query, params).fetchall()
    except psycopg.Error as error:
        return str(error.sqlstate), re.sub(r"\d+", "N", error.diag.message_primary or "")
    raise AssertionError(f"no error from {query} {params}")


@pytest.mark.parametrize("tenant", TENANTS)
def test_other_tenants_ids_behave_as_unknown(world: World, tenants_url: str, tenant: str) -> None:
    other = TENANTS[1 - TENANTS.index(tenant)]
    own_user = next(u for u in world.users_of(tenant) if "long_term" in world.kinds.get(u, ()))
    their_user = next(u for u in world.users_of(other) if "long_term" in world.kinds.get(u, ()))
    # An item of the other tenant that has a vector and is the twin of one of ours.
    their_item = int(world.ids[next(i for i in np.flatnonzero(world.own(other) & world.has_vector)
                                    if world.external[i] == "sku-0")])
    missing_user, missing_item = max(world.user_tenant) + 1000, int(world.ids[-1]) + 1000
    q = _vector_text(world.vectors[world.ids.searchsorted(their_item)])
    cases = [
        ("PE003", "select * from pyembed.search(%s::vector, 5, '{}', %s)", (q,), "user"),
        ("PE003", "select pyembed.explain_search(%s::vector, 5, '{}', %s)", (q,), "user"),
        ("PE003", "select * from pyembed.search_text('lamp', %s::vector, 5, '{}', %s)", (q,),
         "user"),
        ("PE003", "select * from pyembed.recommend(%s, 5)", (), "user"),
        ("PE003", "select * from pyembed.popular_items(50, '{}', %s)", (), "user"),
        ("PE004", "select * from pyembed.search_similar(%s, 5)", (), "item"),
        ("PE004", "select * from pyembed.recommend(%s, 5, positive => array[%s]::bigint[])",
         (own_user,), "item"),
        ("PE004", "select * from pyembed.recommend(%s, 5, negative => array[%s]::bigint[])",
         (own_user,), "item"),
    ]
    with _reader(tenants_url, tenant) as reader:
        for code, query, args, kind in cases:
            theirs, missing = ((their_user, missing_user) if kind == "user"
                               else (their_item, missing_item))
            assert _sqlstate(reader, query, (*args, theirs)) == \
                _sqlstate(reader, query, (*args, missing)), query
            assert _sqlstate(reader, query, (*args, theirs))[0] == code, query
        by_id = "select item_id from pyembed.search(%s::vector, 5, %s::jsonb)"
        assert reader.execute(by_id, (q, json.dumps({"item_id": {"in": [their_item]}}))
                              ).fetchall() == []


def test_session_without_tenant_sees_only_untenanted_rows(world: World, tenants_url: str) -> None:
    untenanted = world.own("") & world.has_vector
    q = _vector_text(world.vectors[np.flatnonzero(world.own("acme") & world.has_vector)[0]])
    with _reader(tenants_url, None) as reader:
        for strategy in STRATEGIES:
            reader.execute("select set_config('pyembed.search_strategy', %s, false)", (strategy,))
            found = [r[0] for r in reader.execute(
                "select item_id from pyembed.search(%s::vector, 50)", (q,))]
            assert len(found) == min(50, int(untenanted.sum()))
            assert {world.tenant_of(i) for i in found} == {""}
        hybrid = [r[0] for r in reader.execute(
            "select item_id from pyembed.search_text('lamp or river', %s::vector, 50)", (q,))]
        assert hybrid and {world.tenant_of(i) for i in hybrid} == {""}
        assert reader.execute("select * from pyembed.popular_items(10)").fetchall() == []


def test_hnsw_results_come_back_best_first(world: World, tenants_url: str) -> None:
    """With relaxed_order the index returns candidates only nearly sorted once the scan goes
    past ef_search (as it does when RLS or a filter drops rows); search must re-sort them."""
    rng = np.random.default_rng(3)
    unsorted = []
    with _reader(tenants_url, "acme") as reader:
        reader.execute("set pyembed.search_strategy = 'hnsw'")
        reader.execute("set pyembed.search_ef_search = 5")      # iterative scans from row 6
        for _ in range(30):
            q = _vector_text(rng.normal(size=DIMS))
            distances = [r[0] for r in reader.execute(
                "select distance from pyembed.search(%s::vector, 50)", (q,))]
            assert len(distances) == 50
            if distances != sorted(distances):
                unsorted.append(q)
    assert not unsorted, (
        f"{len(unsorted)}/30 HNSW searches not sorted by distance, e.g. as tenant acme with "
        f"pyembed.search_ef_search = 5: select distance from pyembed.search('{unsorted[0]}', 50)")


@pytest.mark.parametrize("tenant", TENANTS)
def test_status_and_queues_count_only_the_sessions_tenant(world: World, tenants_url: str,
                                                         tenant: str) -> None:
    with psycopg.connect(tenants_url) as owner:
        expected = dict(owner.execute(
            "select 'users', count(*) from pyembed.users where tenant_id = %(t)s "
            "union all select 'items', count(*) from pyembed.items where tenant_id = %(t)s "
            "union all select 'events', count(*) from pyembed.events where tenant_id = %(t)s "
            "union all select 'embedding_models', count(*) from pyembed.embedding_models "
            "union all select 'item_embeddings', count(*) from pyembed.item_embeddings "
            "  join pyembed.items using (item_id) where tenant_id = %(t)s "
            "union all select 'item_embedding_skips', count(*) from pyembed.item_embedding_skips "
            "  join pyembed.items using (item_id) where tenant_id = %(t)s "
            "union all select 'user_embeddings', count(*) from pyembed.user_embeddings "
            "  join pyembed.users using (user_id) where tenant_id = %(t)s "
            "union all select 'item_queue', count(*) from pyembed.item_queue "
            "  join pyembed.items using (item_id) where tenant_id = %(t)s "
            "union all select 'user_queue', count(*) from pyembed.user_queue "
            "  join pyembed.users using (user_id) where tenant_id = %(t)s",
            {"t": tenant}).fetchall())
    with _reader(tenants_url, tenant) as reader:
        queued = [r[0] for r in reader.execute("select item_id from pyembed.item_queue")]
        status = dict(reader.execute("select * from pyembed.status()").fetchall())
    assert status == expected, "pyembed.status() counts other tenants' rows"
    assert {world.tenant_of(i) for i in queued} <= {tenant}, "item_queue shows other tenants"


def test_writer_cannot_attach_events_to_another_tenants_rows(world: World,
                                                            tenants_url: str) -> None:
    """A foreign key check bypasses RLS: an event of acme's user on globex's item would make
    globex's item vector part of acme's user vector, and the error would tell an existing
    globex id from a missing one. Such an event must be refused like a missing id."""
    acme_user, globex_user = world.users_of("acme")[0], world.users_of("globex")[0]
    acme_item = int(world.ids[np.flatnonzero(world.own("acme"))[0]])
    globex_item = int(world.ids[np.flatnonzero(world.own("globex"))[0]])
    missing_user, missing_item = max(world.user_tenant) + 1000, int(world.ids[-1]) + 1000
    attempts = {"acme user, globex item": (acme_user, globex_item),
                "acme user, missing item": (acme_user, missing_item),
                "globex user, acme item": (globex_user, acme_item),
                "missing user, acme item": (missing_user, acme_item)}
    outcomes = {}
    with psycopg.connect(tenants_url) as writer:
        writer.execute("set role pyembed_writer")
        writer.execute("select set_config('pyembed.tenant_id', 'acme', false)")
        with writer.transaction(force_rollback=True):
            for name, (user, item) in attempts.items():
                try:
                    with writer.transaction():
                        writer.execute("insert into pyembed.events (user_id, item_id, event_type) "
                                       "values (%s, %s, 'like')", (user, item))
                    outcomes[name] = "inserted"
                except psycopg.Error as error:
                    outcomes[name] = str(error.sqlstate)
    assert "inserted" not in outcomes.values() and len(set(outcomes.values())) == 1, outcomes
    # Nor can an existing event of acme be moved onto globex's item by an update.
    with psycopg.connect(tenants_url) as writer:
        writer.execute("set role pyembed_writer")
        writer.execute("select set_config('pyembed.tenant_id', 'acme', false)")
        with writer.transaction(force_rollback=True):
            event = writer.execute("insert into pyembed.events (user_id, item_id, event_type) "
                                   "values (%s, %s, 'like') returning event_id",
                                   (acme_user, acme_item)).fetchone()
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                writer.execute("update pyembed.events set item_id = %s where event_id = %s",
                               (globex_item, event[0]))
