"""Offline evaluation of the recommenders on a temporal split of the events.

The split and the training happen inside ONE transaction that is always rolled back: the
held-out events are deleted, every user's vectors are recomputed from the remaining events, the
recommendations are read, and the rollback restores the events and the vectors exactly as they
were. Nothing is written, but the transaction holds row locks on user vectors and events while it
runs (seconds on MovieLens 100K), so a concurrent worker waits for it.

Relevant items of a user: the held-out items whose net event weight is positive (for 1-5
ratings: rating >= 4). Users with no relevant held-out item are not scored.

- recall@k: relevant items among the k recommended / relevant items (averaged over users)
- NDCG@k: DCG of the hits (1 / log2(rank + 1)) over the DCG of a perfect list of
  min(k, relevant) hits
- coverage: distinct items recommended to anyone / items with a vector in the model
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import psycopg

from . import sqlfiles
from .errors import InvalidInputError, ModelError
from .users import active_model_id, write_interests

log = logging.getLogger(__name__)

# (name, vectors argument of pyembed.recommend (None = the popularity baseline), popularity blend)
METHODS: list[tuple[str, str | None, float]] = [
    ("popularity", None, 0.0),
    ("single-vector", "long_term", 0.0),
    ("multi-interest", "auto", 0.0),
    ("multi-interest+pop", "auto", 0.3),
]
INTEREST_BATCH = 500


@dataclass(frozen=True)
class MethodScore:
    """Metrics of one method on the held-out events."""

    method: str
    exclude_seen: bool
    users: int
    recall: float
    ndcg: float
    coverage: float


def recall_at_k(recommended: list[int], relevant: set[int], k: int) -> float:
    """Share of the relevant items found in the top k.

    Example::

        >>> recall_at_k([1, 2, 3], {2, 9}, 3)
        0.5
    """
    return len(set(recommended[:k]) & relevant) / len(relevant) if relevant else 0.0


def ndcg_at_k(recommended: list[int], relevant: set[int], k: int) -> float:
    """Normalized discounted cumulative gain with binary relevance.

    Example::

        >>> round(ndcg_at_k([1, 2, 3], {2, 9}, 3), 4)   # (1/log2 3) / (1 + 1/log2 3)
        0.3869
    """
    dcg = sum(1 / math.log2(rank + 2) for rank, item in enumerate(recommended[:k])
              if item in relevant)
    ideal = sum(1 / math.log2(rank + 2) for rank in range(min(k, len(relevant))))
    return dcg / ideal if ideal else 0.0


def score(lists: dict[int, list[int]], relevant: dict[int, set[int]], k: int,
          catalog_size: int) -> tuple[float, float, float]:
    """(mean recall@k, mean NDCG@k, coverage) of per-user recommendation lists."""
    users = list(relevant)
    if not users:
        return 0.0, 0.0, 0.0
    recall = sum(recall_at_k(lists.get(u, []), relevant[u], k) for u in users) / len(users)
    ndcg = sum(ndcg_at_k(lists.get(u, []), relevant[u], k) for u in users) / len(users)
    shown = {item for u in users for item in lists.get(u, [])[:k]}
    return recall, ndcg, len(shown) / catalog_size if catalog_size else 0.0


def _group(rows: Iterable[tuple[Any, ...]]) -> dict[int, list[int]]:
    lists: dict[int, list[int]] = defaultdict(list)
    for user_id, item_id in rows:
        lists[int(user_id)].append(int(item_id))
    return lists


def _split_and_train(conn: psycopg.Connection[Any], holdout: int | None,
                     cutoff: datetime | None, model_id: int, interests: bool) -> None:
    if cutoff is not None:
        conn.execute(sqlfiles.read("queries/evaluate_split_cutoff.sql"), {"cutoff": cutoff})
    else:
        conn.execute(sqlfiles.read("queries/evaluate_split_holdout.sql"), {"holdout": holdout})
    conn.execute(sqlfiles.read("queries/evaluate_train.sql"))
    conn.execute(sqlfiles.read("queries/evaluate_popularity.sql"))
    row = conn.execute(sqlfiles.read("queries/evaluate_users_with_events.sql")).fetchone()
    everyone = [int(u) for u in (row[0] if row else [])]
    conn.execute(sqlfiles.read("queries/evaluate_refresh_all.sql"),
                 {"users": everyone, "model_id": model_id})
    if interests:
        for start in range(0, len(everyone), INTEREST_BATCH):
            write_interests(conn, everyone[start:start + INTEREST_BATCH], model_id)


def _popular_lists(conn: psycopg.Connection[Any], users: list[int], k: int,
                   exclude_seen: bool) -> dict[int, list[int]]:
    """One popularity ranking, with each user's training items removed when excluding."""
    if not exclude_seen:
        rows = conn.execute(sqlfiles.read("queries/evaluate_popular.sql"), {"k": k}).fetchall()
        return {u: [int(r[0]) for r in rows] for u in users}
    seen = _group(conn.execute(sqlfiles.read("queries/evaluate_seen.sql"),
                               {"users": users}).fetchall())
    depth = min(1000, k + max((len(v) for v in seen.values()), default=0))
    ranking = [int(r[0]) for r in
               conn.execute(sqlfiles.read("queries/evaluate_popular.sql"), {"k": depth})]
    return {u: [i for i in ranking if i not in set(seen.get(u, []))][:k] for u in users}


def _method_lists(conn: psycopg.Connection[Any], vectors: str | None, blend: float,
                  users: list[int], k: int, exclude_seen: bool,
                  model_id: int) -> dict[int, list[int]]:
    if not users:
        return {}
    if vectors is None:
        return _popular_lists(conn, users, k, exclude_seen)
    params = {"users": users, "k": k, "exclude_seen": exclude_seen, "model_id": model_id,
              "vectors": vectors, "popularity": blend}
    return _group(conn.execute(sqlfiles.read("queries/evaluate_recommend.sql"), params))


def evaluate(conn: psycopg.Connection[Any], *, holdout: int | None = 10,
             cutoff: datetime | None = None, k: int = 10,
             exclusion: tuple[bool, ...] = (True, False)) -> dict[str, Any]:
    """Evaluate popularity, single-vector, multi-interest and blended recommendations.

    Holds out the last ``holdout`` events of each user (users with more than that many), or
    with ``cutoff`` every event at or after it. Returns the split sizes and one
    :class:`MethodScore` (as a dict) per method and exclusion setting.

    Example::

        report = evaluate(conn, holdout=10, k=10)
        for row in report["results"]:
            print(row["method"], row["exclude_seen"], row["recall"], row["ndcg"])
    """
    if cutoff is None and (holdout is None or holdout < 1):
        raise InvalidInputError("give a holdout >= 1 or a cutoff")
    if not 1 <= k <= 1000:
        raise InvalidInputError("k must be between 1 and 1000")
    model_id = active_model_id(conn)
    if model_id is None:
        raise ModelError("no active embedding model: item vectors are needed to evaluate")
    conn.rollback()  # start clean: everything below is rolled back at the end
    try:
        _split_and_train(conn, holdout, cutoff, model_id, interests=True)
        relevant = {int(u): set(items) for u, items in
                    conn.execute(sqlfiles.read("queries/evaluate_positives.sql")).fetchall()}
        heldout = conn.execute(sqlfiles.read("queries/evaluate_heldout_count.sql")).fetchone()
        catalog = conn.execute(sqlfiles.read("queries/evaluate_catalog.sql"),
                               {"model_id": model_id}).fetchone()
        users = sorted(relevant)
        catalog_size = int(catalog[0]) if catalog else 0
        results = []
        for name, vectors, blend in METHODS:
            for exclude_seen in exclusion:
                lists = _method_lists(conn, vectors, blend, users, k, exclude_seen, model_id)
                recall, ndcg, coverage = score(lists, relevant, k, catalog_size)
                results.append(asdict(MethodScore(name, exclude_seen, len(users), recall, ndcg,
                                                  coverage)))
                log.info("%s exclude_seen=%s: recall@%d %.4f", name, exclude_seen, k, recall)
    finally:
        conn.rollback()
    return {
        "split": {"holdout": None if cutoff else holdout, "cutoff": cutoff,
                  "heldout_events": int(heldout[0]) if heldout else 0, "users": len(users)},
        "k": k,
        "model_id": model_id,
        "results": results,
    }
