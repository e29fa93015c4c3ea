"""Behavior models in the database: trained from events, served by pyembed.recommend, folded in
without retraining, cold items mapped from text, retrains switched atomically."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import psycopg
import pytest
from users_data import DIM, add_events, add_items, add_model, add_user

from pyembed_db.db import connect
from pyembed_db.errors import InvalidInputError
from pyembed_db.recommend import recommend
from pyembed_db.training import train_behavior
from pyembed_db.users import refresh_user, refresh_users

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
GROUP_ITEMS = 12
GROUP_USERS = 30


def _text_vectors(axis: int, n: int, rng: np.random.Generator) -> np.ndarray:
    base = np.zeros((n, DIM))
    base[:, axis] = 1.0
    return base + 0.2 * rng.normal(size=(n, DIM))


@pytest.fixture(scope="module")
def groups(module_db_url: str) -> dict[str, Any]:
    """Two user groups that each touch only their own group's items, plus one cold item whose
    text resembles group A's items."""
    rng = np.random.default_rng(7)
    with connect(module_db_url) as conn:
        text_model = add_model(conn)
        items = {g: add_items(conn, text_model, _text_vectors(axis, GROUP_ITEMS, rng), g)
                 for g, axis in (("a", 0), ("b", 1))}
        cold = add_items(conn, text_model, _text_vectors(0, 1, rng), "cold")[0]
        users: dict[str, list[int]] = {"a": [], "b": []}
        rows = []
        for g in ("a", "b"):
            for n in range(GROUP_USERS):
                user = add_user(conn, f"{g}-user{n}")
                users[g].append(user)
                picks = rng.choice(items[g], size=8, replace=False)
                rows += [(user, int(item), "purchase", None, T0 + timedelta(minutes=k))
                         for k, item in enumerate(picks)]
        add_events(conn, rows)
        conn.commit()
        result = train_behavior(conn, holdout=2)
    return {"items": items, "users": users, "cold": cold, "result": result,
            "text_model": text_model}


def _group_of(groups: dict[str, Any], item_id: int) -> str:
    # The cold item's text is group a's: it is recommended to group a the moment it is mapped.
    if item_id == groups["cold"]:
        return "a"
    return next(g for g in ("a", "b") if item_id in groups["items"][g])


def test_trained_model_recommends_each_groups_items_from_sql_as_a_reader(
        db_url: str, groups: dict[str, Any]) -> None:
    assert groups["result"].fusion["method"] == "behavior"
    with connect(db_url) as conn:
        conn.execute("set role pyembed_reader")
        for g in ("a", "b"):
            for user in groups["users"][g][:10]:
                rows = conn.execute(
                    "select item_id, source from pyembed.recommend(%s, 3)", (user,)).fetchall()
                assert len(rows) == 3
                assert {_group_of(groups, r[0]) for r in rows} == {g}
                assert {r[1] for r in rows} <= {"behavior", "popular"}


def test_fold_in_moves_a_new_user_to_their_group_without_retraining(
        db_url: str, groups: dict[str, Any]) -> None:
    with connect(db_url) as conn:
        models = conn.execute("select count(*) from pyembed.embedding_models").fetchone()
        user = add_user(conn, "newcomer")
        add_events(conn, [(user, item, "purchase", None, T0 + timedelta(days=1))
                          for item in groups["items"]["b"][:3]])
        assert refresh_user(conn, user) >= 1
        conn.commit()
        recs = recommend(conn, user, k=4, method="behavior", popularity=0.0)
        assert [r.source for r in recs] == ["behavior"] * 4
        assert {_group_of(groups, r.item_id) for r in recs} == {"b"}
        assert conn.execute("select count(*) from pyembed.embedding_models").fetchone() == models


def test_cold_item_gets_a_vector_near_its_text_similar_warm_items(
        db_url: str, groups: dict[str, Any]) -> None:
    assert groups["result"].cold_items == 1
    with connect(db_url) as conn:
        rows = conn.execute(
            "select s.item_id from pyembed.search("
            "  (select embedding from pyembed.item_embeddings"
            "   where model_id = %(m)s and item_id = %(cold)s), 6, '{}', null, %(m)s) s"
            " where s.item_id <> %(cold)s",
            {"m": groups["result"].model_id, "cold": groups["cold"]}).fetchall()
    assert len(rows) == 5
    assert sum(r[0] in groups["items"]["a"] for r in rows) >= 4


def test_unknown_method_is_a_clear_error(db_url: str, groups: dict[str, Any]) -> None:
    with connect(db_url) as conn:
        with pytest.raises(InvalidInputError, match="method"):
            recommend(conn, groups["users"]["a"][0], method="magic")
        with pytest.raises(psycopg.Error) as raised:
            conn.execute("select * from pyembed.recommend(%s, 3, method => 'magic')",
                         (groups["users"]["a"][0],))
        assert raised.value.sqlstate == "PE012"


def test_retrain_switches_models_atomically_while_recommending(
        db_url: str, groups: dict[str, Any]) -> None:
    user = groups["users"]["a"][0]
    errors: list[BaseException] = []
    served = []
    stop = threading.Event()

    def keep_recommending() -> None:
        with connect(db_url, autocommit=True) as conn:
            while not stop.is_set():
                try:
                    rows = conn.execute("select item_id from pyembed.recommend(%s, 3)",
                                        (user,)).fetchall()
                    served.append(len(rows))
                except BaseException as exc:  # reported below
                    errors.append(exc)
                    return

    reader = threading.Thread(target=keep_recommending)
    reader.start()
    try:
        with connect(db_url) as conn:
            second = train_behavior(conn, holdout=2)
            third = train_behavior(conn, holdout=2)
    finally:
        stop.set()
        reader.join()
    assert errors == []
    assert served and set(served) == {3}
    with connect(db_url) as conn:
        models = dict(conn.execute(
            "select model_id, status from pyembed.embedding_models where kind = 'behavior'"
        ).fetchall())
    # The newest is active, the one before is kept to switch back to, older ones are gone.
    assert models == {third.model_id: "active", second.model_id: "registered"}


def test_the_worker_role_trains_and_refreshes_under_row_level_security(
        db_url: str, groups: dict[str, Any]) -> None:
    # PostgreSQL refuses COPY FROM into a table whose policies apply to the role: the vectors
    # go through a temporary table (pyembed_db.bulk).
    with connect(db_url) as conn:
        conn.execute("set role pyembed_worker")
        result = train_behavior(conn, holdout=2)
        assert refresh_users(conn, every_user=True) == 2 * GROUP_USERS
        counts = conn.execute(
            "select (select count(*) from pyembed.item_embeddings where model_id = %(m)s),"
            " (select count(*) from pyembed.user_embeddings where model_id = %(m)s),"
            " (select count(*) from pyembed.user_embeddings where model_id = %(t)s"
            "  and kind = 'long_term')",
            {"m": result.model_id, "t": groups["text_model"]}).fetchone()
    assert counts == (2 * GROUP_ITEMS + 1, 2 * GROUP_USERS, 2 * GROUP_USERS)
