"""``pyembed-db worker``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..errors import ConnectionLost, InvalidInputError
from ..jobs import ONCE_GIVE_UP, run_worker
from .common import add_json_flag, emit

HELP = f"""\
Run the maintenance worker: embed new and changed items (for the active model and any model being
re-embedded) and refresh users with new events. It wakes when the triggers NOTIFY and every
--interval seconds. Several workers may run at once (work is claimed with FOR UPDATE SKIP
LOCKED); a killed worker loses nothing. SIGTERM finishes the current batch and exits.

When the database connection is lost (server restart, failover, terminated backend) the worker
logs a warning and reconnects, waiting 0.5 s doubling up to 30 s between attempts; the batch in
flight is rolled back by PostgreSQL and claimed again. Without --once it retries forever (unless
--give-up-after); with --once it gives up after {ONCE_GIVE_UP:.0f} s and exits 1.

Examples:
  pyembed-db worker                    # run until stopped
  pyembed-db worker --once --json      # drain the queues and exit (cron, systemd timers)
"""


def register(subparsers: Any) -> None:
    worker = subparsers.add_parser("worker", help="embed items and refresh users, continuously",
                                   description=HELP,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    worker.add_argument("--once", action="store_true", help="drain the queues, then exit")
    worker.add_argument("--interval", type=float, default=60.0,
                        help="seconds between polls when idle (default: 60)")
    worker.add_argument("--batch-size", type=int, default=128, help="items per transaction")
    worker.add_argument("--max-seconds", type=float, help="exit after this long (for tests)")
    worker.add_argument("--give-up-after", type=float, metavar="SECONDS",
                        help="exit 1 after this long without a database connection "
                        f"(default: {ONCE_GIVE_UP:.0f} with --once, never without)")
    add_json_flag(worker)
    worker.set_defaults(handler=_worker)


def _worker(args: argparse.Namespace) -> int:
    if args.batch_size < 1 or args.interval <= 0:
        raise InvalidInputError("worker: --batch-size and --interval must be positive")
    if args.give_up_after is not None and args.give_up_after < 0:
        raise InvalidInputError("worker: --give-up-after must not be negative")
    try:
        stats = run_worker(args.database_url, once=args.once, interval=args.interval,
                           batch_size=args.batch_size, max_seconds=args.max_seconds,
                           give_up_after=args.give_up_after)
    except ConnectionLost as exc:
        print(f"pyembed-db worker: {exc}", file=sys.stderr)
        return 1
    emit(args, {"done": stats.done, "rounds": stats.rounds, "reconnects": stats.reconnects},
         lambda d: ", ".join(f"{k}: {v}" for k, v in d["done"].items()) or "nothing to do")
    return 0
