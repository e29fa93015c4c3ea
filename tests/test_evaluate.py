"""Offline evaluation: metrics equal a hand computation on a tiny split; nothing is written."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import pytest
from users_data import DIM, add_events, add_items, add_model, add_user

from pyembed_db.db import connect
from pyembed_db.errors import InvalidInputError
from pyembed_db.evaluate import _reads_behavior_vectors, _text_kinds_read, evaluate
from pyembed_db.metrics import ndcg_at_k, recall_at_k
from pyembed_db.training import chosen_popularity_half_life

T = [datetime(2024, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=s) for s in range(3)]


@pytest.fixture(scope="module")
def tiny(module_db_url: str) -> dict[str, Any]:
    """Items i0..i5 on axes 0..5 except i2 between i0 and i1; three users, three events each."""
    vectors = np.eye(6, DIM)
    vectors[2] = [1, 1, 0.5] + [0] * (DIM - 3)
    with connect(module_db_url) as conn:
        model_id = add_model(conn)
        i = add_items(conn, model_id, vectors, "e")
        u1, u2, u3 = (add_user(conn, name) for name in ("u1", "u2", "u3"))
        add_events(conn, [
            (u1, i[0], "like", None, T[0]), (u1, i[1], "like", None, T[1]),
            (u1, i[2], "like", None, T[2]),             # held out: relevant
            (u2, i[3], "like", None, T[0]), (u2, i[4], "like", None, T[1]),
            (u2, i[5], "rating", 2, T[2]),              # held out: not relevant -> u2 not scored
            (u3, i[0], "purchase", None, T[0]), (u3, i[2], "purchase", None, T[1]),
            (u3, i[1], "purchase", None, T[2]),         # held out: relevant
        ])
        conn.commit()
    return {"items": i}


def _by_method(report: dict[str, Any]) -> dict[tuple[str, bool], tuple[float, float, float]]:
    return {(r["method"], r["exclude_seen"]): (round(r["recall"], 4), round(r["ndcg"], 4),
                                               round(r["coverage"], 4))
            for r in report["results"]}


def test_metric_functions() -> None:
    assert recall_at_k([5, 6, 7], {6, 7, 8, 9}, 2) == 0.25
    assert ndcg_at_k([5, 6], {5, 6}, 2) == 1.0
    assert ndcg_at_k([5, 6], {6}, 2) == pytest.approx(1 / np.log2(3))
    assert ndcg_at_k([5, 6], set(), 2) == 0.0


def test_metrics_equal_a_hand_computation(db_url: str, tiny: dict[str, Any]) -> None:
    with connect(db_url) as conn:
        report = evaluate(conn, holdout=1, k=1, methods="all", exclusion=(True, False))
    assert report["split"]["heldout_events"] == 3 and report["split"]["users"] == 2
    got = _by_method(report)
    # Training popularity: i0 = 3 + 5, i2 = 5, then i1, i3, i4 = 3 (tie -> lowest id).
    # Without exclusion everyone gets [i0]: no hit; coverage 1 of 6 items.
    assert got[("popularity", False)] == (0.0, 0.0, round(1 / 6, 4))
    # Excluding seen: u1 (saw i0, i1) gets [i2], u3 (saw i0, i2) gets [i1]: both hit.
    assert got[("popularity", True)] == (1.0, 1.0, round(2 / 6, 4))
    # u1's vector ~ e0 + e1 is closest to i2 among unseen items; u3's (i0 + i2) to i1.
    assert got[("single-vector", True)] == (1.0, 1.0, round(2 / 6, 4))
    # Three items are too few for interests: multi-interest falls back to the long-term vector.
    assert got[("multi-interest", True)] == got[("single-vector", True)]
    # Every item has fewer than 5 training events: the cold-item rows score the same lists
    # against the same relevant items (seen excluded only).
    cold = {r["method"]: (round(r["recall"], 4), round(r["ndcg"], 4), r["users"])
            for r in report["cold_items"]["results"]}
    assert cold["popularity"] == (1.0, 1.0, 2) and cold["single-vector"] == (1.0, 1.0, 2)


def test_cutoff_split_and_nothing_is_written(db_url: str, tiny: dict[str, Any]) -> None:
    with connect(db_url) as conn:
        snapshot = "select (select count(*) from pyembed.events), " \
                   "(select count(*) from pyembed.user_embeddings), " \
                   "(select count(*) from pyembed.user_queue)"
        before = conn.execute(snapshot).fetchone()
        by_cutoff = evaluate(conn, cutoff=T[2], k=1, methods="all")
        by_holdout = evaluate(conn, holdout=1, k=1, methods="all")
        assert conn.execute(snapshot).fetchone() == before
        with pytest.raises(InvalidInputError):
            evaluate(conn, holdout=0)
    assert _by_method(by_cutoff) == _by_method(by_holdout)


def test_methods_scored_are_the_ones_asked_for(db_url: str, tiny: dict[str, Any]) -> None:
    with connect(db_url) as conn:
        quick = evaluate(conn, holdout=1, k=1)
        one = evaluate(conn, holdout=1, k=1, methods=["single-vector"], exclusion=(False,))
        full = evaluate(conn, holdout=1, k=1, methods="all", exclusion=(True, False))
        for bad in (["nope"], [], "popularity; drop table x"):
            with pytest.raises(InvalidInputError, match="method"):
                evaluate(conn, holdout=1, k=1, methods=bad)
        with pytest.raises(InvalidInputError, match="exclusion"):
            evaluate(conn, holdout=1, k=1, exclusion=())
    ours = {m for m, _ in _by_method(quick) if not m.startswith("baseline")}
    assert ours == {"popularity", "default"}
    assert all(seen for _, seen in _by_method(quick))
    assert [k for k in _by_method(one) if not k[0].startswith("baseline")] == \
        [("single-vector", False)]
    # A method scores the same whichever others run beside it.
    assert _by_method(quick)[("popularity", True)] == _by_method(full)[("popularity", True)]
    assert _by_method(quick)[("default", True)] == _by_method(full)[("default", True)]


def test_ease_is_skipped_past_its_catalog_limit_and_said_so(
        db_url: str, tiny: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """EASE inverts an items x items matrix: past EASE_MAX_ITEMS evaluate leaves it out and
    names it with the reason; the other baselines are still scored."""
    from pyembed_db import baselines

    with connect(db_url) as conn:
        full = evaluate(conn, holdout=1, k=1)
        monkeypatch.setattr(baselines, "EASE_MAX_ITEMS", 3)
        small = evaluate(conn, holdout=1, k=1)
    ease = "baseline EASE (lambda=500)"
    assert ease in {r["method"] for r in full["results"]} and full["skipped_baselines"] == {}
    assert ease not in {r["method"] for r in small["results"]}
    assert "EASE inverts" in small["skipped_baselines"][ease]
    assert {r["method"] for r in small["results"]} == \
        {r["method"] for r in full["results"]} - {ease}


def test_max_users_scores_a_fixed_sample(db_url: str, tiny: dict[str, Any]) -> None:
    """max_users: the same random sample of scored users each run, said in the split; the
    baselines are scored on those users too; a non-positive sample size is refused."""
    with connect(db_url) as conn:
        first = evaluate(conn, holdout=1, k=1, max_users=1)
        again = evaluate(conn, holdout=1, k=1, max_users=1)
        everyone = evaluate(conn, holdout=1, k=1, max_users=5)
        for bad in (0, -1, True, 1.5):
            with pytest.raises(InvalidInputError):
                evaluate(conn, holdout=1, k=1, max_users=bad)  # type: ignore[arg-type]
    assert first["split"]["users"] == 1 and first["split"]["users_with_relevant_items"] == 2
    assert {r["users"] for r in first["results"]} == {1}
    assert _by_method(first) == _by_method(again)
    assert everyone["split"]["users"] == 2 and _by_method(everyone) != _by_method(first)


@pytest.mark.parametrize("methods, chosen, expected", [
    (("popularity", "default"), "popular", False),
    (("popularity", "default"), "behavior", True),
    (("popularity", "single-vector", "multi-interest+pop"), "behavior", False),
    (("behavior",), "popular", True),
])
def test_the_behavior_index_is_built_only_for_a_method_reading_behavior_vectors(
        methods: tuple[str, ...], chosen: str, expected: bool) -> None:
    assert _reads_behavior_vectors(methods, {"method": chosen}) is expected


LONG_SHORT = ("long_term", "short_term")
EVERY_KIND = ("long_term", "short_term", "interest")


@pytest.mark.parametrize("methods, fusion, expected", [
    (("popularity", "default"), {"method": "popular"}, ()),
    (("popularity", "default"), {"method": "behavior", "text": 0.0}, ()),
    (("popularity", "default"), {"method": "behavior", "text": 0.1}, LONG_SHORT),
    (("popularity", "default"), None, EVERY_KIND),  # no behavior model: the text method
    (("popularity", "single-vector"), {"method": "popular"}, LONG_SHORT),
    (("multi-interest",), {"method": "behavior"}, EVERY_KIND),
    (("behavior",), {"method": "text"}, ()),
])
def test_text_user_vectors_are_computed_only_for_a_method_reading_them(
        methods: tuple[str, ...], fusion: dict[str, Any] | None,
        expected: tuple[str, ...]) -> None:
    assert _text_kinds_read(methods, fusion) == expected


@pytest.mark.parametrize("fusion, expected", [
    ({"method": "popular", "popularity": 1.0, "popularity_half_life_seconds": 86400.0},
     timedelta(days=1)),
    ({"method": "behavior", "popularity": 0.2, "popularity_half_life_seconds": None},
     timedelta(0)),  # no decay
    ({"method": "behavior", "popularity": 0.0, "popularity_half_life_seconds": 86400.0}, None),
])
def test_the_popularity_cache_follows_the_chosen_half_life_only_when_ranked_by(
        fusion: dict[str, Any], expected: timedelta | None) -> None:
    assert chosen_popularity_half_life(fusion) == expected
