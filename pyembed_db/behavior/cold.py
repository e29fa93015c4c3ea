"""Behavior vectors for cold items (no or few events) from their text vectors.

A ridge regression learned on warm items maps text space to behavior space:
``W = argmin ||T W - B||^2 + ridge ||W||^2`` with T the warm items' text vectors and B their
trained behavior vectors, so a new item gets ``t @ W`` the moment it is embedded, and lands
near the warm items whose texts resemble its own. A bias column is part of the map (the mean
behavior vector), so an item with an uninformative text gets the average item's vector.

:func:`cold_vectors` maps directions only and gives every cold item the norm of the least
used warm items (:func:`cold_norm`): under inner-product scoring an item's norm is its
popularity prior, and a cold item must not outrank the catalog's popular items for everyone.
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidInputError


def _matrix(text_vectors: np.ndarray) -> np.ndarray:
    t = np.asarray(text_vectors, dtype=np.float64)
    if t.ndim != 2:
        raise InvalidInputError("text vectors must be a 2-D array (items, dimension)")
    return t


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
    t = _matrix(text_vectors)
    b = np.asarray(behavior_vectors, dtype=np.float64)
    if b.ndim != 2 or len(b) != len(t):
        raise InvalidInputError("behavior vectors must be (items, d) with one row per text row")
    if ridge < 0 or not np.isfinite(ridge):
        raise InvalidInputError("ridge must be a finite number >= 0")
    w = np.ones(len(t)) if sample_weights is None else np.asarray(sample_weights, np.float64)
    if w.shape != (len(t),) or (w < 0).any():
        raise InvalidInputError("sample_weights must be one non-negative weight per item")
    # The normal equations of [t, 1] by blocks: a copy of t with a ones column cost 0.8 s for
    # 68k warm items, as much as the products.
    weighted = t * w[:, None]
    column = weighted.sum(axis=0)
    gram = np.block([[weighted.T @ t + ridge * np.eye(t.shape[1]), column[:, None]],
                     [column[None, :], np.array([[w.sum()]])]])
    rhs = np.vstack([weighted.T @ b, w @ b])
    return np.asarray(np.linalg.solve(gram, rhs), dtype=np.float32)


def map_text(text_vectors: np.ndarray, text_map: np.ndarray) -> np.ndarray:
    """Behavior-space vectors (items, d) of items from their text vectors and a fitted map.

    Example::

        vectors = map_text(new_item_text_vectors, text_map)   # store beside the trained ones
    """
    t = _matrix(text_vectors)
    if text_map.ndim != 2 or text_map.shape[0] != t.shape[1] + 1:
        raise InvalidInputError(
            f"text map expects {text_map.shape[0] - 1}-d text vectors, got {t.shape[1]}")
    return np.asarray(t @ text_map[:-1] + text_map[-1], dtype=np.float32)


def cold_norm(norms: np.ndarray, counts: np.ndarray, quantile: float = 0.1) -> float:
    """The norm of a cold item's vector: the median norm of the warm items with the fewest
    events (counts up to their ``quantile``).

    In EASE and ALS an item's norm grows with its events. A map fitted on the raw vectors gave
    cold items about the count-weighted mean norm, that of the popular items: on the 100k
    synthetic scale data, 1,934 cold items came out at norm 13 (items with 1-2 events: 0.3-0.6)
    and filled every user's top 10, recall@10 0.003 against popularity's 0.18.

    Example::

        >>> cold_norm(np.array([0.5, 0.7, 9.0, 12.0]), np.array([1, 1, 50, 80]), 0.5)
        0.6
    """
    counts = np.asarray(counts, dtype=np.float64)
    few = counts <= np.quantile(counts, quantile)
    return float(np.median(np.asarray(norms, dtype=np.float64)[few]))


def cold_vectors(warm_text: np.ndarray, warm_vectors: np.ndarray, warm_counts: np.ndarray,
                 cold_text: np.ndarray, *, ridge: float = 1.0) -> np.ndarray:
    """Behavior vectors (cold items, d) from text: the direction mapped by a ridge map fitted
    on the warm items' directions (errors weighted by their event counts), the norm
    :func:`cold_norm` of the warm items.

    Example::

        vectors = cold_vectors(text[warm], model_vectors[warm], counts, text[cold])
    """
    warm_vectors = np.asarray(warm_vectors, dtype=np.float64)
    norms = np.linalg.norm(warm_vectors, axis=1)
    directions = warm_vectors / np.maximum(norms, 1e-12)[:, None]
    text_map = fit_text_map(warm_text, directions, ridge=ridge, sample_weights=warm_counts)
    mapped = map_text(cold_text, text_map).astype(np.float64)
    lengths = np.maximum(np.linalg.norm(mapped, axis=1), 1e-12)[:, None]
    return np.asarray(mapped * (cold_norm(norms, warm_counts) / lengths), dtype=np.float32)


def cold_items(model_items: np.ndarray, model_vectors: np.ndarray, text_items: np.ndarray,
               text_vectors: np.ndarray, event_items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The items with a text vector and no trained one (``text_items`` order) and their vectors
    (:func:`cold_vectors`, each warm item weighted by its number of events in ``event_items``);
    none when fewer than 2 trained items have a text vector. ``model_items`` is sorted, as a
    trained model keeps it. Training stores these beside the trained vectors, and the
    validation scores them, so that both rank the same catalog.

    Example::

        ids, vectors = cold_items(model.items, model.item_vectors, text_ids, text, events.item_ids)
    """
    text_items = np.asarray(text_items, dtype=np.int64)
    trained = np.isin(text_items, model_items)
    if trained.sum() < 2 or trained.all():
        return np.zeros(0, dtype=np.int64), np.zeros((0, np.shape(model_vectors)[1]), np.float32)
    warm = text_items[trained]
    # the model was trained on these events, so every warm item is among them
    counted, counts = np.unique(np.asarray(event_items, dtype=np.int64), return_counts=True)
    at = np.minimum(np.searchsorted(counted, warm), len(counted) - 1)
    warm_counts = np.where(counted[at] == warm, counts[at], 1).astype(np.float64)
    vectors = cold_vectors(text_vectors[trained],
                           np.asarray(model_vectors)[np.searchsorted(model_items, warm)],
                           warm_counts, text_vectors[~trained])
    return text_items[~trained], vectors
