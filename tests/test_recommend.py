"""pyembed.recommend: exclusion, filters, multi-interest quotas, examples, MMR, cold start."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import psycopg
import pytest
from sqlalchemy.orm import Session
from users_data import DIM, add_events, add_items, add_model, add_user

from pyembed_db import users
from pyembed_db.db import connect, create_sa_engine
from pyembed_db.errors import InvalidInputError, NotFoundError
from pyembed_db.recommend import recommend, recommend_items

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
N = 12  # items per category


@pytest.fixture(scope="module")
def world(module_db_url: str) -> dict[str, Any]:
    """Categories A, B, C clustered around axes 0, 1, 2; users with one or two tastes."""
    rng = np.random.default_rng(11)
    vectors, categories = [], []
    for axis, name in enumerate("ABC"):
        block = np.zeros((N, DIM))
        block[:, axis] = 1
        vectors.append(block + 0.2 * rng.normal(size=block.shape))
        categories += [name] * N
    with connect(module_db_url) as conn:
        model_id = add_model(conn)
        ids = add_items(conn, model_id, np.vstack(vectors), "r", categories)
        cat = dict(zip(ids, categories, strict=True))
        a_items = [i for i in ids if cat[i] == "A"]
        b_items = [i for i in ids if cat[i] == "B"]
        fan_a = add_user(conn, "fan-a")
        both = add_user(conn, "both")
        newbie = add_user(conn, "newbie")
        grumpy = add_user(conn, "grumpy")
        crowd = [add_user(conn, f"crowd{i}") for i in range(5)]
        events = [(fan_a, i, "purchase", None, T0) for i in a_items[:4]]
        events += [(both, i, "like", None, T0) for i in a_items[:12] + b_items[:10]]
        events += [(grumpy, ids[-1], "dislike", None, T0)]
        # Popularity: item ids[-1] (C) by everyone, ids[-2] by three, b_items[5] by one.
        events += [(u, ids[-1], "purchase", None, T0 - timedelta(days=1)) for u in crowd]
        events += [(u, ids[-2], "purchase", None, T0) for u in crowd[:3]]
        events += [(crowd[0], b_items[5], "view", None, T0)]
        add_events(conn, events)
        conn.commit()
        assert users.refresh_users(conn) == 8  # everyone with events: not newbie
    return {"ids": ids, "cat": cat, "a": a_items, "b": b_items, "fan_a": fan_a, "both": both,
            "newbie": newbie, "grumpy": grumpy, "model_id": model_id}


def test_seen_items_are_excluded(conn: psycopg.Connection[Any], world: dict[str, Any]) -> None:
    recs = recommend(conn, "fan-a", k=6)
    seen = set(world["a"][:4])
    assert len(recs) == 6 and not seen & {r.item_id for r in recs}
    assert all(world["cat"][r.item_id] == "A" for r in recs)
    assert [r.score for r in recs] == sorted((r.score for r in recs), reverse=True)
    with_seen = recommend(conn, "fan-a", k=6, exclude_seen=False)
    assert seen & {r.item_id for r in with_seen}


def test_filters_apply(conn: psycopg.Connection[Any], world: dict[str, Any]) -> None:
    recs = recommend(conn, world["fan_a"], k=5, filters={"category": "B"})
    assert len(recs) == 5 and all(world["cat"][r.item_id] == "B" for r in recs)
    popular = recommend(conn, "newbie", k=5, filters={"category": "B"})
    assert popular[0].item_id == world["b"][5]  # viewed once more than the other liked Bs
    assert len(popular) == 5 and all(world["cat"][r.item_id] == "B" for r in popular)


def test_both_tastes_of_a_multi_interest_user_appear(conn: psycopg.Connection[Any],
                                                     world: dict[str, Any]) -> None:
    interests = conn.execute("select count(*) from pyembed.user_embeddings where user_id = %s "
                             "and kind = 'interest'", (world["both"],)).fetchone()
    assert interests == (2,)
    recs = recommend(conn, "both", k=4, exclude_seen=False)
    cats = [world["cat"][r.item_id] for r in recs]
    assert cats.count("A") >= 1 and cats.count("B") >= 1
    assert {r.source for r in recs} == {"interest:0", "interest:1"}
    # Quotas follow the weights: 12 A likes vs 10 B likes -> 2 + 2 of 4 (or 3 + 1 at worst).
    assert abs(cats.count("A") - cats.count("B")) <= 2


def test_positive_and_negative_examples_move_the_query(conn: psycopg.Connection[Any],
                                                       world: dict[str, Any]) -> None:
    plain = recommend(conn, "fan-a", k=3, filters={"category": "B"})
    toward = recommend(conn, "fan-a", k=3, filters={"category": "B"}, positive=["r15"])
    assert toward[0].score > plain[0].score + 0.2
    assert "r15" not in {r.external_id for r in toward}  # examples are never recommended
    away = recommend(conn, "fan-a", k=3, negative=[world["a"][4]])
    near = recommend(conn, "fan-a", k=3)
    assert away[0].score < near[0].score
    only_examples = recommend(conn, "newbie", k=3, positive=["r15"])
    assert only_examples[0].source == "examples"
    assert all(world["cat"][r.item_id] == "B" for r in only_examples)
    with pytest.raises(NotFoundError):
        recommend(conn, "fan-a", positive=["no-such-item"])
    with pytest.raises(NotFoundError):
        recommend(conn, "fan-a", positive=[10**12])


def test_diversity_re_ranks_with_mmr(conn: psycopg.Connection[Any], world: dict[str, Any]) -> None:
    def spread(recs: list[Any]) -> float:
        rows = conn.execute("select embedding from pyembed.item_embeddings where item_id = any(%s)",
                            ([r.item_id for r in recs],)).fetchall()
        x = np.stack([r[0].to_numpy() for r in rows])
        sims = x @ x.T
        return float(sims[np.triu_indices(len(x), 1)].mean())

    plain = recommend(conn, "fan-a", k=5, exclude_seen=False, vectors="long_term")
    diverse = recommend(conn, "fan-a", k=5, exclude_seen=False, vectors="long_term", diversity=0.9)
    assert len(diverse) == 5 and plain[0].item_id == diverse[0].item_id
    assert spread(diverse) < spread(plain) - 0.05
    assert recommend(conn, "fan-a", k=5, diversity=0.0) == recommend(conn, "fan-a", k=5)


def test_popularity_blend(conn: psycopg.Connection[Any], world: dict[str, Any]) -> None:
    plain = recommend(conn, "fan-a", k=3)
    assert recommend(conn, "fan-a", k=3, popularity=0.0) == plain
    only_popular = recommend(conn, "fan-a", k=2, popularity=1.0)
    # The two most popular items fan-a has not seen (both C), whatever their similarity.
    assert [r.item_id for r in only_popular] == [world["ids"][-1], world["ids"][-2]]
    assert {r.source for r in only_popular} == {"popular"}
    blended = recommend(conn, "fan-a", k=6, popularity=0.7)
    cats = {world["cat"][r.item_id] for r in blended}
    assert "A" in cats and "C" in cats  # similar items and the very popular one
    assert [r.score for r in blended] == sorted((r.score for r in blended), reverse=True)
    with pytest.raises(InvalidInputError):
        recommend(conn, "fan-a", popularity=2)


def test_cold_start_returns_popular_items(conn: psycopg.Connection[Any],
                                          world: dict[str, Any]) -> None:
    recs = recommend(conn, "newbie", k=3)
    # 5 purchases (one day older) > 3 purchases > a purchase + a like (a[0..3] tie: lowest id).
    assert [r.item_id for r in recs] == [world["ids"][-1], world["ids"][-2], world["a"][0]]
    assert {r.source for r in recs} == {"popular"}
    # grumpy has only a dislike: no vector, popularity without the item they already saw.
    grumpy = recommend(conn, "grumpy", k=2)
    assert [r.item_id for r in grumpy] == [world["ids"][-2], world["a"][0]]


def test_unknown_user_and_bad_arguments(conn: psycopg.Connection[Any],
                                        world: dict[str, Any]) -> None:
    with pytest.raises(psycopg.Error) as info:
        conn.execute("select * from pyembed.recommend(987654321)")
    assert info.value.sqlstate == "PE003"
    conn.rollback()
    with pytest.raises(NotFoundError):
        recommend(conn, "nobody")
    with pytest.raises(NotFoundError):
        recommend(conn, 987654321)
    conn.rollback()
    with pytest.raises(InvalidInputError):
        recommend(conn, "fan-a", k=0)
    conn.rollback()
    with pytest.raises(InvalidInputError):
        recommend(conn, "fan-a", diversity=1.5)


def test_orm_helper_returns_items_in_order(db_url: str, world: dict[str, Any]) -> None:
    engine = create_sa_engine(db_url)
    try:
        with Session(engine) as session:
            items = recommend_items(session, "fan-a", k=4)
            with connect(db_url) as conn:
                expected = [r.item_id for r in recommend(conn, "fan-a", k=4)]
            assert [i.item_id for i in items] == expected
            assert all(i.category == "A" for i in items)
    finally:
        engine.dispose()


def test_reader_role_can_recommend(db_url: str, world: dict[str, Any]) -> None:
    with connect(db_url) as conn:
        expected = recommend(conn, "fan-a", k=3)
        conn.execute("set role pyembed_reader")
        assert recommend(conn, "fan-a", k=3, diversity=0.5, positive=["r15"])
        assert recommend(conn, "newbie", k=2)[0].source == "popular"
        assert recommend(conn, "fan-a", k=3) == expected
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("select pyembed.refresh_users()")


def test_popularity_cache_matches_live_ranking(conn: psycopg.Connection[Any],
                                               world: dict[str, Any]) -> None:
    live = recommend(conn, "newbie", k=5)
    assert conn.execute("select pyembed.refresh_popularity()").fetchone()[0] > 0
    assert conn.execute("select pyembed.refresh_popularity()").fetchone() == (0,)  # up to date
    assert recommend(conn, "newbie", k=5) == live
    # New events are not seen by the cache until it is refreshed again.
    add_events(conn, [(world["grumpy"], world["b"][0], "purchase", None, T0)] * 5)  # 25 + 3
    assert recommend(conn, "newbie", k=1) == live[:1]
    assert conn.execute("select pyembed.refresh_popularity()").fetchone()[0] > 0
    assert recommend(conn, "newbie", k=1)[0].item_id == world["b"][0]
