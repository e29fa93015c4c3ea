"""``pyembed-db load`` and ``pyembed-db status``."""

from __future__ import annotations

import argparse
from typing import Any

from ..datasets.movielens import load_movielens
from ..errors import InvalidInputError
from ..load import FORMATS, KINDS, load_file
from ..status import database_status
from .common import add_json_flag, emit, open_connection, table

LOAD_HELP = """\
Bulk-load users, items or events from a CSV, TSV, Parquet or JSON-lines file with COPY, or load
the MovieLens 100K data set shipped in the recbole package. A load is all or nothing: the first
bad row is reported by number and nothing is written. Users and items are upserted by
external_id; events are appended and must name existing users and items.

Columns:
  users   external_id, [attributes (JSON object), created_at]
  items   external_id, [title, body, category, tags (a|b or JSON array), price,
          attributes, created_at]
  events  user, item, event_type, [value, occurred_at]  (user/item are external ids)

CSV quotes fields ("a, b"); TSV has no quoting (a " is an ordinary character). Timestamps:
ISO 8601 (naive = UTC) or Unix seconds. Limits and types: docs/loading.md.

Examples:
  pyembed-db load items catalog.parquet
  pyembed-db load events clicks.csv --json
  pyembed-db load movielens
"""


def register(subparsers: Any) -> None:
    load = subparsers.add_parser(
        "load",
        help="bulk-load users/items/events files, or the MovieLens 100K data set",
        description=LOAD_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    load.add_argument("kind", choices=[*KINDS, "movielens"], help="what the file holds")
    load.add_argument("path", nargs="?", help="the file (not for movielens)")
    load.add_argument("--format", choices=FORMATS, help="file format (default: from the name)")
    load.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_json_flag(load)
    load.set_defaults(handler=_load)

    status = subparsers.add_parser(
        "status",
        help="row counts, queue depths and registered models",
        description="Show row counts, the depth of the embedding and user-refresh queues, and "
        "the registered embedding models.\n\nExample:\n  pyembed-db status --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_json_flag(status)
    status.set_defaults(handler=_status)


def _load(args: argparse.Namespace) -> int:
    progress = not args.no_progress and not args.json
    if args.kind == "movielens":
        if args.path:
            raise InvalidInputError("load movielens takes no file")
        with open_connection(args) as conn:
            counts = load_movielens(conn, progress=progress)
    else:
        if not args.path:
            raise InvalidInputError(f"load {args.kind} needs a file")
        with open_connection(args) as conn:
            counts = {
                args.kind: load_file(conn, args.kind, args.path, fmt=args.format, progress=progress)
            }
    emit(
        args,
        {"loaded": counts},
        lambda d: ", ".join(f"{n} {kind}" for kind, n in d["loaded"].items()) + " loaded",
    )
    return 0


def _status(args: argparse.Namespace) -> int:
    with open_connection(args) as conn:
        status = database_status(conn)
    emit(args, {"counts": status.counts, "models": status.models, "functions": status.functions},
         _human_status)
    return 0


def _human_status(data: dict[str, Any]) -> str:
    counts = [{"what": k, "rows": v} for k, v in data["counts"].items()]
    advice = "" if data["functions"] == "current" else " (run `pyembed-db migrate`)"
    return (table(counts) + "\n\nmodels:\n" + table(data["models"])
            + f"\n\nSQL functions: {data['functions']}{advice}")
