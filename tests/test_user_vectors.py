"""The worker's user vectors (pyembed_db.user_vectors) are the SQL refresh's, row for row."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import psycopg
import pytest
from users_data import DIM, add_events, add_items, add_model, add_user

from pyembed_db import item_vectors
from pyembed_db.db import connect
from pyembed_db.errors import ModelError
from pyembed_db.training import read_events
from pyembed_db.user_vectors import ItemWeights, write_user_vectors

T0 = datetime(2024, 3, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)
TYPES = ["view", "click", "add_to_cart", "purchase", "like", "dislike", "rating"]
SETTINGS = [
    {},
    {"half_life": "0"},
    {"half_life": "7 days", "short_term_window": "1 day", "negative_weight": "2"},
    {"half_life": "36 hours", "short_term_window": "45 days", "negative_weight": "0"},
]


@pytest.fixture(scope="module")
def world(module_db_url: str) -> dict[str, Any]:
    """40 users with random event mixes over 25 items (5 of them without a vector), among them
    users with only dislikes, only unembedded items, an event exactly on the short-term window's
    edge (30 days before the newest, to the microsecond) and likes cancelled by dislikes."""
    rng = np.random.default_rng(11)
    with connect(module_db_url) as setup:
        model_id = add_model(setup, "uv")
        items = add_items(setup, model_id, rng.normal(size=(20, DIM)), "uv")
        bare = [int(setup.execute("insert into pyembed.items (external_id) values (%s) "
                                  "returning item_id", (f"bare{i}",)).fetchone()[0])  # type: ignore[index]
                for i in range(5)]
        users = [add_user(setup, f"uv{u}") for u in range(40)]
        events: list[tuple[int, int, str, float | None, datetime]] = []
        for user in users[:34]:
            for _ in range(int(rng.integers(1, 40))):
                kind = TYPES[int(rng.integers(len(TYPES)))]
                value = float(rng.integers(1, 6)) if kind == "rating" else None
                item = int(rng.choice(items + bare))
                age = timedelta(seconds=float(rng.exponential(20 * 86400)))
                events.append((user, item, kind, value, T0 - age))
            events.append((user, int(rng.choice(items)), "view", None, T0))  # the newest
        edge, dislikes, unembedded, cancelled, *_ = users[34:]
        events += [(edge, items[0], "purchase", None, T0), (edge, items[1], "like", None,
                                                           T0 - timedelta(days=30)),
                   (edge, items[2], "like", None, T0 - timedelta(days=30, microseconds=1))]
        events += [(dislikes, items[3], "dislike", None, T0), (dislikes, items[4], "rating", 1.0,
                                                               T0)]
        events += [(unembedded, bare[0], "purchase", None, T0)]
        events += [(cancelled, items[5], "like", None, T0), (cancelled, items[5], "dislike",
                                                             None, T0),
                   (cancelled, items[6], "view", None, T0 - timedelta(days=2))]
        add_events(setup, events)
        setup.commit()
    return {"model_id": model_id, "users": users}


def _rows(conn: psycopg.Connection[Any], model_id: int, users: list[int]) -> dict[Any, Any]:
    rows = conn.execute(
        "select user_id, kind, slot, event_count, event_watermark, weight, embedding "
        "from pyembed.user_embeddings where model_id = %s and user_id = any (%s) "
        "and kind <> 'interest'", (model_id, users)).fetchall()
    return {tuple(r[:3]): (r[3:6], r[6].to_numpy()) for r in rows}


@pytest.mark.parametrize("settings", SETTINGS,
                         ids=["defaults", "no-decay", "short-window", "wide-window"])
def test_worker_vectors_equal_the_sql_refresh(conn: psycopg.Connection[Any],
                                              world: dict[str, Any],
                                              settings: dict[str, str]) -> None:
    model_id, users = world["model_id"], world["users"]
    for name, value in settings.items():
        conn.execute("select set_config(%s, %s, false)", (f"pyembed.{name}", value))
    conn.execute("select pyembed.refresh_user_set(%s, model_id => %s)", (users, model_id))
    by_sql = _rows(conn, model_id, users)
    conn.execute("delete from pyembed.user_embeddings where model_id = %s", (model_id,))
    written = write_user_vectors(conn, users, model_id, kinds=["long_term", "short_term"])
    by_worker = _rows(conn, model_id, users)

    assert by_worker.keys() == by_sql.keys() and written == len(by_sql)
    assert 40 < len(by_sql) < 2 * 37  # most users get both kinds; the special ones do not
    for key, (meta, vector) in by_sql.items():
        assert by_worker[key][0] == meta, key  # event counts and watermarks
        np.testing.assert_allclose(by_worker[key][1], vector, atol=2e-6, err_msg=str(key))


def test_item_weights_equal_user_item_weights(conn: psycopg.Connection[Any],
                                              world: dict[str, Any]) -> None:
    users = world["users"]
    conn.execute("set pyembed.half_life = '10 days'")
    rows = conn.execute(
        "select user_id, item_id, w_long, w_short, n_long, n_short, watermark "
        "from pyembed.user_item_weights(%s) order by 1, 2", (users,)).fetchall()
    events, _ = read_events(conn, users)
    got = ItemWeights.from_events(events, 10 * 86400, 30 * 86400)

    assert got.users.tolist() == [r[0] for r in rows] and got.items.tolist() == [r[1] for r in rows]
    np.testing.assert_allclose(got.w_long, [r[2] for r in rows], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got.w_short, [np.nan if r[3] is None else r[3] for r in rows],
                               rtol=1e-9, atol=1e-12)
    assert got.n_long.tolist() == [r[4] for r in rows]
    assert got.n_short.tolist() == [r[5] for r in rows]
    assert got.watermarks.tolist() == [r[6] for r in rows]
    edge_user = users[34]
    edge = {r[1]: r[5] for r in rows if r[0] == edge_user}
    assert sorted(edge.values()) == [0, 1, 1]  # 30 days exactly is recent, 1 µs more is not


def test_rejects_unknown_kinds(conn: psycopg.Connection[Any], world: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="kinds"):
        write_user_vectors(conn, world["users"], world["model_id"], kinds=["long_term", "mood"])


def test_item_vectors_read_by_copy_are_the_stored_rows(conn: psycopg.Connection[Any],
                                                       world: dict[str, Any]) -> None:
    rows = conn.execute("select item_id, embedding from pyembed.item_embeddings "
                        "where model_id = %s order by item_id", (world["model_id"],)).fetchall()
    stored = np.stack([r[1].to_numpy() for r in rows])
    ids, vectors = item_vectors.read_item_vectors(conn, world["model_id"])
    assert ids.tolist() == [r[0] for r in rows] and np.array_equal(vectors, stored)
    # a subset in any order, with an unknown id: sorted, the unknown one left out
    wanted = np.array([rows[5][0], 10**12, rows[2][0], rows[2][0]], dtype=np.int64)
    some_ids, some = item_vectors.read_item_vectors(conn, world["model_id"], wanted)
    assert some_ids.tolist() == [rows[2][0], rows[5][0]]
    assert np.array_equal(some, stored[[2, 5]]) and some.shape == (2, DIM)
    none_ids, none = item_vectors.read_item_vectors(conn, world["model_id"] + 1000)
    assert len(none_ids) == 0 and none.shape == (0, 0)


def test_item_vectors_of_mixed_dimensions_are_refused(conn: psycopg.Connection[Any],
                                                       world: dict[str, Any]) -> None:
    # Nothing in the table ties a vector's dimension to its model's: a row of another length
    # must not be read as a shifted slice of its neighbours.
    conn.execute("update pyembed.item_embeddings set embedding = '[1,2,3]' where model_id = %s "
                 "and item_id = (select min(item_id) from pyembed.item_embeddings "
                 "where model_id = %s)", (world["model_id"], world["model_id"]))
    with pytest.raises(ModelError, match="more than one dimension"):
        item_vectors.read_item_vectors(conn, world["model_id"])
    conn.rollback()
