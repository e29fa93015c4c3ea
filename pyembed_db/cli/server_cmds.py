"""``pyembed-db server start|stop|status`` and ``pyembed-db migrate``."""

from __future__ import annotations

import argparse
from typing import Any

from .. import migrate, server
from ..config import load_settings
from ..errors import ConfigurationError
from .common import add_json_flag, emit


def register(subparsers: Any) -> None:
    srv = subparsers.add_parser(
        "server",
        help="start, stop or inspect the embedded PostgreSQL",
        description="Manage the private PostgreSQL + pgvector server kept in PYEMBED_DATA_DIR. "
        "Not used when DATABASE_URL is set.\n\nExample:\n  pyembed-db server start",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = srv.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, handler, text in [
        ("start", _start, "start the embedded server (reused when already running)"),
        ("stop", _stop, "stop the embedded server"),
        ("status", _status, "say whether the embedded server runs, and its URL"),
    ]:
        action = actions.add_parser(name, help=text, description=text)
        add_json_flag(action)
        action.set_defaults(handler=handler)

    mig = subparsers.add_parser(
        "migrate",
        help="create or upgrade the pyembed schema (Alembic)",
        description="Migrate the database to the newest schema and re-apply the SQL functions "
        "(safe to run again: revisions already applied are skipped). With --down, go back one "
        "revision (or to --to REV); a downgrade that drops data ('base' drops schema pyembed and "
        "every row) refuses without --force."
        "\n\nExample:\n  pyembed-db migrate\n  pyembed-db migrate --down --to base --force",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mig.add_argument("--down", action="store_true", help="downgrade instead of upgrade")
    mig.add_argument(
        "--to", metavar="REV", help="target revision (default: head, or -1 with --down)"
    )
    mig.add_argument("--force", action="store_true",
                     help="with --down: allow a downgrade that drops data")
    add_json_flag(mig)
    mig.set_defaults(handler=_migrate)


def _pgdata_or_fail() -> Any:
    settings = load_settings()
    if settings.database_url:
        raise ConfigurationError("DATABASE_URL is set: the embedded server is not in use")
    return settings.pgdata


def _start(args: argparse.Namespace) -> int:
    pgdata = _pgdata_or_fail()
    url = server.start(pgdata)
    emit(
        args, {"running": True, "url": url, "pgdata": str(pgdata)}, lambda d: f"running: {d['url']}"
    )
    return 0


def _stop(args: argparse.Namespace) -> int:
    pgdata = _pgdata_or_fail()
    stopped = server.stop(pgdata)
    emit(args, {"stopped": stopped}, lambda d: "stopped" if d["stopped"] else "was not running")
    return 0


def _status(args: argparse.Namespace) -> int:
    pgdata = _pgdata_or_fail()
    running = server.is_running(pgdata)
    emit(
        args,
        {"running": running, "pgdata": str(pgdata)},
        lambda d: f"{'running' if d['running'] else 'stopped'} ({d['pgdata']})",
    )
    return 0


def _migrate(args: argparse.Namespace) -> int:
    before = migrate.current_revision(args.database_url)
    if args.down:
        after = migrate.downgrade(args.database_url, args.to or "-1", force=args.force)
    else:
        after = migrate.upgrade(args.database_url, args.to or "head")
    data = {"from": before, "to": after, "changed": before != after}
    emit(args, data, lambda d: f"schema at {d['to'] or 'base'} (was {d['from'] or 'base'})")
    return 0
