"""A behavior model trained on events that hold nothing but popularity: validation makes
popularity alone the default method, and pyembed.recommend serves it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import pytest
from users_data import DIM, add_events, add_items, add_model, add_user

from pyembed_db.cli.main import main
from pyembed_db.db import connect
from pyembed_db.evaluate import evaluate
from pyembed_db.training import train_behavior

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def popular(module_db_url: str) -> dict[str, Any]:
    """80 users, each buying 12 of 150 items drawn from one Zipf popularity."""
    rng = np.random.default_rng(11)
    with connect(module_db_url) as conn:
        model = add_model(conn)
        items = add_items(conn, model, rng.normal(size=(150, DIM)), "i")
        p = 1.0 / np.arange(1, len(items) + 1) ** 1.1
        rows, users = [], []
        for n in range(80):
            users.append(add_user(conn, f"u{n}"))
            picks = rng.choice(items, size=12, replace=False, p=p / p.sum())
            rows += [(users[-1], int(item), "purchase", None, T0 + timedelta(minutes=m))
                     for m, item in enumerate(picks)]
        add_events(conn, rows)
        conn.commit()
        result = train_behavior(conn, holdout=3)
    return {"users": users, "result": result}


def test_validation_makes_popularity_the_default_and_sql_serves_it(
        db_url: str, popular: dict[str, Any]) -> None:
    result = popular["result"]
    assert result.fusion["method"] == "popular"
    chosen = result.validation["chosen"]
    popular_trials = [t["ndcg"] for t in result.validation["trials"]
                      if t.get("method") == "popular"]
    assert chosen["ndcg"] == max(popular_trials)
    assert chosen["ndcg"] > max(t["ndcg"] for t in result.validation["trials"] if "params" in t)
    with connect(db_url) as conn:
        # the popularity cache is there, decayed with the half-life the method was chosen with
        assert conn.execute(
            "select half_life = pyembed.popularity_half_life() "
            "from pyembed.item_popularity_state").fetchone() == (True,)
        conn.execute("set role pyembed_reader")
        for user in popular["users"][:10]:
            served = conn.execute("select item_id, source from pyembed.recommend(%s, 5)",
                                  (user,)).fetchall()
            expected = conn.execute("select item_id from pyembed.popular_items(5, '{}', %s)",
                                    (user,)).fetchall()
            assert [r[0] for r in served] == [r[0] for r in expected]
            assert {r[1] for r in served} == {"popular"}
            # the behavior ranking is still there when asked for by name
            behavior = conn.execute(
                "select source from pyembed.recommend(%s, 5, method => 'behavior')",
                (user,)).fetchall()
            assert {r[0] for r in behavior} == {"behavior"}


def test_evaluate_serves_a_popularity_choice_without_training_its_model(
        db_url: str, popular: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    """With popularity chosen and no scored method reading behavior vectors, the evaluation
    does not train the model; its default scores what the stored model would have served."""
    count = "select count(*) from pyembed.embedding_models where kind = 'behavior'"
    with connect(db_url) as conn:
        models = conn.execute(count).fetchone()
        untrained = evaluate(conn, holdout=3, k=5)
        trained = evaluate(conn, holdout=3, k=5, methods=("popularity", "default", "behavior"))
        assert conn.execute(count).fetchone() == models
    assert untrained["behavior"]["fusion"]["method"] == "popular"
    assert untrained["behavior"]["fusion"] == trained["behavior"]["fusion"]
    assert untrained["behavior"]["train_seconds"] is None
    assert untrained["behavior"]["dimensions"] is None
    assert trained["behavior"]["train_seconds"] > 0 and trained["behavior"]["dimensions"] > 0

    def scores(report: dict[str, Any], method: str) -> tuple[float, float, float]:
        row, = (r for r in report["results"] if r["method"] == method)
        return row["recall"], row["ndcg"], row["coverage"]

    assert scores(untrained, "default") == scores(trained, "default")
    assert scores(untrained, "default") == scores(untrained, "popularity")
    assert {r["method"] for r in trained["results"]} - {r["method"] for r in untrained["results"]} \
        == {"behavior"}
    assert main(["--database-url", db_url, "evaluate", "--holdout", "3", "--no-progress"]) == 0
    assert "not trained (no scored method reads its vectors)" in capsys.readouterr().out


@pytest.mark.parametrize("fusion, expected", [
    ('{"method": "popular", "popularity": 1, "popularity_half_life_seconds": 86400}', "1 day"),
    ('{"method": "behavior", "popularity": 0.2, "popularity_half_life_seconds": null}', "0"),
    # a ranking without popularity chose no half-life: pyembed.half_life's default applies
    ('{"method": "behavior", "popularity": 0, "popularity_half_life_seconds": 86400}',
     "90 days"),
])
def test_popularity_decays_with_the_active_models_half_life_only_when_it_ranks_by_it(
        db_url: str, popular: dict[str, Any], fusion: str, expected: str) -> None:
    with connect(db_url) as conn:
        conn.execute("update pyembed.behavior_models set fusion = %s::jsonb where model_id = %s",
                     (fusion, popular["result"].model_id))
        assert conn.execute("select pyembed.popularity_half_life() = %s::interval",
                            (expected,)).fetchone() == (True,)
        conn.rollback()
