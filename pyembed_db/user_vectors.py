"""Long-term, short-term and interest vectors of a batch of users, from one read of their
item weights: what the worker writes for each user it refreshes (:mod:`pyembed_db.users`).

The vectors are those of ``pyembed.refresh_user_set`` (sql/functions/30_users.sql), the
refresh that SQL callers such as pg_cron run: the decayed net weight of each (user, item)
(``pyembed.user_item_weights``), then normalize(mean(liked) - gamma * mean(disliked)), each
mean weighted by those weights. The worker computes them here from the events it reads anyway
for the behavior fold-in, with one sparse product per batch: pgvector has no vector-by-scalar
product, so SQL builds a scaled vector for every (user, item) row, and the SQL refresh took
twice the time of everything else in a full refresh. The settings come from the database
(``pyembed.half_life``...), and tests/test_user_vectors.py checks that both write the same
rows.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg
from scipy import sparse

from . import sqlfiles
from .behavior import Events
from .behavior.blas import one_thread
from .behavior.interactions import decay, event_weights
from .bulk import UserEmbeddingRow, insert_user_embeddings
from .interests import choose_k, weighted_kmeans
from .item_vectors import read_item_vectors
from .training import read_events

KINDS = ("long_term", "short_term", "interest")


def kinds_with(interests: bool) -> tuple[str, ...]:
    """The kinds a refresh writes: every kind, or all but the interests."""
    return KINDS if interests else KINDS[:2]

Ids = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ItemWeights:
    """One row per (user, item), ordered by user then item: what ``pyembed.user_item_weights``
    returns for the same events and settings."""

    users: Ids
    items: Ids
    w_long: Floats
    w_short: Floats  # NaN: no event in the short-term window
    n_long: Ids
    n_short: Ids
    watermarks: Ids  # the user's newest event id, on each of their rows

    @classmethod
    def from_events(cls, events: Events, half_life: float, window: float) -> ItemWeights:
        """Each event weighs its rule weight (:func:`event_weights`, ``net``: the rule of
        ``pyembed.rule_weight``) times ``0.5 ** (age / half_life)``, its age counted from its
        user's newest event (no decay when ``half_life`` <= 0); it is recent when at most
        ``window`` seconds older than that newest event. Seconds, as floats."""
        order = np.lexsort((events.event_ids, events.item_ids, events.user_ids))
        users, items = events.user_ids[order], events.item_ids[order]
        at, ids = events.occurred_at[order], events.event_ids[order]
        user_starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
        user_rows = np.diff(np.r_[user_starts, len(users)])
        newest = np.repeat(np.maximum.reduceat(at, user_starts), user_rows)
        watermarks = np.repeat(np.maximum.reduceat(ids, user_starts), user_rows)
        age = newest - at
        weight = (event_weights(events.type_weights[order], events.is_rating[order],
                                events.values[order], feedback="net")
                  * decay(age, half_life if half_life > 0 else None))
        # In whole microseconds, as PostgreSQL compares timestamps: float seconds since 1970
        # are off by up to 0.25 µs, enough to move an event on the window's edge.
        recent = np.round(age * 1e6) <= round(window * 1e6)
        pair_starts = np.flatnonzero(np.r_[True, (users[1:] != users[:-1])
                                           | (items[1:] != items[:-1])])
        n_short = np.add.reduceat(recent.astype(np.int64), pair_starts)
        w_short = np.add.reduceat(np.where(recent, weight, 0.0), pair_starts)
        return cls(users[pair_starts], items[pair_starts],
                   np.add.reduceat(weight, pair_starts),
                   np.where(n_short > 0, w_short, np.nan),
                   np.diff(np.r_[pair_starts, len(users)]), n_short,
                   watermarks[pair_starts])

    def subset(self, mask: npt.NDArray[np.bool_]) -> ItemWeights:
        """The rows where ``mask`` is true."""
        return ItemWeights(self.users[mask], self.items[mask], self.w_long[mask],
                           self.w_short[mask], self.n_long[mask], self.n_short[mask],
                           self.watermarks[mask])

    def segments(self) -> tuple[Ids, Ids, Ids]:
        """(user ids, first row, end row) of each user's run of rows."""
        starts = np.flatnonzero(np.r_[True, self.users[1:] != self.users[:-1]])
        return self.users[starts], starts, np.r_[starts[1:], len(self.users)]


def write_user_vectors(conn: psycopg.Connection[Any], user_ids: Sequence[int], model_id: int,
                       *, kinds: Sequence[str] = KINDS, events: Events | None = None) -> int:
    """Recompute the vectors of ``kinds`` (long_term, short_term, interest) of ``user_ids`` in
    ``model_id`` from their events, replacing the old ones, in the caller's transaction;
    returns vectors written. A user with no positively weighted item that has a vector gets
    none of those kinds. ``events``: the users' events as :func:`read_events` returns them,
    when the caller has read them already.

    Example::

        write_user_vectors(conn, [1, 2, 3], model_id=1); conn.commit()
    """
    if set(kinds) - set(KINDS):
        raise ValueError(f"vector kinds are among {KINDS}, got {tuple(kinds)}")
    if not user_ids:
        return 0
    row = conn.execute(sqlfiles.read("queries/user_vector_settings.sql")).fetchone()
    assert row is not None
    half_life, window, gamma = float(row[0]), float(row[1]), float(row[2])
    k_max, min_items = int(row[3]), int(row[4])
    conn.execute(sqlfiles.read("queries/user_vector_delete.sql"),
                 {"users": list(user_ids), "model_id": model_id, "kinds": list(kinds)})
    if events is None:
        events, _ = read_events(conn, user_ids)
    if not len(events):
        return 0
    weights = ItemWeights.from_events(events, half_life, window)
    item_ids, matrix = read_item_vectors(conn, model_id, np.unique(weights.items))
    weights = weights.subset(np.isin(weights.items, item_ids))  # items without a vector
    rows = np.searchsorted(item_ids, weights.items)  # each weight's row of the matrix
    found: list[UserEmbeddingRow] = []
    for kind, w, counts in (("long_term", weights.w_long, weights.n_long),
                            ("short_term", weights.w_short, weights.n_short)):
        if kind in kinds:
            found.extend(_mean_vectors(model_id, kind, weights, w, counts, rows, matrix, gamma))
    if "interest" in kinds:
        found.extend(_interests(model_id, weights, rows, matrix, k_max, min_items))
    return insert_user_embeddings(conn, found)


def _mean_vectors(model_id: int, kind: str, weights: ItemWeights, w: Floats, counts: Ids,
                  rows: Ids, matrix: npt.NDArray[np.float32],
                  gamma: float) -> Iterator[UserEmbeddingRow]:
    """normalize(mean(liked) - gamma * mean(disliked)) of each user with a liked item."""
    users, starts, _ = weights.segments()
    segment = np.repeat(np.arange(len(users)), np.diff(np.r_[starts, len(weights.users)]))
    liked = np.where(w > 0, w, 0.0)  # NaN (no recent event) compares false: weight 0
    disliked = np.where(w < 0, -w, 0.0)
    liked_sum = np.bincount(segment, liked, minlength=len(users))
    disliked_sum = np.bincount(segment, disliked, minlength=len(users))
    # One product: each row's coefficient in its user's mean(liked) - gamma * mean(disliked).
    coefficients = (liked / np.where(liked_sum > 0, liked_sum, 1.0)[segment]
                    - gamma * disliked / np.where(disliked_sum > 0, disliked_sum, 1.0)[segment])
    vectors = sparse.csr_array((coefficients, (segment, rows)),
                               shape=(len(users), len(matrix))) @ matrix
    norms = np.linalg.norm(vectors, axis=1)
    event_counts = np.bincount(segment, counts, minlength=len(users)).astype(np.int64)
    for n in np.flatnonzero((liked_sum > 0) & (norms > 0)).tolist():
        yield (model_id, int(users[n]), kind, 0, (vectors[n] / norms[n]).astype(np.float32),
               1.0, int(event_counts[n]), int(weights.watermarks[starts[n]]))


def _interests(model_id: int, weights: ItemWeights, rows: Ids, matrix: npt.NDArray[np.float32],
               k_max: int, min_items: int) -> Iterator[UserEmbeddingRow]:
    """Up to k_max weighted k-means centroids of each user's liked items
    (:func:`pyembed_db.interests.weighted_kmeans`); a user with k < 2 gets none."""
    liked = weights.w_long > 0
    users, starts, ends = weights.segments()
    # One BLAS thread: threads cost more than they save on matrices of a few hundred rows
    # (7x slower on 2 cores shared with the server).
    with one_thread():
        for user_id, lo, hi in zip(users.tolist(), starts.tolist(), ends.tolist(), strict=True):
            mine = np.flatnonzero(liked[lo:hi]) + lo
            k = choose_k(len(mine), k_max, min_items)
            if k < 2:
                continue
            found = weighted_kmeans(matrix[rows[mine]], weights.w_long[mine], k, seed=user_id)
            member_counts = np.bincount(found.members, weights=weights.n_long[mine],
                                        minlength=len(found.centroids))
            for slot, (centroid, share) in enumerate(zip(found.centroids, found.shares,
                                                         strict=True)):
                yield (model_id, user_id, "interest", slot, centroid, float(share),
                       int(member_counts[slot]), int(weights.watermarks[lo]))
