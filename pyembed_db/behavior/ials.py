"""Implicit-feedback ALS (Hu, Koren, Volinsky 2008) trained by the ``implicit`` library, and its
exact least-squares fold-in.

Confidence of a stored pair: ``c = 1 + alpha * x`` (x the transformed net weight); every other
pair has confidence 1 and preference 0. With item factors Y fixed, a user's factor solves

    (Y^T Y + reg I + Y_S^T diag(c_S - 1) Y_S) u = Y_S^T c_S

over the user's items S: one d x d solve, the same step ALS itself takes, so a folded-in user is
what one more ALS half-iteration would give it.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits


def fit(x: sp.csr_matrix, *, factors: int, regularization: float, alpha: float,
        iterations: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(item factors (items, factors) float32, Y^T Y + reg I (factors, factors) float64).

    Example::

        vectors, gram = fit(train_matrix, factors=64, regularization=0.05, alpha=10.0,
                            iterations=15)
    """
    from implicit.cpu.als import AlternatingLeastSquares

    confidence = sp.csr_matrix(x, dtype=np.float32, copy=True)
    confidence.data = 1.0 + alpha * confidence.data
    # implicit asks for single-threaded BLAS: it parallelizes over users itself
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(factors=factors, regularization=regularization,
                                        alpha=1.0, iterations=iterations, random_state=seed)
        model.fit(confidence, show_progress=False)
    items = np.asarray(model.item_factors, dtype=np.float32)
    y = items.astype(np.float64)
    gram = y.T @ y + regularization * np.eye(items.shape[1])
    return items, gram


def solve_user(vectors: np.ndarray, gram: np.ndarray, columns: np.ndarray,
               values: np.ndarray, alpha: float) -> np.ndarray:
    """The least-squares user factor for transformed weights ``values`` on ``columns``.

    Example::

        >>> y = np.eye(2, dtype=np.float32)
        >>> solve_user(y, np.eye(2) * 1.5, np.array([0]), np.array([1.0]), 1.0).tolist()
        [0.800000011920929, 0.0]
    """
    y = vectors[columns].astype(np.float64)
    c = 1.0 + alpha * np.asarray(values, dtype=np.float64)
    a = gram + (y * (c - 1.0)[:, None]).T @ y
    return np.asarray(np.linalg.solve(a, y.T @ c), dtype=np.float32)
