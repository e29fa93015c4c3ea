"""Fusion of the behavior score with text similarity and popularity: one per-candidate formula.

For user u and candidate item j::

    score = b(u, j) / max_c b(u, c) + text * cos(t_u, t_j) + popularity * pop_j / max_i pop_i

- ``b(u, j) = dot(behavior user vector, behavior item vector)``; ``max_c`` runs over the user's
  candidates (with the behavior top-N among the candidates it is the user's best unseen score),
  so the behavior term is <= 1 whatever the scale of the model; when the best is <= 0 the raw
  score is used;
- ``cos(t_u, t_j)``: the user's long-term text vector (user refresh) against the item's text
  vector, ``1 - (t_u <=> t_j)`` in pgvector;
- ``pop_j``: ``pyembed.popularity_scores(half_life)``, divided by the catalog's maximum.

Every term comes from stored vectors or cached popularity, so the formula runs in SQL. The
weights (``text``, ``popularity``, the popularity half-life) are chosen on validation
(:mod:`.tune`); weight 0 switches a term off.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .events import Events
from .interactions import decay


@dataclass(frozen=True)
class Fusion:
    """Weights of the fusion formula (module docstring); JSON-serializable with ``asdict``."""

    text: float = 0.0
    popularity: float = 0.0
    popularity_half_life_seconds: float | None = None

    def combine(self, behavior: np.ndarray, text_cosine: np.ndarray | None = None,
                popularity: np.ndarray | None = None) -> np.ndarray:
        """Fused scores of each user's candidates (rows: users, columns: candidates, as
        ``pyembed.recommend_behavior`` ranks its behavior top): ``behavior`` scores (-inf where
        a user has fewer candidates), and when their weights are not 0 the text cosines and
        the popularity already divided by the catalog's maximum, both gathered on the same
        candidates. The behavior term is divided by each row's best candidate.

        Example::

            >>> Fusion(popularity=0.5).combine(np.array([[2.0, 1.0]]),
            ...                                popularity=np.array([[0.0, 1.0]])).tolist()
            [[1.0, 1.0]]
        """
        best = behavior.max(axis=1, keepdims=True)
        fused = behavior / np.where(best > 0, best, 1.0)
        if self.text and text_cosine is not None:
            fused = fused + self.text * text_cosine
        if self.popularity and popularity is not None:
            fused = fused + self.popularity * popularity
        return np.asarray(fused)


def popularity_scores(events: Events, n_items: int, half_life_seconds: float | None) -> np.ndarray:
    """Popularity as ``pyembed.popularity_scores`` computes it: per item, the sum of the
    positive part of each event's project weight (``net`` rule), decayed from the newest event.
    ``events.item_ids`` must be column indices < ``n_items``.

    Example::

        >>> ev = Events.from_arrays([1, 2], [0, 0], [1.0, 1.0], [True, True], [5, 4], [0, 10])
        >>> popularity_scores(ev, 2, 10.0).tolist()
        [2.0, 0.0]
    """
    weights = np.maximum(events.weights("net"), 0.0)
    weights = weights * decay(events.occurred_at.max() - events.occurred_at, half_life_seconds)
    return np.bincount(events.item_ids, weights=weights, minlength=n_items)


def text_user_vectors(events: Events, users: np.ndarray, text_vectors: np.ndarray, *,
                      half_life_seconds: float | None, gamma: float = 0.5) -> np.ndarray:
    """Long-term text vectors as user refresh computes them:
    ``normalize(mean(liked) - gamma * mean(disliked))``, the means weighted by each item's net
    decayed weight (``net`` rule, decay from the user's latest event). ``events.item_ids`` index
    rows of ``text_vectors``; rows follow ``users`` (zero when nothing is liked).

    Example::

        >>> ev = Events.from_arrays([7, 7], [0, 1], [1.0, 1.0], [True, True], [5, 1], [0, 0])
        >>> text_user_vectors(ev, np.array([7]), np.eye(2), half_life_seconds=None).round(3)
        array([[ 0.894, -0.447]], dtype=float32)
    """
    last = np.full(len(users), -np.inf)
    rows = np.searchsorted(users, events.user_ids)
    np.maximum.at(last, rows, events.occurred_at)
    w = events.weights("net") * decay(last[rows] - events.occurred_at, half_life_seconds)
    net = sp.csr_matrix((w, (rows, events.item_ids)), shape=(len(users), len(text_vectors)))
    net.sum_duplicates()
    liked, disliked = net.maximum(0), (-net).maximum(0)
    out = np.zeros((len(users), text_vectors.shape[1]))
    for part, sign in ((liked, 1.0), (disliked, -gamma)):
        total = np.asarray(part.sum(axis=1)).ravel()
        mean = np.asarray(part @ text_vectors) / np.where(total > 0, total, 1.0)[:, None]
        out += sign * mean
    has_liked = np.asarray(liked.sum(axis=1)).ravel() > 0
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    out = np.where((norms > 0) & has_liked[:, None], out / np.where(norms > 0, norms, 1.0), 0.0)
    return np.asarray(out, dtype=np.float32)
