"""``pyembed-db refresh-users``, ``pyembed-db recommend`` and ``pyembed-db evaluate``."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from typing import Any

from .. import users
from ..evaluate import DEFAULT_METHODS, METHOD_NAMES, evaluate
from ..recommend import METHODS, VECTOR_KINDS, recommend, user_history
from .common import (
    add_filter_flag,
    add_json_flag,
    emit,
    open_connection,
    table,
    timestamp_argument,
)

WIDTH = 44  # characters of a title in the side-by-side view


def _command(subparsers: Any, name: str, text: str, description: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name, help=text, description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_json_flag(parser)
    return parser


def register(subparsers: Any) -> None:
    refresh = _command(
        subparsers, "refresh-users", "recompute user vectors from their events",
        "Recompute the long-term, short-term and interest vectors of the users queued by new "
        "events (all of them, batch by batch), or of one user with --user. --since also "
        "re-queues users with events at or after a time that their vectors do not include "
        "(e.g. after a bulk load with triggers off); --all re-queues every user with events "
        "(e.g. after changing pyembed.half_life)."
        "\n\nExamples:\n  pyembed-db refresh-users\n  pyembed-db refresh-users --all\n"
        "  pyembed-db refresh-users --user 196 --json")
    who = refresh.add_mutually_exclusive_group()
    who.add_argument("--user", metavar="EXTERNAL_ID", help="refresh only this user")
    who.add_argument("--all", action="store_true", help="refresh every user with events")
    refresh.add_argument("--since", type=timestamp_argument, metavar="TIMESTAMP",
                         help="also re-queue users with unincluded events since then")
    refresh.add_argument("--batch", type=int, default=1000, help="users per transaction")
    refresh.add_argument("--no-interests", action="store_true",
                         help="skip the multi-interest vectors (kept as they are)")
    refresh.add_argument("--jobs", type=int, default=2,
                         help="processes refreshing at once, one session each (default 2)")
    refresh.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    refresh.set_defaults(handler=_refresh)

    rec = _command(
        subparsers, "recommend", "recommend items to a user (with their recent history)",
        "Recommend items to a user within filters, without items they already interacted "
        "with: by default with the method the behavior model chose on validation (`pyembed-db "
        "train`; the text vectors when none is trained), popular items for users without "
        "vectors. Human output shows the user's recent history next to the list."
        "\n\nExamples:\n  pyembed-db recommend 196 --k 5\n"
        "  pyembed-db recommend 196 --filter '{\"category\": \"Comedy\"}' --diversity 0.3\n"
        "  pyembed-db recommend 196 --positive 50 --negative 181 --json")
    rec.add_argument("user", metavar="USER_EXTERNAL_ID")
    rec.add_argument("--k", type=int, default=10, help="how many items (default 10)")
    add_filter_flag(rec)
    rec.add_argument("--diversity", type=float, default=0.0, help="MMR diversity 0..1")
    rec.add_argument("--positive", nargs="+", default=[], metavar="ITEM",
                     help="external ids of items to move toward")
    rec.add_argument("--negative", nargs="+", default=[], metavar="ITEM",
                     help="external ids of items to move away from")
    rec.add_argument("--include-seen", action="store_true", help="allow items already seen")
    rec.add_argument("--method", choices=METHODS,
                     help="behavior, text or popular (default: chosen on validation)")
    rec.add_argument("--vectors", choices=VECTOR_KINDS, default="auto",
                     help="which text vectors to query with (default auto)")
    rec.add_argument("--popularity", type=float,
                     help="blend popularity into the ranking, 0..1 (default: behavior: the "
                     "weight chosen on validation; text: 0)")
    rec.add_argument("--history", type=int, default=10, help="recent events to show")
    rec.set_defaults(handler=_recommend)

    ev = _command(
        subparsers, "evaluate", "offline evaluation on a temporal split (writes nothing)",
        "Hold out each user's last N events (or every event after --cutoff), and inside a "
        "transaction that is rolled back refresh every user on the rest and train a behavior "
        "model on it; report recall@k, NDCG@k and catalog coverage of pyembed's methods (served "
        "by pyembed.recommend) next to numpy baselines (popularity, item-kNN, EASE, ALS), seen "
        "items excluded. Relevant held-out items: positive net weight (ratings >= 4). By "
        "default only popularity and the default method are scored: each more method is one "
        "more pass over every user."
        f"\n\nMethods: {', '.join(METHOD_NAMES)}."
        "\n\nExamples:\n  pyembed-db evaluate\n  pyembed-db evaluate --holdout 5 --k 20 --json\n"
        "  pyembed-db evaluate --methods all --include-seen\n"
        "  pyembed-db evaluate --cutoff 1998-03-01 --methods default,behavior")
    split = ev.add_mutually_exclusive_group()
    split.add_argument("--holdout", type=int, default=10, help="events held out per user")
    split.add_argument("--cutoff", type=timestamp_argument, metavar="TIMESTAMP",
                       help="hold out every event at or after this time")
    ev.add_argument("--k", type=int, default=10, help="list length (default 10)")
    ev.add_argument("--methods", default=",".join(DEFAULT_METHODS), metavar="LIST",
                    help="comma-separated methods to score, or 'all' "
                         f"(default {','.join(DEFAULT_METHODS)})")
    ev.add_argument("--include-seen", action="store_true",
                    help="also score lists that may repeat items the user has seen")
    ev.add_argument("--users", type=int, metavar="N",
                    help="score a fixed random sample of N users (large data sets)")
    ev.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    ev.set_defaults(handler=_evaluate)


def _refresh(args: argparse.Namespace) -> int:
    with open_connection(args) as conn:
        if args.user:
            written = users.refresh_user(conn, args.user, interests=not args.no_interests)
            conn.commit()
            data = {"user": args.user, "vectors": written}
            emit(args, data, lambda d: f"user {d['user']}: {d['vectors']} vectors")
            return 0
        done = users.refresh_users(conn, batch_size=args.batch, since=args.since,
                                   interests=not args.no_interests, every_user=args.all,
                                   progress=not (args.no_progress or args.json), jobs=args.jobs)
    emit(args, {"users_refreshed": done}, lambda d: f"refreshed {d['users_refreshed']} users")
    return 0


def _short(text: Any, width: int = WIDTH) -> str:
    value = "" if text is None else str(text)
    return value if len(value) <= width else value[: width - 1] + "…"


def _side_by_side(history: list[dict[str, Any]], recs: list[dict[str, Any]]) -> str:
    left = [f"{h['event_type']}{'' if h['value'] is None else ' ' + format(h['value'], 'g')}"
            f"  {_short(h['title'])}" for h in history]
    right = [f"{r['score']:.3f}  {_short(r['title'])}  [{r['source']}]" for r in recs]
    width = max([len("recent history (newest first)"), *map(len, left)])
    lines = [f"{'recent history (newest first)'.ljust(width)}  |  recommended"]
    lines.append(f"{'-' * width}--+--{'-' * 40}")
    for i in range(max(len(left), len(right))):
        a = left[i] if i < len(left) else ""
        b = right[i] if i < len(right) else ""
        lines.append(f"{a.ljust(width)}  |  {b}")
    return "\n".join(lines)


def _recommend(args: argparse.Namespace) -> int:
    with open_connection(args) as conn:
        recs = recommend(conn, args.user, args.k, args.filter, exclude_seen=not args.include_seen,
                         diversity=args.diversity, positive=args.positive,
                         negative=args.negative, vectors=args.vectors,
                         popularity=args.popularity, method=args.method)
        history = user_history(conn, args.user, max(args.history, 0))
    data = {"user": args.user, "history": [asdict(h) for h in history],
            "recommendations": [asdict(r) for r in recs]}
    emit(args, data, lambda d: f"user {d['user']}\n"
         + _side_by_side(d["history"], d["recommendations"]))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    with open_connection(args) as conn:
        methods = "all" if args.methods == "all" else \
            [m.strip() for m in args.methods.split(",") if m.strip()]
        report = evaluate(conn, holdout=None if args.cutoff else args.holdout,
                          cutoff=args.cutoff, k=args.k, methods=methods,
                          exclusion=(True, False) if args.include_seen else (True,),
                          max_users=args.users,
                          progress=not (args.no_progress or args.json))

    def human(d: dict[str, Any]) -> str:
        split = d["split"]
        how = f"cutoff {split['cutoff']}" if split["cutoff"] else f"last {split['holdout']} " \
            "events per user"
        sampled = (f" (a sample of {split['users_with_relevant_items']})"
                   if split["users"] < split["users_with_relevant_items"] else "")
        head = (f"held out {split['heldout_events']} events ({how}); "
                f"{split['users']} users with relevant held-out items{sampled}; k = {d['k']}")
        rows = [{"method": r["method"], "exclude_seen": "yes" if r["exclude_seen"] else "no",
                 f"recall@{d['k']}": r["recall"], f"ndcg@{d['k']}": r["ndcg"],
                 "coverage": r["coverage"]} for r in d["results"]]
        cold = d["cold_items"]
        cold_rows = [{"method": r["method"], "users": r["users"],
                      f"recall@{d['k']}": r["recall"], f"ndcg@{d['k']}": r["ndcg"]}
                     for r in cold["results"]]
        behavior = d["behavior"]
        trained = ""
        if behavior and behavior["train_seconds"] is not None:
            trained = (f"\nbehavior model: {behavior['method']}, d={behavior['dimensions']}, "
                       f"trained in {behavior['train_seconds']} s, fusion {behavior['fusion']}")
        elif behavior:
            trained = (f"\nbehavior model: validated in {behavior['validation_seconds']} s, "
                       f"fusion {behavior['fusion']}; not trained (no scored method reads "
                       "its vectors)")
        skipped = "".join(f"\n{name}: skipped ({why})"
                          for name, why in d["skipped_baselines"].items())
        return (head + "\n" + table(rows) + skipped + "\n\ncold items (held-out items with "
                f"fewer than {cold['training_events_below']} training events; seen excluded):\n"
                + table(cold_rows) + f"\n\nrecommend p50 (default method): "
                f"{d['recommend_p50_ms']:.1f} ms" + trained)

    emit(args, report, human)
    return 0
