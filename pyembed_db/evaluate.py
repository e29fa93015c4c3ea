"""Offline evaluation of the recommenders on a temporal split of the events.

The split and the training happen inside ONE transaction that is always rolled back: the
held-out events are deleted, every user's vectors are recomputed from the remaining events, the
recommendations are read, and the rollback restores the events and the vectors exactly as they
were. Nothing is written, but the transaction holds row locks on user vectors and events while it
runs (seconds on MovieLens 100K), so a concurrent worker waits for it.

Relevant items of a user: the held-out items whose net event weight is positive (for 1-5
ratings: rating >= 4). Users with no relevant held-out item are not scored.

- recall@k: relevant items among the k recommended / relevant items (averaged over users)
- NDCG@k: DCG of the hits (1 / log2(rank + 1)) over the DCG of a perfect list of
  min(k, relevant) hits
- coverage: distinct items recommended to anyone / items with a vector in the model
- popular share: share of the recommended slots holding one of the 100 most popular training
  items

Every pyembed method is served by ``pyembed.recommend`` from Postgres. A behavior model's
parameters and method are chosen on a validation split carved from the training events; the
model is trained on them inside the same rolled-back transaction when a scored method reads its
vectors, and the default pass names the chosen method. The baselines (popularity counts,
item-kNN, EASE, ALS from ``implicit``) are computed in numpy from the same training events and
scored by the same scorer (:mod:`pyembed_db.baselines`).
"""

from __future__ import annotations

import logging
import statistics
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime
from itertools import islice
from typing import Any

import numpy as np
import psycopg
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from . import baselines, sqlfiles
from .active import active_model_id
from .arguments import check_k
from .behavior import Events
from .errors import InvalidInputError, ModelError
from .metrics import score
from .training import (
    VALIDATION_HOLDOUT,
    BehaviorChoice,
    TrainResult,
    chosen_popularity_half_life,
    read_events,
    train_chosen,
    validate_behavior,
)
from .user_vectors import kinds_with, write_user_vectors

log = logging.getLogger(__name__)

# (name, method, vectors and popularity arguments of pyembed.recommend); method "pop-sql" is
# pyembed's own popularity ranking, "default" the method chosen on validation.
METHODS: list[tuple[str, str | None, str, float | None]] = [
    ("popularity", "pop-sql", "auto", 0.0),
    ("single-vector", "text", "long_term", 0.0),
    ("multi-interest", "text", "auto", 0.0),
    ("multi-interest+pop", "text", "auto", 0.3),
    ("behavior", "behavior", "auto", 0.0),
    ("default", None, "auto", None),
]
METHOD_NAMES = [name for name, *_ in METHODS]
# What `evaluate` scores unless asked for more: every extra method is one more pass of
# `pyembed.recommend` over every scored user (minutes on a million events).
DEFAULT_METHODS = ("popularity", "default")
INTEREST_METHODS = {"multi-interest", "multi-interest+pop"}
TEXT_METHODS = {"single-vector", *INTEREST_METHODS}
TIMED_USERS = 100
COLD_EVENTS = 5  # held-out items with fewer training events are scored apart as cold items
USER_BATCH = 1000
RECOMMEND_BATCH = 500


@dataclass(frozen=True)
class MethodScore:
    """Metrics of one method on the held-out events."""

    method: str
    exclude_seen: bool
    users: int
    recall: float
    ndcg: float
    coverage: float
    popular_share: float = 0.0
    served_by: str = "postgres"


def _group(rows: Iterable[tuple[Any, ...]]) -> dict[int, list[int]]:
    lists: dict[int, list[int]] = defaultdict(list)
    for user_id, item_id in rows:
        lists[int(user_id)].append(int(item_id))
    return lists


def _split(conn: psycopg.Connection[Any], holdout: int | None,
           cutoff: datetime | None) -> list[int]:
    """Delete the held-out events; returns the users with training events left."""
    if cutoff is not None:
        conn.execute(sqlfiles.read("queries/evaluate_split_cutoff.sql"), {"cutoff": cutoff})
    else:
        conn.execute(sqlfiles.read("queries/evaluate_split_holdout.sql"), {"holdout": holdout})
    conn.execute(sqlfiles.read("queries/evaluate_train.sql"))
    row = conn.execute(sqlfiles.read("queries/evaluate_users_with_events.sql")).fetchone()
    return [int(u) for u in (row[0] if row else [])]


def _text_user_vectors(conn: psycopg.Connection[Any], users: list[int], model_id: int,
                       kinds: tuple[str, ...], training: Events, progress: bool) -> None:
    """Recompute the users' text vectors of ``kinds`` from the ``training`` events; with no
    kinds delete them, so that no vector computed from held-out events is left to serve a
    fallback."""
    if not kinds:
        conn.execute(sqlfiles.read("queries/evaluate_drop_text_vectors.sql"),
                     {"model_id": model_id})
        return
    with tqdm(total=len(users), desc="evaluate: user vectors", unit="user",
              disable=not progress) as bar:
        for start in range(0, len(users), USER_BATCH):
            batch = users[start:start + USER_BATCH]
            write_user_vectors(conn, batch, model_id, kinds=kinds,
                               events=training.subset(np.isin(training.user_ids, batch)))
            bar.update(len(batch))


def _text_kinds_read(methods: Sequence[str], fusion: dict[str, Any] | None) -> tuple[str, ...]:
    """The kinds of text user vectors the scored methods read (interests only when one reads
    those). The default method reads them when it is ``text`` (no behavior model), or
    ``behavior`` fused with text similarity; ``popular`` reads none: on a catalog where
    popularity wins, they were 14 s of a 1M-event evaluation for nothing."""
    default = _default_method(fusion) if "default" in methods else None
    interests = bool(INTEREST_METHODS & set(methods)) or default == "text"
    if interests or TEXT_METHODS & set(methods) or (
            default == "behavior" and fusion is not None and fusion.get("text", 0) > 0):
        return kinds_with(interests)
    return ()


def _default_method(fusion: dict[str, Any] | None) -> str:
    """What ``pyembed.recommend`` serves with no method once a behavior model with ``fusion``
    is active: the method validation chose, or ``text`` without a behavior model."""
    return str(fusion.get("method", "text")) if fusion is not None else "text"


def _selected(methods: Sequence[str] | str) -> list[str]:
    if methods == "all":
        return list(METHOD_NAMES)
    chosen = [methods] if isinstance(methods, str) else list(methods)
    unknown = [m for m in chosen if m not in METHOD_NAMES]
    if unknown or not chosen:
        raise InvalidInputError(f"unknown evaluation method {unknown[0] if unknown else '(none)'}"
                                f": choose among {', '.join(METHOD_NAMES)} or 'all'")
    return [m for m in METHOD_NAMES if m in chosen]


def _popular_lists(conn: psycopg.Connection[Any], users: list[int], k: int,
                   exclude_seen: bool, training: Events) -> dict[int, list[int]]:
    """One popularity ranking, with each user's training items removed when excluding."""
    if not exclude_seen:
        rows = conn.execute(sqlfiles.read("queries/evaluate_popular.sql"), {"k": k}).fetchall()
        return {u: [int(r[0]) for r in rows] for u in users}
    pair_users, pair_items = training.pairs()
    starts = np.flatnonzero(np.r_[True, pair_users[1:] != pair_users[:-1]])
    seen = {int(pair_users[lo]): set(pair_items[lo:hi].tolist())
            for lo, hi in zip(starts, np.r_[starts[1:], len(pair_users)], strict=True)}
    depth = min(1000, k + max((len(v) for v in seen.values()), default=0))
    ranking = [int(r[0]) for r in
               conn.execute(sqlfiles.read("queries/evaluate_popular.sql"), {"k": depth})]

    def unseen_top(user_seen: set[int]) -> list[int]:
        return list(islice((i for i in ranking if i not in user_seen), k))

    return {u: unseen_top(seen.get(u, set())) for u in users}


def _method_lists(conn: psycopg.Connection[Any], name: str, method: str | None, vectors: str,
                  blend: float | None, users: list[int], k: int, exclude_seen: bool,
                  model_id: int, progress: bool, training: Events) -> dict[int, list[int]]:
    if not users:
        return {}
    if method == "pop-sql":
        return _popular_lists(conn, users, k, exclude_seen, training)
    lists: dict[int, list[int]] = {}
    query = sqlfiles.read("queries/evaluate_recommend.sql")
    with tqdm(total=len(users), desc=f"evaluate: {name}", unit="user",
              disable=not progress) as bar:
        for start in range(0, len(users), RECOMMEND_BATCH):
            batch = users[start:start + RECOMMEND_BATCH]
            lists.update(_group(conn.execute(query, {
                "users": batch, "k": k, "exclude_seen": exclude_seen, "model_id": model_id,
                "vectors": vectors, "popularity": blend, "method": method})))
            bar.update(len(batch))
    return lists


def _recommend_p50_ms(conn: psycopg.Connection[Any], users: list[int], k: int,
                      model_id: int, method: str) -> float:
    """Median time of one ``pyembed.recommend`` call (the default ``method``) from this
    client."""
    timings = []
    for user_id in users[:TIMED_USERS]:
        started = time.perf_counter()
        conn.execute(sqlfiles.read("queries/evaluate_recommend.sql"),
                     {"users": [user_id], "k": k, "exclude_seen": True, "model_id": model_id,
                      "vectors": "auto", "popularity": None, "method": method}).fetchall()
        timings.append(time.perf_counter() - started)
    return 1000 * statistics.median(timings) if timings else 0.0


def _baseline_lists(events: Events, users: list[int], k: int,
                   progress: bool) -> tuple[dict[str, dict[int, list[int]]], dict[str, str]]:
    """Top-k lists of the numpy baselines, trained on the training events (seen excluded),
    and the baselines skipped with the reason (EASE past ``baselines.EASE_MAX_ITEMS``)."""
    inter = events.interactions(feedback="any", half_life_seconds=None)
    row_of = {int(u): r for r, u in enumerate(inter.users)}
    rows = [row_of[u] for u in users if u in row_of]
    listed = [u for u in users if u in row_of]
    out, skipped = {}, {}
    chosen = [
        ("baseline popularity (counts)", baselines.popularity),
        ("baseline item-kNN (k=100)", baselines.item_knn),
        ("baseline EASE (lambda=500)", baselines.ease),
        ("baseline ALS (implicit, 64 factors)", baselines.als),
    ]
    for name, recommend in tqdm(chosen, desc="evaluate: baselines", unit="baseline",
                                disable=not progress, position=1):
        if recommend is baselines.ease and inter.matrix.shape[1] > baselines.EASE_MAX_ITEMS:
            skipped[name] = (f"{inter.matrix.shape[1]:,} items: EASE inverts an items x items "
                             f"matrix, run only up to {baselines.EASE_MAX_ITEMS:,} items")
            log.info("%s skipped: %s", name, skipped[name])
            continue
        started = time.perf_counter()
        top = recommend(inter.matrix, k)[rows]
        log.info("%s: %.2f s", name, time.perf_counter() - started)
        out[name] = {u: [int(inter.items[j]) for j in cols if j >= 0]
                     for u, cols in zip(listed, top, strict=True)}
    return out, skipped


def _sample(relevant: dict[int, set[int]], max_users: int | None) -> dict[int, set[int]]:
    """At most ``max_users`` of the scored users, the same ones for the same data (seed 0)."""
    if max_users is None or len(relevant) <= max_users:
        return relevant
    chosen = np.random.default_rng(0).choice(sorted(relevant), max_users, replace=False)
    return {int(u): relevant[int(u)] for u in sorted(chosen.tolist())}


def _popular_items(events: Events) -> tuple[set[int], dict[int, int]]:
    """The 100 items with the most training events, and every item's training events."""
    items, counts = np.unique(events.item_ids, return_counts=True)
    top = {int(i) for i in items[np.argsort(-counts, kind="stable")[:100]]}
    return top, dict(zip(items.tolist(), counts.tolist(), strict=True))


def _cold_relevant(relevant: dict[int, set[int]],
                   training_counts: dict[int, int]) -> dict[int, set[int]]:
    """Per user, the relevant held-out items with fewer than COLD_EVENTS training events."""
    cold = {u: {i for i in items if training_counts.get(i, 0) < COLD_EVENTS}
            for u, items in relevant.items()}
    return {u: items for u, items in cold.items() if items}


def evaluate(conn: psycopg.Connection[Any], *, holdout: int | None = 10,
             cutoff: datetime | None = None, k: int = 10,
             methods: Sequence[str] | str = DEFAULT_METHODS,
             exclusion: tuple[bool, ...] = (True,), max_users: int | None = None,
             progress: bool = False) -> dict[str, Any]:
    """Evaluate pyembed's recommendations against numpy baselines on a temporal split.

    Holds out the last ``holdout`` events of each user (users with more than that many), or
    with ``cutoff`` every event at or after it. ``methods`` are names of :data:`METHODS`
    (default: popularity and the default method) or ``"all"``; ``exclusion`` the settings of
    ``exclude_seen`` to score (``(True, False)`` adds lists that may repeat seen items);
    ``max_users`` scores a fixed random sample of that many users (every pass over the users
    is one ``pyembed.recommend`` call each: an hour for 200k users). The baselines are always
    scored, on the same users. ``progress`` shows a bar per step on stderr. Returns the
    split sizes and one :class:`MethodScore` (as a dict) per method and exclusion setting.

    Example::

        report = evaluate(conn, holdout=10, k=10, methods="all")
        for row in report["results"]:
            print(row["method"], row["exclude_seen"], row["recall"], row["ndcg"])
    """
    if cutoff is None and (holdout is None or holdout < 1):
        raise InvalidInputError("give a holdout >= 1 or a cutoff")
    check_k(k)
    if max_users is not None and (isinstance(max_users, bool) or not isinstance(max_users, int)
                                  or max_users < 1):
        raise InvalidInputError(f"max_users must be a positive integer, got {max_users!r}")
    chosen = _selected(methods)
    if not exclusion or any(not isinstance(e, bool) for e in exclusion):
        raise InvalidInputError("exclusion must be a non-empty tuple of booleans")
    model_id = active_model_id(conn)
    if model_id is None:
        raise ModelError("no active embedding model: item vectors are needed to evaluate")
    conn.rollback()  # start clean: everything below is rolled back at the end
    try:
        everyone = _split(conn, holdout, cutoff)
        training, watermark = read_events(conn)
        relevant = {int(u): set(items) for u, items in
                    conn.execute(sqlfiles.read("queries/evaluate_positives.sql")).fetchall()}
        heldout = conn.execute(sqlfiles.read("queries/evaluate_heldout_count.sql")).fetchone()
        catalog = conn.execute(sqlfiles.read("queries/evaluate_catalog.sql"),
                               {"model_id": model_id}).fetchone()
        scored_of = len(relevant)
        relevant = _sample(relevant, max_users)
        users = sorted(relevant)
        catalog_size = int(catalog[0]) if catalog else 0
        popular, training_counts = _popular_items(training)
        cold = _cold_relevant(relevant, training_counts)
        results, cold_results = [], []
        # The baselines train in numpy from the start, beside everything that follows: much of
        # it keeps one core busy (Postgres, or this client waiting for it). Two threads of
        # work fill the two cores, so BLAS keeps one thread meanwhile; this thread sets that
        # limit, as threadpoolctl lets only the first thread that set an OpenBLAS limit
        # change it (the other thread's limits are silently ignored).
        with threadpool_limits(1, "blas"), ThreadPoolExecutor(max_workers=1) as background:
            baselines_done = background.submit(_baseline_lists, training, users, k, progress)
            choice, trained = _train(conn, holdout or VALIDATION_HOLDOUT, training, watermark,
                                     chosen)
            fusion = choice.fusion if choice is not None else None
            # once, after the choice: computing it at the split too cost 2 s at 1M events
            # whenever validation then chose another half-life
            conn.execute(sqlfiles.read("queries/evaluate_popularity.sql"), {
                "half_life": chosen_popularity_half_life(fusion) if fusion else None})
            default = _default_method(fusion)
            _text_user_vectors(conn, everyone, model_id, _text_kinds_read(chosen, fusion),
                               training, progress)
            for name, method, vectors, blend in METHODS:
                if name not in chosen or (method == "behavior" and trained is None):
                    continue
                method = default if name == "default" else method
                for exclude_seen in exclusion:
                    lists = _method_lists(conn, name, method, vectors, blend, users, k,
                                          exclude_seen, model_id, progress, training)
                    results.append(_score(name, exclude_seen, lists, relevant, k, catalog_size,
                                          popular, "postgres"))
                    if exclude_seen:
                        cold_results.append(_score(name, True, lists, cold, k, catalog_size,
                                                   popular, "postgres"))
            baseline_lists, skipped = baselines_done.result()
        for name, lists in baseline_lists.items():
            results.append(_score(name, True, lists, relevant, k, catalog_size, popular,
                                  "numpy"))
            cold_results.append(_score(name, True, lists, cold, k, catalog_size, popular,
                                       "numpy"))
        p50 = _recommend_p50_ms(conn, users, k, model_id, default)
    finally:
        conn.rollback()
    return {
        "split": {"holdout": None if cutoff else holdout, "cutoff": cutoff,
                  "heldout_events": int(heldout[0]) if heldout else 0, "users": len(users),
                  "users_with_relevant_items": scored_of},
        "k": k,
        "model_id": model_id,
        "behavior": choice and {
            "method": choice.params.method, "fusion": choice.fusion,
            "validation": choice.report.get("chosen"),
            "validation_seconds": round(choice.seconds, 3),
            # trained and stored only when a scored method reads its vectors
            "params": trained.params if trained else asdict(choice.params),
            "dimensions": trained.dimensions if trained else None,
            "train_seconds": trained.seconds if trained else None},
        "recommend_p50_ms": p50,
        "results": results,
        "skipped_baselines": skipped,
        "cold_items": {"training_events_below": COLD_EVENTS, "results": cold_results},
    }


def _train(conn: psycopg.Connection[Any], holdout: int, training: Events, watermark: int,
           methods: Sequence[str]) -> tuple[BehaviorChoice | None, TrainResult | None]:
    """The behavior model validation chooses on the training events, and that model trained,
    stored and active with its HNSW index (in the evaluation's transaction) when a scored
    method reads its vectors; (None, None) when there are too few events to train one.

    Without a method reading them, the model is not trained: its vectors, cold items and
    users' fold-in were 17 s of a 1M-event evaluation whose default was popularity.
    """
    with conn.transaction():  # a savepoint: a refused training leaves the split intact
        try:
            choice = validate_behavior(conn, training, holdout=holdout)
            if not _reads_behavior_vectors(methods, choice.fusion):
                return choice, None
            return choice, train_chosen(conn, choice, training, watermark, commit=False)
        except InvalidInputError as exc:
            log.info("no behavior model evaluated: %s", exc)
            return None, None


def _reads_behavior_vectors(methods: Sequence[str], fusion: dict[str, Any]) -> bool:
    """Whether a scored method serves from the behavior model's vectors: ``behavior``, or
    ``default`` when validation chose the behavior ranking. The model is trained, stored and
    indexed only then: the transaction is rolled back, and building the index for 100k items
    takes minutes."""
    return "behavior" in methods or ("default" in methods
                                      and _default_method(fusion) == "behavior")


def _score(name: str, exclude_seen: bool, lists: dict[int, list[int]],
           relevant: dict[int, set[int]], k: int, catalog_size: int, popular: set[int],
           served_by: str) -> dict[str, Any]:
    recall, ndcg, coverage = score(lists, relevant, k, catalog_size)
    slots = [i for u in relevant for i in lists.get(u, [])[:k]]
    share = sum(i in popular for i in slots) / len(slots) if slots else 0.0
    log.info("%s exclude_seen=%s: recall@%d %.4f NDCG %.4f", name, exclude_seen, k, recall, ndcg)
    return asdict(MethodScore(name, exclude_seen, len(relevant), recall, ndcg, coverage, share,
                              served_by))
