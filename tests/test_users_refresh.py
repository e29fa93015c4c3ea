"""pyembed.refresh_user(s): weights, decay, watermark, incremental refresh, errors."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import psycopg
import pytest
from threadpoolctl import threadpool_info
from users_data import DIM, add_events, add_items, add_model, add_user, unit, user_vector

from pyembed_db import users
from pyembed_db.db import connect
from pyembed_db.errors import InvalidInputError, NotFoundError

T0 = datetime(2024, 3, 1, tzinfo=timezone.utc)
DAY = timedelta(days=1)


@pytest.fixture(scope="module", autouse=True)
def world(module_db_url: str) -> dict[str, Any]:
    """A committed model and six items with vectors, plus one item without a vector."""
    rng = np.random.default_rng(7)
    with connect(module_db_url) as setup:
        model_id = add_model(setup)
        vectors = rng.normal(size=(6, DIM))
        items = add_items(setup, model_id, vectors, "it")
        bare = setup.execute("insert into pyembed.items (external_id) values ('novec') "
                             "returning item_id").fetchone()
        assert bare is not None
        setup.commit()
    return {"model_id": model_id, "items": items, "vectors": [unit(v) for v in vectors],
            "bare": int(bare[0])}


def test_event_weight_rule(conn: psycopg.Connection[Any]) -> None:
    got = conn.execute(
        "select pyembed.event_weight('rating', 5), pyembed.event_weight('rating', 1),"
        " pyembed.event_weight('rating', 3), pyembed.event_weight('purchase'),"
        " pyembed.event_weight('dislike')").fetchone()
    assert got == (2.0, -2.0, 0.0, 5.0, -3.0)
    with pytest.raises(psycopg.Error) as info:
        conn.execute("select pyembed.event_weight('teleport')")
    assert info.value.sqlstate == "PE012"


def test_vector_equals_numpy_reference(conn: psycopg.Connection[Any],
                                       world: dict[str, Any]) -> None:
    it, vec = world["items"], world["vectors"]
    user = add_user(conn, "ref")
    events = [  # (item index, type, value, days before the latest event)
        (0, "view", None, 20), (0, "click", None, 12), (1, "purchase", None, 3),
        (2, "rating", 5, 8), (3, "rating", 1, 1), (4, "dislike", None, 0), (5, "rating", 3, 2),
        (1, "view", None, 9),  # item 1: events before and inside the short-term window
        (4, "purchase", None, 6),  # item 4: liked overall, disliked within the window
    ]
    add_events(conn, [(user, it[i], t, v, T0 - d * DAY) for i, t, v, d in events]
               + [(user, world["bare"], "purchase", None, T0 - 30 * DAY)])
    written = conn.execute("select pyembed.refresh_user(%s, half_life => '10 days', "
                           "short_term_window => '5 days')", (user,)).fetchone()
    assert written == (2,)

    weight = {"view": 1, "click": 2, "purchase": 5, "dislike": -3}

    def reference(max_days: float) -> np.ndarray:
        net: dict[int, float] = {}  # decayed net weight per item
        for i, t, v, d in events:
            if d <= max_days:
                w = (v - 3) if t == "rating" else weight[t]
                net[i] = net.get(i, 0.0) + w * 0.5 ** (d / 10)
        pos = sum(w * vec[i] for i, w in net.items() if w > 0)
        neg = sum(w * vec[i] for i, w in net.items() if w < 0)
        p_sum = sum(w for w in net.values() if w > 0)
        n_sum = -sum(w for w in net.values() if w < 0)
        return unit(pos / p_sum + 0.5 * neg / n_sum)  # mean(liked) - 0.5 * mean(disliked)

    long_sum, short_sum = reference(1e9), reference(5)
    np.testing.assert_allclose(user_vector(conn, user), unit(long_sum), atol=1e-5)
    np.testing.assert_allclose(user_vector(conn, user, "short_term"), unit(short_sum), atol=1e-5)
    row = conn.execute("select event_count, event_watermark, (select max(event_id) from "
                       "pyembed.events where user_id = %s) from pyembed.user_embeddings "
                       "where user_id = %s and kind = 'long_term'", (user, user)).fetchone()
    assert row is not None
    assert row[0] == len(events)  # the event on the item without a vector does not count
    assert row[1] == row[2]


def test_half_life_setting_is_used(conn: psycopg.Connection[Any], world: dict[str, Any]) -> None:
    it, vec = world["items"], world["vectors"]
    user = add_user(conn, "hl")
    add_events(conn, [(user, it[0], "view", None, T0 - 4 * DAY), (user, it[1], "view", None, T0)])
    conn.execute("set local pyembed.half_life = '2 days'")
    conn.execute("select pyembed.refresh_user(%s)", (user,))
    np.testing.assert_allclose(user_vector(conn, user), unit(0.25 * vec[0] + vec[1]), atol=1e-5)
    conn.execute("set local pyembed.half_life = '0'")  # no decay
    conn.execute("select pyembed.refresh_user(%s)", (user,))
    np.testing.assert_allclose(user_vector(conn, user), unit(vec[0] + vec[1]), atol=1e-5)


def test_negative_events_move_the_vector_away(conn: psycopg.Connection[Any],
                                              world: dict[str, Any]) -> None:
    it, vec = world["items"], world["vectors"]
    user = add_user(conn, "neg")
    add_events(conn, [(user, it[0], "like", None, T0), (user, it[1], "like", None, T0)])
    conn.execute("select pyembed.refresh_user(%s)", (user,))
    before = user_vector(conn, user)
    add_events(conn, [(user, it[2], "dislike", None, T0)])
    conn.execute("select pyembed.refresh_user(%s)", (user,))
    after = user_vector(conn, user)
    assert before is not None and after is not None
    assert after @ vec[2] < before @ vec[2] - 0.1


def test_user_without_positive_items_gets_no_vector(conn: psycopg.Connection[Any],
                                                    world: dict[str, Any]) -> None:
    it = world["items"]
    user = add_user(conn, "grumpy")
    add_events(conn, [(user, it[0], "like", None, T0)])
    assert conn.execute("select pyembed.refresh_user(%s)", (user,)).fetchone() == (2,)
    # The like is cancelled by a later dislike of the same item: nothing positive is left.
    add_events(conn, [(user, it[0], "dislike", None, T0 + DAY), (user, it[1], "rating", 2, T0)])
    assert conn.execute("select pyembed.refresh_user(%s)", (user,)).fetchone() == (0,)
    assert user_vector(conn, user) is None


def test_refresh_is_idempotent(conn: psycopg.Connection[Any], world: dict[str, Any]) -> None:
    it = world["items"]
    user = add_user(conn, "idem")
    add_events(conn, [(user, it[i], "click", None, T0 - i * DAY) for i in range(5)])
    conn.execute("select pyembed.refresh_user(%s)", (user,))
    first = user_vector(conn, user)
    conn.execute("select pyembed.refresh_user(%s)", (user,))
    np.testing.assert_array_equal(first, user_vector(conn, user))


def test_incremental_refresh_touches_only_changed_users(conn: psycopg.Connection[Any],
                                                        world: dict[str, Any]) -> None:
    it = world["items"]
    a, b = add_user(conn, "inc-a"), add_user(conn, "inc-b")
    add_events(conn, [(a, it[0], "view", None, T0), (b, it[1], "view", None, T0)])
    assert conn.execute("select pyembed.refresh_users()").fetchone() == (2,)
    state = "select user_id, event_watermark, refreshed_at, embedding::text " \
            "from pyembed.user_embeddings where user_id = any(%s) and kind = 'long_term' order by 1"
    # As if refreshed an hour ago, so that a refresh now (refreshed_at = now()) must move it.
    conn.execute("update pyembed.user_embeddings set refreshed_at = refreshed_at - interval '1h'"
                 " where user_id = any(%s)", ([a, b],))
    before = conn.execute(state, ([a, b],)).fetchall()
    add_events(conn, [(a, it[2], "purchase", None, T0 + DAY)])
    assert conn.execute("select user_id from pyembed.user_queue where user_id = any(%s)",
                        ([a, b],)).fetchall() == [(a,)]
    assert conn.execute("select pyembed.refresh_users()").fetchone() == (1,)
    after = conn.execute(state, ([a, b],)).fetchall()
    assert after[1] == before[1]  # b untouched
    assert after[0][1] > before[0][1] and after[0][2] > before[0][2] and after[0][3] != before[0][3]
    assert conn.execute("select pyembed.refresh_users()").fetchone() == (0,)


def test_since_requeues_users_whose_vectors_miss_events(conn: psycopg.Connection[Any],
                                                        world: dict[str, Any]) -> None:
    it = world["items"]
    user = add_user(conn, "since")
    add_events(conn, [(user, it[0], "view", None, T0)])
    conn.execute("delete from pyembed.user_queue")  # e.g. events copied with triggers disabled
    assert conn.execute("select pyembed.refresh_users()").fetchone() == (0,)
    assert conn.execute("select pyembed.refresh_users(since => %s)", (T0 - DAY,)).fetchone() == (1,)
    assert user_vector(conn, user) is not None
    # Up to date now: nothing is queued again.
    assert conn.execute("select pyembed.refresh_users(since => %s)", (T0 - DAY,)).fetchone() == (0,)


def test_unknown_user_is_a_clear_error(conn: psycopg.Connection[Any],
                                       world: dict[str, Any]) -> None:
    with pytest.raises(psycopg.Error) as info:
        conn.execute("select pyembed.refresh_user(987654321)")
    assert info.value.sqlstate == "PE003"
    conn.rollback()
    with pytest.raises(NotFoundError):
        users.refresh_user(conn, "nobody")
    with pytest.raises(NotFoundError):
        users.refresh_user(conn, 987654321)



def test_parallel_sessions_refresh_each_user_once_to_the_same_vectors(
        db_url: str, world: dict[str, Any]) -> None:
    """refresh_users(jobs=3): three sessions drain the queue (SKIP LOCKED claims) and write
    exactly the vectors one session writes, each user once."""
    it = world["items"]
    state = ("select user_id, kind, slot, embedding::text, event_watermark "
             "from pyembed.user_embeddings order by 1, 2, 3")
    with connect(db_url) as conn:
        people = [add_user(conn, f"par{n}") for n in range(23)]
        add_events(conn, [(u, it[(n + k) % 6], "click", None, T0 - k * DAY)
                          for n, u in enumerate(people) for k in range(1 + n % 5)])
        conn.commit()
        assert users.refresh_users(conn, batch_size=2) == 23
        one_session = conn.execute(state).fetchall()
        conn.execute("delete from pyembed.user_embeddings")
        conn.commit()
        blas = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
        assert users.refresh_users(conn, batch_size=2, every_user=True, jobs=3) == 23
        # the sessions' threads limit BLAS while clustering; the process gets its threads back
        assert [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"] == blas
        assert conn.execute(state).fetchall() == one_session
        assert conn.execute("select count(*) from pyembed.user_queue").fetchone() == (0,)
        with pytest.raises(InvalidInputError):
            users.refresh_users(conn, jobs=0)


def test_claim_users_takes_disjoint_batches_and_a_rollback_returns_them(
        db_url: str, world: dict[str, Any]) -> None:
    it = world["items"]
    with connect(db_url) as first, connect(db_url) as second:
        people = [add_user(first, f"claim{n}") for n in range(5)]
        add_events(first, [(u, it[0], "view", None, T0) for u in people])
        first.commit()
        claim = "select user_id from pyembed.claim_users(batch => %s)"
        mine = {r[0] for r in first.execute(claim, (3,))}
        theirs = {r[0] for r in second.execute(claim, (10,))}  # SKIP LOCKED: the other two
        assert len(mine) == 3 and mine | theirs == set(people) and not mine & theirs
        second.rollback()  # back in the queue
        first.commit()  # claimed and gone
        queued = {r[0] for r in first.execute("select user_id from pyembed.user_queue")}
        assert queued == theirs
        with pytest.raises(psycopg.Error) as info:
            first.execute(claim, (0,))
        assert info.value.sqlstate == "PE012"
