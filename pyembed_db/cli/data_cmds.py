"""``pyembed-db status``."""

from __future__ import annotations

import argparse
from typing import Any

from .common import add_json_flag, emit, open_connection, table


def register(subparsers: Any) -> None:
    status = subparsers.add_parser(
        "status",
        help="row counts, queue depths and registered models",
        description="Show row counts, the depth of the embedding and user-refresh queues, and "
        "the registered embedding models.\n\nExample:\n  pyembed-db status --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_json_flag(status)
    status.set_defaults(handler=_status)


def _status(args: argparse.Namespace) -> int:
    with open_connection(args) as conn:
        counts = dict(conn.execute("select name, value from pyembed.status()").fetchall())
        cur = conn.execute(
            "select model_id, name, version, dimensions, distance, status, "
            "(select count(*) from pyembed.item_embeddings e where e.model_id = m.model_id) "
            "as vectors from pyembed.embedding_models m order by model_id"
        )
        names = [d.name for d in cur.description or []]
        models = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    data = {"counts": counts, "models": models}
    emit(args, data, _human)
    return 0


def _human(data: dict[str, Any]) -> str:
    counts = [{"what": k, "rows": v} for k, v in data["counts"].items()]
    return table(counts) + "\n\nmodels:\n" + table(data["models"])
