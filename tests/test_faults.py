"""Faults, each followed by recovery with no lost and no duplicated work.

A worker SIGKILLed mid-batch: tests/test_worker_processes.py (items) and here (users). Here too:
the database server restarted under a running worker, the worker's backends terminated (mid-batch
and while idle), a worker that cannot reach its database giving up, and a user refresh whose
transaction is cut off midway. Every fault is followed by :func:`_assert_consistent`.

"Not duplicated" is checked with an audit trigger that records every row written to the vector
tables: a write rolled back with its transaction leaves no audit row, so an item or user
processed twice *in effect* shows up as two rows.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict
from test_worker_processes import CHILD, _count, _wait_for

from pyembed_db import migrate, users
from pyembed_db.db import connect
from pyembed_db.embed import active_model, drain, register_default_model
from pyembed_db.embed.sync import stale_items
from pyembed_db.jobs import APP_NAME, _conninfo

pytestmark = pytest.mark.slow

AUDIT = """
create table if not exists public.fault_audit (
    tbl text not null, model_id integer not null, id bigint not null, kind text,
    content_hash bytea, watermark bigint);
create or replace function public.fault_audit() returns trigger language plpgsql as $$
begin
    if tg_table_name = 'item_embeddings' then
        insert into public.fault_audit values
            (tg_table_name, new.model_id, new.item_id, null, new.content_hash, null);
    else
        insert into public.fault_audit values
            (tg_table_name, new.model_id, new.user_id, new.kind, null, new.event_watermark);
    end if;
    return null;
end $$;
create or replace trigger fault_audit after insert or update on pyembed.item_embeddings
    for each row execute function public.fault_audit();
create or replace trigger fault_audit after insert or update on pyembed.user_embeddings
    for each row execute function public.fault_audit();
"""


# -- data and checks -------------------------------------------------------------------------

def _prepare(url: str) -> None:
    """The default model, the audit trigger, and no data."""
    with connect(url) as conn:
        register_default_model(conn)
        conn.execute(AUDIT)
        conn.execute("truncate public.fault_audit")
        conn.execute("delete from pyembed.items")
        conn.execute("delete from pyembed.users")
        conn.commit()


def _load(url: str, n_items: int, n_users: int, prefix: str) -> None:
    """Items, and users each with 4 positive events (so every user gets vectors)."""
    with connect(url) as conn:
        conn.execute(
            "insert into pyembed.items (external_id, title, category, tags) "
            "select %(p)s || g, 'Gadget ' || g || ' of line ' || %(p)s, 'cat' || g %% 5, "
            "array['t' || g %% 3] from generate_series(1, %(n)s) g",
            {"p": prefix, "n": n_items})
        conn.execute("insert into pyembed.users (external_id) "
                     "select %(p)s || g from generate_series(1, %(n)s) g",
                     {"p": prefix, "n": n_users})
        _add_events(conn, prefix, 4)
        conn.commit()


def _add_events(conn: psycopg.Connection[Any], prefix: str, per_user: int) -> None:
    conn.execute(
        "insert into pyembed.events (user_id, item_id, event_type) "
        "select u.user_id, i.item_id, (array['view', 'like', 'purchase'])[1 + k %% 3] "
        "from pyembed.users u cross join generate_series(1, %(k)s) k "
        "join lateral (select item_id from pyembed.items where external_id like %(p)s || '%%' "
        "              order by item_id offset (u.user_id * 7 + k * 3) %% (select count(*) "
        "              from pyembed.items where external_id like %(p)s || '%%') limit 1) i on true "
        "where u.external_id like %(p)s || '%%'",
        {"p": prefix, "k": per_user})


def _assert_consistent(url: str, *, rewrites: dict[int, int] | None = None) -> None:
    """Queues empty; every item has one current vector; every user's vectors include all of
    their events; and the audit shows each item embedded once and each user refreshed once
    (or ``rewrites[user_id]`` times) in effect."""
    with connect(url) as conn:
        assert _count(conn, "select count(*) from pyembed.item_queue") == 0
        assert _count(conn, "select count(*) from pyembed.user_queue") == 0
        model = active_model(conn)
        assert model is not None
        stale = stale_items(conn, model)
        assert _count(conn, "select count(*) from pyembed.items") > 0
        assert not stale, f"items without exactly one current vector: {stale}"
        lagging = conn.execute(
            "select u.user_id, max(e.event_id), min(ue.event_watermark), max(ue.event_watermark) "
            "from pyembed.users u join pyembed.events e using (user_id) "
            "left join pyembed.user_embeddings ue on ue.user_id = u.user_id "
            "and ue.model_id = %s group by u.user_id "
            "having max(e.event_id) is distinct from min(ue.event_watermark) "
            "or max(e.event_id) is distinct from max(ue.event_watermark)",
            (model.model_id,)).fetchall()
        assert not lagging, f"users whose vectors miss events: {lagging}"
        twice = conn.execute(
            "select id, count(*) from public.fault_audit where tbl = 'item_embeddings' "
            "group by id having count(*) <> 1").fetchall()
        assert not twice, f"items embedded more than once: {twice}"
        refreshed = dict(conn.execute(
            "select id, count(*) from public.fault_audit "
            "where tbl = 'user_embeddings' and kind = 'long_term' group by id").fetchall())
        with_events = [r[0] for r in conn.execute(
            "select distinct user_id from pyembed.events").fetchall()]
        expected = {u: (rewrites or {}).get(u, 1) for u in with_events}
        assert refreshed == expected
        conn.rollback()


# -- worker processes ------------------------------------------------------------------------

def _spawn(url: str, log: Path, *args: str) -> subprocess.Popen[str]:
    """A worker child running every step, its stderr (warnings) in ``log``."""
    with log.open("w") as err:
        return subprocess.Popen(
            [sys.executable, str(CHILD), url, "--steps", "all", "--full-stats", *args],
            stdout=subprocess.PIPE, stderr=err, text=True)


def _stop(proc: subprocess.Popen[str], log: Path) -> dict[str, Any]:
    """SIGTERM the worker; it must exit 0. Returns its stats."""
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, log.read_text()
    return dict(json.loads(out.strip().splitlines()[-1]))


def _backends(conn: psycopg.Connection[Any], proc: subprocess.Popen[str],
              query: str | None = None) -> set[int]:
    """The backend pids of a worker process (its connections carry its pid), optionally only
    those whose last statement was ``query``."""
    rows = conn.execute("select pid from pg_stat_activity where application_name = %s "
                        "and query = coalesce(%s, query)",
                        (f"{APP_NAME} {proc.pid}", query)).fetchall()
    conn.commit()
    return {int(r[0]) for r in rows}


def _alive(worker: subprocess.Popen[str]) -> bool:
    assert worker.poll() is None, "the worker exited"
    return True


def _drained(url: str, worker: subprocess.Popen[str]) -> Callable[[], bool]:
    """Nothing left to do; fails at once if ``worker`` died meanwhile."""
    def check() -> bool:
        _alive(worker)
        with connect(url) as conn:
            return _count(conn, "select (select count(*) from pyembed.item_queue) + "
                          "(select count(*) from pyembed.user_queue) + "
                          "(select count(*) from pyembed.events e where not exists ("
                          " select from pyembed.user_embeddings ue where ue.user_id = e.user_id"
                          " and ue.event_watermark >= e.event_id))") == 0
    return check


@pytest.fixture
def url(db_url: str) -> str:
    _prepare(db_url)
    return db_url


def test_worker_killed_mid_user_refresh_loses_nothing(url: str, tmp_path: Path) -> None:
    # The item variant is test_worker_processes.py::test_worker_killed_mid_batch_loses_nothing.
    _load(url, 12, 8, "k")
    marker = tmp_path / "stalled"
    victim = _spawn(url, tmp_path / "victim.log", "--once", "--batch-size", "3",
                    "--stall-users", str(marker))
    _wait_for(marker.exists, "the worker to stall inside its first user batch")
    assert marker.read_text() == "3"
    with connect(url) as conn:
        # The batch's vectors are written and its queue rows deleted, uncommitted: others see
        # neither, and its 3 queue rows are locked.
        assert _count(conn, "select count(*) from pyembed.user_embeddings") == 0
        assert _count(conn, "select count(*) from (select user_id from pyembed.user_queue "
                      "for update skip locked) q") == 8 - 3
        victim.send_signal(signal.SIGKILL)
        victim.communicate(timeout=30)
        assert victim.returncode == -signal.SIGKILL
        _wait_for(lambda: _count(conn, "select count(*) from (select user_id from "
                                 "pyembed.user_queue for update skip locked) q") == 8,
                  "the dead worker's locks to go")
        assert _count(conn, "select count(*) from pyembed.user_embeddings") == 0
    finisher = _spawn(url, tmp_path / "finisher.log", "--once", "--batch-size", "3")
    out, _ = finisher.communicate(timeout=120)
    assert finisher.returncode == 0, (tmp_path / "finisher.log").read_text()
    assert json.loads(out.strip().splitlines()[-1])["done"]["refresh_users"] >= 8
    _assert_consistent(url)


def test_connections_terminated_mid_batch_and_idle(url: str, tmp_path: Path) -> None:
    _load(url, 12, 8, "c")
    marker, release, log = tmp_path / "stalled", tmp_path / "release", tmp_path / "worker.log"
    worker = _spawn(url, log, "--batch-size", "3", "--interval", "300",
                    "--stall-users", str(marker), "--release", str(release))
    try:
        with connect(url, autocommit=True) as admin:
            _wait_for(marker.exists, "the worker to stall inside its first user batch")
            first = _backends(admin, worker)
            assert len(first) == 2  # the work connection and the LISTEN connection
            killed = admin.execute("select count(*) filter (where pg_terminate_backend(pid)) "
                                   "from unnest(%s::int[]) pid", (list(first),)).fetchone()
            assert killed == (2,)
            release.touch()  # the batch goes on, on a dead connection
            _wait_for(_drained(url, worker), "the reconnected worker to finish")
            _assert_consistent(url)
            second = _backends(admin, worker)
            assert len(second) == 2 and not second & first
            assert _alive(worker)  # the same process reconnected

            # Idle now, waiting for NOTIFY on the listener: drop both connections again.
            admin.execute("select pg_terminate_backend(pid) from unnest(%s::int[]) pid",
                          (list(second),))
            _wait_for(lambda: len(_backends(admin, worker) - second) == 2
                      and len(_backends(admin, worker, "listen pyembed_work")) == 1,
                      "the worker to reconnect and listen again")
            _load(url, 3, 2, "n")
            # --interval is 300 s: the idle worker is woken by NOTIFY on its new listener.
            _wait_for(_drained(url, worker), "the worker, woken by NOTIFY, to process new work")
    finally:
        release.touch()
        stats = _stop(worker, log)
    assert stats["reconnects"] == 2
    assert stats["done"]["embed_items"] == 15
    assert log.read_text().count("no database connection") >= 2
    _assert_consistent(url)


def test_once_worker_gives_up_when_the_database_stays_away(tmp_path: Path) -> None:
    dead = f"postgresql://postgres@/postgres?host={tmp_path}"  # no server listens there
    result = subprocess.run(
        [sys.executable, "-m", "pyembed_db.cli.main", "--database-url", dead, "worker", "--once",
         "--give-up-after", "2"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "pyembed-db worker: no database connection for 2 s, giving up" in result.stderr
    waits = [line.rsplit(" in ", 1)[1] for line in result.stderr.splitlines()
             if "retrying in" in line]
    assert waits[:2] == ["0.5 s", "1.0 s"], result.stderr  # doubling, cut at the give-up time


# -- a private server, restarted under a running worker --------------------------------------

def _server(data_dir: Path, action: str) -> dict[str, Any]:
    """``pyembed-db server ACTION`` in its own process (pgserver caches a stopped server)."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["PYEMBED_DATA_DIR"] = str(data_dir)
    result = subprocess.run([sys.executable, "-m", "pyembed_db.cli.main", "server", action,
                             "--json"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


@pytest.fixture
def private_server() -> Iterator[tuple[Path, str]]:
    data_dir = Path(tempfile.mkdtemp(prefix="pf-", dir="/tmp"))  # short: the socket lives here
    try:
        url = str(_server(data_dir, "start")["url"])
        migrate.upgrade(url)
        yield data_dir, url
    finally:
        _server(data_dir, "stop")
        shutil.rmtree(data_dir, ignore_errors=True)


def test_database_restarted_mid_batch(private_server: tuple[Path, str], tmp_path: Path) -> None:
    data_dir, url = private_server
    _prepare(url)
    _load(url, 18, 6, "r")
    marker, release, log = tmp_path / "stalled", tmp_path / "release", tmp_path / "worker.log"
    worker = _spawn(url, log, "--batch-size", "6", "--interval", "300",
                    "--stall", str(marker), "--release", str(release))
    try:
        _wait_for(marker.exists, "the worker to stall inside its first item batch")
        assert _server(data_dir, "stop") == {"stopped": True}
        release.touch()  # the batch goes on: its writes hit a closed connection
        _wait_for(lambda: _alive(worker) and log.read_text().count("no database connection") >= 3,
                  "the worker to fail to reconnect at least twice")
        assert _server(data_dir, "start")["url"] == url
        _wait_for(_drained(url, worker), "the same worker to reconnect and finish everything")
        with connect(url, autocommit=True) as admin:
            assert len(_backends(admin, worker)) == 2
    finally:
        release.touch()
        stats = _stop(worker, log)
    assert stats["reconnects"] == 1
    # The rolled-back batch is not counted: 18 items handled once each.
    assert stats["done"]["embed_items"] == 18
    _assert_consistent(url)


# -- a user refresh cut off midway, in this process ------------------------------------------

@pytest.mark.parametrize("fault", ["connection dropped", "statement failed"])
def test_refresh_aborted_midway_leaves_vectors_and_queue_consistent(
        url: str, fault: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _load(url, 10, 6, "a")
    with connect(url) as conn:
        drain(conn)
        assert users.refresh_users(conn) == 6
        _add_events(conn, "a", 2)  # every user has new events now
        conn.commit()
        before = conn.execute("select user_id, kind, slot, event_watermark, embedding::text "
                              "from pyembed.user_embeddings order by 1, 2, 3").fetchall()
        conn.commit()
    original = users.write_user_vectors

    def faulty(conn: psycopg.Connection[Any], user_ids: list[int], model_id: int,
               **kinds: Any) -> int:
        # Reached after the batch's queue rows were claimed and deleted.
        if fault == "connection dropped":
            with connect(url, autocommit=True) as admin:
                admin.execute("select pg_terminate_backend(%s)", (conn.info.backend_pid,))
        else:
            conn.execute("select 1 / 0")
        return original(conn, user_ids, model_id, **kinds)

    monkeypatch.setattr(users, "write_user_vectors", faulty)
    with connect(url) as conn:
        with pytest.raises(psycopg.Error):
            users.refresh_users(conn, batch_size=4)
        if fault == "statement failed":
            assert not conn.broken  # rolled back, and still usable
    with connect(url) as conn:
        after = conn.execute("select user_id, kind, slot, event_watermark, embedding::text "
                             "from pyembed.user_embeddings order by 1, 2, 3").fetchall()
        assert after == before  # nothing of the aborted batch is visible
        assert _count(conn, "select count(*) from pyembed.user_queue") == 6
        monkeypatch.undo()
        assert users.refresh_users(conn, batch_size=4) == 6
    _assert_consistent(url, rewrites={u: 2 for u, *_ in before})


def test_worker_connections_notice_a_dead_network_within_a_minute() -> None:
    # A silently dropped network sends no RST: only TCP timeouts end the wait (see jobs.py).
    params = conninfo_to_dict(_conninfo("postgresql://u@db.example/app?keepalives_idle=5"))
    assert params["keepalives_idle"] == "5"  # the URL wins
    assert params["tcp_user_timeout"] == "60000" and params["keepalives_count"] == "3"
    assert params["application_name"] == f"{APP_NAME} {os.getpid()}"
