"""User vectors: the Python face of ``pyembed.refresh_user(s)`` plus multi-interest vectors.

SQL can refresh users alone (``select pyembed.refresh_users()`` from pg_cron:
sql/functions/30_users.sql). The Python side claims the same queue (``pyembed.claim_users``),
computes the long-term, short-term and interest vectors from one read of each batch's item
weights (:mod:`pyembed_db.user_vectors`: the same formula, without SQL's per-row vector
arithmetic) and folds the users' events into the active behavior model
(:func:`pyembed_db.training.fold_in_users`), in one transaction per batch.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor, wait
from contextlib import ExitStack
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo
from tqdm import tqdm

from . import sqlfiles
from .active import active_model_id
from .arguments import check_id, check_text
from .behavior.blas import one_thread
from .db import connect
from .errors import InvalidInputError, translate
from .training import active_behavior_model, fold_in_users, read_events
from .user_vectors import kinds_with, write_user_vectors

log = logging.getLogger(__name__)

UserRef = int | str
POPULARITY_INTERVAL = timedelta(minutes=1)


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
    return written + _write(conn, [user_id], model, ["interest"] if interests else [])


def refresh_users(conn: psycopg.Connection[Any], *, batch_size: int = 1000,
                  since: datetime | None = None, interests: bool = True,
                  every_user: bool = False, progress: bool = False, jobs: int = 1) -> int:
    """Drain the user queue batch by batch (committing each); returns users refreshed.

    ``since`` first queues users with events at or after it that their vectors miss;
    ``every_user`` first queues every user who has events (``pyembed.queue_users()``: a full
    refresh). ``jobs`` > 1 drains with that many sessions at once, each in its own process
    with its own connection (batches are claimed with SKIP LOCKED, so each user is refreshed
    once). ``progress`` shows a bar on stderr.

    Example::

        refresh_users(conn)   # after loading events
        refresh_users(conn, every_user=True, jobs=2, progress=True)   # after changing half_life
    """
    if jobs < 1:
        raise InvalidInputError(f"jobs must be >= 1, got {jobs}")
    if batch_size < 1:
        raise InvalidInputError(f"batch must be >= 1, got {batch_size}")
    if every_user:
        try:
            conn.execute(sqlfiles.read("queries/user_queue_all.sql"))
            conn.commit()
        except psycopg.Error as exc:
            conn.rollback()
            raise translate(exc) from exc
    row = conn.execute(sqlfiles.read("queries/user_queue_ready.sql")).fetchone()
    queued = int(row[0]) if row else 0
    first = 0
    if since is not None:  # this batch queues the users `since` finds, for every session
        first = _refresh_batch(conn, batch_size, since, interests)
    if first == 0 and queued == 0:
        return 0
    with ExitStack() as stack:
        # The other sessions start before the progress bar: forking before any thread exists.
        others, processed = _start_sessions(stack, conn, jobs - 1, batch_size, interests)
        bar = stack.enter_context(tqdm(total=max(queued, first), initial=first,
                                       desc="refresh users", unit="user",
                                       disable=not progress))
        stack.enter_context(one_thread())
        mine = first
        while done := _refresh_batch(conn, batch_size, None, interests):
            mine += done
            bar.update(mine + processed.value - bar.n)
        while wait(others, timeout=0.5).not_done:
            bar.update(mine + processed.value - bar.n)
        return mine + sum(f.result() for f in others)


def _start_sessions(stack: ExitStack, conn: psycopg.Connection[Any], sessions: int,
                    batch_size: int, interests: bool) -> tuple[list[Future[int]], Any]:
    """``sessions`` processes draining the queue, each with its own connection of the same
    parameters and tenant setting (a role set with SET ROLE is not carried over: log in as
    the role instead), and the shared count of users they refreshed. Processes, not threads:
    clustering and fold-in hold the GIL for most of a batch."""
    context = multiprocessing.get_context("fork")
    processed = context.Value("q", 0)
    if sessions < 1:
        return [], processed
    row = conn.execute(sqlfiles.read("queries/session_tenant_get.sql")).fetchone()
    conn.commit()
    conninfo = make_conninfo(conn.info.dsn, password=conn.info.password or None)
    pool = stack.enter_context(ProcessPoolExecutor(sessions, mp_context=context,
                                                   initializer=_share_count,
                                                   initargs=(processed,)))
    return [pool.submit(_drain_in_new_session, conninfo, row[0] if row else None, batch_size,
                        interests) for _ in range(sessions)], processed


_processed: Any = None  # in a refresh_users session process: the count shared with the parent


def _share_count(processed: Any) -> None:
    global _processed
    _processed = processed


def _drain_in_new_session(conninfo: str, tenant: str | None, batch_size: int,
                          interests: bool) -> int:
    with one_thread(), connect(conninfo) as session:
        session.execute(sqlfiles.read("queries/session_tenant_set.sql"), {"tenant": tenant})
        session.commit()
        total = 0
        while done := _refresh_batch(session, batch_size, None, interests):
            total += done
            with _processed.get_lock():
                _processed.value += done
        return total


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
            _write(conn, user_ids, model_id, ["interest"])
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
            sqlfiles.read("queries/user_claim_batch.sql"),
            {"since": since, "batch": batch_size, "model_id": model_id},
        ).fetchall()
        user_ids = [int(r[0]) for r in rows]
        if user_ids:
            _write(conn, user_ids, model_id, kinds_with(interests))
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
        row = conn.execute(sqlfiles.read("queries/user_claim_batch.sql"),
                           {"since": None, "batch": 1, "model_id": model_id}).fetchone()
        if row is None:
            conn.commit()
            break
        user_id = int(row[0])
        try:
            _write(conn, [user_id], model_id, kinds_with(interests))
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


def _write(conn: psycopg.Connection[Any], user_ids: list[int], model_id: int | None,
           kinds: Sequence[str]) -> int:
    """The users' vectors of ``kinds`` in the text model ``model_id`` (none when it is None)
    and their behavior fold-in, from one read of their events; returns vectors written."""
    events, _ = read_events(conn, user_ids)
    written = (write_user_vectors(conn, user_ids, model_id, events=events, kinds=kinds)
               if model_id is not None and kinds else 0)
    return written + fold_in_users(conn, user_ids, events=events)
