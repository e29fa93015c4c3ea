"""``pyembed-db search``: filtered vector, "more like this" and hybrid search."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from typing import Any

from ..errors import InvalidInputError
from ..search import explain_search, search, search_similar, search_text
from .common import add_filter_flag, add_json_flag, emit, open_connection, table


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "search", help="nearest items to a text (or to an item), within filters",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Search the catalog: the text is embedded with the active model and the "
        "nearest items passing --filter are returned (pyembed.search). --similar-to searches "
        "near an item's own vector instead; --hybrid fuses full-text and vector ranks (RRF); "
        "--explain prints the chosen strategy (exact scan or HNSW) and its estimates."
        "\n\nExamples:\n  pyembed-db search \"space adventure\" --k 5\n"
        "  pyembed-db search \"space adventure\" --filter '{\"tags\": {\"contains\": "
        "[\"Sci-Fi\"]}}'\n  pyembed-db search --similar-to 50 --k 5\n"
        "  pyembed-db search \"star wars\" --hybrid --json\n"
        "  pyembed-db search \"romance\" --exclude-user 196 --explain")
    parser.add_argument("text", nargs="?", help="query text (not needed with --similar-to)")
    parser.add_argument("--k", type=int, default=10, help="how many items (default 10)")
    add_filter_flag(parser)
    parser.add_argument("--exclude-user", metavar="EXTERNAL_ID",
                        help="leave out items this user has events on")
    parser.add_argument("--similar-to", metavar="ITEM_EXTERNAL_ID",
                        help="items like this one (its vector is the query)")
    parser.add_argument("--hybrid", action="store_true", help="full-text + vector (RRF)")
    parser.add_argument("--explain", action="store_true",
                        help="print the strategy, estimates and settings of the search")
    add_json_flag(parser)
    parser.set_defaults(handler=_search)


def _search(args: argparse.Namespace) -> int:
    if not args.text and not args.similar_to:
        raise InvalidInputError("give a query text or --similar-to ITEM")
    if args.similar_to and (args.hybrid or args.explain):
        raise InvalidInputError("--similar-to cannot be combined with --hybrid or --explain")
    options = {"exclude_user": args.exclude_user}
    with open_connection(args) as conn:
        if args.explain:
            plan = explain_search(conn, args.text, args.k, args.filter, **options)
            emit(args, plan, _plan_text)
            return 0
        hits: list[Any]
        if args.similar_to:
            hits = search_similar(conn, args.similar_to, args.k, args.filter, **options)
        elif args.hybrid:
            hits = search_text(conn, args.text, args.k, args.filter, **options)
        else:
            hits = search(conn, args.text, args.k, args.filter, **options)
    rows = [asdict(h) for h in hits]
    emit(args, rows, lambda r: table(r, _columns(args)))
    return 0


PLAN_ORDER = ["strategy", "reason", "costs", "rows", "fallback", "elapsed_ms", "selectivity",
              "estimated_rows", "counted_rows", "index_rows", "ef_search", "max_scan_tuples",
              "fetch", "k", "storage", "index", "function", "model_id", "dimensions", "distance",
              "filter_sql", "exclude_user"]


def _plan_text(plan: dict[str, Any]) -> str:
    keys = [k for k in PLAN_ORDER if k in plan] + sorted(set(plan) - set(PLAN_ORDER))
    return "\n".join(f"{k:16} {plan[k]}" for k in keys)


def _columns(args: argparse.Namespace) -> list[str]:
    if args.hybrid:
        return ["external_id", "title", "score", "text_rank", "vector_rank", "distance"]
    return ["external_id", "title", "distance"]
