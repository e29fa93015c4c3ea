"""Scoring a behavior model (and its fusion) on held-out events, without a database.

The protocol of ``pyembed-db evaluate``: relevant items of a user are the held-out items with a
positive net project weight (``net`` rule: ratings >= 4), items the user has training events on
are never recommended, users without a relevant item are not scored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..baselines import ListScore, map_blocks, row_blocks, top_k_unseen
from .events import Events
from .fusion import Fusion, popularity_scores, text_user_vectors
from .train import BehaviorModel

USER_TEXT_HALF_LIFE = 90 * 86400.0  # pyembed.half_life default, as user refresh uses
# pyembed.recommend_behavior fuses the behavior top least(4k, 1000) (sql/functions/40_recommend.sql)
CANDIDATES_PER_K = 4
MAX_CANDIDATES = 1000


@dataclass(frozen=True)
class Pool:
    """Each scored user's best unseen columns (rows follow ``Holdout.users``; -1 past the
    unseen items) and their scores (-inf there), best first."""

    cols: np.ndarray
    scores: np.ndarray
    # text vectors -> (those vectors, cosines at cols): every fusion trial of a pool reuses them
    text: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False,
                                                           compare=False)


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
    targets: dict[int, tuple[dict[int, set[int]], tuple[np.ndarray, np.ndarray, np.ndarray]]] = \
        field(default_factory=dict, repr=False)

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
        net.data = np.where(net.data > 0, net.data, 0.0)
        net.eliminate_zeros()  # what is left: the relevant (user, column) pairs
        with_relevant = np.flatnonzero(np.diff(net.indptr))
        relevant = {int(user): set(net.indices[net.indptr[user]:net.indptr[user + 1]].tolist())
                    for user in with_relevant[np.isin(with_relevant, train.user_ids)]}
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

    @cached_property
    def scored_train(self) -> Events:
        """The training events of the scored users (every pool folds them in)."""
        return self.train.subset(np.isin(self.train.user_ids, self.users))

    def behavior_pool(self, model: BehaviorModel, depth: int,
                      extra_items: np.ndarray | None = None,
                      extra_vectors: np.ndarray | None = None) -> Pool:
        """Each user's best ``depth`` unseen columns by inner product with the model's item
        vectors, and their scores; items without a vector are never listed. ``extra_items`` /
        ``extra_vectors`` add vectors for items the model lacks (cold items). Users are scored
        in chunks of at most ``baselines.SCORE_CELLS`` cells, so memory does not grow with
        users x catalog.

        Example::

            pool = holdout.behavior_pool(model, 40)
        """
        users, vectors = model.fold_in_users(self.scored_train)
        rows = np.zeros((len(self.users), model.dimension), dtype=np.float32)
        rows[np.searchsorted(self.users, users)] = vectors
        items = np.zeros((len(self.catalog), model.dimension), dtype=np.float32)
        has_vector = np.zeros(len(self.catalog), dtype=bool)
        cols = np.searchsorted(self.catalog, model.items)
        ok = (cols < len(self.catalog)) & (self.catalog[np.minimum(cols, len(self.catalog) - 1)]
                                           == model.items)
        items[cols[ok]] = model.item_vectors[ok]
        has_vector[cols[ok]] = True
        if extra_items is not None and extra_vectors is not None and len(extra_items):
            extra = np.searchsorted(self.catalog, extra_items)
            items[extra] = extra_vectors
            has_vector[extra] = True

        without_vector = np.flatnonzero(~has_vector)

        def pool_of(chunk: slice) -> Pool:
            scores = rows[chunk] @ items.T
            scores[:, without_vector] = -np.inf
            return self.pool_from_scores(scores, depth, chunk)

        pools = map_blocks(pool_of, self._chunks())
        return Pool(np.vstack([p.cols for p in pools]), np.vstack([p.scores for p in pools]))

    def pool_from_scores(self, scores: np.ndarray, depth: int,
                         chunk: slice | None = None) -> Pool:
        """The best ``depth`` unseen columns of dense ``scores`` whose rows are the users of
        ``chunk`` (default: all users)."""
        seen = self.seen if chunk is None else self.seen[chunk]
        top = top_k_unseen(scores, seen, depth)
        at = np.take_along_axis(np.asarray(scores), np.maximum(top, 0), axis=1).astype(np.float64)
        return Pool(top, np.where(top >= 0, at, -np.inf))

    def _chunks(self) -> list[slice]:
        return row_blocks(len(self.users), len(self.catalog)) or [slice(0, 0)]

    def text_cosines(self, text_vectors: np.ndarray, pool: Pool,
                     half_life_seconds: float | None = USER_TEXT_HALF_LIFE) -> np.ndarray:
        """Cosine of each user's long-term text vector with the items of ``pool`` (users x
        pool depth; ``text_vectors`` rows follow ``catalog`` and are L2-normalized); cached
        in the pool."""
        cached = pool.text.get(id(text_vectors))
        if cached is not None and cached[0] is text_vectors:
            return cached[1]
        key = ("text", id(text_vectors), half_life_seconds)
        if key not in self.cache:
            self.cache[key] = self._text_users(text_vectors, half_life_seconds)
        users = self.cache[key]
        out = np.empty(pool.cols.shape, dtype=np.float64)
        for chunk in self._chunks():
            out[chunk] = np.einsum("ud,ucd->uc", users[chunk],
                                   text_vectors[np.maximum(pool.cols[chunk], 0)])
        pool.text[id(text_vectors)] = (text_vectors, out)
        return out

    def _text_users(self, text_vectors: np.ndarray,
                    half_life_seconds: float | None) -> np.ndarray:
        mine = self.scored_train
        mapped = Events(mine.user_ids, np.searchsorted(self.catalog, mine.item_ids),
                        mine.type_weights, mine.is_rating, mine.values, mine.occurred_at,
                        mine.event_ids)
        return np.asarray(text_user_vectors(mapped, self.users, text_vectors,
                                            half_life_seconds=half_life_seconds),
                          dtype=np.float32)

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

    def popular_top(self, half_life_seconds: float | None, k: int) -> np.ndarray:
        """Each scored user's ``k`` most popular unseen columns, as ``pyembed.popular_items``
        lists them: items with a positive popularity, by popularity then item id; -1 past
        them (rows follow ``users``).

        Example::

            print(holdout.score(holdout.popular_top(None, 10), 10).ndcg)
        """
        pop = self.popularity(half_life_seconds)
        ranked = np.lexsort((self.catalog, -pop))
        ranked = ranked[pop[ranked] > 0]
        if not len(ranked):
            return np.full((len(self.users), k), -1, dtype=np.int64)
        # The j-th unseen position of a ranking is j plus the number of seen positions p_i
        # (the user's i-th, sorted, from 0) with p_i - i <= j: no users x ranking matrix.
        position = np.full(len(self.catalog), -1, dtype=np.int64)
        position[ranked] = np.arange(len(ranked))
        rows = np.repeat(np.arange(len(self.users)), np.diff(self.seen.indptr))
        seen_at = position[self.seen.indices]
        rows, seen_at = rows[seen_at >= 0], seen_at[seen_at >= 0]
        order = np.lexsort((seen_at, rows))
        rows, seen_at = rows[order], seen_at[order]
        starts = np.searchsorted(rows, np.arange(len(self.users)))
        before = seen_at - (np.arange(len(rows)) - starts[rows])
        counts = np.zeros((len(self.users), k + 1), dtype=np.int64)
        np.add.at(counts, (rows, np.minimum(before, k)), 1)
        at = np.arange(k) + np.cumsum(counts, axis=1)[:, :k]
        return np.where(at < len(ranked), ranked[np.minimum(at, len(ranked) - 1)], -1)

    def score(self, top: np.ndarray, k: int, *,
              only: dict[int, set[int]] | None = None) -> ListScore:
        """Recall/NDCG@k, coverage and popular share of top-k lists (rows follow ``users``);
        ``only`` replaces the relevant sets (e.g. cold items only)."""
        relevant = self.relevant if only is None else only
        rows, wanted, counts = self._targets(relevant)
        if not len(rows):
            return ListScore(0, 0.0, 0.0, 0.0, 0.0)
        # vectorized score_lists (the same numbers): one key per (scored user, column)
        shown = top[rows, :k]
        n = len(self.catalog)
        valid = shown >= 0
        keys = np.arange(len(rows))[:, None] * n + shown
        found = wanted[np.minimum(np.searchsorted(wanted, keys), len(wanted) - 1)] == keys
        hit = valid & found
        discount = 1.0 / np.log2(np.arange(k) + 2.0)
        ideal = np.cumsum(discount)[np.minimum(k, counts) - 1]
        ndcg = (hit * discount[:shown.shape[1]]).sum(axis=1) / ideal
        listed = shown[valid]
        share = (np.isin(listed, np.fromiter(self.popular, dtype=np.int64)).sum() / len(listed)
                 if len(listed) else 0.0)
        return ListScore(len(rows), float(np.mean(hit.sum(axis=1) / counts)),
                         float(np.mean(ndcg)), len(np.unique(listed)) / n if n else 0.0,
                         float(share))

    def _targets(self, relevant: dict[int, set[int]]) -> tuple[np.ndarray, np.ndarray,
                                                                np.ndarray]:
        """(rows of the scored users, sorted keys row * catalog + column of their relevant
        columns, relevant count per scored user); cached per relevance dict (every fusion trial
        scores against the same one)."""
        cached = self.targets.get(id(relevant))
        if cached is not None and cached[0] is relevant:
            return cached[1]
        scored = sorted(u for u, items in relevant.items() if items)
        n = len(self.catalog)
        wanted = np.sort(np.concatenate(
            [row * n + np.fromiter(relevant[u], dtype=np.int64) for row, u in enumerate(scored)]
            or [np.zeros(0, dtype=np.int64)]))
        found = (np.searchsorted(self.users, scored).astype(np.int64), wanted,
                 np.array([len(relevant[u]) for u in scored], dtype=np.int64))
        self.targets[id(relevant)] = (relevant, found)
        return found

    def evaluate(self, model: BehaviorModel, fusion: Fusion | None = None, *, k: int = 10,
                 text_vectors: np.ndarray | None = None, pool: Pool | None = None) -> ListScore:
        """Score a model, fused as served when ``fusion`` has non-zero weights: each user's
        behavior top ``CANDIDATES_PER_K * k`` (the pool ``pyembed.recommend_behavior`` fuses)
        re-ranked by :meth:`Fusion.combine`. ``pool`` (:meth:`behavior_pool` of at least that
        depth) may be given when already computed.

        Example::

            print(holdout.evaluate(model, k=10).ndcg)
        """
        if pool is None:
            pool = self.behavior_pool(model, candidate_depth(k))
        if fusion is None or not (fusion.text or fusion.popularity):
            return self.score(pool.cols[:, :k], k)
        depth = candidate_depth(k)
        cols = np.maximum(pool.cols[:, :depth], 0)
        text = (self.text_cosines(text_vectors, pool)[:, :depth]
                if fusion.text and text_vectors is not None else None)
        pop = self.popularity(fusion.popularity_half_life_seconds)
        top_pop = float(pop.max()) if len(pop) else 0.0
        fused = fusion.combine(pool.scores[:, :depth], text,
                               (pop / top_pop if top_pop > 0 else pop)[cols])
        order = np.argsort(-fused, axis=1, kind="stable")[:, :k]
        top = np.take_along_axis(pool.cols[:, :depth], order, axis=1)
        top = np.where(np.take_along_axis(fused, order, axis=1) == -np.inf, -1, top)
        return self.score(top, k)


def candidate_depth(k: int) -> int:
    """How many behavior candidates ``pyembed.recommend_behavior`` fuses for k results."""
    return min(CANDIDATES_PER_K * k, MAX_CANDIDATES)
