"""Multi-interest vectors: weighted k-means in the worker step."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import numpy as np
import psycopg
from users_data import DIM, add_events, add_items, add_model, add_user

from pyembed_db import users
from pyembed_db.interests import choose_k, weighted_kmeans

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


def two_tastes(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """n items near axis 0 and n items near axis 1."""
    a = np.zeros((n, DIM))
    a[:, 0] = 1
    b = np.zeros((n, DIM))
    b[:, 1] = 1
    return a + 0.15 * rng.normal(size=a.shape), b + 0.15 * rng.normal(size=b.shape)


def test_choose_k_rule() -> None:
    assert [choose_k(n) for n in (0, 19, 20, 39, 40, 1000)] == [0, 1, 2, 3, 4, 4]
    assert choose_k(50, k_max=2, min_items=5) == 2


def test_weighted_kmeans_is_deterministic_and_weighted() -> None:
    rng = np.random.default_rng(0)
    a, b = two_tastes(rng, 10)
    x = np.vstack([a, b])
    w = np.array([1.0] * 10 + [3.0] * 10)
    first = weighted_kmeans(x, w, 2, seed=5)
    again = weighted_kmeans(x, w, 2, seed=5)
    np.testing.assert_array_equal(first.centroids, again.centroids)
    assert sorted(np.round(first.shares, 3).tolist()) == [0.25, 0.75]
    assert len(set(first.members[:10].tolist())) == 1 and len(set(first.members[10:].tolist())) == 1


def test_user_with_two_tastes_gets_two_distinct_interests(conn: psycopg.Connection[Any]) -> None:
    rng = np.random.default_rng(1)
    model_id = add_model(conn)
    a, b = two_tastes(rng, 15)
    items = add_items(conn, model_id, np.vstack([a, b]), "tt")
    user = add_user(conn, "two")
    # Twice as much weight on taste A (purchases) as on taste B (... also purchases, fewer).
    add_events(conn, [(user, i, "purchase", None, T0) for i in items[:15]]
               + [(user, i, "purchase", None, T0) for i in items[15:23]])
    assert users.refresh_user(conn, user) == 2 + 2
    rows = conn.execute(
        "select slot, embedding, weight, event_count from pyembed.user_embeddings "
        "where user_id = %s and kind = 'interest' order by slot", (user,)).fetchall()
    assert len(rows) == 2
    vectors = [r[1].to_numpy() for r in rows]
    assert abs(float(vectors[0] @ vectors[1])) < 0.3
    by_axis = sorted(rows, key=lambda r: -r[1].to_numpy()[0])
    assert by_axis[0][1].to_numpy()[0] > 0.9 and by_axis[1][1].to_numpy()[1] > 0.9
    assert round(by_axis[0][2], 3) == round(15 / 23, 3) and by_axis[0][3] == 15


def test_worker_step_writes_interests_for_queued_users(db_url: str) -> None:
    from pyembed_db.db import connect

    rng = np.random.default_rng(2)
    with connect(db_url) as conn:
        model_id = add_model(conn, "step")
        a, b = two_tastes(rng, 12)
        items = add_items(conn, model_id, np.vstack([a, b]), "st")
        few, many = add_user(conn, "few"), add_user(conn, "many")
        add_events(conn, [(few, items[0], "view", None, T0)]
                   + [(many, i, "like", None, T0) for i in items])
        conn.commit()
        # The items are still queued for embedding: the step waits for them.
        assert users.refresh_step(conn, 10) == 0
        conn.execute("delete from pyembed.item_queue")  # as if the embed step had run
        conn.commit()
        assert users.refresh_step(conn, 10) == 2
        assert users.refresh_step(conn, 10) == 1  # queue empty: the popularity cache is built
        assert users.refresh_step(conn, 10) == 0
        kinds = conn.execute("select user_id, kind, count(*) from pyembed.user_embeddings "
                             "where model_id = %s group by 1, 2 order by 1, 2",
                             (model_id,)).fetchall()
    assert kinds == [(few, "long_term", 1), (few, "short_term", 1),
                     (many, "interest", 2), (many, "long_term", 1), (many, "short_term", 1)]


def test_sql_refresh_keeps_interests_and_the_worker_catches_them_up(db_url: str) -> None:
    from pyembed_db.db import connect

    rng = np.random.default_rng(3)
    interests = ("select count(*), min(event_watermark) from pyembed.user_embeddings "
                 "where user_id = %s and kind = 'interest'")
    with connect(db_url) as conn:
        model_id = add_model(conn, "cron")
        a, b = two_tastes(rng, 12)
        items = add_items(conn, model_id, np.vstack([a, b]), "cr")
        user = add_user(conn, "cron-user")
        add_events(conn, [(user, i, "like", None, T0) for i in items[:20]])
        conn.execute("delete from pyembed.item_queue")
        assert users.refresh_user(conn, user) == 2 + 2
        conn.commit()
        before = conn.execute(interests, (user,)).fetchone()
        assert before is not None and before[0] == 2

        # A new event, refreshed by SQL alone (as pg_cron would): interests kept, now behind.
        add_events(conn, [(user, items[20], "like", None, T0)])
        conn.execute("select pyembed.refresh_users()")
        conn.commit()
        long_term = conn.execute(
            "select event_watermark from pyembed.user_embeddings "
            "where user_id = %s and kind = 'long_term'", (user,)).fetchone()
        assert long_term is not None
        assert conn.execute(interests, (user,)).fetchone() == before
        assert before[1] < long_term[0]

        # The worker's idle step recomputes them from every event.
        while users.refresh_step(conn, 10):
            pass
        after = conn.execute(interests, (user,)).fetchone()
    assert after == (2, long_term[0])


def test_one_failing_user_backs_off_while_the_others_refresh(db_url: str,
                                                             monkeypatch: Any) -> None:
    from pyembed_db.db import connect

    with connect(db_url) as conn:
        model_id = add_model(conn, "fail")
        items = add_items(conn, model_id, np.eye(3, DIM), "fl")
        names = ("fl-ok-1", "fl-bad", "fl-ok-2")
        ids = {name: add_user(conn, name) for name in names}
        add_events(conn, [(ids[n], items[k], "like", None, T0) for k, n in enumerate(names)])
        conn.execute("delete from pyembed.item_queue")
        conn.execute("delete from pyembed.user_queue where user_id <> all (%s)",
                     (list(ids.values()),))
        conn.commit()
        real = users.fold_in_users

        def fold_in(c: Any, user_ids: list[int], model: int | None = None, **read: Any) -> int:
            if ids["fl-bad"] in user_ids:
                raise RuntimeError("fold-in blew up")
            return real(c, user_ids, model, **read)

        monkeypatch.setattr(users, "fold_in_users", fold_in)
        assert users.refresh_step(conn, 10) == 3
        queued = conn.execute("select user_id, attempts, last_error, not_before > now() "
                              "from pyembed.user_queue").fetchall()
        refreshed = {r[0] for r in conn.execute(
            "select user_id from pyembed.user_embeddings where model_id = %s", (model_id,))}
    assert refreshed == {ids["fl-ok-1"], ids["fl-ok-2"]}
    assert len(queued) == 1 and queued[0][:2] == (ids["fl-bad"], 1)
    assert "fold-in blew up" in queued[0][2] and queued[0][3]
