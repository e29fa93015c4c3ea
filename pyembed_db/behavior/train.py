"""Behavior models behind one shape: fixed item vectors, user vectors folded in from events.

The serving rule: the score of item j for user u is ``dot(fold_in(u's events), item_vectors[j])``
(pgvector's inner-product search). Two methods:

- ``ease_lr``: low-rank EASE (:mod:`.ease_lr`), linear in the history; the default while the
  catalog has at most ``EASE_ITEM_LIMIT`` items;
- ``ials``: implicit-feedback ALS (:mod:`.ials`) from the ``implicit`` library, with an exact
  least-squares fold-in; the default for larger catalogs.

``method="auto"`` picks by catalog size; the trained model records the method it used.
"""

from __future__ import annotations

import io
import json
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..errors import InvalidInputError, ModelError
from . import ease_lr, ials
from .interactions import (
    CONFIDENCE,
    FEEDBACK_RULES,
    Events,
    Interactions,
)

log = logging.getLogger(__name__)

METHODS = ("auto", "ease_lr", "ials")
EASE_ITEM_LIMIT = 20_000
STATE_VERSION = 1


@dataclass(frozen=True)
class BehaviorParams:
    """Everything that decides a trained model; JSON-serializable with ``asdict``.

    - ``method``: ``auto`` | ``ease_lr`` | ``ials``
    - ``factors``: vector dimension (ease_lr: eigen-components kept)
    - ``regularization``: ease_lr's lambda, or ALS's L2 weight
    - ``alpha``: ALS confidence ``1 + alpha * x`` (unused by ease_lr)
    - ``iterations``: ALS sweeps (unused by ease_lr)
    - ``half_life_seconds``: decay of the training events (None: none)
    - ``feedback``: how ratings weigh (:func:`.interactions.event_weights`)
    - ``confidence``: transform of the net weight x: ``linear`` x, ``log`` log(1 + x),
      ``binary`` 1
    - ``dropout``: ease_lr's extra regularization ``p / (1 - p) * diag(G)``
    - ``recent_half_life``: decay of a user's history at fold-in, in events: the pair whose
      latest event is the user's n-th most recent weighs ``0.5 ** (n / recent_half_life)``
      (None: no decay). The order of events carries what a user is into right now; event
      counts, not seconds, because people rate in bursts.

    Example::

        >>> BehaviorParams(method="ease_lr", factors=256, regularization=500.0).feedback
        'any'
    """

    method: str = "auto"
    factors: int = 256
    regularization: float = 500.0
    alpha: float = 10.0
    iterations: int = 15
    half_life_seconds: float | None = None
    feedback: str = "any"
    confidence: str = "binary"
    dropout: float = 0.0
    recent_half_life: float | None = 10.0

    def __post_init__(self) -> None:
        checks = [
            (self.method in METHODS, f"method must be one of {METHODS}"),
            (self.feedback in FEEDBACK_RULES, f"feedback must be one of {FEEDBACK_RULES}"),
            (self.confidence in CONFIDENCE, f"confidence must be one of {CONFIDENCE}"),
            (1 <= self.factors <= 16_000, "factors must be between 1 and 16000"),
            (self.regularization >= 0, "regularization must be >= 0"),
            (self.alpha >= 0, "alpha must be >= 0"),
            (self.iterations >= 1, "iterations must be >= 1"),
            (0 <= self.dropout < 1, "dropout must be in [0, 1)"),
            (self.recent_half_life is None or self.recent_half_life > 0,
             "recent_half_life must be > 0 or None"),
            (self.half_life_seconds is None or self.half_life_seconds > 0,
             "half_life_seconds must be > 0 or None"),
        ]
        for ok, message in checks:
            if not ok:
                raise InvalidInputError(message)

    def resolved(self, n_items: int) -> BehaviorParams:
        """The same parameters with ``auto`` replaced by the method for ``n_items`` items."""
        if self.method != "auto":
            return self
        return replace(self, method="ease_lr" if n_items <= EASE_ITEM_LIMIT else "ials")


@dataclass
class BehaviorModel:
    """Trained item vectors plus what fold-in needs (``state`` round-trips it as npz bytes).

    ``items`` are sorted int64 ids; ``item_vectors[j]`` belongs to ``items[j]``.
    """

    params: BehaviorParams
    items: np.ndarray
    item_vectors: np.ndarray
    encoder: np.ndarray | None = None     # ease_lr: user vector = x @ encoder
    gram: np.ndarray | None = None        # ials: Y^T Y + reg I
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def dimension(self) -> int:
        """Vector dimension (what the pgvector column holds)."""
        return int(self.item_vectors.shape[1])

    def _columns(self, item_ids: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Known columns and their summed positive weights; unknown items are ignored."""
        ids = np.asarray(item_ids, dtype=np.int64).ravel()
        w = np.asarray(weights, dtype=np.float64).ravel()
        if ids.shape != w.shape or not np.isfinite(w).all():
            raise InvalidInputError("item_ids and weights must be equal-length finite arrays")
        pos = np.minimum(np.searchsorted(self.items, ids), len(self.items) - 1)
        known = self.items[pos] == ids
        cols, inverse = np.unique(pos[known], return_inverse=True)
        summed = np.bincount(inverse, weights=w[known], minlength=len(cols))
        keep = summed > 0
        return cols[keep], summed[keep]

    def fold_in(self, item_ids: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """(d,) user vector from one user's confidences per item, as the training matrix holds
        them (duplicates add up; unknown items and values <= 0 are ignored). No retraining.
        :meth:`fold_in_events` computes the confidences from raw events.

        Example::

            u = model.fold_in(np.array([10, 42]), np.array([2.0, 1.0]))
            scores = model.item_vectors @ u
        """
        cols, x = self._columns(item_ids, weights)
        if len(cols) == 0:
            return np.zeros(self.dimension, dtype=np.float32)
        if self.params.method == "ease_lr":
            assert self.encoder is not None
            return np.asarray(x @ self.encoder[cols], dtype=np.float32)
        assert self.gram is not None
        return ials.solve_user(self.item_vectors, self.gram, cols, x, self.params.alpha)

    def fold_in_events(self, item_ids: np.ndarray, type_weights: np.ndarray,
                       is_rating: np.ndarray, values: np.ndarray, occurred_at: np.ndarray,
                       event_ids: np.ndarray | None = None) -> np.ndarray:
        """:meth:`fold_in` from one user's raw events: weighs them with the model's feedback
        rule and confidence, decays them by recency rank (``recent_half_life``). Ties in
        ``occurred_at`` are broken by ``event_ids`` (default: array order).

        Example::

            u = model.fold_in_events(np.array([3, 5, 8]), np.ones(3), np.ones(3, bool),
                                     np.array([5.0, 4.0, 2.0]), np.array([10.0, 20.0, 30.0]))
        """
        ids = np.asarray(item_ids, dtype=np.int64).ravel()
        events = Events.from_arrays(np.zeros(len(ids), dtype=np.int64), ids, type_weights,
                                    is_rating, values, occurred_at, event_ids)
        return self.fold_in_users(events)[1][0] if len(ids) else self.fold_in(ids, ids * 0.0)

    def fold_in_users(self, events: Events) -> tuple[np.ndarray, np.ndarray]:
        """(user ids, (users, d) vectors) of every user in ``events`` (all their events).

        Example::

            users, vectors = model.fold_in_users(events)
        """
        p = self.params
        users, matrix = events.history(self.items, feedback=p.feedback, confidence=p.confidence,
                                       half_life_events=p.recent_half_life)
        return users, self.fold_in_many(matrix)

    def fold_in_many(self, matrix: sp.csr_matrix) -> np.ndarray:
        """(users, d) user vectors; ``matrix`` rows are users, columns follow ``self.items``
        and hold confidences as :meth:`fold_in` takes them (values <= 0 are ignored).

        Example::

            users = model.fold_in_many(inter.restrict_items(model.items))
        """
        x = sp.csr_matrix(matrix, dtype=np.float64)
        if x.shape[1] != len(self.items):
            raise InvalidInputError(f"matrix needs {len(self.items)} columns, got {x.shape[1]}")
        x.data[x.data < 0] = 0.0
        x.eliminate_zeros()
        if self.params.method == "ease_lr":
            assert self.encoder is not None
            return np.asarray(x @ self.encoder, dtype=np.float32)
        assert self.gram is not None
        out = np.zeros((x.shape[0], self.dimension), dtype=np.float32)
        for row in range(x.shape[0]):
            lo, hi = x.indptr[row], x.indptr[row + 1]
            if hi > lo:
                out[row] = ials.solve_user(self.item_vectors, self.gram, x.indices[lo:hi],
                                           x.data[lo:hi], self.params.alpha)
        return out

    def state(self) -> bytes:
        """npz bytes holding everything fold-in needs (see :meth:`from_state`)."""
        arrays: dict[str, np.ndarray] = {"items": self.items, "item_vectors": self.item_vectors}
        if self.encoder is not None:
            arrays["encoder"] = self.encoder
        if self.gram is not None:
            arrays["gram"] = self.gram
        meta = {"version": STATE_VERSION, "params": asdict(self.params), "info": self.info}
        buffer = io.BytesIO()
        arrays["meta"] = np.array(json.dumps(meta))
        np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]
        return buffer.getvalue()

    @classmethod
    def from_state(cls, data: bytes) -> BehaviorModel:
        """The model saved by :meth:`state`; fold-ins are identical.

        Example::

            same = BehaviorModel.from_state(model.state())
        """
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                arrays = {name: npz[name] for name in npz.files}
            meta = json.loads(str(arrays.pop("meta")))
        except (ValueError, OSError, KeyError, json.JSONDecodeError) as exc:
            raise ModelError(f"not a behavior model state: {exc}") from exc
        if meta.get("version") != STATE_VERSION:
            raise ModelError(f"behavior model state version {meta.get('version')} is unknown")
        return cls(BehaviorParams(**meta["params"]), arrays["items"], arrays["item_vectors"],
                   arrays.get("encoder"), arrays.get("gram"), meta.get("info", {}))


def train(interactions: Interactions, params: BehaviorParams, *, seed: int = 0) -> BehaviorModel:
    """Train item vectors from an interaction matrix (see :mod:`.interactions`).

    The matrix is taken as built: build it with the same ``feedback``, ``confidence`` and
    ``half_life_seconds`` (:meth:`.interactions.Events.interactions` or
    :func:`train_events` do). The trained model's params record the resolved method.

    Example::

        model = train(inter, BehaviorParams(method="ease_lr", factors=256))
        model.item_vectors.shape    # (items, 256)
    """
    n_users, n_items = interactions.shape
    if n_users == 0 or n_items == 0:
        raise InvalidInputError("no positive interactions to train on")
    params = params.resolved(n_items)
    x = interactions.matrix.astype(np.float64)
    started = time.perf_counter()
    if params.method == "ease_lr":
        vectors, encoder = ease_lr.fit(x, lam=params.regularization, dropout=params.dropout,
                                       rank=params.factors, seed=seed)
        model = BehaviorModel(params, interactions.items, vectors, encoder=encoder)
    else:
        vectors, gram = ials.fit(x, factors=params.factors, regularization=params.regularization,
                                 alpha=params.alpha, iterations=params.iterations, seed=seed)
        model = BehaviorModel(params, interactions.items, vectors, gram=gram)
    seconds = time.perf_counter() - started
    model.info.update({"users": n_users, "items": n_items, "pairs": int(x.nnz),
                       "train_seconds": round(seconds, 3)})
    log.info("trained %s: %d users x %d items, %d pairs, d=%d in %.2f s", params.method,
             n_users, n_items, x.nnz, model.dimension, seconds)
    return model


def train_events(events: Events, params: BehaviorParams, *, seed: int = 0) -> BehaviorModel:
    """Build the matrix from raw events with ``params`` and train on it.

    Example::

        model = train_events(events, BehaviorParams())
    """
    return train(events.interactions(feedback=params.feedback, confidence=params.confidence,
                                     half_life_seconds=params.half_life_seconds), params, seed=seed)
