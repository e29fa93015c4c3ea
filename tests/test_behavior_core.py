"""Behavior vectors on small synthetic data (no DB): groups, fold-in, cold items, state."""

from __future__ import annotations

import doctest
import importlib
from dataclasses import replace

import numpy as np
import pytest
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from pyembed_db.baselines import ease_weights
from pyembed_db.behavior import (
    BehaviorModel,
    BehaviorParams,
    Events,
    build_interactions,
    cold_norm,
    cold_vectors,
    event_weights,
    fit_text_map,
    map_text,
    train,
    train_events,
    validation_split,
)
from pyembed_db.behavior import tune as tune_module
from pyembed_db.behavior.tune import MIN_GAIN, Grid, tune
from pyembed_db.errors import InvalidInputError, ModelError
from pyembed_db.linalg import inverse_diagonal, spd_inverse

GROUP_A = np.arange(100, 115)
GROUP_B = np.arange(200, 215)
METHODS = {
    "ease_lr": BehaviorParams(method="ease_lr", factors=8, regularization=5.0),
    "ials": BehaviorParams(method="ials", factors=8, regularization=3.0, alpha=10.0,
                           iterations=10),
}


def two_groups(users_per_group: int = 20, per_user: int = 8, seed: int = 0) -> Events:
    """Users 0..19 rate only group A items, users 20..39 only group B items."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(2 * users_per_group):
        items = GROUP_A if user < users_per_group else GROUP_B
        for t, item in enumerate(rng.choice(items, per_user, replace=False)):
            rows.append((user, item, float(rng.integers(4, 6)), 1000.0 * t))
    user, item, value, at = (np.array(c) for c in zip(*rows, strict=True))
    return Events.from_arrays(user, item, np.ones(len(user)), np.ones(len(user), bool), value, at)


def popularity_only(users: int = 80, items: int = 200, per_user: int = 12,
                    seed: int = 3) -> Events:
    """Every user draws items from one Zipf popularity, whoever the user: nothing but
    popularity to learn (the synthetic data of bench/scale.py)."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, items + 1) ** 1.1
    rows = []
    for user in range(users):
        for t, item in enumerate(rng.choice(items, per_user, replace=False, p=p / p.sum())):
            rows.append((user, 1000 + int(item), 5.0, 1000.0 * t))
    user, item, value, at = (np.array(c) for c in zip(*rows, strict=True))
    return Events.from_arrays(user, item, np.ones(len(user)), np.ones(len(user), bool), value, at)


def new_user(items: np.ndarray) -> dict[str, np.ndarray]:
    """fold_in_events arguments: 5-star ratings of ``items`` in this order (last = newest)."""
    n = len(items)
    return {"item_ids": items, "type_weights": np.ones(n), "is_rating": np.ones(n, bool),
            "values": np.full(n, 5.0), "occurred_at": np.arange(n, dtype=float)}


def top_unseen(model: BehaviorModel, vector: np.ndarray, seen: set[int], k: int) -> list[int]:
    ranked = model.items[np.argsort(-(model.item_vectors @ vector), kind="stable")]
    return [int(i) for i in ranked if int(i) not in seen][:k]


@pytest.fixture(scope="module")
def events() -> Events:
    return two_groups()


@pytest.fixture(scope="module", params=sorted(METHODS))
def model(request: pytest.FixtureRequest, events: Events) -> BehaviorModel:
    return train_events(events, METHODS[request.param])


def test_trained_vectors_recommend_each_groups_items(model: BehaviorModel, events: Events) -> None:
    users, vectors = model.fold_in_users(events)
    for user, vector in zip(users, vectors, strict=True):
        seen = set(events.item_ids[events.user_ids == user].tolist())
        group = set((GROUP_A if user < 20 else GROUP_B).tolist())
        assert set(top_unseen(model, vector, seen, 5)) <= group, user


def test_fold_in_moves_a_new_user_to_her_group_without_retraining(model: BehaviorModel) -> None:
    frozen = model.item_vectors.copy()
    a_fan = model.fold_in_events(**new_user(GROUP_A[:3]))
    assert set(top_unseen(model, a_fan, set(GROUP_A[:3].tolist()), 5)) <= set(GROUP_A.tolist())
    # the same user then rates group B items: her latest events pull her vector over
    items = np.concatenate([GROUP_A[:3], GROUP_B[:6]])
    moved = model.fold_in_events(**new_user(items))
    assert set(top_unseen(model, moved, set(items.tolist()), 5)) <= set(GROUP_B.tolist())
    np.testing.assert_array_equal(model.item_vectors, frozen)


def test_recency_weighs_the_latest_events_most(events: Events) -> None:
    model = train_events(events, replace(METHODS["ease_lr"], recent_half_life=1.0))
    items = np.concatenate([GROUP_B[:3], GROUP_A[:3]])  # B long ago, A just now
    vector = model.fold_in_events(**new_user(items))
    assert set(top_unseen(model, vector, set(items.tolist()), 5)) <= set(GROUP_A.tolist())
    flat = train_events(events, replace(METHODS["ease_lr"], recent_half_life=None))
    # without recency the same history is symmetric: both groups show up
    both = set(top_unseen(flat, flat.fold_in_events(**new_user(items)), set(items.tolist()), 12))
    assert both & set(GROUP_A.tolist()) and both & set(GROUP_B.tolist())


def test_one_user_fold_in_equals_the_batch_fold_in(model: BehaviorModel, events: Events) -> None:
    users, vectors = model.fold_in_users(events)
    for row, user in enumerate(users[::7]):
        mine = events.subset(events.user_ids == user)
        one = model.fold_in_events(mine.item_ids, mine.type_weights, mine.is_rating, mine.values,
                                   occurred_at=mine.occurred_at, event_ids=mine.event_ids)
        np.testing.assert_allclose(one, vectors[row * 7], rtol=1e-5, atol=1e-6)


def test_state_round_trips_to_identical_fold_ins(model: BehaviorModel) -> None:
    copy = BehaviorModel.from_state(model.state())
    assert copy.params == model.params
    np.testing.assert_array_equal(copy.items, model.items)
    np.testing.assert_array_equal(copy.item_vectors, model.item_vectors)
    history = new_user(np.array([100, 101, 205]))
    np.testing.assert_array_equal(copy.fold_in_events(**history), model.fold_in_events(**history))


def test_text_map_places_a_cold_item_near_its_text_neighbours(model: BehaviorModel) -> None:
    rng = np.random.default_rng(1)
    topic = {100: np.eye(8)[0], 200: np.eye(8)[1]}
    text = np.array([topic[100 if i < 200 else 200] + 0.05 * rng.standard_normal(8)
                     for i in model.items])
    text_map = fit_text_map(text, model.item_vectors, ridge=0.01)
    cold = map_text((np.eye(8)[0] + 0.05 * rng.standard_normal(8))[None, :], text_map)[0]
    unit = model.item_vectors / np.linalg.norm(model.item_vectors, axis=1, keepdims=True)
    cosine = unit @ (cold / np.linalg.norm(cold))
    in_a = np.isin(model.items, GROUP_A)
    assert set(model.items[np.argsort(-cosine)[:5]].tolist()) <= set(GROUP_A.tolist())
    assert cosine[in_a].mean() > cosine[~in_a].mean() + 0.3
    a_fan = model.fold_in_events(**new_user(GROUP_A[:4]))
    assert a_fan @ cold > (model.item_vectors[~in_a] @ a_fan).max()


def test_cold_items_take_the_least_used_items_norm_and_do_not_flood_every_top() -> None:
    # Zipf popularity: in EASE a popular item's vector is long, so a cold item mapped from text
    # with the popular items' norm would top every user's list.
    rng = np.random.default_rng(4)
    n_items, n_users = 80, 300
    popularity = 1.0 / np.arange(1, n_items + 1)
    rows = [(u, int(i)) for u in range(n_users)
            for i in rng.choice(n_items, 10, replace=False, p=popularity / popularity.sum())]
    user, item = (np.array(c) for c in zip(*rows, strict=True))
    events = Events.from_arrays(user, item, np.ones(len(user)), np.zeros(len(user), bool),
                                np.full(len(user), 3.0), np.arange(len(user), dtype=float))
    model = train_events(events, BehaviorParams(method="ease_lr", factors=16))
    counts = np.bincount(item, minlength=n_items)[model.items].astype(float)
    text = rng.standard_normal((len(model.items), 8))
    cold_text = rng.standard_normal((25, 8))
    norms = np.linalg.norm(model.item_vectors, axis=1)
    assert norms.max() > 5 * cold_norm(norms, counts)  # popular items are far longer

    users, vectors = model.fold_in_users(events)
    seen = {int(u): set(item[user == u].tolist()) for u in users}

    def cold_share(cold: np.ndarray) -> float:
        listed = 0
        for u, v in zip(users, vectors, strict=True):
            ranked = sorted([(float(s), int(i)) for s, i in zip(model.item_vectors @ v,
                                                                 model.items, strict=True)
                             if int(i) not in seen[int(u)]]
                            + [(float(s), -1) for s in cold @ v], reverse=True)[:10]
            listed += sum(i == -1 for _, i in ranked)
        return listed / (10 * len(users))

    cold = cold_vectors(text, model.item_vectors, counts, cold_text)
    np.testing.assert_allclose(np.linalg.norm(cold, axis=1), cold_norm(norms, counts),
                               rtol=1e-5)
    raw = map_text(cold_text, fit_text_map(text, model.item_vectors, ridge=1.0,
                                           sample_weights=counts))
    assert cold_share(raw) > 0.5  # the failure this guards against
    assert cold_share(cold) < 0.05


def test_full_rank_low_rank_ease_is_ease_on_unseen_items() -> None:
    rng = np.random.default_rng(5)
    x = (rng.random((60, 14)) < 0.3).astype(np.float32)
    inter = build_interactions(*np.nonzero(x), np.ones(int(x.sum())), np.zeros(int(x.sum())),
                               half_life_seconds=None)
    dense = inter.matrix.toarray()
    params = BehaviorParams(method="ease_lr", factors=dense.shape[1], regularization=4.0,
                            confidence="binary", recent_half_life=None)
    model = train(inter, params)
    got = model.fold_in_many(inter.matrix) @ model.item_vectors.T
    want = dense @ ease_weights(sp.csr_matrix(dense), 4.0)
    unseen = dense == 0
    np.testing.assert_allclose(got[unseen], want[unseen], rtol=1e-3, atol=1e-5)


def test_ials_fold_in_is_implicits_least_squares_step(events: Events) -> None:
    from implicit.cpu.als import user_factor

    model = train_events(events, METHODS["ials"])
    items = np.array([100, 103, 107])
    cols = np.searchsorted(model.items, items)
    ours = model.fold_in(items, np.array([1.0, 2.0, 0.5]))
    confidence = sp.csr_matrix((1 + 10.0 * np.array([1.0, 2.0, 0.5]), (np.zeros(3), cols)),
                               shape=(1, len(model.items)))
    y = model.item_vectors.astype(np.float64)
    with threadpool_limits(1, "blas"):
        theirs = user_factor(y, y.T @ y, confidence, 0, 3.0, y.shape[1])
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)


def test_interactions_sum_decay_and_drop_non_positive_pairs() -> None:
    inter = build_interactions(np.array([1, 1, 1, 2, 2]), np.array([5, 5, 6, 5, 7]),
                               np.array([2.0, 1.0, 1.0, 1.0, -1.0]),
                               np.array([10.0, 0.0, 0.0, 10.0, 0.0]), half_life_seconds=10.0)
    assert inter.users.tolist() == [1, 2] and inter.items.tolist() == [5, 6]
    # pair (1, 5): net 3, youngest event age 0 -> 3; pair (2, 5): net 1, age 10 -> 0.5
    assert inter.matrix.toarray().tolist() == [[3.0, 1.0], [0.5, 0.0]]
    rule = event_weights(np.ones(3), np.array([True, True, False]), np.array([2.0, 5.0, 0.0]),
                         feedback="any")
    assert rule.tolist() == [1.0, 3.0, 1.0]


def test_validation_split_holds_out_each_users_last_events() -> None:
    ev = Events.from_arrays([1, 1, 1, 1, 2, 2], [10, 11, 12, 13, 10, 11], np.ones(6),
                            np.ones(6, bool), np.full(6, 5.0), [4, 1, 4, 2, 0, 1],
                            [0, 1, 2, 3, 4, 5])
    fit, valid = validation_split(ev, 2)
    assert sorted(valid.event_ids.tolist()) == [0, 2]  # both at t=4, ties by event id
    assert sorted(fit.event_ids.tolist()) == [1, 3, 4, 5]  # user 2 has only 2 events


def test_validation_split_samples_users_and_trains_on_the_rest() -> None:
    ev = two_groups(per_user=12)  # 40 users, all with more than 3 events
    fit, valid = validation_split(ev, 3, max_users=7, seed=5)
    sampled = np.unique(valid.user_ids)
    assert len(sampled) == 7 and len(valid) == 7 * 3
    # nothing is lost: the users left out keep all their events for training
    assert sorted(np.concatenate([fit.event_ids, valid.event_ids]).tolist()) == \
        sorted(ev.event_ids.tolist())
    rest = ~np.isin(ev.user_ids, sampled)
    assert np.isin(ev.event_ids[rest], fit.event_ids).all()
    again = validation_split(ev, 3, max_users=7, seed=5)[1]
    assert np.array_equal(np.sort(again.event_ids), np.sort(valid.event_ids))  # seeded
    other = validation_split(ev, 3, max_users=7, seed=6)[1]
    assert not np.array_equal(np.unique(other.user_ids), sampled)
    whole = validation_split(ev, 3)[1]
    assert np.array_equal(np.sort(validation_split(ev, 3, max_users=40)[1].event_ids),
                          np.sort(whole.event_ids))


def test_tune_scores_a_sample_of_users_past_its_cell_budget(
        monkeypatch: pytest.MonkeyPatch) -> None:
    grid = Grid(ease_lr={"recent_half_life": [None], "factors": [8]}, text=[0.0],
                popularity=[0.0], popularity_half_life_seconds=[None])
    data = two_groups(per_user=12)
    n_items = len(np.unique(data.item_ids))
    monkeypatch.setattr(tune_module, "MIN_VALIDATION_USERS", 5)
    monkeypatch.setattr(tune_module, "VALIDATION_CELLS", 12 * n_items)
    _, _, report = tune(data, holdout=3, grid=grid, start=METHODS["ease_lr"])
    assert report["validation_users"] == 12 and report["validation_events"] == 36
    monkeypatch.setattr(tune_module, "VALIDATION_CELLS", 10**9)
    _, _, report = tune(data, holdout=3, grid=grid, start=METHODS["ease_lr"])
    assert report["validation_users"] == 40


def test_tune_picks_parameters_on_validation(events: Events) -> None:
    grid = Grid(ease_lr={"recent_half_life": [None, 5.0], "regularization": [1.0, 5.0],
                         "factors": [8]},
                text=[0.0], popularity=[0.0, 0.1], popularity_half_life_seconds=[None])
    params, fusion, report = tune(two_groups(per_user=12), holdout=3, grid=grid,
                                  start=METHODS["ease_lr"])
    assert params.method == "ease_lr" and params.factors == 8
    assert params.regularization in (1.0, 5.0) and fusion.popularity in (0.0, 0.1)
    assert report["validation_users"] == 40 and len(report["trials"]) >= 4
    # the best trial, unless another was better by less than MIN_GAIN (then the simpler stays)
    assert report["best_ndcg"] * (1 + MIN_GAIN) >= max(t["ndcg"] for t in report["trials"])
    # the groups are the signal: the behavior ranking beats popularity alone
    popular = [t["ndcg"] for t in report["trials"] if t.get("method") == "popular"]
    assert report["method"] == "behavior" and len(popular) == 1
    assert report["best_ndcg"] > 2 * popular[0]


def test_tune_chooses_popularity_alone_when_the_events_hold_nothing_else() -> None:
    grid = Grid(ease_lr={}, text=[0.0], popularity=[0.0, 0.5],
                popularity_half_life_seconds=[None, 30 * 86400.0])
    _, fusion, report = tune(popularity_only(), holdout=3, grid=grid,
                             start=METHODS["ease_lr"])
    popular = {t["popularity_half_life_seconds"]: t["ndcg"] for t in report["trials"]
               if t.get("method") == "popular"}
    behavior = max(t["ndcg"] for t in report["trials"] if "params" in t)
    assert report["method"] == "popular" and set(popular) == {None, 30 * 86400.0}
    assert report["best_ndcg"] == popular[fusion.popularity_half_life_seconds]
    assert report["best_ndcg"] > behavior * (1 + MIN_GAIN)


def test_validation_popularity_lists_unseen_items_by_popularity_then_id() -> None:
    """Holdout.popular_top lists what pyembed.popular_items serves: positive popularity,
    by popularity then item id, the user's training items left out; -1 past the end."""
    from pyembed_db.behavior.validation import Holdout

    base = popularity_only(users=30, items=25, per_user=8)
    # item 9999: held out only, so no training popularity: never listed
    events = Events.from_arrays(
        np.r_[base.user_ids, 0], np.r_[base.item_ids, 9999], np.ones(len(base) + 1),
        np.ones(len(base) + 1, bool), np.r_[base.values, 5.0],
        np.r_[base.occurred_at, base.occurred_at.max() + 1])
    fit, valid = validation_split(events, 2)
    holdout = Holdout.build(fit, valid)
    assert 9999 in holdout.catalog
    # short lists, and lists long enough to run past every user's unseen popular items
    for half_life, k in ((None, 3), (None, len(holdout.catalog)), (3000.0, len(holdout.catalog))):
        top = holdout.popular_top(half_life, k)
        pop = holdout.popularity(half_life)
        for row in range(len(holdout.users)):
            seen = set(holdout.seen[row].indices.tolist())
            ranked = sorted((c for c in range(len(holdout.catalog))
                             if pop[c] > 0 and c not in seen),
                            key=lambda c: (-pop[c], holdout.catalog[c]))
            assert top[row].tolist() == (ranked + [-1] * k)[:k]
    assert (top == -1).any()  # the padding is exercised


def test_bad_input_raises_clear_errors(model: BehaviorModel) -> None:
    with pytest.raises(InvalidInputError):
        BehaviorParams(method="svd")
    with pytest.raises(InvalidInputError):
        BehaviorParams(recent_half_life=0.0)
    with pytest.raises(InvalidInputError):
        model.fold_in_many(sp.csr_matrix((1, len(model.items) + 1)))
    with pytest.raises(InvalidInputError):
        model.fold_in(np.array([100]), np.array([np.nan]))
    with pytest.raises(ModelError):
        BehaviorModel.from_state(b"not an npz")
    with pytest.raises(InvalidInputError):
        build_interactions(np.array([1]), np.array([1, 2]), np.ones(1), np.zeros(1),
                           half_life_seconds=None)


@pytest.mark.parametrize("module", ["baselines", "behavior.interactions", "behavior.events",
                                    "behavior.train", "behavior.tune", "behavior.cold",
                                    "behavior.ials", "behavior.ease_lr", "behavior.fusion",
                                    "linalg", "training"])
def test_docstring_examples_run(module: str) -> None:
    result = doctest.testmod(importlib.import_module(f"pyembed_db.{module}"))
    assert result.failed == 0 and result.attempted > 0


def test_validation_ranks_cold_items_as_served() -> None:
    """An item without events in the validation's training part but with a text vector is
    served through the text map, so the validation lists it too: item 150, like group A in
    text, is every group-A user's last event (held out)."""
    rng = np.random.default_rng(2)
    base = two_groups()
    last = base.occurred_at.max() + 1000.0
    users_a = np.unique(base.user_ids[np.isin(base.item_ids, GROUP_A)])
    n = len(users_a)
    events = Events.from_arrays(
        np.r_[base.user_ids, users_a], np.r_[base.item_ids, np.full(n, 150)],
        np.ones(len(base) + n), np.ones(len(base) + n, bool), np.r_[base.values, np.full(n, 5.0)],
        np.r_[base.occurred_at, np.full(n, last)])
    items = np.r_[GROUP_A, 150, GROUP_B]
    text = np.array([np.eye(8)[0 if i < 200 else 1] + 0.05 * rng.standard_normal(8)
                     for i in items])
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    grid = Grid(ease_lr={}, popularity=[0.0], popularity_half_life_seconds=[None], text=[0.0])
    start = BehaviorParams(method="ease_lr", factors=8, regularization=5.0)
    _, _, with_text = tune(events, holdout=1, grid=grid, start=start, text_items=items,
                           text_vectors=text)
    _, _, without = tune(events, holdout=1, grid=grid, start=start)
    # Group A's users hold out item 150: reachable only through its mapped vector.
    assert with_text["trials"][0]["recall"] > without["trials"][0]["recall"] + 0.3


def test_validation_fuses_only_the_behavior_top_as_served() -> None:
    """A fused score re-ranks each user's behavior top 4k unseen items (what
    pyembed.recommend_behavior fuses): a very popular item outside that top is never listed."""
    from pyembed_db.behavior.fusion import Fusion
    from pyembed_db.behavior.validation import Holdout

    n_items, k = 60, 2
    train_ev = Events.from_arrays([1, 1], [0, 1], np.ones(2), np.zeros(2, bool), np.ones(2),
                                  [0.0, 1.0], [0, 1])
    held = Events.from_arrays([1, 1], [9, 59], np.ones(2), np.zeros(2, bool), np.ones(2),
                              [2.0, 3.0], [2, 3])
    holdout = Holdout.build(train_ev, held, catalog=np.arange(n_items))
    behavior = np.linspace(1.0, 0.01, n_items)[None, :]  # item 0 best ... item 59 worst
    pool = holdout.pool_from_scores(behavior, n_items)
    assert pool.cols[:, :4 * k].tolist() == [list(range(2, 2 + 4 * k))]  # seen 0, 1 left out
    # Popularity: item 59 (outside the pool) is by far the most popular, item 9 next.
    holdout.cache[("popularity", None)] = np.where(np.arange(n_items) == 59, 100.0,
                                                    np.where(np.arange(n_items) == 9, 50.0, 0))
    plain = holdout.evaluate(None, None, k=k, pool=pool)  # type: ignore[arg-type]
    fused = holdout.evaluate(None, Fusion(popularity=1.0), k=k,  # type: ignore[arg-type]
                             pool=pool)
    assert plain.recall == 0.0  # [2, 3]; relevant: 9 and 59
    # Item 9 (popularity half the max) rises to the top; item 59 is not a candidate (over the
    # whole catalog it would be second, recall 1.0).
    assert fused.recall == 0.5
    assert Fusion(popularity=1.0).combine(
        np.array([[2.0, 1.0, -np.inf]]), popularity=np.array([[0.0, 1.0, 1.0]])).tolist() == \
        [[1.0, 1.5, -np.inf]]


def test_behavior_pool_in_user_chunks_equals_one_dense_pass(
        model: BehaviorModel, events: Events, monkeypatch: pytest.MonkeyPatch) -> None:
    """Scoring users a few at a time (what keeps a 100k-item catalog in memory) lists the
    same candidates with the same scores as scoring every user at once."""
    from pyembed_db import baselines
    from pyembed_db.behavior import validation
    from pyembed_db.behavior.fusion import Fusion

    train_ev, held = validation_split(events, 2)
    holdout = validation.Holdout.build(train_ev, held)
    whole = holdout.behavior_pool(model, 12)
    text = np.random.default_rng(1).normal(size=(len(holdout.catalog), 4)).astype(np.float32)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    fused_whole = holdout.evaluate(model, Fusion(text=0.3, popularity=0.1), k=3,
                                   text_vectors=text)
    monkeypatch.setattr(baselines, "SCORE_CELLS", 2 * len(holdout.catalog))  # 2 users a chunk
    assert len(holdout._chunks()) == (len(holdout.users) + 1) // 2 > 1
    chunked = holdout.behavior_pool(model, 12)
    assert chunked.cols.tolist() == whole.cols.tolist()
    assert np.allclose(chunked.scores, whole.scores)
    holdout.cache.clear()
    assert holdout.evaluate(model, Fusion(text=0.3, popularity=0.1), k=3,
                            text_vectors=text) == fused_whole
    # the seen items are never candidates
    for row in range(len(holdout.users)):
        assert not set(holdout.seen[row].indices) & set(chunked.cols[row].tolist())


def test_holdout_score_equals_the_list_scorer() -> None:
    """The vectorized Holdout.score gives score_lists' numbers (recall, NDCG, coverage,
    popular share), with -1 padding and a cold-items-only relevance."""
    from pyembed_db.baselines import score_lists
    from pyembed_db.behavior.validation import Holdout

    rng = np.random.default_rng(3)
    n_users, n_items, k = 30, 50, 5
    train_ev = Events.from_arrays(np.repeat(np.arange(n_users), 3), rng.integers(0, n_items, 90),
                                  np.ones(90), np.zeros(90, bool), np.ones(90),
                                  np.arange(90.0), np.arange(90))
    held = Events.from_arrays(np.repeat(np.arange(n_users), 4), rng.integers(0, n_items, 120),
                              np.ones(120), np.zeros(120, bool), np.ones(120),
                              np.arange(90.0, 210.0), np.arange(90, 210))
    holdout = Holdout.build(train_ev, held, catalog=np.arange(n_items))
    top = np.stack([rng.permutation(n_items)[:k] for _ in holdout.users])  # distinct items
    top[::4, 3:] = -1  # short lists
    only = {u: set(list(items)[:1]) for u, items in list(holdout.relevant.items())[::2]}
    for relevant in (holdout.relevant, only):
        lists = {int(u): [c for c in row.tolist() if c >= 0]
                 for u, row in zip(holdout.users, top, strict=True)}
        expected = score_lists(lists, relevant, k, catalog_size=n_items,
                               popular=holdout.popular)
        got = holdout.score(top, k, only=None if relevant is holdout.relevant else relevant)
        assert got.users == expected.users > 0
        assert np.allclose([got.recall, got.ndcg, got.coverage, got.popular_share],
                           [expected.recall, expected.ndcg, expected.coverage,
                            expected.popular_share])


def test_spd_inverses_match_numpy_and_fall_back_on_indefinite_matrices() -> None:
    rng = np.random.default_rng(3)
    a = rng.normal(size=(60, 40))
    spd = a.T @ a + 0.5 * np.eye(40)
    np.testing.assert_allclose(spd_inverse(spd), np.linalg.inv(spd), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(inverse_diagonal(spd), np.diag(np.linalg.inv(spd)), rtol=1e-9)
    indefinite = spd - 2 * np.max(np.linalg.eigvalsh(spd)) * np.eye(40) * (np.arange(40) % 2)
    np.testing.assert_allclose(spd_inverse(indefinite), np.linalg.inv(indefinite), rtol=1e-9,
                               atol=1e-12)
    np.testing.assert_allclose(inverse_diagonal(indefinite),
                               np.diag(np.linalg.inv(indefinite)), rtol=1e-9)
