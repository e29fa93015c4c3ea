"""Helpers shared by the CLI command modules: output, connections, errors."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import psycopg

from ..db import connect

Handler = Callable[[argparse.Namespace], int]


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    """Add ``--json``: machine-readable output on stdout."""
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def add_filter_flag(parser: argparse.ArgumentParser) -> None:
    """Add ``--filter JSON``: the filters of pyembed.search / recommend."""
    parser.add_argument("--filter", type=json_argument, default={}, metavar="JSON",
                        help='filters, e.g. {"category": "Drama", "price": {"lt": 20}}')


def json_argument(text: str) -> Any:
    """argparse type: a JSON value, with a message a user can act on."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc.msg}): {text!r}") from None


def timestamp_argument(text: str) -> datetime:
    """argparse type: an ISO 8601 date or timestamp (naive means UTC)."""
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an ISO 8601 timestamp (e.g. 1998-03-01 or 1998-03-01T12:00:00Z): {text!r}"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def emit(args: argparse.Namespace, data: Any, human: Callable[[Any], str]) -> None:
    """Print ``data`` as JSON when ``--json`` was given, else as ``human(data)``."""
    if getattr(args, "json", False):
        json.dump(data, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        print(human(data))


def table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    """A plain fixed-width text table."""
    if not rows:
        return "(no rows)"
    columns = columns or list(rows[0])
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else str(value)


def open_connection(args: argparse.Namespace) -> psycopg.Connection[Any]:
    """A connection to ``--database-url`` or the default database."""
    return connect(getattr(args, "database_url", None))
