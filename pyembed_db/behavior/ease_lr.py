"""Low-rank EASE: the EASE solution factored into an encoder and a decoder.

EASE (Steck 2019) scores ``X B`` with ``B = I - P / diag(P)``, ``P = (G + Lambda)^-1``,
``G = X^T X`` and ``Lambda`` a diagonal regularization (``lambda`` plus, for the denoising
variant of Steck 2020, ``p / (1 - p) * diag(G)``). With the eigen-decomposition
``Lambda^-1/2 G Lambda^-1/2 = W diag(mu) W^T`` and ``s = mu / (mu + 1)``:

    P = Lambda^-1 - Lambda^-1/2 W diag(s) W^T Lambda^-1/2

The diagonal ``Lambda^-1`` and the identity in B only touch the items a user already has, which
recommendations exclude, so on unseen items ``X B`` ranks exactly like ``(X E) V^T`` with

    E = Lambda^-1/2 W diag(sqrt s)            (encoder, items x d)
    V = diag(1 / P_jj) Lambda^-1/2 W diag(sqrt s)   (decoder: the item vectors)

Keeping the d components with the largest ``s`` gives a rank-d model whose user vector
``x_u E`` is linear in the user's history: fold-in is a sparse row times E, no solve.

Dense path: items <= ``DENSE_ITEM_LIMIT`` (an eigh of items x items in float64: about 1 s at
1.7k items, 10 s at 4k, minutes at 10k). Beyond it the top-d eigenpairs come from a sparse
Lanczos solver (scipy ``eigsh``) that applies G through X without forming it, and ``P_jj`` is
approximated from those d components.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from ..linalg import inverse_diagonal
from .blas import one_thread

log = logging.getLogger(__name__)

DENSE_ITEM_LIMIT = 6000


def regularization_diagonal(gram_diagonal: np.ndarray, lam: float, dropout: float) -> np.ndarray:
    """``lambda + p / (1 - p) * diag(G)`` (Steck 2020's dropout-emphasized regularization).

    Example::

        >>> regularization_diagonal(np.array([10.0]), 5.0, 0.5).tolist()
        [15.0]
    """
    return lam + dropout / (1.0 - dropout) * np.asarray(gram_diagonal, dtype=np.float64)


Apply = Callable[[np.ndarray], np.ndarray]


def top_eigen(apply: Apply, n: int, rank: int, *, seed: int, oversample: int = 32,
              power: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """The ``rank`` largest eigenpairs (descending) of a symmetric PSD operator given as
    ``apply(block) -> operator @ block``: randomized subspace iteration (Halko, Martinsson,
    Tropp 2011), ``power + 1`` block products and one small dense eigh.

    Example::

        >>> m = np.diag([3.0, 2.0, 1.0])
        >>> mu, w = top_eigen(lambda b: m @ b, 3, 2, seed=0)
        >>> mu.round(6).tolist()
        [3.0, 2.0]
    """
    width = min(n, rank + oversample)
    basis = np.random.default_rng(seed).standard_normal((n, width))
    for _ in range(power + 1):
        product = apply(basis)
        # LAPACK's threaded QR/eigh slow down badly on a busy machine; one thread is steady
        with one_thread():
            basis, _r = np.linalg.qr(product)
    small = basis.T @ apply(basis)
    with one_thread():
        mu, v = np.linalg.eigh((small + small.T) / 2)
    order = np.argsort(-mu)[:rank]
    return mu[order], basis @ v[:, order]


def _sparse_gram_operator(x: sp.csr_matrix, scale: np.ndarray) -> Apply:
    """``Lambda^-1/2 X^T X Lambda^-1/2 @ block`` through X, without forming the gram."""
    xs = (x @ sp.diags(scale)).tocsr()
    xst = xs.T.tocsr()
    return lambda block: np.asarray(xst @ (xs @ block))


def fit(x: sp.csr_matrix, *, lam: float, dropout: float, rank: int,
        seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(item vectors V, encoder E), both (items, rank) float32, of a confidence matrix X.

    ``rank`` is capped at the number of items. Example::

        vectors, encoder = fit(train_matrix, lam=500.0, dropout=0.0, rank=256)
        user_vector = train_matrix[0] @ encoder       # scores: user_vector @ vectors.T
    """
    x = sp.csr_matrix(x, dtype=np.float64)
    n = x.shape[1]
    rank = max(1, min(rank, n))
    dense = n <= DENSE_ITEM_LIMIT
    if dense:  # one gram serves the eigenpairs and diag(P)
        gram = (x.T @ x).toarray()
        gram_diagonal = np.diag(gram).copy()
    else:
        gram_diagonal = np.asarray(x.multiply(x).sum(axis=0)).ravel()
    reg = regularization_diagonal(gram_diagonal, lam, dropout)
    scale = 1.0 / np.sqrt(reg)
    if dense:
        scaled = gram * scale[:, None] * scale[None, :]
        mu, w = top_eigen(lambda block: scaled @ block, n, rank, seed=seed)
        del scaled
        # the exact diagonal of P = (G + Lambda)^-1, as EASE itself uses
        gram[np.diag_indices_from(gram)] += reg
        p_diag = inverse_diagonal(gram)
    else:
        mu, w = top_eigen(_sparse_gram_operator(x, scale), n, rank, seed=seed)
        log.info("low-rank EASE: %d items > %d, diag(P) from the %d kept components",
                 n, DENSE_ITEM_LIMIT, rank)
        p_diag = (1.0 - np.einsum("ij,j,ij->i", w, mu / (mu + 1.0), w)) / reg
    shrink = np.sqrt(np.maximum(mu, 0.0) / (mu + 1.0))
    encoder = (w / np.sqrt(reg)[:, None]) * shrink[None, :]
    vectors = encoder / np.maximum(p_diag, 1e-12)[:, None]
    return vectors.astype(np.float32), encoder.astype(np.float32)
