"""Entry point of ``pyembed-db``: builds the parser from the command modules and runs one."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import psycopg

from ..errors import PyembedError
from . import (
    data_cmds,
    jobs_cmds,
    model_cmds,
    search_cmds,
    server_cmds,
    train_cmds,
    users_cmds,
)

# Each module adds its sub-commands with `register(subparsers)`.
COMMAND_MODULES = [server_cmds, data_cmds, model_cmds, jobs_cmds, train_cmds, search_cmds,
                   users_cmds]


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (also used by the tests that check every command's help)."""
    parser = argparse.ArgumentParser(
        prog="pyembed-db",
        description="Vector search, embeddings and recommendations inside PostgreSQL + pgvector. "
        "Uses DATABASE_URL when set, else a private embedded PostgreSQL in PYEMBED_DATA_DIR.",
    )
    parser.add_argument(
        "--database-url", help="PostgreSQL URL (default: $DATABASE_URL, else embedded server)"
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMAND_MODULES:
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the process exit code (0 ok, 1 failure, 2 bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.handler(args))
    except PyembedError as exc:
        print(f"pyembed-db: error: {exc}", file=sys.stderr)
        return 2
    except psycopg.Error as exc:
        state = f" [SQLSTATE {exc.sqlstate}]" if exc.sqlstate else ""
        print(f"pyembed-db: database error{state}: {exc}".rstrip(), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
