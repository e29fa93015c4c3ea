"""Baseline recommenders against tiny numpy references computed by another route (no DB)."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from pyembed_db import baselines
from pyembed_db.errors import InvalidInputError


@pytest.fixture(scope="module")
def matrix() -> sp.csr_matrix:
    rng = np.random.default_rng(7)
    dense = (rng.random((30, 12)) < 0.3).astype(np.float32)
    dense[:, 11] = 0.0  # an item nobody has
    dense[0, :11] = 1.0  # a user who has seen all the others: her lists end in -1 padding
    return sp.csr_matrix(dense)


def _reference_top(scores: np.ndarray, seen: np.ndarray, k: int) -> list[list[int]]:
    out = []
    for row, mask in zip(scores, seen, strict=True):
        ranked = sorted((c for c in range(len(row)) if not mask[c]), key=lambda c: (-row[c], c))
        out.append((ranked + [-1] * k)[:k])
    return out


def test_popularity_counts_users_and_skips_seen(matrix: sp.csr_matrix) -> None:
    dense = matrix.toarray() > 0
    counts = Counter(c for row in dense for c in np.flatnonzero(row))
    scores = np.tile([counts.get(c, 0) for c in range(dense.shape[1])], (len(dense), 1))
    expected = _reference_top(scores.astype(float), dense, 4)
    assert baselines.popularity(matrix, 4).tolist() == expected
    assert baselines.popularity(matrix, 4)[0].tolist() == [11, -1, -1, -1]


def test_item_knn_matches_loops() -> None:
    dense = (np.random.default_rng(3).random((200, 12)) < 0.4).astype(float)
    matrix = sp.csr_matrix(dense)
    n = dense.shape[1]
    sim = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            norm = math.sqrt(dense[:, i].sum() * dense[:, j].sum())
            if i != j and norm:
                sim[i, j] = dense[:, i] @ dense[:, j] / norm
    neighbours = 3
    kept = np.zeros_like(sim)
    for i in range(n):  # the 3 most similar other items of item i
        ranked = sorted((j for j in range(n) if j != i), key=lambda j: -sim[i, j])
        assert sim[i, ranked[neighbours - 1]] > sim[i, ranked[neighbours]]  # no tie to break
        for j in ranked[:neighbours]:
            kept[i, j] = sim[i, j]
    got = baselines.item_knn(matrix, 5, neighbours=neighbours)
    scores = dense @ kept
    for row in range(len(dense)):  # same scores in the same order (ties may swap columns)
        want = _reference_top(scores[row:row + 1], dense[row:row + 1] > 0, 5)[0]
        # items similar to none of the user's items (score 0) are not listed
        assert [round(scores[row, c], 9) for c in got[row] if c >= 0] == \
            [round(scores[row, c], 9) for c in want if c >= 0 and scores[row, c] > 0]


def test_ease_matches_constrained_least_squares_per_column(matrix: sp.csr_matrix) -> None:
    x = (matrix.toarray() > 0).astype(float)
    lam = 3.0
    n = x.shape[1]
    reference = np.zeros((n, n))
    for j in range(n):  # argmin ||x_j - X b||^2 + lam ||b||^2 with b_j = 0, solved directly
        others = [i for i in range(n) if i != j]
        a = x[:, others]
        reference[others, j] = np.linalg.solve(a.T @ a + lam * np.eye(n - 1), a.T @ x[:, j])
    np.testing.assert_allclose(baselines.ease_weights(matrix, lam), reference, atol=1e-8)
    scores = x @ reference
    got = baselines.ease(matrix, 4, lam=lam)
    for row in range(1, len(x)):
        assert [round(scores[row, c], 8) for c in got[row]] == \
            sorted((round(scores[row, c], 8) for c in range(n) if not x[row, c]),
                   reverse=True)[:4]


def test_als_lists_are_implicits_own_recommendations(matrix: sp.csr_matrix) -> None:
    from implicit.cpu.als import AlternatingLeastSquares

    got = baselines.als(matrix, 3, factors=4, iterations=5, seed=3)
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(factors=4, iterations=5, random_state=3)
        model.fit(matrix, show_progress=False)
        ids, _ = model.recommend(np.arange(1, 30), matrix[1:], N=3,
                                 filter_already_liked_items=True)
    assert got[1:].tolist() == ids.tolist()


def test_score_lists_by_hand() -> None:
    lists = {1: [10, 11, 12], 2: [13, 10, 14]}
    relevant = {1: {11, 99}, 2: {14}, 3: set()}
    score = baselines.score_lists(lists, relevant, 3, catalog_size=10, popular={10})
    assert score.users == 2
    assert score.recall == pytest.approx((0.5 + 1.0) / 2)
    ndcg_1 = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    ndcg_2 = (1 / math.log2(4)) / 1.0
    assert score.ndcg == pytest.approx((ndcg_1 + ndcg_2) / 2)
    assert score.coverage == pytest.approx(5 / 10)
    assert score.popular_share == pytest.approx(2 / 6)


@pytest.mark.parametrize("columns, k", [(3000, 5), (3000, 40), (200, 7), (129, 1)])
def test_top_k_unseen_equals_a_full_sort(columns: int, k: int) -> None:
    """The block-maximum bound keeps exactly the k best unseen scores: with ties, a row of
    equal scores, and a row whose unseen scores are fewer than k."""
    rng = np.random.default_rng(columns + k)
    scores = np.round(rng.normal(size=(30, columns)), 1).astype(np.float32)
    scores[3] = 0.0
    seen = sp.random(30, columns, density=0.05, format="csr", random_state=k)
    mostly_seen = sp.lil_matrix(seen)
    mostly_seen[7, : columns - 2] = 1.0
    seen = sp.csr_matrix(mostly_seen)
    top = baselines.top_k_unseen(scores, seen, k)
    masked = np.where(seen.toarray() != 0, -np.inf, scores)
    expected = -np.sort(-masked, axis=1)[:, :k]
    got = np.where(top >= 0, np.take_along_axis(masked, np.maximum(top, 0), axis=1), -np.inf)
    assert np.array_equal(got, expected)
    assert (top[7] >= 0).sum() == min(2, k) and len({tuple(r) for r in top[:, :1]}) > 1
    for row in range(30):  # never a seen column, never one twice
        listed = top[row][top[row] >= 0]
        assert len(set(listed.tolist())) == len(listed)
        assert not set(listed.tolist()) & set(seen[row].indices.tolist())


def test_bad_input_is_rejected() -> None:
    with pytest.raises(InvalidInputError):
        baselines.popularity(np.ones((2, 2)), 1)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        baselines.ease(sp.csr_matrix(np.ones((2, 2))), 0)
