"""``pyembed-db train``: a new behavior model from the events."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from typing import Any

from ..training import VALIDATION_HOLDOUT, train_behavior
from .common import add_json_flag, emit, open_connection

HELP = """\
Train a behavior (collaborative) model from every event in pyembed.events: item and user
vectors stored in pgvector as a model of kind 'behavior' (inner-product HNSW index), so
pyembed.recommend ranks by them. The recency of the fold-in and the fusion weights (text
similarity, popularity and its half-life) are chosen on a validation split carved from the
events (each user's last --holdout events); --full also searches the training parameters
(factors, regularization, ...: one training per trial, minutes). The new model is
activated atomically (searches keep using the previous one until then), the previous one is kept
to switch back to (`pyembed-db model activate NAME:VERSION`), older ones are deleted. Users with
new events later get their behavior vector by fold-in (the worker), without retraining. The
worker also retrains by itself after enough new events (setting pyembed.retrain_events).

Examples:
  pyembed-db train
  pyembed-db train --json
  pyembed-db train --full
"""


def register(subparsers: Any) -> None:
    train = subparsers.add_parser("train", help="train a behavior model from the events",
                                  description=HELP,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    train.add_argument("--holdout", type=int, default=VALIDATION_HOLDOUT,
                       help="validation events per user (default: %(default)s)")
    train.add_argument("--full", action="store_true",
                       help="also choose the training parameters on validation (slower)")
    train.add_argument("--no-activate", action="store_true",
                       help="store the model without switching to it")
    add_json_flag(train)
    train.set_defaults(handler=_train)


def _train(args: argparse.Namespace) -> int:
    with open_connection(args) as conn:
        result = train_behavior(conn, holdout=args.holdout, full=args.full,
                                activate=not args.no_activate)
    emit(args, asdict(result), _human)
    return 0


def _human(data: dict[str, Any]) -> str:
    chosen = data["validation"].get("chosen", {})
    return (f"{data['label']}: {data['method']}, {data['dimensions']} dims, "
            f"{data['trained_items']} trained + {data['cold_items']} cold items, "
            f"{data['users']} users, {data['events']} events in {data['seconds']:.1f} s; "
            f"validation NDCG@10 {chosen.get('ndcg', float('nan')):.4f} "
            f"(method {data['fusion']['method']}, popularity {data['fusion']['popularity']})"
            + (f"; search ef_search {data['ef_search']} (recall@40 {data['ef_search_recall']})"
               if data["ef_search"] is not None else ""))
