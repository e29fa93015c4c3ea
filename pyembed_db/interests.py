"""Multi-interest users: weighted spherical k-means over the items a user liked.

Deterministic: the random generator is seeded with the user id and the items come in item-id
order, so the same events always give the same interests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Matrix = npt.NDArray[np.float32]
Vector = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Interests:
    """k unit-length centroids, each with its share of the user's positive weight."""

    centroids: Matrix  # (k, dim)
    shares: Vector  # (k,), sums to 1
    members: npt.NDArray[np.int64]  # cluster of each input row


def choose_k(n_items: int, k_max: int = 4, min_items: int = 10) -> int:
    """How many interests a user with ``n_items`` positively weighted items gets.

    Example::

        >>> choose_k(35), choose_k(9), choose_k(500)
        (3, 0, 4)
    """
    return min(k_max, n_items // max(min_items, 1))


def _norms(rows: Matrix) -> Matrix:
    # einsum: np.linalg.norm's own overhead was a tenth of a refresh's clustering
    norms: Matrix = np.sqrt(np.einsum("ij,ij->i", rows, rows))
    return norms


def _normalize(rows: Matrix) -> Matrix:
    norms = _norms(rows)
    norms[norms == 0] = 1.0
    return np.asarray(rows / norms[:, None], dtype=np.float32)


def _draw(rng: np.random.Generator, p: Vector) -> int:
    """``rng.choice(len(p), p=p)`` without its argument checks (a user refresh draws thousands
    of times): the same inverse-CDF lookup of one ``rng.random()``, so the same index."""
    cdf = np.cumsum(p)
    cdf /= cdf[-1]
    return int(np.searchsorted(cdf, rng.random(), side="right"))


def _init_centers(x: Matrix, w: Vector, k: int, rng: np.random.Generator) -> Matrix:
    """Weighted k-means++ seeding with cosine distance."""
    chosen = [_draw(rng, w / w.sum())]
    closest = x @ x[chosen[0]]  # each row's similarity to its nearest chosen center
    for _ in range(1, k):
        dist = np.clip(1.0 - closest, 0.0, None)
        p = w * dist**2
        if p.sum() <= 0:
            break
        chosen.append(_draw(rng, p / p.sum()))
        np.maximum(closest, x @ x[chosen[-1]], out=closest)
    return x[chosen]


def weighted_kmeans(vectors: npt.ArrayLike, weights: npt.ArrayLike, k: int, *, seed: int = 0,
                    iterations: int = 30) -> Interests:
    """Cluster unit ``vectors`` with positive ``weights`` into at most ``k`` interests.

    Example::

        >>> x = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]])
        >>> r = weighted_kmeans(x, [1, 1, 1, 3], 2, seed=1)
        >>> sorted(np.round(r.shares, 2).tolist())
        [0.33, 0.67]
    """
    # float32: the vectors are float32 already, and the products dominate a user refresh
    x = _normalize(np.asarray(vectors, dtype=np.float32))
    w = np.asarray(weights, dtype=np.float64)
    if len(x) == 0 or k < 1 or np.any(w <= 0):
        raise ValueError("need at least one vector, k >= 1 and positive weights")
    rng = np.random.default_rng(seed)
    centers = _init_centers(x, w, min(k, len(x)), rng)
    members = np.full(len(x), -1)
    weighted = w.astype(np.float32)[:, None] * x
    for _ in range(iterations):
        new_members = np.argmax(x @ centers.T, axis=1)
        if np.array_equal(new_members, members):
            break
        members = new_members
        onehot = (members[None, :] == np.arange(len(centers))[:, None]).astype(np.float32)
        sums = onehot @ weighted
        norms = _norms(sums)
        filled = norms > 0
        centers[filled] = sums[filled] / norms[filled, None]
    used = np.unique(members)
    shares = np.bincount(members, weights=w, minlength=len(centers))[used] / w.sum()
    return Interests(
        centroids=centers[used].astype(np.float32),
        shares=shares,
        members=np.searchsorted(used, members).astype(np.int64),  # renumbered 0..used-1
    )
