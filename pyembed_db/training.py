"""Behavior models in the database: train from ``pyembed.events``, store, fold users in.

The numbers come from :mod:`pyembed_db.behavior` (no database access there). This module reads
the events, chooses the parameters and the fusion with popularity on a validation split carved
from the events (never on an evaluation's test split), writes a new model of kind ``behavior``
(its item vectors in ``pyembed.item_embeddings``, its fold-in state in
``pyembed.behavior_models``, every user's vector in ``pyembed.user_embeddings``) and activates
it atomically with ``pyembed.activate_model``. Searches and recommendations keep using the
previous model until that switch, so retraining never blocks them.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import psycopg
from psycopg.types.json import Jsonb
from threadpoolctl import threadpool_limits

from . import sqlfiles
from .behavior import (
    BehaviorModel,
    BehaviorParams,
    Events,
    fit_text_map,
    map_text,
    train_events,
    validation_split,
)
from .behavior.interactions import event_weights
from .errors import InvalidInputError, ModelError, translate
from .metrics import ndcg_at_k, recall_at_k

log = logging.getLogger(__name__)

# Weights of popularity in the fusion tried on validation (0: behavior vectors alone).
POPULARITY_BLENDS = (0.0, 0.05, 0.1, 0.2, 0.3)
VALIDATION_HOLDOUT = 10
MIN_EVENTS = 10
K = 10
TRAINED_HASH = hashlib.sha256(b"pyembed behavior vector: trained").digest()


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train_behavior` made."""

    model_id: int
    label: str
    method: str
    dimensions: int
    trained_items: int
    cold_items: int
    users: int
    events: int
    fusion: dict[str, Any]
    validation: dict[str, Any]
    seconds: float = 0.0
    params: dict[str, Any] = field(default_factory=dict)


def read_events(conn: psycopg.Connection[Any],
                users: Sequence[int] | None = None) -> tuple[Events, int]:
    """The events (of ``users``, or all) as arrays, and the newest event id (0 when none)."""
    rows = conn.execute(sqlfiles.read("queries/behavior_events.sql"),
                        {"users": list(users) if users is not None else None}).fetchall()
    if not rows:
        return Events.from_arrays([], [], [], [], [], [], []), 0
    columns = list(zip(*rows, strict=True))
    events = Events.from_arrays(*columns)
    return events, int(events.event_ids.max())


def _by_user(events: Events) -> Iterator[tuple[int, Events]]:
    order = np.lexsort((events.event_ids, events.user_ids))
    users = events.user_ids[order]
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    for lo, hi in zip(starts, np.r_[starts[1:], len(users)], strict=True):
        yield int(users[lo]), events.subset(order[lo:hi])


def user_vector(model: BehaviorModel, events: Events) -> np.ndarray:
    """One user's behavior vector from their events (ages from their latest event)."""
    return model.fold_in_events(events.item_ids, events.type_weights, events.is_rating,
                                events.values, events.occurred_at.max() - events.occurred_at)


def user_vectors(model: BehaviorModel, events: Events) -> dict[int, np.ndarray]:
    """Every user's behavior vector (users whose vector is zero are left out)."""
    out = {}
    for user_id, mine in _by_user(events):
        vector = user_vector(model, mine)
        if np.any(vector):
            out[user_id] = vector
    return out


def _relevant(events: Events) -> dict[int, set[int]]:
    """Per user, the items whose net weight under pyembed's rule is positive (rating >= 4)."""
    net: dict[tuple[int, int], float] = {}
    weights = event_weights(events.type_weights, events.is_rating, events.values, feedback="net")
    for u, i, w in zip(events.user_ids.tolist(), events.item_ids.tolist(), weights.tolist(),
                       strict=True):
        net[(u, i)] = net.get((u, i), 0.0) + w
    out: dict[int, set[int]] = {}
    for (u, i), w in net.items():
        if w > 0:
            out.setdefault(u, set()).add(i)
    return out


def popularity(events: Events, half_life_seconds: float | None) -> dict[int, float]:
    """pyembed.popularity_scores in numpy: positive event weights, decayed from the newest."""
    weights = np.maximum(event_weights(events.type_weights, events.is_rating, events.values,
                                       feedback="net"), 0)
    if half_life_seconds:
        weights = weights * 0.5 ** ((events.occurred_at.max() - events.occurred_at)
                                    / half_life_seconds)
    items, inverse = np.unique(events.item_ids, return_inverse=True)
    sums = np.bincount(inverse, weights=weights, minlength=len(items))
    return {int(i): float(s) for i, s in zip(items, sums, strict=True) if s > 0}


def _ndcg_recall(lists: dict[int, list[int]], relevant: dict[int, set[int]]) -> tuple[float, float]:
    users = [u for u in relevant if relevant[u]]
    if not users:
        return 0.0, 0.0
    ndcg = float(np.mean([ndcg_at_k(lists.get(u, []), relevant[u], K) for u in users]))
    recall = float(np.mean([recall_at_k(lists.get(u, []), relevant[u], K) for u in users]))
    return ndcg, recall


def _top(scores: np.ndarray, items: np.ndarray, seen: set[int]) -> list[int]:
    order = np.argsort(-scores, kind="stable")
    out = []
    for j in order:
        item = int(items[j])
        if item not in seen:
            out.append(item)
            if len(out) == K:
                break
    return out


def choose(events: Events, candidates: Sequence[BehaviorParams], *,
           popularity_half_life_seconds: float | None,
           holdout: int = VALIDATION_HOLDOUT) -> tuple[BehaviorParams, dict[str, Any],
                                                       dict[str, Any]]:
    """Choose parameters and the fusion on a validation split carved from ``events``.

    Holds out each user's last ``holdout`` events, trains every candidate on the rest and
    scores NDCG@10 of: each candidate blended with popularity at each weight of
    :data:`POPULARITY_BLENDS` (as ``pyembed.recommend_behavior`` ranks), and popularity alone.
    Returns (params, fusion = {"method", "popularity"}, report).

    Example::

        params, fusion, report = choose(events, [BehaviorParams()],
                                        popularity_half_life_seconds=None)
    """
    fit, valid = validation_split(events, holdout)
    relevant = _relevant(valid)
    if len(fit) == 0 or not relevant:
        return candidates[0], {"method": "behavior", "popularity": 0.0}, {"validated": False}
    seen: dict[int, set[int]] = {}
    for u, i in zip(fit.user_ids.tolist(), fit.item_ids.tolist(), strict=True):
        seen.setdefault(u, set()).add(i)
    pop = popularity(fit, popularity_half_life_seconds)
    ranking = sorted(pop, key=lambda i: (-pop[i], i))
    pop_lists = {u: [i for i in ranking if i not in seen.get(u, set())][:K] for u in relevant}
    pop_ndcg, pop_recall = _ndcg_recall(pop_lists, relevant)
    report: dict[str, Any] = {"validated": True, "users": len(relevant),
                              "holdout": holdout, "popular": {"ndcg": pop_ndcg,
                                                              "recall": pop_recall},
                              "candidates": []}
    best: tuple[float, float, int, float] = (pop_ndcg, pop_recall, -1, 0.0)
    for index, params in enumerate(candidates):
        model = train_events(fit, params)
        vectors = user_vectors(model, fit.subset(np.isin(fit.user_ids, list(relevant))))
        item_pop = np.array([pop.get(int(i), 0.0) for i in model.items])
        top_pop = item_pop.max() if len(item_pop) and item_pop.max() > 0 else 1.0
        for blend in POPULARITY_BLENDS:
            lists = {}
            for u, vector in vectors.items():
                dots = model.item_vectors @ vector
                top_dot = max(float(dots.max()), 1e-12)
                scores = (1 - blend) * dots / top_dot + blend * item_pop / top_pop
                lists[u] = _top(scores if blend else dots, model.items, seen.get(u, set()))
            ndcg, recall = _ndcg_recall(lists, relevant)
            report["candidates"].append({"params": asdict(model.params), "popularity": blend,
                                         "ndcg": ndcg, "recall": recall})
            if (ndcg, recall) > best[:2]:
                best = (ndcg, recall, index, blend)
    if best[2] < 0:
        fusion = {"method": "popular", "popularity": 0.0}
        params = candidates[0]
    else:
        fusion = {"method": "behavior", "popularity": best[3]}
        params = candidates[best[2]]
    report["chosen"] = {"ndcg": best[0], "recall": best[1], **fusion}
    log.info("validation chose %s (NDCG@10 %.4f, popularity %.4f)", fusion, best[0], pop_ndcg)
    return params, fusion, report


def _popularity_half_life(conn: psycopg.Connection[Any]) -> float | None:
    row = conn.execute(sqlfiles.read("queries/behavior_settings.sql")).fetchone()
    seconds = float(row[0]) if row and row[0] is not None else 0.0
    return seconds or None


def _text_model(conn: psycopg.Connection[Any]) -> int | None:
    row = conn.execute(sqlfiles.read("queries/user_active_model.sql")).fetchone()
    return int(row[0]) if row else None


def _cold_vectors(conn: psycopg.Connection[Any], model: BehaviorModel, text_model: int | None,
                  warm_counts: dict[int, int]) -> tuple[dict[int, np.ndarray], dict[int, bytes]]:
    """Behavior vectors for items with a text vector but no trained one (the text map)."""
    if text_model is None:
        return {}, {}
    rows = conn.execute(sqlfiles.read("queries/behavior_text_vectors.sql"),
                        {"model_id": text_model}, binary=True).fetchall()
    text = {int(r[0]): np.asarray(r[1].to_numpy(), dtype=np.float32) for r in rows}
    trained = {int(i): j for j, i in enumerate(model.items)}
    warm = [i for i in trained if i in text]
    cold = [i for i in text if i not in trained]
    if not cold or len(warm) < 2:
        return {}, {}
    text_map = fit_text_map(np.stack([text[i] for i in warm]),
                            model.item_vectors[[trained[i] for i in warm]], ridge=1.0,
                            sample_weights=np.array([warm_counts.get(i, 1) for i in warm],
                                                    dtype=np.float64))
    mapped = map_text(np.stack([text[i] for i in cold]), text_map)
    hashes = dict(conn.execute(sqlfiles.read("queries/behavior_text_hashes.sql"),
                               {"model_id": text_model, "items": cold}).fetchall())
    return ({i: mapped[n] for n, i in enumerate(cold)},
            {int(i): bytes(h) for i, h in hashes.items()})


def _copy_item_vectors(conn: psycopg.Connection[Any], model_id: int,
                       vectors: dict[int, np.ndarray], hashes: dict[int, bytes]) -> None:
    with conn.cursor() as cur, cur.copy(sqlfiles.read("queries/behavior_copy_items.sql")) as copy:
        copy.set_types(["integer", "bigint", "vector", "bytea"])
        for item_id, vector in vectors.items():
            copy.write_row((model_id, item_id, vector, hashes.get(item_id, TRAINED_HASH)))


def _copy_user_vectors(conn: psycopg.Connection[Any], model_id: int,
                       vectors: dict[int, np.ndarray], counts: dict[int, int],
                       watermarks: dict[int, int]) -> None:
    with conn.cursor() as cur, cur.copy(sqlfiles.read("queries/behavior_copy_users.sql")) as copy:
        copy.set_types(["integer", "bigint", "text", "vector", "integer", "bigint"])
        for user_id, vector in vectors.items():
            copy.write_row((model_id, user_id, "long_term", vector, counts[user_id],
                            watermarks[user_id]))


def default_candidates() -> list[BehaviorParams]:
    """The parameter sets :func:`train_behavior` compares on validation by default."""
    return [BehaviorParams()]


def train_behavior(conn: psycopg.Connection[Any], *,
                   candidates: Sequence[BehaviorParams] | None = None,
                   holdout: int = VALIDATION_HOLDOUT, activate: bool = True,
                   name: str = "behavior", commit: bool = True) -> TrainResult:
    """Train a new behavior model from every event, store it, and (by default) activate it.

    Parameters and the popularity fusion are chosen on a validation split of the events
    (:func:`choose`); then the chosen parameters train on all events. Items with no positive
    event but a text vector get one through a text -> behavior map learned on the trained
    items. Commits (unless ``commit`` is false: the offline evaluation trains inside a
    transaction it rolls back); the previous behavior model stays for switching back, older
    ones are deleted.

    Example::

        result = train_behavior(conn)
        print(result.label, result.fusion, result.validation["chosen"])
    """
    started = time.perf_counter()
    events, watermark = read_events(conn)
    if len(events) < MIN_EVENTS:
        raise InvalidInputError(f"{len(events)} events: train needs at least {MIN_EVENTS}")
    with threadpool_limits(None):
        params, fusion, report = choose(events, list(candidates or default_candidates()),
                                        popularity_half_life_seconds=_popularity_half_life(conn),
                                        holdout=holdout)
        model = train_events(events, params)
    warm_counts = dict(zip(*np.unique(events.item_ids, return_counts=True), strict=True))
    text_model = _text_model(conn)
    cold, cold_hashes = _cold_vectors(conn, model, text_model,
                                      {int(k): int(v) for k, v in warm_counts.items()})
    item_vectors = {int(i): model.item_vectors[j] for j, i in enumerate(model.items)}
    item_vectors.update(cold)
    users = {u: (user_vector(model, mine), len(mine), int(mine.event_ids.max()))
             for u, mine in _by_user(events)}
    state = model.state()
    version = time.strftime("%Y%m%d-%H%M%S") + f"-e{watermark}"
    try:
        row = conn.execute(sqlfiles.read("queries/behavior_model_insert.sql"), {
            "name": name, "version": version, "dimensions": model.dimension,
            "checksum": hashlib.sha256(state).hexdigest(),
            "config": Jsonb({"method": model.params.method}),
            "method": model.params.method, "params": Jsonb(asdict(model.params)),
            "fusion": Jsonb(fusion), "validation": Jsonb(report), "state": state,
            "text_model_id": text_model, "watermark": watermark, "events": len(events),
        }).fetchone()
        assert row is not None
        model_id = int(row[0])
        _copy_item_vectors(conn, model_id, item_vectors, cold_hashes)
        kept = {u: v for u, v in users.items() if np.any(v[0])}
        _copy_user_vectors(conn, model_id, {u: v[0] for u, v in kept.items()},
                           {u: v[1] for u, v in kept.items()}, {u: v[2] for u, v in kept.items()})
        if activate:
            conn.execute(sqlfiles.read("queries/model_activate.sql"),
                         {"model_id": model_id, "force": True})
            conn.execute(sqlfiles.read("queries/behavior_queue_since.sql"),
                         {"watermark": watermark})
            conn.execute(sqlfiles.read("queries/behavior_retire.sql"))
        if commit:
            conn.commit()
    except psycopg.Error as exc:
        conn.rollback()
        raise translate(exc) from exc
    seconds = time.perf_counter() - started
    log.info("behavior model %s:%s (%s, d=%d): %d trained + %d cold items, %d users, %.1f s",
             name, version, model.params.method, model.dimension, len(model.items), len(cold),
             len(users), seconds)
    return TrainResult(model_id, f"{name}:{version}", model.params.method, model.dimension,
                       len(model.items), len(cold), len(users), len(events), fusion, report,
                       round(seconds, 3), asdict(model.params))


_models: dict[tuple[int, str], BehaviorModel] = {}


def active_behavior_model(conn: psycopg.Connection[Any]) -> int | None:
    """The active behavior model's id, or None."""
    row = conn.execute(sqlfiles.read("queries/behavior_active.sql")).fetchone()
    return int(row[0]) if row else None


def load_behavior_model(conn: psycopg.Connection[Any], model_id: int) -> BehaviorModel:
    """A stored behavior model's fold-in state (cached per process by checksum)."""
    row = conn.execute(sqlfiles.read("queries/behavior_model_state.sql"),
                       {"model_id": model_id}).fetchone()
    if row is None:
        raise ModelError(f"model {model_id} is not a trained behavior model")
    key = (model_id, str(row[1]))
    if key not in _models:
        _models[key] = BehaviorModel.from_state(bytes(row[0]))
    return _models[key]


def fold_in_users(conn: psycopg.Connection[Any], user_ids: Sequence[int],
                  model_id: int | None = None) -> int:
    """Recompute the behavior vectors of ``user_ids`` from their events, without retraining
    (in the caller's transaction). A user with no event the model knows loses their vector.
    Returns vectors written; 0 when no behavior model is active.

    Example::

        fold_in_users(conn, [1, 2]); conn.commit()
    """
    model_id = model_id if model_id is not None else active_behavior_model(conn)
    if model_id is None or not user_ids:
        return 0
    model = load_behavior_model(conn, model_id)
    events, _ = read_events(conn, list(user_ids))
    written = 0
    params = []
    for user_id, mine in _by_user(events):
        vector = user_vector(model, mine)
        if np.any(vector):
            params.append({"model_id": model_id, "user_id": user_id, "embedding": vector,
                           "events": len(mine), "watermark": int(mine.event_ids.max())})
    conn.execute(sqlfiles.read("queries/behavior_user_delete.sql"),
                 {"model_id": model_id, "users": list(user_ids)})
    if params:
        with conn.cursor() as cur:
            cur.executemany(sqlfiles.read("queries/behavior_user_upsert.sql"), params)
        written = len(params)
    return written


# Key of the session advisory lock held while a worker trains (one training at a time).
TRAIN_LOCK = 0x7079747261696E  # "pytrain"


def train_step(conn: psycopg.Connection[Any], batch_size: int = 0) -> int:
    """Worker step: train a behavior model when one is due (``queries/behavior_due.sql``).

    Returns 1 when it trained, 0 otherwise (not due, or another worker is training).

    Example::

        train_step(conn)
    """
    row = conn.execute(sqlfiles.read("queries/behavior_due.sql")).fetchone()
    conn.commit()
    if not (row and row[0]):
        return 0
    got = conn.execute(sqlfiles.read("queries/train_lock.sql"), {"key": TRAIN_LOCK}).fetchone()
    conn.commit()
    if not (got and got[0]):
        return 0
    try:
        train_behavior(conn)
    finally:
        conn.execute(sqlfiles.read("queries/train_unlock.sql"), {"key": TRAIN_LOCK})
        conn.commit()
    return 1
