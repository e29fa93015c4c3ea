"""User vectors: the Python face of ``pyembed.refresh_user(s)`` plus multi-interest vectors.

The long-term and short-term vectors are computed in SQL (sql/functions/30_users.sql) so that
pg_cron can run ``select pyembed.refresh_users()`` without Python. The worker step
:func:`refresh_step` additionally clusters each refreshed user's liked items into up to k
interest vectors (:mod:`pyembed_db.interests`) and folds the user's events into the active
behavior model (:func:`pyembed_db.training.fold_in_users`) in the same transaction.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import psycopg
from pgvector import Vector
from psycopg.conninfo import make_conninfo
from tqdm import tqdm

from . import sqlfiles
from .active import active_model_id
from .arguments import check_id, check_text
from .behavior.blas import one_thread
from .db import connect
from .errors import InvalidInputError, translate
from .interests import choose_k, weighted_kmeans
from .training import active_behavior_model, fold_in_users

log = logging.getLogger(__name__)

UserRef = int | str
POPULARITY_INTERVAL = timedelta(minutes=1)


def as_array(value: Any) -> np.ndarray[Any, np.dtype[np.float32]]:
    """A vector column value (``pgvector.Vector`` or ndarray) as a float32 array."""
    if isinstance(value, Vector):
        return np.asarray(value.to_numpy(), dtype=np.float32)
    return np.asarray(value, dtype=np.float32)


def resolve_user(conn: psycopg.Connection[Any], user: UserRef) -> int:
    """The ``user_id`` of ``user``: an int is taken as the user_id, a str as the external id.

    Example::

        resolve_user(conn, "196")   # -> 1
    """
    if isinstance(user, bool) or not isinstance(user, (int, str)):
        raise InvalidInputError(f"a user is an int user_id or a str external id, got {user!r}")
    if isinstance(user, int):
        return check_id(user, "user_id")
    check_text(user, "user id")
    return int(resolve_one(conn, "queries/user_resolve.sql", {"external_id": user}))


def resolve_one(conn: psycopg.Connection[Any], query_file: str, params: dict[str, Any]) -> Any:
    """The single value of an id-resolving query (``pyembed.user_id`` / ``pyembed.item_ids``),
    run in a savepoint so that an unknown id (PE003 / PE004) leaves the caller's work intact."""
    try:
        with conn.transaction():
            row = conn.execute(sqlfiles.read(query_file), params).fetchone()
    except psycopg.Error as exc:
        raise translate(exc) from exc
    assert row is not None
    return row[0]


def refresh_user(conn: psycopg.Connection[Any], user: UserRef, *, interests: bool = True,
                 model_id: int | None = None) -> int:
    """Recompute one user's vectors now (in the caller's transaction); returns vectors written.

    Example::

        refresh_user(conn, "196"); conn.commit()
    """
    user_id = resolve_user(conn, user)
    try:
        row = conn.execute(sqlfiles.read("queries/user_refresh_one.sql"),
                           {"user_id": user_id, "model_id": model_id}).fetchone()
    except psycopg.Error as exc:
        raise translate(exc) from exc
    written = int(row[0]) if row else 0
    model = model_id if model_id is not None else active_model_id(conn)
    if interests and model is not None:
        written += write_interests(conn, [user_id], model)
    return written + fold_in_users(conn, [user_id])


def refresh_users(conn: psycopg.Connection[Any], *, batch_size: int = 1000,
                  since: datetime | None = None, interests: bool = True,
                  every_user: bool = False, progress: bool = False, jobs: int = 1) -> int:
    """Drain the user queue batch by batch (committing each); returns users refreshed.

    ``since`` first queues users with events at or after it that their vectors miss;
    ``every_user`` first queues every user who has events (``pyembed.queue_users()``: a full
    refresh). ``jobs`` > 1 drains with that many sessions at once (more connections to the
    same database; batches are claimed with SKIP LOCKED, so each user is refreshed once):
    the server's SQL and this process's clustering then overlap. ``progress`` shows a bar on
    stderr.

    Example::

        refresh_users(conn)   # after loading events
        refresh_users(conn, every_user=True, jobs=2, progress=True)   # after changing half_life
    """
    if jobs < 1:
        raise InvalidInputError(f"jobs must be >= 1, got {jobs}")
    if every_user:
        try:
            conn.execute(sqlfiles.read("queries/user_queue_all.sql"))
            conn.commit()
        except psycopg.Error as exc:
            conn.rollback()
            raise translate(exc) from exc
    row = conn.execute(sqlfiles.read("queries/user_queue_ready.sql")).fetchone()
    with tqdm(total=int(row[0]) if row else None, desc="refresh users", unit="user",
              disable=not progress) as bar:
        first = _refresh_batch(conn, batch_size, since, interests)  # queues `since` once
        bar.update(first)
        if first == 0:
            return 0
        if jobs == 1:
            return first + _drain(conn, batch_size, interests, bar)
        row = conn.execute(sqlfiles.read("queries/session_tenant_get.sql")).fetchone()
        tenant = row[0] if row else None
        # BLAS limits are process-wide: set once here, not undone by one thread's exit while
        # another still clusters.
        with one_thread(), ThreadPoolExecutor(max_workers=jobs - 1) as pool:
            others = [pool.submit(_drain_in_new_session, conn, tenant, batch_size, interests,
                                  bar) for _ in range(jobs - 1)]
            mine = _drain(conn, batch_size, interests, bar)
            return first + mine + sum(f.result() for f in others)


def _drain(conn: psycopg.Connection[Any], batch_size: int, interests: bool,
           bar: tqdm[Any]) -> int:
    total = 0
    while done := _refresh_batch(conn, batch_size, None, interests):
        total += done
        bar.update(done)
    return total


def _drain_in_new_session(conn: psycopg.Connection[Any], tenant: str | None, batch_size: int,
                          interests: bool, bar: tqdm[Any]) -> int:
    """Drain with a new connection of the same parameters and tenant setting (a role set with
    SET ROLE is not carried over: log in as the role instead)."""
    conninfo = make_conninfo(conn.info.dsn, password=conn.info.password or None)
    with connect(conninfo) as session:
        session.execute(sqlfiles.read("queries/session_tenant_set.sql"), {"tenant": tenant})
        session.commit()
        return _drain(session, batch_size, interests, bar)


def refresh_step(conn: psycopg.Connection[Any], batch_size: int = 1000) -> int:
    """Worker step: refresh one batch of queued users and their interests; commits.

    Returns the number of users refreshed (0 when the queue is empty or no model is active).
    It waits (returns 0) while items are queued for embedding, so that a bulk load's users are
    refreshed once their items have vectors rather than from a half-embedded catalog. When the
    user queue is empty it refreshes the popularity cache of cold-start recommendations if new
    events arrived (at most once a minute) and counts that as one unit.

    Example::

        while refresh_step(conn, 500):
            pass
    """
    pending = conn.execute(sqlfiles.read("queries/user_items_pending.sql")).fetchone()
    if pending and pending[0]:
        conn.commit()
        return 0
    done = _refresh_batch(conn, batch_size, None, True, isolate_failures=True)
    if done == 0:
        done = _catch_up(conn, batch_size)
    if done == 0:
        done = int(refresh_popularity(conn, min_interval=POPULARITY_INTERVAL) > 0)
    return done


def _catch_up(conn: psycopg.Connection[Any], batch_size: int) -> int:
    """Recompute the interests and behavior vectors that lag their user's long-term vector
    (users refreshed by ``pyembed.refresh_users`` in SQL alone); returns users caught up."""
    model_id = active_model_id(conn)
    if model_id is None:
        conn.commit()
        return 0
    try:
        rows = conn.execute(sqlfiles.read("queries/user_catch_up.sql"),
                            {"model_id": model_id, "batch": batch_size,
                             "behavior_model": active_behavior_model(conn)}).fetchall()
        user_ids = [int(r[0]) for r in rows]
        if user_ids:
            write_interests(conn, user_ids, model_id)
            fold_in_users(conn, user_ids)
        conn.commit()
    except psycopg.Error as exc:
        conn.rollback()
        raise translate(exc) from exc
    if user_ids:
        log.info("caught up the interests and behavior vectors of %d users", len(user_ids))
    return len(user_ids)


def refresh_popularity(conn: psycopg.Connection[Any], *, min_interval: timedelta | None = None,
                       force: bool = False) -> int:
    """Recompute the popularity cache (``pyembed.refresh_popularity``); commits.

    Returns the number of items scored, 0 when it was already up to date.

    Example::

        refresh_popularity(conn, force=True)
    """
    try:
        row = conn.execute(sqlfiles.read("queries/user_refresh_popularity.sql"),
                           {"min_interval": min_interval or timedelta(0), "force": force}
                           ).fetchone()
        conn.commit()
    except psycopg.Error as exc:
        conn.rollback()
        raise translate(exc) from exc
    return int(row[0]) if row else 0


def _refresh_batch(conn: psycopg.Connection[Any], batch_size: int, since: datetime | None,
                   interests: bool, *, isolate_failures: bool = False) -> int:
    """One claimed batch. A failure is raised, or with ``isolate_failures`` (the worker step)
    the batch is refreshed user by user and a failing user backs off in the queue."""
    model_id = active_model_id(conn)
    if model_id is None:
        conn.commit()
        return 0
    try:
        rows = conn.execute(
            sqlfiles.read("queries/user_refresh_batch.sql"),
            {"since": since, "batch": batch_size, "model_id": model_id},
        ).fetchall()
        user_ids = [int(r[0]) for r in rows]
        if user_ids and interests:
            write_interests(conn, user_ids, model_id)
        fold_in_users(conn, user_ids)
        conn.commit()
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        raise translate(exc) from exc  # the connection is gone: the claimed users stay queued
    except Exception as exc:
        conn.rollback()
        bad_arguments = isinstance(exc, psycopg.Error) and (exc.sqlstate or "").startswith("PE")
        if bad_arguments or not isolate_failures:
            raise translate(exc) from exc
        log.warning("batch of users failed (%s); refreshing them one by one", exc)
        return _refresh_one_by_one(conn, batch_size, model_id, interests)
    if user_ids:
        log.info("refreshed %d users", len(user_ids))
    return len(user_ids)


def _refresh_one_by_one(conn: psycopg.Connection[Any], batch_size: int, model_id: int,
                        interests: bool) -> int:
    """After a failed batch: each user in its own transaction; a failing one backs off."""
    handled = 0
    for _ in range(batch_size):
        row = conn.execute(sqlfiles.read("queries/user_queue_claim_one.sql")).fetchone()
        if row is None:
            conn.commit()
            break
        user_id = int(row[0])
        try:
            conn.execute(sqlfiles.read("queries/user_refresh_dequeue.sql"),
                         {"user_id": user_id, "model_id": model_id})
            if interests:
                write_interests(conn, [user_id], model_id)
            fold_in_users(conn, [user_id])
            conn.commit()
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise translate(exc) from exc
        except Exception as exc:
            conn.rollback()
            error = f"{type(exc).__name__}: {exc}"
            conn.execute(sqlfiles.read("queries/user_queue_retry.sql"),
                         {"user_id": user_id, "error": error})
            conn.commit()
            log.error("user %s failed, will retry with back-off: %s", user_id, error)
        handled += 1
    return handled


def _settings(conn: psycopg.Connection[Any]) -> tuple[int, int]:
    row = conn.execute(sqlfiles.read("queries/user_interest_settings.sql")).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def _item_vectors(conn: psycopg.Connection[Any], model_id: int,
                  item_ids: set[int]) -> tuple[np.ndarray, np.ndarray]:
    """(sorted item ids, their vectors as rows of one float32 matrix)."""
    if not item_ids:
        return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
    rows = conn.execute(sqlfiles.read("queries/user_interest_vectors.sql"),
                        {"model_id": model_id, "items": sorted(item_ids)}, binary=True).fetchall()
    return (np.array([int(r[0]) for r in rows], dtype=np.int64),
            np.stack([as_array(r[1]) for r in rows]))


def write_interests(conn: psycopg.Connection[Any], user_ids: list[int], model_id: int) -> int:
    """Compute and store the interest vectors of ``user_ids``; returns vectors written.

    A user gets k = min(k_max, positive items // min_items) interests (settings
    ``pyembed.interest_k_max``, default 4, and ``pyembed.interest_min_items``, default 10);
    with k < 2 they get none and recommendations use the long-term vector.

    Example::

        write_interests(conn, [1, 2, 3], model_id=1)
    """
    k_max, min_items = _settings(conn)
    conn.execute(sqlfiles.read("queries/user_interest_delete.sql"),
                 {"users": user_ids, "model_id": model_id})
    rows = conn.execute(sqlfiles.read("queries/user_interest_items.sql"),
                        {"users": user_ids, "model_id": model_id}).fetchall()
    if not rows:
        return 0
    # Columns of the (user, item) rows, ordered by user then item; one slice per user.
    users, items, weights, counts, watermarks = (np.array(c) for c in zip(*rows, strict=True))
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    ends = np.r_[starts[1:], len(users)]
    clustered = [(lo, hi) for lo, hi in zip(starts, ends, strict=True)
                 if choose_k(int(hi - lo), k_max, min_items) >= 2]
    item_ids, vectors = _item_vectors(
        conn, model_id, {int(i) for lo, hi in clustered for i in items[lo:hi]})
    params = []
    # One BLAS thread: threads cost more than they save on matrices of a few hundred rows
    # (7x slower on 2 cores shared with the server).
    with one_thread():
        for lo, hi in clustered:
            user_id = int(users[lo])
            x = vectors[np.searchsorted(item_ids, items[lo:hi])]
            found = weighted_kmeans(x, weights[lo:hi].astype(np.float64),
                                    choose_k(int(hi - lo), k_max, min_items), seed=user_id)
            member_counts = np.bincount(found.members, weights=counts[lo:hi],
                                        minlength=len(found.centroids))
            for slot, (centroid, share) in enumerate(zip(found.centroids, found.shares,
                                                         strict=True)):
                params.append({
                    "model_id": model_id, "user_id": user_id, "slot": slot,
                    "embedding": Vector(centroid), "weight": float(share),
                    "event_count": int(member_counts[slot]),
                    "watermark": int(watermarks[lo]),
                })
    if params:
        with conn.cursor() as cur:
            cur.executemany(sqlfiles.read("queries/user_interest_insert.sql"), params)
    return len(params)
