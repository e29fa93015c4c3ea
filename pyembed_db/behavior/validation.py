"""Scoring a behavior model (and its fusion) on held-out events, without a database.

The protocol of ``pyembed-db evaluate``: relevant items of a user are the held-out items with a
positive net project weight (``net`` rule: ratings >= 4), items the user has training events on
are never recommended, users without a relevant item are not scored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..baselines import ListScore, score_lists, top_k_unseen
from .events import Events
from .fusion import Fusion, popularity_scores, text_user_vectors
from .train import BehaviorModel

USER_TEXT_HALF_LIFE = 90 * 86400.0  # pyembed.half_life default, as user refresh uses
# pyembed.recommend_behavior fuses the behavior top least(4k, 1000) (sql/functions/40_recommend.sql)
CANDIDATES_PER_K = 4
MAX_CANDIDATES = 1000


@dataclass
class Holdout:
    """Training events + held-out events over one catalog of item columns.

    ``catalog`` holds the sorted item ids (columns); ``users`` the scored users (sorted), each
    with its ``relevant`` columns; ``seen`` (users x catalog) the training pairs.
    """

    train: Events
    catalog: np.ndarray
    users: np.ndarray
    relevant: dict[int, set[int]]
    seen: sp.csr_matrix
    popular: set[int]
    cache: dict[Any, np.ndarray] = field(default_factory=dict, repr=False)

    @classmethod
    def build(cls, train: Events, heldout: Events, catalog: np.ndarray | None = None) -> Holdout:
        """Relevance, seen pairs and the 100 most popular training items (by users).

        Example::

            holdout = Holdout.build(fit_events, validation_events)
        """
        if catalog is None:
            catalog = np.unique(np.concatenate([train.item_ids, heldout.item_ids]))
        net = sp.csr_matrix((heldout.weights("net"),
                             (heldout.user_ids, np.searchsorted(catalog, heldout.item_ids))),
                            shape=(int(heldout.user_ids.max(initial=0)) + 1, len(catalog)))
        net.sum_duplicates()
        trained = np.unique(train.user_ids)
        relevant: dict[int, set[int]] = {}
        for user in np.unique(heldout.user_ids):
            row = net.getrow(user)
            cols = row.indices[row.data > 0]
            if len(cols) and np.isin(user, trained):
                relevant[int(user)] = set(cols.tolist())
        users = np.array(sorted(relevant), dtype=np.int64)
        rows = np.searchsorted(users, train.user_ids)
        keep = (rows < len(users)) & (users[np.minimum(rows, len(users) - 1)] == train.user_ids)
        seen = sp.csr_matrix((np.ones(int(keep.sum())),
                              (rows[keep], np.searchsorted(catalog, train.item_ids[keep]))),
                             shape=(len(users), len(catalog)))
        seen.data[:] = 1.0
        counts = np.bincount(np.searchsorted(catalog, train.item_ids), minlength=len(catalog))
        popular = set(np.argsort(-counts, kind="stable")[:100].tolist())
        return cls(train, catalog, users, relevant, seen, popular)

    def behavior_scores(self, model: BehaviorModel, extra_items: np.ndarray | None = None,
                        extra_vectors: np.ndarray | None = None) -> np.ndarray:
        """Dense (users, catalog) inner products; items without a vector score -inf.
        ``extra_items``/``extra_vectors`` add vectors for items the model lacks (cold items).
        """
        mine = np.isin(self.train.user_ids, self.users)
        users, vectors = model.fold_in_users(self.train.subset(mine))
        rows = np.zeros((len(self.users), model.dimension), dtype=np.float32)
        rows[np.searchsorted(self.users, users)] = vectors
        scores = np.full((len(self.users), len(self.catalog)), -np.inf)
        cols = np.searchsorted(self.catalog, model.items)
        ok = (cols < len(self.catalog)) & (self.catalog[np.minimum(cols, len(self.catalog) - 1)]
                                           == model.items)
        scores[:, cols[ok]] = rows @ model.item_vectors[ok].T
        if extra_items is not None and extra_vectors is not None and len(extra_items):
            scores[:, np.searchsorted(self.catalog, extra_items)] = rows @ extra_vectors.T
        return scores

    def text_cosines(self, text_vectors: np.ndarray,
                     half_life_seconds: float | None = USER_TEXT_HALF_LIFE) -> np.ndarray:
        """(users, catalog) cosine of each user's long-term text vector with each item's
        (``text_vectors`` rows follow ``catalog`` and are L2-normalized); cached."""
        key = ("text", id(text_vectors), half_life_seconds)
        if key not in self.cache:
            self.cache[key] = self._text_cosines(text_vectors, half_life_seconds)
        return self.cache[key]

    def _text_cosines(self, text_vectors: np.ndarray,
                      half_life_seconds: float | None) -> np.ndarray:
        mine = self.train.subset(np.isin(self.train.user_ids, self.users))
        mapped = Events(mine.user_ids, np.searchsorted(self.catalog, mine.item_ids),
                        mine.type_weights, mine.is_rating, mine.values, mine.occurred_at,
                        mine.event_ids)
        users = text_user_vectors(mapped, self.users, text_vectors,
                                  half_life_seconds=half_life_seconds)
        return np.asarray(users @ text_vectors.T, dtype=np.float64)

    def popularity(self, half_life_seconds: float | None) -> np.ndarray:
        """Popularity of every catalog column from the training events; cached."""
        key = ("popularity", half_life_seconds)
        if key in self.cache:
            return self.cache[key]
        mapped = Events(self.train.user_ids, np.searchsorted(self.catalog, self.train.item_ids),
                        self.train.type_weights, self.train.is_rating, self.train.values,
                        self.train.occurred_at, self.train.event_ids)
        self.cache[key] = popularity_scores(mapped, len(self.catalog), half_life_seconds)
        return self.cache[key]

    def top_k(self, scores: np.ndarray, k: int) -> np.ndarray:
        """Best k unseen columns per scored user."""
        return top_k_unseen(scores, self.seen, k)

    def score(self, top: np.ndarray, k: int, *,
              only: dict[int, set[int]] | None = None) -> ListScore:
        """Recall/NDCG@k, coverage and popular share of top-k lists (rows follow ``users``);
        ``only`` replaces the relevant sets (e.g. cold items only)."""
        lists = {int(u): [c for c in top[i].tolist() if c >= 0] for i, u in enumerate(self.users)}
        return score_lists(lists, self.relevant if only is None else only, k,
                           catalog_size=len(self.catalog), popular=self.popular)

    def candidates(self, behavior: np.ndarray, k: int) -> np.ndarray:
        """Each user's behavior top ``CANDIDATES_PER_K * k`` unseen columns (-1 past the
        unseen items): the pool ``pyembed.recommend_behavior`` fuses."""
        return self.top_k(behavior, min(CANDIDATES_PER_K * k, MAX_CANDIDATES))

    def evaluate(self, model: BehaviorModel, fusion: Fusion | None = None, *, k: int = 10,
                 text_vectors: np.ndarray | None = None, behavior: np.ndarray | None = None,
                 candidates: np.ndarray | None = None) -> ListScore:
        """Score a model, fused as served when ``fusion`` has non-zero weights: the behavior
        top ``CANDIDATES_PER_K * k`` re-ranked by :meth:`Fusion.combine`. ``behavior`` (the
        model's :meth:`behavior_scores`) and ``candidates`` (:meth:`candidates`) may be given
        when already computed.

        Example::

            print(holdout.evaluate(model, k=10).ndcg)
        """
        scores = self.behavior_scores(model) if behavior is None else behavior
        if fusion is None or not (fusion.text or fusion.popularity):
            return self.score(self.top_k(scores, k), k)
        pool = self.candidates(scores, k) if candidates is None else candidates
        cols = np.maximum(pool, 0)
        behavior_at = np.where(pool >= 0, np.take_along_axis(scores, cols, axis=1), -np.inf)
        text = (np.take_along_axis(self.text_cosines(text_vectors), cols, axis=1)
                if fusion.text and text_vectors is not None else None)
        pop = self.popularity(fusion.popularity_half_life_seconds)
        top_pop = float(pop.max()) if len(pop) else 0.0
        fused = fusion.combine(behavior_at, text, (pop / top_pop if top_pop > 0 else pop)[cols])
        order = np.argsort(-fused, axis=1, kind="stable")[:, :k]
        top = np.take_along_axis(pool, order, axis=1)
        top = np.where(np.take_along_axis(fused, order, axis=1) == -np.inf, -1, top)
        return self.score(top, k)
