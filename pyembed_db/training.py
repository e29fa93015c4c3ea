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
from dataclasses import asdict, dataclass, field, replace
from datetime import timedelta
from typing import Any

import numpy as np
import psycopg
from psycopg.types.json import Jsonb

from . import sqlfiles
from .active import active_model_id
from .behavior import BehaviorModel, BehaviorParams, Events, cold_items, train_events
from .behavior.fusion import Fusion
from .behavior.tune import Grid, tune
from .bulk import UserEmbeddingRow, insert_item_embeddings, insert_user_embeddings
from .errors import InvalidInputError, ModelError, translate
from .item_vectors import read_item_vectors

log = logging.getLogger(__name__)

VALIDATION_HOLDOUT = 10
MIN_EVENTS = 10
K = 10
# dtypes of the columns behavior_events.sql packs (user, item, weight, is_rating, value, time, id)
PACKED_EVENT_COLUMNS = (">i8", ">i8", ">f8", "?", ">f8", ">f8", ">i8")
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
    #: the HNSW ef_search calibrated at activation, and its recall of the exact top 40
    ef_search: int | None = None
    ef_search_recall: float | None = None


def read_events(conn: psycopg.Connection[Any],
                users: Sequence[int] | None = None) -> tuple[Events, int]:
    """The events (of ``users``, or all) as arrays, and the newest event id (0 when none)."""
    row = conn.execute(sqlfiles.read("queries/behavior_events.sql"),
                       {"users": list(users) if users is not None else None},
                       binary=True).fetchone()  # the packed columns without hex encoding
    if row is None or not row[0]:
        return Events.from_arrays([], [], [], [], [], [], []), 0
    columns = [np.frombuffer(packed, dtype=dtype)
               for packed, dtype in zip(row[1:], PACKED_EVENT_COLUMNS, strict=True)]
    events = Events.from_arrays(*columns)
    return events, int(events.event_ids.max())


@dataclass(frozen=True)
class UserVectors:
    """Behavior vectors of the users of some events (rows follow ``users``, sorted), with
    their event counts and newest event ids; users with a zero vector are left out."""

    users: np.ndarray
    vectors: np.ndarray
    events: np.ndarray
    watermarks: np.ndarray

    def rows(self, model_id: int) -> Iterator[UserEmbeddingRow]:
        """Each user's ``long_term`` row of ``pyembed.user_embeddings`` in ``model_id``."""
        for user_id, vector, count, watermark in zip(
                self.users.tolist(), self.vectors, self.events.tolist(),
                self.watermarks.tolist(), strict=True):
            yield (model_id, user_id, "long_term", 0, vector, 1.0, count, watermark)


def user_vectors(model: BehaviorModel, events: Events) -> UserVectors:
    """Every user's behavior vector from their events (the batched fold-in: one sparse
    product for all users, the same vectors as one fold-in per user).

    Example::

        found = user_vectors(model, events)
        print(found.users[:3], found.vectors.shape)
    """
    users, vectors = model.fold_in_users(events)
    rows = np.searchsorted(users, events.user_ids)
    counts = np.bincount(rows, minlength=len(users))
    watermarks = np.full(len(users), np.iinfo(np.int64).min)
    np.maximum.at(watermarks, rows, events.event_ids)
    kept = np.any(vectors != 0, axis=1)
    return UserVectors(users[kept], vectors[kept], counts[kept], watermarks[kept])


def choose(events: Events, *, holdout: int = VALIDATION_HOLDOUT,
           text_items: np.ndarray | None = None, text_vectors: np.ndarray | None = None,
           popularity_half_lives: Sequence[float | None] | None = None,
           full: bool = False) -> tuple[BehaviorParams, dict[str, Any], dict[str, Any]]:
    """Choose parameters and fusion weights on a validation split carved from ``events``.

    Holds out each user's last ``holdout`` events and runs :func:`pyembed_db.behavior.tune.tune`
    on the rest: the fold-in recency (no retraining), with ``full`` every training parameter
    too (one training per trial: minutes), then the weights of text similarity (when
    ``text_vectors`` are given) and popularity, each popularity half-life of
    ``popularity_half_lives`` tried (default: none, 30 and 90 days), then the method: the
    fused behavior ranking, or popularity alone when it validates better. Returns
    ``(params, fusion, report)``; ``fusion`` is what ``pyembed.recommend`` reads (``method``,
    the weights of ``pyembed.recommend_behavior`` and the popularity half-life).

    Example::

        params, fusion, report = choose(events)
    """
    grid = Grid()
    if not full:  # the fold-in recency only: it needs no retraining
        grid = replace(grid, ease_lr={"recent_half_life": grid.ease_lr["recent_half_life"]},
                       ials={"recent_half_life": grid.ials["recent_half_life"]})
    if popularity_half_lives is not None:
        grid = replace(grid, popularity_half_life_seconds=list(popularity_half_lives))
    try:
        params, fusion, report = tune(events, holdout=holdout, k=K, grid=grid,
                                      text_items=text_items, text_vectors=text_vectors)
    except InvalidInputError as exc:  # no user has enough events to validate on
        log.info("no validation: %s", exc)
        return BehaviorParams(), {"method": "behavior", **asdict(Fusion())}, {"validated": False}
    chosen = {"method": report.pop("method"), **asdict(fusion)}
    report = {"validated": True, "holdout": holdout, **report,
              "chosen": {"ndcg": report["best_ndcg"], **chosen}}
    log.info("validation chose %s (NDCG@%d %.4f)", chosen, K, report["best_ndcg"])
    return params, chosen, report


def _popularity_half_lives(conn: psycopg.Connection[Any]) -> list[float | None] | None:
    """The popularity half-life set by the operator (seconds, None = no decay), as the only
    one to try; None when unset: validation chooses it."""
    row = conn.execute(sqlfiles.read("queries/behavior_settings.sql")).fetchone()
    if not row or row[0] is None:
        return None
    return [float(row[0]) or None]


@dataclass(frozen=True)
class _TextVectors:
    """The active text model's item vectors (rows follow ``items``, sorted)."""

    model_id: int | None
    items: np.ndarray
    vectors: np.ndarray

    @classmethod
    def read(cls, conn: psycopg.Connection[Any]) -> _TextVectors:
        model_id = active_model_id(conn)
        if model_id is None:
            return cls(model_id, np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32))
        return cls(model_id, *read_item_vectors(conn, model_id))


def _cold_vectors(conn: psycopg.Connection[Any], model: BehaviorModel, text: _TextVectors,
                  events: Events) -> tuple[dict[int, np.ndarray], dict[int, bytes]]:
    """Behavior vectors for items with a text vector but no trained one (the text map), and
    the content hashes of their texts."""
    if not len(text.items):
        return {}, {}
    cold, mapped = cold_items(model.items, model.item_vectors, text.items, text.vectors,
                              events.item_ids)
    if not len(cold):
        return {}, {}
    hashes = dict(conn.execute(sqlfiles.read("queries/behavior_text_hashes.sql"),
                               {"model_id": text.model_id, "items": cold.tolist()}).fetchall())
    return ({int(i): mapped[n] for n, i in enumerate(cold)},
            {int(i): bytes(h) for i, h in hashes.items()})


@dataclass(frozen=True)
class BehaviorChoice:
    """What validation chose for a behavior model on some events (:func:`validate_behavior`):
    the parameters, the fusion ``pyembed.recommend`` reads, the validation report, and the
    text item vectors it used (the cold items' text map reads them too)."""

    params: BehaviorParams
    fusion: dict[str, Any]
    report: dict[str, Any]
    text: _TextVectors
    seconds: float


def validate_behavior(conn: psycopg.Connection[Any], events: Events, *,
                      holdout: int = VALIDATION_HOLDOUT, full: bool = False) -> BehaviorChoice:
    """Choose a behavior model's parameters and fusion on a validation split of ``events``
    (:func:`choose`), with the active text model's item vectors and the popularity half-life
    the operator set. Writes nothing.

    Example::

        choice = validate_behavior(conn, read_events(conn)[0])
        print(choice.fusion["method"])
    """
    started = time.perf_counter()
    if len(events) < MIN_EVENTS:
        raise InvalidInputError(f"{len(events)} events: train needs at least {MIN_EVENTS}")
    text = _TextVectors.read(conn)
    params, fusion, report = choose(
        events, holdout=holdout, full=full,
        text_items=text.items if len(text.items) else None,
        text_vectors=text.vectors if len(text.items) else None,
        popularity_half_lives=_popularity_half_lives(conn))
    return BehaviorChoice(params, fusion, report, text, time.perf_counter() - started)


def chosen_popularity_half_life(fusion: dict[str, Any]) -> timedelta | None:
    """The popularity half-life ``fusion`` ranks with (zero: no decay), or None when its
    ranking reads no popularity.

    Example::

        >>> chosen_popularity_half_life({"method": "popular", "popularity": 1.0,
        ...                              "popularity_half_life_seconds": None})
        datetime.timedelta(0)
    """
    if not (fusion["popularity"] or fusion["method"] == "popular"):
        return None
    return timedelta(seconds=fusion.get("popularity_half_life_seconds") or 0)


def train_behavior(conn: psycopg.Connection[Any], *, full: bool = False,
                   holdout: int = VALIDATION_HOLDOUT, activate: bool = True,
                   name: str = "behavior") -> TrainResult:
    """Train a new behavior model from every event, store it, commit, and (by default)
    activate it.

    The fold-in recency and the fusion weights (text similarity, popularity and its half-life)
    are chosen on a validation split of the events (:func:`validate_behavior`; ``full`` also
    searches the training parameters, minutes instead of seconds); then the model trains on
    all events (:func:`train_chosen`). The previous behavior model stays for switching back,
    older ones are deleted.

    Example::

        result = train_behavior(conn)
        print(result.label, result.fusion, result.validation["chosen"])
    """
    events, watermark = read_events(conn)
    choice = validate_behavior(conn, events, holdout=holdout, full=full)
    return train_chosen(conn, choice, events, watermark, activate=activate, name=name)


def train_chosen(conn: psycopg.Connection[Any], choice: BehaviorChoice, events: Events,
                 watermark: int, *, activate: bool = True, name: str = "behavior",
                 commit: bool = True, build_index: bool = True) -> TrainResult:
    """Train the model ``choice`` describes on ``events`` (newest event id ``watermark``),
    store it, and (by default) activate it.

    Items with no positive event but a text vector get one through a text -> behavior map
    learned on the trained items. Commits unless ``commit`` is false (the offline evaluation
    trains inside a transaction it rolls back). ``build_index=False`` activates the model
    without its HNSW index (``pyembed.activate_model``'s ``build_index``). The result's
    seconds include the validation's.

    Example::

        events, watermark = read_events(conn)
        result = train_chosen(conn, validate_behavior(conn, events), events, watermark)
    """
    started = time.perf_counter()
    params, fusion, report, text = choice.params, choice.fusion, choice.report, choice.text
    model = train_events(events, params)
    cold, cold_hashes = _cold_vectors(conn, model, text, events)
    item_vectors = {int(i): model.item_vectors[j] for j, i in enumerate(model.items)}
    item_vectors.update(cold)
    users = user_vectors(model, events)
    state = model.state()
    version = f"{time.strftime('%Y%m%d-%H%M%S')}.{time.time_ns() // 1000 % 10**6:06d}-e{watermark}"
    try:
        row = conn.execute(sqlfiles.read("queries/behavior_model_insert.sql"), {
            "name": name, "version": version, "dimensions": model.dimension,
            "checksum": hashlib.sha256(state).hexdigest(),
            "config": Jsonb({"method": model.params.method}),
            "method": model.params.method, "params": Jsonb(asdict(model.params)),
            "fusion": Jsonb(fusion), "validation": Jsonb(report), "state": state,
            "text_model_id": text.model_id, "watermark": watermark, "events": len(events),
        }).fetchone()
        assert row is not None
        model_id = int(row[0])
        insert_item_embeddings(conn, ((model_id, item_id, vector,
                                       cold_hashes.get(item_id, TRAINED_HASH))
                                      for item_id, vector in item_vectors.items()))
        insert_user_embeddings(conn, users.rows(model_id))
        if activate:
            conn.execute(sqlfiles.read("queries/model_activate.sql"),
                         {"model_id": model_id, "force": True, "build_index": build_index})
            conn.execute(sqlfiles.read("queries/behavior_queue_since.sql"),
                         {"watermark": watermark})
            conn.execute(sqlfiles.read("queries/behavior_retire.sql"))
            if chosen_popularity_half_life(fusion) is not None:
                # the cache follows the chosen half-life, which pyembed.popularity_half_life()
                # now gives: recomputed only when that or the newest event changed
                conn.execute(sqlfiles.read("queries/user_refresh_popularity.sql"),
                             {"min_interval": None, "force": False})
        calibrated = conn.execute(sqlfiles.read("queries/behavior_ef_search.sql"),
                                  {"model_id": model_id}).fetchone()
        if commit:
            conn.commit()
    except psycopg.Error as exc:
        conn.rollback()
        raise translate(exc) from exc
    seconds = choice.seconds + time.perf_counter() - started
    log.info("behavior model %s:%s (%s, d=%d): %d trained + %d cold items, %d users, "
             "ef_search %s, %.1f s", name, version, model.params.method, model.dimension,
             len(model.items), len(cold), len(users.users),
             calibrated[0] if calibrated else None, seconds)
    return TrainResult(model_id, f"{name}:{version}", model.params.method, model.dimension,
                       len(model.items), len(cold), len(users.users), len(events), fusion, report,
                       round(seconds, 3), asdict(model.params),
                       *(calibrated if calibrated else (None, None)))


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
                  model_id: int | None = None, *, events: Events | None = None) -> int:
    """Recompute the behavior vectors of ``user_ids`` from their events, without retraining
    (in the caller's transaction). A user with no event the model knows loses their vector.
    Returns vectors written; 0 when no behavior model is active. ``events``: the users'
    events as :func:`read_events` returns them, when the caller has read them already.

    Example::

        fold_in_users(conn, [1, 2]); conn.commit()
    """
    model_id = model_id if model_id is not None else active_behavior_model(conn)
    if model_id is None or not user_ids:
        return 0
    model = load_behavior_model(conn, model_id)
    if events is None:
        events, _ = read_events(conn, list(user_ids))
    found = user_vectors(model, events)
    conn.execute(sqlfiles.read("queries/behavior_user_delete.sql"),
                 {"model_id": model_id, "users": list(user_ids)})
    return insert_user_embeddings(conn, found.rows(model_id))


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
