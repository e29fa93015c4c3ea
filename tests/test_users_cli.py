"""The users CLI: refresh-users, recommend (with history) and evaluate, human and --json."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import pytest
from users_data import DIM, add_events, add_items, add_model, add_user

from pyembed_db import InvalidInputError, user_history
from pyembed_db.cli.main import main
from pyembed_db.db import connect


@pytest.fixture(scope="module")
def ratings(module_db_url: str) -> None:
    rng = np.random.default_rng(5)
    t0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
    with connect(module_db_url) as conn:
        model_id = add_model(conn)
        items = add_items(conn, model_id, rng.normal(size=(30, DIM)), "m",
                          ["Comedy" if i % 2 else "Drama" for i in range(30)])
        users = [add_user(conn, f"cli{u}") for u in range(4)]
        add_events(conn, [(u, items[int(i)], "rating", float(rng.integers(1, 6)),
                           t0 + timedelta(hours=n))
                          for u in users for n, i in enumerate(rng.choice(30, 12, replace=False))])
        conn.commit()


@pytest.fixture
def data(ratings: None, db_url: str) -> str:
    return db_url


def run(url: str, *args: str, capsys: Any) -> tuple[int, str]:
    code = main(["--database-url", url, *args])
    return code, capsys.readouterr().out


def test_refresh_recommend_evaluate(data: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(data, "refresh-users", "--json", capsys=capsys)
    assert code == 0 and json.loads(out) == {"users_refreshed": 4}
    code, out = run(data, "refresh-users", "--user", "cli0", capsys=capsys)
    assert code == 0 and out.startswith("user cli0: ")

    code, out = run(data, "recommend", "cli1", "--k", "3", "--filter", '{"category": "Comedy"}',
                    "--json", capsys=capsys)
    got = json.loads(out)
    assert code == 0 and len(got["recommendations"]) == 3 and len(got["history"]) == 10
    seen = {h["item_id"] for h in got["history"]}
    assert not seen & {r["item_id"] for r in got["recommendations"]}
    with connect(data) as conn:
        history = user_history(conn, "cli1", 10)
    assert [asdict(h) for h in history] == [{**h, "occurred_at": datetime.fromisoformat(
        h["occurred_at"])} for h in got["history"]]
    assert [h.occurred_at for h in history] == sorted((h.occurred_at for h in history),
                                                      reverse=True)
    with connect(data) as conn, pytest.raises(InvalidInputError, match="limit"):
        user_history(conn, "cli1", -1)
    code, out = run(data, "recommend", "cli1", "--k", "3", "--history", "2", capsys=capsys)
    assert code == 0 and "recent history" in out and len(out.strip().splitlines()) == 2 + 1 + 3

    code, out = run(data, "evaluate", "--holdout", "2", "--k", "5", "--json", "--methods", "all",
                    "--include-seen", capsys=capsys)
    report = json.loads(out)
    assert code == 0 and report["split"]["heldout_events"] == 8
    methods = {(r["method"], r["exclude_seen"]) for r in report["results"]}
    pyembed = ("popularity", "single-vector", "multi-interest", "multi-interest+pop", "default")
    assert {(m, e) for m in pyembed for e in (True, False)} <= methods
    # Every baseline is scored (seen items excluded) next to the pyembed methods.
    assert {m for m, e in methods if m.startswith("baseline")} == {
        "baseline popularity (counts)", "baseline item-kNN (k=100)",
        "baseline EASE (lambda=500)", "baseline ALS (implicit, 64 factors)"}
    code, out = run(data, "evaluate", "--holdout", "2", "--no-progress", capsys=capsys)
    assert code == 0 and "recall@10" in out and "default" in out
    assert "multi-interest" not in out  # scored only when asked for
    code, out = run(data, "evaluate", "--methods", "default,nope", capsys=capsys)
    assert code == 2


def test_unknown_user_is_a_clean_error(data: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--database-url", data, "recommend", "nobody"]) == 2
    assert "unknown user 'nobody'" in capsys.readouterr().err


def test_refresh_all_requeues_every_user_with_events(data: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """`refresh-users --all` (pyembed.queue_users()) rebuilds every user's vectors even when the
    queue is empty; an unknown id given to queue_users is PE003 and queues nobody."""
    import psycopg

    assert run(data, "refresh-users", "--json", capsys=capsys)[0] == 0
    with connect(data) as conn:
        conn.execute("delete from pyembed.user_embeddings")
        conn.commit()
    code, out = run(data, "refresh-users", "--json", capsys=capsys)
    assert code == 0 and json.loads(out) == {"users_refreshed": 0}  # nothing was queued
    code, out = run(data, "refresh-users", "--all", "--json", capsys=capsys)
    assert code == 0 and json.loads(out) == {"users_refreshed": 4}
    with connect(data) as conn:
        assert conn.execute("select count(distinct user_id) from pyembed.user_embeddings "
                            "where kind = 'long_term'").fetchone() == (4,)
        with pytest.raises(psycopg.Error) as unknown:
            conn.execute("select pyembed.queue_users(array[987654321::bigint])")
        assert unknown.value.sqlstate == "PE003"
        conn.rollback()
        assert conn.execute("select count(*) from pyembed.user_queue").fetchone() == (0,)
