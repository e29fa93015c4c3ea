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


def _as_1d(name: str, values: object, dtype: type) -> np.ndarray:
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
    weight = _as_1d("type_weights", type_weights, np.float64)
    rating = _as_1d("is_rating", is_rating, bool)
    value = np.nan_to_num(_as_1d("values", values, np.float64), nan=3.0)
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


def build_interactions(user_ids: np.ndarray, item_ids: np.ndarray, weights: np.ndarray,
                       ages_seconds: np.ndarray, *,
                       half_life_seconds: float | None) -> Interactions:
    """Sum the decayed event weights per (user, item) and keep the positive pairs.

    ``weights`` are per event, already resolved (:func:`event_weights`); ``ages_seconds`` is
    each event's age (the caller picks the reference time: the user's latest event, as user
    refresh does, or the newest event overall).

    Example::

        >>> inter = build_interactions(np.array([7, 7, 8]), np.array([1, 2, 1]),
        ...                            np.array([2.0, -1.0, 1.0]), np.zeros(3),
        ...                            half_life_seconds=None)
        >>> inter.users.tolist(), inter.items.tolist(), inter.matrix.toarray().tolist()
        ([7, 8], [1], [[2.0], [1.0]])
    """
    users = _as_1d("user_ids", user_ids, np.int64)
    items = _as_1d("item_ids", item_ids, np.int64)
    w = _as_1d("weights", weights, np.float64)
    ages = _as_1d("ages_seconds", ages_seconds, np.float64)
    if not len(users) == len(items) == len(w) == len(ages):
        raise InvalidInputError("user_ids, item_ids, weights and ages must have the same length")
    if not (np.isfinite(w).all() and np.isfinite(ages).all()):
        raise InvalidInputError("weights and ages must be finite numbers")
    w = w * decay(ages, half_life_seconds)
    user_index, user_rows = np.unique(users, return_inverse=True)
    item_index, item_cols = np.unique(items, return_inverse=True)
    summed = sp.coo_matrix((w, (user_rows, item_cols)),
                           shape=(len(user_index), len(item_index))).tocsr()
    summed.sum_duplicates()
    summed.data[summed.data <= 0] = 0.0
    summed.eliminate_zeros()
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


@dataclass(frozen=True)
class Events:
    """Raw events as parallel arrays (one row per event), the input of training and tuning.

    ``occurred_at`` in epoch seconds; ``event_ids`` break ties in time (the order of the
    events table); ``type_weights`` = ``event_types.weight`` of each event's type.
    """

    user_ids: np.ndarray
    item_ids: np.ndarray
    type_weights: np.ndarray
    is_rating: np.ndarray
    values: np.ndarray
    occurred_at: np.ndarray
    event_ids: np.ndarray

    @classmethod
    def from_arrays(cls, user_ids: object, item_ids: object, type_weights: object,
                    is_rating: object, values: object, occurred_at: object,
                    event_ids: object | None = None) -> Events:
        """Validated, typed copies; ``event_ids`` default to the row order.

        Example::

            >>> ev = Events.from_arrays([1, 1], [5, 6], [1.0, 1.0], [True, True], [5, 2], [0, 9])
            >>> len(ev), ev.event_ids.tolist()
            (2, [0, 1])
        """
        columns = [_as_1d("user_ids", user_ids, np.int64), _as_1d("item_ids", item_ids, np.int64),
                   _as_1d("type_weights", type_weights, np.float64),
                   _as_1d("is_rating", is_rating, bool), _as_1d("values", values, np.float64),
                   _as_1d("occurred_at", occurred_at, np.float64)]
        n = len(columns[0])
        ids = np.arange(n) if event_ids is None else _as_1d("event_ids", event_ids, np.int64)
        if any(len(c) != n for c in columns) or len(ids) != n:
            raise InvalidInputError("every event column must have the same length")
        if not (np.isfinite(columns[2]).all() and np.isfinite(columns[5]).all()):
            raise InvalidInputError("type weights and times must be finite numbers")
        return cls(columns[0], columns[1], columns[2], columns[3], columns[4], columns[5], ids)

    def __len__(self) -> int:
        return len(self.user_ids)

    def subset(self, mask: np.ndarray) -> Events:
        """The events where ``mask`` (boolean or indices) selects them."""
        return Events(self.user_ids[mask], self.item_ids[mask], self.type_weights[mask],
                      self.is_rating[mask], self.values[mask], self.occurred_at[mask],
                      self.event_ids[mask])

    def weights(self, feedback: str) -> np.ndarray:
        """Per-event weights under a feedback rule (:func:`event_weights`)."""
        return event_weights(self.type_weights, self.is_rating, self.values, feedback=feedback)

    def interactions(self, *, feedback: str, half_life_seconds: float | None) -> Interactions:
        """The training matrix: weights under ``feedback``, decayed from the newest event.

        Example::

            inter = events.interactions(feedback="any", half_life_seconds=None)
        """
        if len(self) == 0:
            raise InvalidInputError("no events")
        ages = self.occurred_at.max() - self.occurred_at
        return build_interactions(self.user_ids, self.item_ids, self.weights(feedback), ages,
                                  half_life_seconds=half_life_seconds)
