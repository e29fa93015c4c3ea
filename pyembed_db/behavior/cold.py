"""Behavior vectors for cold items (no or few events) from their text vectors.

A ridge regression learned on warm items maps text space to behavior space:
``W = argmin ||T W - B||^2 + ridge ||W||^2`` with T the warm items' text vectors and B their
trained behavior vectors, so a new item gets ``t @ W`` the moment it is embedded, and lands
near the warm items whose texts resemble its own. A bias column is part of the map (the mean
behavior vector), so an item with an uninformative text gets the average item's vector.
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidInputError


def _with_bias(text_vectors: np.ndarray) -> np.ndarray:
    t = np.asarray(text_vectors, dtype=np.float64)
    if t.ndim != 2:
        raise InvalidInputError("text vectors must be a 2-D array (items, dimension)")
    return np.hstack([t, np.ones((len(t), 1))])


def fit_text_map(text_vectors: np.ndarray, behavior_vectors: np.ndarray, *, ridge: float,
                 sample_weights: np.ndarray | None = None) -> np.ndarray:
    """Ridge map (text_dim + 1, d) from text vectors (rows: warm items) to behavior vectors.

    The last row is the bias. ``sample_weights`` (e.g. the items' event counts) weigh each
    warm item's squared error; the bias is not regularized.

    Example::

        >>> t = np.array([[1.0, 0.0], [0.0, 1.0]])
        >>> w = fit_text_map(t, np.array([[2.0], [-2.0]]), ridge=1e-6)
        >>> map_text(np.array([[1.0, 0.0]]), w).round(3).tolist()
        [[2.0]]
    """
    t = _with_bias(text_vectors)
    b = np.asarray(behavior_vectors, dtype=np.float64)
    if b.ndim != 2 or len(b) != len(t):
        raise InvalidInputError("behavior vectors must be (items, d) with one row per text row")
    if ridge < 0 or not np.isfinite(ridge):
        raise InvalidInputError("ridge must be a finite number >= 0")
    w = np.ones(len(t)) if sample_weights is None else np.asarray(sample_weights, np.float64)
    if w.shape != (len(t),) or (w < 0).any():
        raise InvalidInputError("sample_weights must be one non-negative weight per item")
    penalty = np.full(t.shape[1], float(ridge))
    penalty[-1] = 0.0
    gram = (t * w[:, None]).T @ t + np.diag(penalty)
    return np.asarray(np.linalg.solve(gram, (t * w[:, None]).T @ b), dtype=np.float32)


def map_text(text_vectors: np.ndarray, text_map: np.ndarray) -> np.ndarray:
    """Behavior-space vectors (items, d) of items from their text vectors and a fitted map.

    Example::

        vectors = map_text(new_item_text_vectors, text_map)   # store beside the trained ones
    """
    t = _with_bias(text_vectors)
    if text_map.ndim != 2 or text_map.shape[0] != t.shape[1]:
        raise InvalidInputError(
            f"text map expects {text_map.shape[0] - 1}-d text vectors, got {t.shape[1] - 1}")
    return np.asarray(t @ text_map, dtype=np.float32)
