"""Validation split carved from the training events, and the choice of parameters on it.

Nothing here looks at a test split: :func:`validation_split` holds out the last ``holdout``
events of every user who has more (by time, ties by event id), exactly like the evaluation's
own split, but applied to the training events only. :func:`tune` then picks the model
parameters and the fusion weights (:mod:`.fusion`) that maximize NDCG@k on that split.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from ..baselines import ListScore
from ..errors import InvalidInputError
from .cold import cold_items
from .events import Events
from .fusion import Fusion
from .train import BehaviorModel, BehaviorParams, train_events
from .validation import Holdout, Pool, candidate_depth

log = logging.getLogger(__name__)
DAY = 86400.0


def holdout_mask(user_ids: np.ndarray, occurred_at: np.ndarray, event_ids: np.ndarray,
                 holdout: int) -> np.ndarray:
    """True for the last ``holdout`` events (by time, then event id) of each user holding more
    than ``holdout`` events.

    Example::

        >>> holdout_mask(np.array([1, 1, 1, 2]), np.array([3.0, 1.0, 2.0, 0.0]),
        ...              np.arange(4), 1).tolist()
        [True, False, False, False]
    """
    if holdout < 1:
        raise InvalidInputError("holdout must be >= 1")
    order = np.lexsort((event_ids, occurred_at, user_ids))
    users = user_ids[order]
    _, starts, counts = np.unique(users, return_index=True, return_counts=True)
    group = np.repeat(np.arange(len(starts)), counts)
    from_end = starts[group] + counts[group] - 1 - np.arange(len(users))
    mask = np.zeros(len(users), dtype=bool)
    mask[order] = (from_end < holdout) & (counts[group] > holdout)
    return mask


def validation_split(events: Events, holdout: int, *, max_users: int | None = None,
                     seed: int = 0) -> tuple[Events, Events]:
    """(train, validation): validation = the last ``holdout`` events of each user who has more;
    of at most ``max_users`` such users (a random sample drawn with ``seed``) when given, the
    others keeping all their events for training.

    Example::

        fit_events, valid_events = validation_split(train_events, holdout=10)
    """
    mask = holdout_mask(events.user_ids, events.occurred_at, events.event_ids, holdout)
    if max_users is not None:
        users = np.unique(events.user_ids[mask])
        if len(users) > max_users:
            chosen = np.random.default_rng(seed).choice(users, max_users, replace=False)
            mask &= np.isin(events.user_ids, chosen)
    return events.subset(~mask), events.subset(mask)


def validation_user_budget(catalog_size: int) -> int:
    """How many users the validation scores over a catalog of ``catalog_size`` items.

    Example::

        >>> validation_user_budget(3_706), validation_user_budget(1_000_000)
        (269832, 2000)
    """
    return max(MIN_VALIDATION_USERS, VALIDATION_CELLS // max(catalog_size, 1))


@dataclass(frozen=True)
class Grid:
    """Candidate values per parameter, tried one parameter at a time (coordinate ascent)."""

    ease_lr: dict[str, list[Any]] = field(default_factory=lambda: {
        "recent_half_life": [None, 3.0, 5.0, 10.0, 20.0, 40.0],
        "feedback_confidence": [("any", "log"), ("any", "binary"), ("any", "linear"),
                                ("net", "binary")],
        # lambda as multiples of the mean number of users per item (so it scales with data)
        "regularization_scale": [4.0, 8.0, 16.0, 32.0, 64.0],
        "dropout": [0.0, 0.1, 0.25],
        "factors": [128, 256, 512],
    })
    ials: dict[str, list[Any]] = field(default_factory=lambda: {
        "recent_half_life": [None, 5.0, 10.0, 20.0],
        "feedback_confidence": [("any", "log"), ("any", "binary"), ("net", "binary")],
        "regularization": [1.0, 10.0, 30.0, 100.0],
        "alpha": [1.0, 3.0, 10.0, 30.0],
        "factors": [64, 128],
    })
    text: list[float] = field(default_factory=lambda: [0.0, 0.05, 0.1, 0.2, 0.4])
    popularity: list[float] = field(default_factory=lambda: [0.0, 0.05, 0.1, 0.2, 0.5, 1.0])
    popularity_half_life_seconds: list[float | None] = field(
        default_factory=lambda: [None, 30 * DAY, 90 * DAY])


RETRAIN_FREE = {"recent_half_life"}
IALS_START: dict[str, Any] = {"factors": 64, "regularization": 10.0, "alpha": 10.0}
# A change must beat the current best by this much (relative NDCG) to be taken: differences
# below it are within the noise of a few hundred validation users, and the defaults (smaller
# vectors, no fusion) are the cheaper ones.
MIN_GAIN = 0.005
# Every trial scores each validation user against the whole catalog: past this many cells
# (users x items) a random sample of users stands for them all. 10M events over 1M items have
# 200k such users: 2e11 cells a trial, and the validation had not ended after 20 minutes. Up to
# 10k users over 100k items (and all of ML-1M) every user is scored: at 1M events (100k items,
# 16,860 users to validate on) 20k users made each trial 7 s of a one-minute evaluation, and
# 10k users still tell apart NDCG differences of a few percent (the ones tuning acts on).
VALIDATION_CELLS = 1_000_000_000
MIN_VALIDATION_USERS = 2_000


def _with(params: BehaviorParams, name: str, value: Any) -> BehaviorParams:
    if name == "feedback_confidence":
        return replace(params, feedback=value[0], confidence=value[1])
    return replace(params, **{name: value})


class _Search:
    """Trains each distinct parameter set once and remembers every validation score."""

    def __init__(self, holdout: Holdout, events: Events, k: int, seed: int,
                 text: tuple[np.ndarray, np.ndarray] | None) -> None:
        self.holdout, self.events, self.k, self.seed, self.text = holdout, events, k, seed, text
        self.models: dict[BehaviorParams, BehaviorModel] = {}
        # per model: the cold items (text vector, no trained one) and their mapped vectors,
        # ranked with the trained items as pyembed.recommend ranks them
        self.cold: dict[BehaviorParams, tuple[np.ndarray | None, np.ndarray | None]] = {}
        self.scores: dict[tuple[BehaviorParams, Fusion], float] = {}
        # each scored model's candidates, which its fusion trials reuse: the best model's and
        # the one being tried (keep_pool drops the others)
        self.pools: dict[BehaviorParams, Pool] = {}
        self.trials: list[dict[str, Any]] = []

    def model(self, params: BehaviorParams) -> BehaviorModel:
        key = replace(params, recent_half_life=None)
        if key not in self.models:
            model = self.models[key] = train_events(self.events, key, seed=self.seed)
            self.cold[key] = (None, None) if self.text is None else cold_items(
                model.items, model.item_vectors, *self.text, self.events.item_ids)
        return replace(self.models[key], params=params)

    def score(self, params: BehaviorParams, fusion: Fusion | None = None,
              text_vectors: np.ndarray | None = None) -> float:
        key = (params, fusion or Fusion())
        if key in self.scores:
            return self.scores[key]
        started = time.perf_counter()
        if params not in self.pools:
            self.pools[params] = self.holdout.behavior_pool(
                self.model(params), candidate_depth(self.k),
                *self.cold[replace(params, recent_half_life=None)])
        result = self.holdout.evaluate(self.model(params), fusion, k=self.k,
                                       text_vectors=text_vectors, pool=self.pools[params])
        self.scores[key] = self._record(
            {"params": asdict(params), "fusion": asdict(fusion or Fusion())}, result, started,
            str(params))
        return self.scores[key]

    def keep_pool(self, params: BehaviorParams) -> None:
        """Forget every model's candidates but those of ``params`` (the best so far): the
        fusion trials score it again, and recomputing its pool cost 7 s at 1M events."""
        self.pools = {key: pool for key, pool in self.pools.items() if key == params}

    def score_popular(self, half_life_seconds: float | None) -> float:
        """Validation NDCG of the popularity ranking alone (recommend's method 'popular')."""
        started = time.perf_counter()
        result = self.holdout.score(self.holdout.popular_top(half_life_seconds, self.k), self.k)
        return self._record({"method": "popular",
                             "popularity_half_life_seconds": half_life_seconds},
                            result, started, f"popular, half-life {half_life_seconds} s")

    def _record(self, trial: dict[str, Any], result: ListScore, started: float,
                what: str) -> float:
        """Adds a trial (``trial`` + its recall, NDCG and seconds) to the report; its NDCG."""
        self.trials.append({**trial, "recall": result.recall, "ndcg": result.ndcg,
                            "seconds": round(time.perf_counter() - started, 2)})
        log.info("validation ndcg %.4f recall %.4f %s", result.ndcg, result.recall, what)
        return result.ndcg


def _ascend(search: _Search, params: BehaviorParams, grid: dict[str, list[Any]],
            order: list[str]) -> tuple[BehaviorParams, float]:
    best_score = search.score(params)
    for name in order:
        for value in grid.get(name, []):
            candidate = _with(params, name, value)
            if candidate == params:
                continue
            score = search.score(candidate)
            if score > best_score * (1 + MIN_GAIN):
                params, best_score = candidate, score
            search.keep_pool(params)
    return params, best_score


def tune(events: Events, *, holdout: int = 10, k: int = 10, method: str = "auto",
         text_items: np.ndarray | None = None, text_vectors: np.ndarray | None = None,
         grid: Grid | None = None, start: BehaviorParams | None = None,
         seed: int = 0) -> tuple[BehaviorParams, Fusion, dict[str, Any]]:
    """Choose model parameters, then fusion weights, then the method, by validation NDCG@k.

    The validation split comes from ``events`` only (:func:`validation_split`); call it with
    the training events of an evaluation, never with held-out test events. Model parameters
    are searched one at a time (the fold-in recency first, as it needs no retraining; then the
    training parameters; then the recency again); then the fusion weights, with
    ``text_vectors`` (rows follow ``text_items``, L2-normalized) when given; last, the
    popularity ranking alone, with each popularity half-life, which becomes the method
    (report ``"method": "popular"``, the fusion's half-life its own) when it beats the fused
    behavior ranking by :data:`MIN_GAIN`.

    The search starts from ``start`` (default: :class:`BehaviorParams` defaults, or the
    iALS starting point for large catalogs). Returns ``(params, fusion, report)``; report
    lists every trial. Example::

        params, fusion, report = tune(train_events, holdout=10)
        model = train_events(train_events, params)
    """
    grid = grid or Grid()
    with_text = None
    if text_items is not None and text_vectors is not None:
        with_text = (np.asarray(text_items, dtype=np.int64), np.asarray(text_vectors))
    # Every item that serving can list: those with events, and those with a text vector only
    # (cold items, through the text map).
    catalog = np.unique(np.concatenate([events.item_ids] + ([with_text[0]] if with_text else [])))
    fit_events, valid_events = validation_split(
        events, holdout, max_users=validation_user_budget(len(catalog)), seed=seed)
    if len(valid_events) == 0:
        raise InvalidInputError(f"no user has more than {holdout} events to validate on")
    checked = Holdout.build(fit_events, valid_events, catalog)
    started = time.perf_counter()
    search = _Search(checked, fit_events, k, seed, with_text)
    n_items = len(np.unique(fit_events.item_ids))
    params = (start or BehaviorParams(method=method))
    space = dict(grid.ease_lr if params.method == "ease_lr" else grid.ials)
    pairs = len(fit_events.pairs()[0])
    per_item = pairs / max(n_items, 1)
    params = params.resolved(n_items, pairs)
    if "regularization_scale" in space:
        space["regularization"] = [round(x * per_item, 1) for x in
                                   space.pop("regularization_scale")]
    if start is None and params.method == "ials":
        params = replace(params, **IALS_START)
    training = [name for name in space if name not in RETRAIN_FREE]
    params, _ = _ascend(search, params, space, ["recent_half_life"])
    params, _ = _ascend(search, params, space, training + ["recent_half_life"])
    fusion, best = Fusion(), search.score(params)
    text = _catalog_rows(checked.catalog, *with_text) if with_text else None
    for hl in grid.popularity_half_life_seconds:
        for weight in grid.popularity:
            for text_weight in (grid.text if text is not None else [0.0]):
                candidate = Fusion(text_weight, weight, hl)
                if candidate == fusion or (weight == 0 and hl is not None):
                    continue
                score = search.score(params, candidate, text)
                if score > best * (1 + MIN_GAIN):
                    fusion, best = candidate, score
    # Where the events carry little beyond popularity, the behavior top misses popular items
    # the fusion would rank first: the popularity ranking alone is then the better method.
    method = "behavior"
    for hl in grid.popularity_half_life_seconds:
        score = search.score_popular(hl)
        if score > best * (1 + MIN_GAIN):
            method, best = "popular", score
            fusion = replace(fusion, popularity_half_life_seconds=hl)
    report = {"validation_users": len(checked.users), "validation_events": len(valid_events),
              "method": method, "best_ndcg": best,
              "seconds": round(time.perf_counter() - started, 1), "trials": search.trials}
    return params, fusion, report


def _catalog_rows(catalog: np.ndarray, items: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Text vectors re-ordered on the catalog's columns (zeros where an item has none)."""
    out = np.zeros((len(catalog), vectors.shape[1]), dtype=np.float32)
    position = np.searchsorted(catalog, items)
    ok = (position < len(catalog)) & (catalog[np.minimum(position, len(catalog) - 1)] == items)
    out[position[ok]] = vectors[ok]
    return out
