"""Ranking metrics shared by the offline evaluation, the baselines and the validation split."""

from __future__ import annotations

import math


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
