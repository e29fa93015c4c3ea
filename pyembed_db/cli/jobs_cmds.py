"""``pyembed-db worker``."""

from __future__ import annotations

import argparse
from typing import Any

from ..jobs import run_worker
from .common import add_json_flag, emit

HELP = """\
Run the maintenance worker: embed new and changed items (for the active model and any model being
re-embedded) and refresh users with new events. It wakes when the triggers NOTIFY and every
--interval seconds. Several workers may run at once (work is claimed with FOR UPDATE SKIP
LOCKED); a killed worker loses nothing. SIGTERM finishes the current batch and exits.

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
    add_json_flag(worker)
    worker.set_defaults(handler=_worker)


def _worker(args: argparse.Namespace) -> int:
    if args.batch_size < 1 or args.interval <= 0:
        raise SystemExit("pyembed-db worker: --batch-size and --interval must be positive")
    stats = run_worker(args.database_url, once=args.once, interval=args.interval,
                       batch_size=args.batch_size, max_seconds=args.max_seconds)
    emit(args, {"done": stats.done, "rounds": stats.rounds},
         lambda d: ", ".join(f"{k}: {v}" for k, v in d["done"].items()) or "nothing to do")
    return 0
