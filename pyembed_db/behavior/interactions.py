"""The user x item matrix the behavior models learn from, built from weighted, decayed events.

An event weighs its event type's weight (``event_types.weight``); a ``rating`` event is then
scaled by a *feedback rule* (:func:`event_weights`):

- ``net``: ``value - 3``, the rule of ``pyembed.rule_weight`` (1 -> -2, 3 -> 0, 5 -> +2), so a
  rating <= 3 cancels or outweighs a view of the same item;
- ``any``: ``1 + max(value - 3, 0)``: every rating says "this user watched it", the liked ones
  say it louder (1..3 -> 1, 4 -> 2, 5 -> 3);
- ``binary``: every event weighs its type's weight, whatever the value.

Events on one (user, item) pair add up after decay ``0.5 ** (age / half_life)``; pairs whose
net weight is <= 0 are dropped. Which rule and which half-life train best is a parameter chosen
on validation (:mod:`.tune`), not a constant.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..errors import InvalidInputError

FEEDBACK_RULES = ("net", "any", "binary")
CONFIDENCE = ("linear", "log", "binary")


@dataclass(frozen=True)
class Interactions:
    """Net positive confidence of every (user, item) pair that has one.

    ``matrix[r, c]`` belongs to user ``users[r]`` and item ``items[c]``; both id arrays are
    sorted int64, the matrix is float32 CSR with only positive stored values.
    """

    users: np.ndarray
    items: np.ndarray
    matrix: sp.csr_matrix

    @property
    def shape(self) -> tuple[int, int]:
        """(users, items)."""
        return len(self.users), len(self.items)

    def restrict_items(self, items: np.ndarray) -> sp.csr_matrix:
        """The matrix re-indexed on ``items`` (sorted ids): unknown columns dropped, missing
        ones empty. Used to fold users in against a model trained on another catalog.

        Example::

            cols = inter.restrict_items(model.items)   # rows = inter.users
        """
        return align_columns(self.matrix, self.items, items)


def as_1d(name: str, values: object, dtype: type) -> np.ndarray:
    array: np.ndarray = np.asarray(values, dtype=dtype)
    if array.ndim != 1:
        raise InvalidInputError(f"{name} must be one-dimensional")
    return array


def event_weights(type_weights: np.ndarray, is_rating: np.ndarray, values: np.ndarray, *,
                  feedback: str = "net") -> np.ndarray:
    """Weight of each event under a feedback rule (see the module docstring).

    ``values`` of non-rating events are ignored; a missing rating value counts as 3 (as in
    ``pyembed.rule_weight``).

    Example::

        >>> event_weights(np.array([1.0, 1.0]), np.array([True, True]), np.array([5.0, 2.0]))
        array([ 2., -1.])
        >>> event_weights(np.array([1.0]), np.array([True]), np.array([2.0]), feedback="any")
        array([1.])
    """
    if feedback not in FEEDBACK_RULES:
        raise InvalidInputError(f"feedback must be one of {FEEDBACK_RULES}, got {feedback!r}")
    weight = as_1d("type_weights", type_weights, np.float64)
    rating = as_1d("is_rating", is_rating, bool)
    value = np.nan_to_num(as_1d("values", values, np.float64), nan=3.0)
    if not len(weight) == len(rating) == len(value):
        raise InvalidInputError("type_weights, is_rating and values must have the same length")
    if feedback == "binary":
        scale = np.ones_like(value)
    elif feedback == "any":
        scale = 1.0 + np.maximum(value - 3.0, 0.0)
    else:
        scale = value - 3.0
    return np.where(rating, weight * scale, weight)


def decay(ages_seconds: np.ndarray, half_life_seconds: float | None) -> np.ndarray:
    """``0.5 ** (age / half_life)``; all ones when ``half_life_seconds`` is None or <= 0.

    Example::

        >>> decay(np.array([0.0, 10.0]), 10.0)
        array([1. , 0.5])
    """
    ages = np.asarray(ages_seconds, dtype=np.float64)
    if half_life_seconds is None or half_life_seconds <= 0:
        return np.ones_like(ages)
    return np.power(0.5, np.maximum(ages, 0.0) / half_life_seconds)


def transform(values: np.ndarray, confidence: str) -> np.ndarray:
    """The confidence of positive net weights: ``linear`` x, ``log`` log(1 + x), ``binary`` 1.

    Example::

        >>> transform(np.array([1.0, 3.0]), "log").round(3).tolist()
        [0.693, 1.386]
    """
    if confidence not in CONFIDENCE:
        raise InvalidInputError(f"confidence must be one of {CONFIDENCE}, got {confidence!r}")
    v = np.asarray(values, dtype=np.float64)
    if confidence == "binary":
        return np.ones_like(v)
    return np.log1p(v) if confidence == "log" else v


def aggregate(rows: np.ndarray, cols: np.ndarray, weights: np.ndarray, ages: np.ndarray,
              shape: tuple[int, int], *, confidence: str,
              half_life_seconds: float | None) -> sp.csr_matrix:
    """One value per (row, col) pair with a positive net weight:
    ``transform(sum of weights) * decay(age of the pair's latest event)``.

    Example::

        >>> aggregate(np.array([0, 0]), np.array([0, 0]), np.array([2.0, 1.0]),
        ...           np.array([10.0, 20.0]), (1, 1), confidence="linear",
        ...           half_life_seconds=10.0).toarray().tolist()
        [[1.5]]
    """
    r = np.asarray(rows, dtype=np.int64)
    c = np.asarray(cols, dtype=np.int64)
    a = np.asarray(ages, dtype=np.float64)
    order = np.lexsort((a, c, r))  # pair by pair, youngest event first
    keys = r[order] * shape[1] + c[order]
    first = np.r_[True, keys[1:] != keys[:-1]] if len(keys) else np.zeros(0, dtype=bool)
    net = np.bincount(np.cumsum(first) - 1, weights=np.asarray(weights, np.float64)[order])
    keep = net > 0
    pair_rows, pair_cols, pair_age = r[order][first][keep], c[order][first][keep], \
        a[order][first][keep]
    values = transform(net[keep], confidence) * decay(pair_age, half_life_seconds)
    return sp.csr_matrix((values, (pair_rows, pair_cols)), shape=shape)


def build_interactions(user_ids: np.ndarray, item_ids: np.ndarray, weights: np.ndarray,
                       ages_seconds: np.ndarray, *, half_life_seconds: float | None,
                       confidence: str = "linear") -> Interactions:
    """Net weight per (user, item), positive pairs only, as confidences (:func:`aggregate`).

    ``weights`` are per event, already resolved (:func:`event_weights`); ``ages_seconds`` is
    each event's age (the caller picks the reference time: the newest event for training, the
    user's latest event for fold-in, as user refresh does).

    Example::

        >>> inter = build_interactions(np.array([7, 7, 8]), np.array([1, 2, 1]),
        ...                            np.array([2.0, -1.0, 1.0]), np.zeros(3),
        ...                            half_life_seconds=None)
        >>> inter.users.tolist(), inter.items.tolist(), inter.matrix.toarray().tolist()
        ([7, 8], [1], [[2.0], [1.0]])
    """
    users = as_1d("user_ids", user_ids, np.int64)
    items = as_1d("item_ids", item_ids, np.int64)
    w = as_1d("weights", weights, np.float64)
    ages = as_1d("ages_seconds", ages_seconds, np.float64)
    if not len(users) == len(items) == len(w) == len(ages):
        raise InvalidInputError("user_ids, item_ids, weights and ages must have the same length")
    if not (np.isfinite(w).all() and np.isfinite(ages).all()):
        raise InvalidInputError("weights and ages must be finite numbers")
    user_index, user_rows = np.unique(users, return_inverse=True)
    item_index, item_cols = np.unique(items, return_inverse=True)
    summed = aggregate(user_rows, item_cols, w, ages, (len(user_index), len(item_index)),
                       confidence=confidence, half_life_seconds=half_life_seconds)
    keep_rows = np.flatnonzero(np.diff(summed.indptr))
    keep_cols = np.unique(summed.indices)
    matrix = summed[keep_rows][:, keep_cols].astype(np.float32).tocsr()
    return Interactions(user_index[keep_rows], item_index[keep_cols], matrix)


def align_columns(matrix: sp.csr_matrix, have: np.ndarray, want: np.ndarray) -> sp.csr_matrix:
    """Re-index the columns of ``matrix`` (labelled by sorted ``have``) onto sorted ``want``.

    Example::

        >>> m = sp.csr_matrix(np.array([[1.0, 2.0]]))
        >>> align_columns(m, np.array([3, 5]), np.array([5, 9])).toarray().tolist()
        [[2.0, 0.0]]
    """
    coo = matrix.tocoo()
    labels = np.asarray(have, dtype=np.int64)[coo.col]
    position = np.searchsorted(want, labels)
    position = np.minimum(position, max(len(want) - 1, 0))
    found = (np.asarray(want)[position] == labels) if len(want) else np.zeros(0, bool)
    return sp.csr_matrix((coo.data[found], (coo.row[found], position[found])),
                         shape=(matrix.shape[0], len(want)), dtype=matrix.dtype)
