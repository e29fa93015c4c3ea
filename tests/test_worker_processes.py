"""Real worker processes: concurrency (exactly-once effect), kill -9 mid-batch, SIGTERM,
waking on NOTIFY, and the ``pyembed-db worker --once`` command."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pyembed_db.db import connect
from pyembed_db.embed import register_default_model

CHILD = Path(__file__).parent / "worker_child.py"
BARRIER_LOCK = 4242

pytestmark = pytest.mark.slow


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _spawn(url: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(CHILD), url, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen[str], timeout: float = 120.0) -> dict[str, int]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return dict(json.loads(out.strip().splitlines()[-1]))


def _count(conn: psycopg.Connection[Any], sql: str) -> int:
    row = conn.execute(sql).fetchone()
    conn.commit()
    return int(row[0]) if row else 0


@pytest.fixture
def url(db_url: str) -> str:
    """The module database with the default model and an empty catalog."""
    with connect(db_url) as conn:
        register_default_model(conn)
        conn.execute("delete from pyembed.items")
        conn.commit()
    return db_url


def _add_items(url: str, n: int, prefix: str) -> None:
    with connect(url) as conn:
        conn.cursor().executemany(
            "insert into pyembed.items (external_id, title, category) values (%s, %s, %s)",
            [(f"{prefix}{i}", f"Product number {i} of line {prefix}", f"cat{i % 7}")
             for i in range(n)])
        conn.commit()


def test_three_concurrent_workers_embed_every_item_exactly_once(url: str) -> None:
    n = 240
    _add_items(url, n, "c")
    with connect(url, autocommit=True) as gate:
        gate.execute("select pg_advisory_lock(%s)", (BARRIER_LOCK,))
        workers = [_spawn(url, "--once", "--barrier", "--batch-size", "6") for _ in range(3)]
        _wait_for(lambda: _count(gate, "select count(*) from pg_locks where locktype = "
                                 "'advisory' and objid = 4242 and not granted") == 3,
                  "three workers at the barrier")
        gate.execute("select pg_advisory_unlock(%s)", (BARRIER_LOCK,))
        handled = [_finish(w)["embed_items"] for w in workers]
    # Each claimed row is deleted in the transaction that writes its vector, so the units the
    # workers report add up to the item count only if no item was processed twice.
    assert sum(handled) == n
    assert all(h > 0 for h in handled), handled
    with connect(url) as conn:
        assert _count(conn, "select count(*) from pyembed.item_queue") == 0
        assert _count(conn, "select count(*) from pyembed.item_embeddings") == n
        assert _count(conn, "select count(distinct item_id) from pyembed.item_embeddings") == n


def test_worker_killed_mid_batch_loses_nothing(url: str, tmp_path: Path) -> None:
    n = 30
    _add_items(url, n, "k")
    marker = tmp_path / "stalled"
    victim = _spawn(url, "--once", "--batch-size", "12", "--stall", str(marker))
    _wait_for(marker.exists, "the worker to stall inside its first batch")
    assert marker.read_text() == "12"
    with connect(url) as conn:
        # Its 12 rows are locked: another claimer sees only the other 18.
        free = conn.execute("select count(*) from (select item_id from pyembed.item_queue "
                            "for update skip locked) q").fetchone()
        conn.rollback()
        assert free == (n - 12,)
        victim.send_signal(signal.SIGKILL)
        victim.communicate(timeout=30)
        assert victim.returncode == -signal.SIGKILL
        _wait_for(lambda: _count(conn, "select count(*) from (select item_id from "
                                 "pyembed.item_queue for update skip locked) q") == n,
                  "the dead worker's locks to go")
        assert _count(conn, "select count(*) from pyembed.item_embeddings") == 0
        assert _count(conn, "select max(attempts) from pyembed.item_queue") == 0
    assert _finish(_spawn(url, "--once", "--batch-size", "12"))["embed_items"] == n
    with connect(url) as conn:
        assert _count(conn, "select count(*) from pyembed.item_queue") == 0
        assert _count(conn, "select count(*) from pyembed.item_embeddings") == n


def test_sigterm_finishes_the_current_batch_then_exits(url: str, tmp_path: Path) -> None:
    _add_items(url, 20, "s")
    marker = tmp_path / "stalled"
    worker = _spawn(url, "--batch-size", "5", "--stall", str(marker), "--stall-seconds", "4")
    _wait_for(marker.exists, "the worker to stall inside its first batch")
    worker.send_signal(signal.SIGTERM)
    # Loop mode (no --once): only the signal ends it, after the stalled batch commits.
    done = _finish(worker)
    assert done == {"embed_items": 5}
    with connect(url) as conn:
        assert _count(conn, "select count(*) from pyembed.item_embeddings") == 5
        assert _count(conn, "select count(*) from pyembed.item_queue") == 15


def test_idle_worker_wakes_on_notify(url: str) -> None:
    worker = _spawn(url, "--interval", "300")
    try:
        with connect(url) as conn:
            _wait_for(lambda: _count(conn, "select count(*) from pg_stat_activity where "
                                     "query = 'listen pyembed_work'") == 1,
                      "the worker to listen")
            _add_items(url, 3, "n")
            # The interval is 300 s: only the trigger's NOTIFY can wake the worker this soon.
            _wait_for(lambda: _count(conn, "select count(*) from pyembed.item_embeddings") == 3,
                      "the notified worker to embed the new items")
    finally:
        worker.send_signal(signal.SIGTERM)
    assert _finish(worker)["embed_items"] == 3


def test_worker_command_once_drains_and_reports_json(url: str) -> None:
    _add_items(url, 4, "o")
    result = subprocess.run(
        [str(Path(sys.executable).parent / "pyembed-db"), "--database-url", url, "worker",
         "--once", "--json"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["done"]["embed_items"] == 4
