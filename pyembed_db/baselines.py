"""Baseline recommenders and one shared scorer, for judging every method on the same split.

Each recommender takes a sparse users x items training matrix (CSR, the stored values are the
confidences; rows are users, columns items) and returns an int64 array (users, k) of column
indices, best first, never an item the user has a stored value for (seen items excluded).
Rows with fewer than k unseen items are padded with -1.

- :func:`popularity`: items by number of users who have them;
- :func:`item_knn`: cosine item-item similarity, k nearest neighbours per item (Sarwar 2001);
- :func:`ease`: the closed form of Steck 2019, ``B = I - P / diag(P)``,
  ``P = (X^T X + lambda I)^-1``: O(items^3), a baseline for catalogs up to ~20k items;
- :func:`als`: implicit's alternating least squares (Hu, Koren, Volinsky 2008).

:func:`score_lists` computes recall@k and NDCG@k with :mod:`pyembed_db.evaluate`'s own
functions, plus coverage and the share of recommended items among the 100 most popular.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from .errors import InvalidInputError
from .linalg import spd_inverse
from .metrics import ndcg_at_k, recall_at_k

T = TypeVar("T")

# Dense scores are computed this many users x items cells at a time (16 MB of float32): blocks
# of 64 MB were fresh pages from the kernel every time, and faulting them in cost as much as the
# work on them.
SCORE_CELLS = 4_000_000
# Blocks scored at once by map_blocks: each holds a few copies of SCORE_CELLS cells.
MAX_BLOCK_THREADS = 8
# EASE inverts an items x items matrix: past this catalog size it needs more memory and time
# than a baseline should (20k items: 3.2 GB and minutes).
EASE_MAX_ITEMS = 20_000


def _check(matrix: sp.spmatrix, k: int) -> sp.csr_matrix:
    if not sp.issparse(matrix) or matrix.ndim != 2:
        raise InvalidInputError("the training matrix must be a 2-D scipy.sparse matrix")
    if k < 1:
        raise InvalidInputError("k must be >= 1")
    return sp.csr_matrix(matrix, dtype=np.float32)


def top_k_unseen(scores: np.ndarray, seen: sp.csr_matrix, k: int) -> np.ndarray:
    """Column indices of the k best scores per row, skipping each row's stored columns.

    Example::

        >>> seen = sp.csr_matrix(np.array([[1.0, 0.0, 0.0]]))
        >>> top_k_unseen(np.array([[9.0, 1.0, 5.0]]), seen, 2).tolist()
        [[2, 1]]
    """
    # float32 stays float32 (half the memory traffic; float64 holds the same values, so the
    # same order); anything else is compared in float64
    scores = np.array(scores, dtype=np.result_type(scores, np.float32), copy=True)
    rows, cols = seen.nonzero()
    scores[rows, cols] = -np.inf
    k_eff = min(k, scores.shape[1])
    part = _largest(scores, k_eff)
    order = np.take_along_axis(scores, part, axis=1).argsort(axis=1, kind="stable")[:, ::-1]
    best = np.take_along_axis(part, order, axis=1)
    best = np.where(np.take_along_axis(scores, best, axis=1) == -np.inf, -1, best)
    if k_eff < k:
        best = np.hstack([best, np.full((len(best), k - k_eff), -1)])
    return best.astype(np.int64)


# _largest bounds each row's k-th largest score by the k-th largest maximum of its blocks of
# this many columns.
BOUND_BLOCK = 128


def _largest(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the k largest scores of each row, in no particular order.

    The k largest block maxima are k distinct scores, so the k-th of them bounds the row's
    k-th largest score from below: only the blocks whose maximum reaches it can hold one of
    the k, and only their scores at or above it are partitioned. ``argpartition`` of whole
    rows cost more than the matrix product that made them (a validation pool at 1M events:
    6.5 of 11.7 CPU seconds); the bound costs one pass for the block maxima. Rows where the
    bound selects many scores (ties, or mostly seen columns) are partitioned whole.
    """
    n_rows, n = scores.shape
    blocks = n // BOUND_BLOCK
    if k == 0:
        return np.zeros((n_rows, 0), dtype=np.int64)
    if blocks < 2 * k:
        return np.argpartition(scores, n - k, axis=1)[:, n - k:]
    by_block = scores[:, :blocks * BOUND_BLOCK].reshape(n_rows, blocks, BOUND_BLOCK)
    maxima = by_block.max(axis=2)
    bound = np.partition(maxima, blocks - k, axis=1)[:, blocks - k]
    block_rows, block_ids = np.nonzero(maxima >= bound[:, None])
    # the columns past the last whole block are candidates of every row
    tail = np.arange(blocks * BOUND_BLOCK, n)
    values = np.hstack([by_block[block_rows, block_ids].reshape(-1),
                        scores[:, tail].reshape(-1)])
    rows = np.concatenate([np.repeat(block_rows, BOUND_BLOCK),
                           np.repeat(np.arange(n_rows), len(tail))])
    cols = np.concatenate([(block_ids[:, None] * BOUND_BLOCK
                            + np.arange(BOUND_BLOCK)).reshape(-1), np.tile(tail, n_rows)])
    keep = values >= bound[rows]
    values, rows, cols = values[keep], rows[keep], cols[keep]
    order = np.argsort(rows, kind="stable")
    values, rows, cols = values[order], rows[order], cols[order]
    counts = np.bincount(rows, minlength=n_rows)
    width = min(int(counts.max(initial=k)), 8 * k)
    wide = counts > width  # partitioned whole
    narrow = ~wide[rows]
    values, rows, cols = values[narrow], rows[narrow], cols[narrow]
    counts[wide] = 0
    slot = np.arange(len(rows)) - (np.cumsum(counts) - counts)[rows]
    padded = np.full((n_rows, width), -np.inf, dtype=scores.dtype)
    columns = np.zeros((n_rows, width), dtype=np.int64)
    padded[rows, slot] = values
    columns[rows, slot] = cols
    picked = np.argpartition(padded, width - k, axis=1)[:, width - k:]
    out = np.take_along_axis(columns, picked, axis=1)
    if wide.any():
        out[wide] = np.argpartition(scores[wide], n - k, axis=1)[:, n - k:]
    return out


Scorer = Callable[[slice, sp.csr_matrix], np.ndarray]


def row_blocks(rows: int, columns: int) -> list[slice]:
    """Slices of ``rows`` such that a dense block of them x ``columns`` holds at most
    :data:`SCORE_CELLS` cells.

    Example::

        >>> row_blocks(5, SCORE_CELLS // 2)
        [slice(0, 2, None), slice(2, 4, None), slice(4, 5, None)]
    """
    step = max(1, SCORE_CELLS // max(columns, 1))
    return [slice(lo, min(lo + step, rows)) for lo in range(0, rows, step)]


def map_blocks(function: Callable[[slice], T], blocks: list[slice]) -> list[T]:
    """``function`` of each block of rows (results in order), one block per core at a time.

    numpy's matrix products, partitions and sorts release the GIL, so threads use every core;
    BLAS is single-threaded meanwhile, so that the blocks do not oversubscribe the cores.

    Example::

        >>> [b.stop for b in map_blocks(lambda b: b, row_blocks(5, SCORE_CELLS // 2))]
        [2, 4, 5]
    """
    workers = min(len(blocks), os.cpu_count() or 1, MAX_BLOCK_THREADS)
    if workers <= 1:
        return [function(block) for block in blocks]
    with threadpool_limits(1, "blas"), ThreadPoolExecutor(workers) as pool:
        return list(pool.map(function, blocks))


def recommend_from_scores(matrix: sp.csr_matrix, k: int, scorer: Scorer) -> np.ndarray:
    """Top k unseen columns per row; ``scorer(row_slice, rows)`` scores a batch of rows densely.

    Example::

        >>> m = sp.csr_matrix(np.array([[1.0, 0.0, 0.0]]))
        >>> recommend_from_scores(m, 1, lambda s, rows: np.array([[3.0, 1.0, 2.0]])).tolist()
        [[2]]
    """
    def top(block: slice) -> np.ndarray:
        rows = matrix[block]
        return top_k_unseen(np.asarray(scorer(block, rows)), rows, k)

    blocks = map_blocks(top, row_blocks(*matrix.shape))
    return np.vstack(blocks) if blocks else np.empty((0, k), dtype=np.int64)


def popularity(matrix: sp.spmatrix, k: int) -> np.ndarray:
    """Most popular unseen items (users who have the item), ties by column index.

    Example::

        >>> m = sp.csr_matrix(np.array([[1.0, 1.0, 0.0], [0.0, 1.0, 0.0]]))
        >>> popularity(m, 1).tolist()
        [[2], [0]]
    """
    x = _check(matrix, k)
    counts = np.asarray((x > 0).sum(axis=0)).ravel()
    ranking = np.argsort(-counts, kind="stable")  # stable: ties by lower column first
    out = np.full((x.shape[0], k), -1, dtype=np.int64)
    for row in range(x.shape[0]):
        # each user walks the one ranking past their own items: k + |seen| steps at most
        seen = x.indices[x.indptr[row]:x.indptr[row + 1]]
        found = ranking[:k + len(seen)]
        found = found[~np.isin(found, seen)][:k]
        out[row, :len(found)] = found
    return out


def item_knn(matrix: sp.spmatrix, k: int, *, neighbours: int = 100) -> np.ndarray:
    """Item-based kNN (``implicit``'s CosineRecommender): cosine similarity of binary item
    columns, the ``neighbours`` most similar other items kept per item; a user's score for an
    item j sums, over the user's items i that kept j, their similarity. Items similar to none
    of the user's items are not listed (-1 pads). Sparse throughout: a dense items x items
    similarity needs 40 GB at 100k items.

    Example::

        >>> m = sp.csr_matrix(np.array([[1.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 0.0, 1.0]]))
        >>> item_knn(m, 1).tolist()
        [[2], [1], [0]]
    """
    from implicit.nearest_neighbours import CosineRecommender
    from implicit.utils import ParameterWarning

    binary = (_check(matrix, k) > 0).astype(np.float32).tocsr()
    model = CosineRecommender(K=neighbours + 1)  # each item is its own nearest neighbour
    with warnings.catch_warnings():  # implicit converts its own intermediate COO and warns
        warnings.simplefilter("ignore", ParameterWarning)
        model.fit(binary, show_progress=False)
    ids, _ = model.recommend(np.arange(binary.shape[0]), binary, N=k,
                             filter_already_liked_items=True)
    return _unseen(np.asarray(ids, dtype=np.int64), binary)


def _unseen(ids: np.ndarray, seen: sp.csr_matrix) -> np.ndarray:
    """``implicit`` fills a list that runs out of unseen items with seen or invalid ids:
    -1 there, as the other baselines pad."""
    valid = (ids >= 0) & (ids < seen.shape[1])
    rows = np.repeat(np.arange(ids.shape[0]), ids.shape[1]).reshape(ids.shape)
    hit = np.zeros(ids.shape, dtype=bool)
    hit[valid] = np.asarray(seen[rows[valid], ids[valid]]).ravel() != 0
    return np.where(valid & ~hit, ids, -1)


def ease_weights(matrix: sp.spmatrix, lam: float) -> np.ndarray:
    """The EASE item-item weight matrix B (zero diagonal) of a training matrix.

    Example::

        >>> m = sp.csr_matrix(np.array([[1.0, 1.0], [1.0, 0.0]]))
        >>> ease_weights(m, 1.0).round(3).tolist()
        [[0.0, 0.333], [0.5, 0.0]]
    """
    x = sp.csr_matrix(matrix, dtype=np.float64)
    gram = (x.T @ x).toarray()
    gram[np.diag_indices_from(gram)] += lam
    inverse = spd_inverse(gram)
    weights = -inverse / np.diag(inverse)
    np.fill_diagonal(weights, 0.0)
    return np.asarray(weights)


def ease(matrix: sp.spmatrix, k: int, *, lam: float = 500.0) -> np.ndarray:
    """EASE (Steck 2019) top-k on binary interactions.

    Example::

        >>> m = sp.csr_matrix(np.array([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]))
        >>> ease(m, 1, lam=1.0)[1].tolist()
        [1]
    """
    x = _check(matrix, k)
    binary = (x > 0).astype(np.float32)
    # float32 scores: the same top-10 lists as float64 on ML-1M, in 0.6x the time
    weights = ease_weights(binary, lam).astype(np.float32)
    return recommend_from_scores(binary, k, lambda block, rows: rows @ weights)


def als(matrix: sp.spmatrix, k: int, *, factors: int = 64, regularization: float = 0.01,
        alpha: float = 1.0, iterations: int = 15, seed: int = 0) -> np.ndarray:
    """implicit's ALS with its defaults (confidence = alpha * stored value), seen excluded.

    Example::

        top = als(train_matrix, 10, factors=64)
    """
    from implicit.cpu.als import AlternatingLeastSquares

    x = _check(matrix, k)
    # implicit asks for single-threaded BLAS (it parallelizes over users itself)
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(factors=factors, regularization=regularization,
                                        alpha=alpha, iterations=iterations, random_state=seed)
        model.fit(x, show_progress=False)
        ids, _ = model.recommend(np.arange(x.shape[0]), x, N=k, filter_already_liked_items=True)
    return _unseen(np.asarray(ids, dtype=np.int64), x)


@dataclass(frozen=True)
class ListScore:
    """Metrics of one method's recommendation lists."""

    users: int
    recall: float
    ndcg: float
    coverage: float
    popular_share: float


def score_lists(lists: Mapping[int, list[int]], relevant: Mapping[int, set[int]], k: int, *,
                catalog_size: int, popular: set[int]) -> ListScore:
    """Mean recall@k and NDCG@k over the users with relevant items, coverage (distinct items
    shown / catalog size) and the share of shown slots holding one of ``popular`` (e.g. the 100
    most popular training items).

    Example::

        >>> s = score_lists({1: [5, 6]}, {1: {6}}, 2, catalog_size=4, popular={5})
        >>> s.recall, s.coverage, s.popular_share
        (1.0, 0.5, 0.5)
    """
    users = [u for u in relevant if relevant[u]]
    if not users:
        return ListScore(0, 0.0, 0.0, 0.0, 0.0)
    shown = [lists.get(u, [])[:k] for u in users]
    pairs = list(zip(users, shown, strict=True))
    recall = float(np.mean([recall_at_k(s, relevant[u], k) for u, s in pairs]))
    ndcg = float(np.mean([ndcg_at_k(s, relevant[u], k) for u, s in pairs]))
    distinct = {item for s in shown for item in s}
    slots = sum(len(s) for s in shown)
    share = sum(item in popular for s in shown for item in s) / slots if slots else 0.0
    coverage = len(distinct) / catalog_size if catalog_size else 0.0
    return ListScore(len(users), recall, ndcg, coverage, share)
