"""Concurrent refresh_users callers take disjoint batches: nothing lost, nothing twice."""

from __future__ import annotations

import threading
from datetime import datetime, timezone

import numpy as np
from users_data import DIM, add_events, add_items, add_model, add_user

from pyembed_db.db import connect

USERS = 60


def test_concurrent_refresh_users_neither_lose_nor_double_count(db_url: str) -> None:
    rng = np.random.default_rng(3)
    t0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
    with connect(db_url) as setup:
        model_id = add_model(setup)
        items = add_items(setup, model_id, rng.normal(size=(20, DIM)), "c")
        user_ids = [add_user(setup, f"cu{i}") for i in range(USERS)]
        add_events(setup, [(u, items[int(j)], "click", None, t0)
                           for u in user_ids for j in rng.choice(20, 5, replace=False)])
        setup.commit()

    claimed: list[list[int]] = [[] for _ in range(3)]
    barrier = threading.Barrier(3)
    holding = threading.Barrier(3, timeout=60)
    errors: list[BaseException] = []

    def work(slot: int) -> None:
        try:
            with connect(db_url) as conn:
                barrier.wait()
                while True:
                    rows = conn.execute("select user_id from pyembed.refresh_user_batch("
                                        "batch => 7)").fetchall()
                    if not claimed[slot]:
                        # Each caller holds its first claim until all three have claimed: the
                        # three first batches were taken while the others' were locked.
                        holding.wait()
                    conn.commit()
                    if not rows:
                        return
                    claimed[slot].extend(r[0] for r in rows)
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    everything = [u for part in claimed for u in part]
    assert sorted(everything) == sorted(user_ids)  # each user exactly once
    assert all(claimed)  # the work really was shared
    with connect(db_url) as conn:
        counts = conn.execute(
            "select (select count(*) from pyembed.user_queue), "
            "(select count(*) from pyembed.user_embeddings where kind = 'long_term'), "
            "(select count(*) from pyembed.user_embeddings ue join pyembed.users u using (user_id)"
            " where ue.kind = 'long_term' and ue.event_count = 5)"
        ).fetchone()
    assert counts == (0, USERS, USERS)


def test_event_committed_during_a_refresh_queues_the_user_again(db_url: str) -> None:
    """A refresh claimed the user and read their events; an event commits before the refresh
    deletes the queue row. The user must end up queued again, or that event would never reach
    their vectors. The worker side replays refresh_user_batch's steps: claim, refresh, delete."""
    t0 = datetime(2024, 2, 1, tzinfo=timezone.utc)
    with connect(db_url) as setup:
        model_id = add_model(setup, "race")
        items = add_items(setup, model_id, np.eye(DIM)[:2], "race")
        user = add_user(setup, "racer")
        add_events(setup, [(user, items[0], "click", None, t0)])
        setup.commit()
    with connect(db_url) as worker, connect(db_url) as writer:
        worker.execute("select user_id from pyembed.user_queue where user_id = %s for update",
                       (user,))
        assert worker.execute("select pyembed.refresh_user_set(array[%s::bigint])",
                              (user,)).fetchone() == (2,)  # from the click only
        done = threading.Event()

        def write() -> None:
            add_events(writer, [(user, items[1], "purchase", None, t0)])
            writer.commit()
            done.set()

        thread = threading.Thread(target=write)
        thread.start()
        assert not done.wait(0.5)  # the trigger waits for the claimed queue row
        worker.execute("delete from pyembed.user_queue where user_id = %s", (user,))
        worker.commit()
        thread.join(10)
        assert done.is_set()
        assert worker.execute("select pyembed.refresh_users()").fetchone() == (1,)
        worker.commit()
        row = worker.execute("select event_count from pyembed.user_embeddings where user_id = %s "
                             "and kind = 'long_term' and model_id = %s",
                             (user, model_id)).fetchone()
    assert row == (2,)
