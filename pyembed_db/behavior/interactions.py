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
    users = _as_1d("user_ids", user_ids, np.int64)
    items = _as_1d("item_ids", item_ids, np.int64)
    w = _as_1d("weights", weights, np.float64)
    ages = _as_1d("ages_seconds", ages_seconds, np.float64)
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


def recency_ranks(user_ids: np.ndarray, occurred_at: np.ndarray,
                  event_ids: np.ndarray) -> np.ndarray:
    """Position of each event from its user's latest one: 0 for the latest (by time, then
    event id), 1 for the one before, ...

    Example::

        >>> recency_ranks(np.array([1, 1, 2, 1]), np.array([5.0, 9.0, 1.0, 5.0]),
        ...               np.array([0, 1, 2, 3])).tolist()
        [2, 0, 0, 1]
    """
    order = np.lexsort((event_ids, occurred_at, user_ids))
    users = np.asarray(user_ids)[order]
    _, starts, counts = np.unique(users, return_index=True, return_counts=True)
    group = np.repeat(np.arange(len(starts)), counts)
    ranks = np.empty(len(order), dtype=np.int64)
    ranks[order] = starts[group] + counts[group] - 1 - np.arange(len(order))
    return ranks


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

    def interactions(self, *, feedback: str, half_life_seconds: float | None,
                     confidence: str = "linear") -> Interactions:
        """The training matrix: weights under ``feedback``, ages from the newest event.

        Example::

            inter = events.interactions(feedback="any", half_life_seconds=None)
        """
        if len(self) == 0:
            raise InvalidInputError("no events")
        ages = self.occurred_at.max() - self.occurred_at
        return build_interactions(self.user_ids, self.item_ids, self.weights(feedback), ages,
                                  half_life_seconds=half_life_seconds, confidence=confidence)

    def history(self, items: np.ndarray, *, feedback: str, confidence: str,
                half_life_events: float | None) -> tuple[np.ndarray, sp.csr_matrix]:
        """(users, matrix): each user's fold-in input over the model's ``items`` (sorted ids).

        A pair's confidence is decayed by the recency rank of its latest event
        (:func:`recency_ranks`): ``0.5 ** (rank / half_life_events)``, so the user's last
        events weigh most whatever their timestamps. Events on unknown items still count in
        the ranks; pairs on them are dropped.

        Example::

            users, x = events.history(model.items, feedback="any", confidence="log",
                                      half_life_events=10)
        """
        users, rows = np.unique(self.user_ids, return_inverse=True)
        ranks = recency_ranks(self.user_ids, self.occurred_at, self.event_ids)
        items = np.asarray(items, dtype=np.int64)
        position = np.searchsorted(items, self.item_ids)
        known = np.zeros(len(self), dtype=bool)
        if len(items):
            known = items[np.minimum(position, len(items) - 1)] == self.item_ids
        matrix = aggregate(rows[known], position[known], self.weights(feedback)[known],
                           ranks[known].astype(np.float64), (len(users), len(items)),
                           confidence=confidence, half_life_seconds=half_life_events)
        return users, matrix
