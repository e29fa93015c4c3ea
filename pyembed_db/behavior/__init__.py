"""Behavior (collaborative) item and user vectors, trained from events; no database access.

The database side stores :attr:`BehaviorModel.item_vectors` in pgvector and serves
``dot(user_vector, item_vector)`` with the inner-product operator; user vectors come from
:meth:`BehaviorModel.fold_in` of that user's events only, so new events never need a retrain.

- :mod:`.interactions` the user x item confidence matrix built from weighted, decayed events
- :mod:`.train` the models (low-rank EASE, iALS) behind one :class:`BehaviorModel`
- :mod:`.cold` a ridge map from text vectors to behavior vectors for items with few events
- :mod:`.tune` the validation split and the choice of parameters and fusion weights
- :mod:`.fusion` the per-candidate fusion formula (behavior + text cosine + popularity)
- :mod:`.validation` offline scoring with the evaluation's protocol

Workflow (the database side feeds arrays and stores the results)::

    events = Events.from_arrays(user_ids, item_ids, type_weights, is_rating, values,
                                occurred_at_epoch, event_ids)
    params, fusion, report = tune(events)           # optional: validation split of events
    model = train_events(events, params)
    store(model.items, model.item_vectors)          # pgvector, dimension model.dimension
    blob = model.state()                            # bytes: everything fold-in needs
    # later, for a user with new events, without retraining:
    vector = BehaviorModel.from_state(blob).fold_in_events(items, type_weights, is_rating,
                                                           values, occurred_at, event_ids)

Scores equal the model's only on items the user has no events on: serve with seen items
excluded (low-rank EASE scores a user's own items highest).
"""

from __future__ import annotations

from .cold import cold_items, cold_norm, cold_vectors, fit_text_map, map_text
from .events import Events
from .interactions import Interactions, build_interactions, event_weights
from .train import BehaviorModel, BehaviorParams, train, train_events
from .tune import validation_split

__all__ = [
    "BehaviorModel",
    "BehaviorParams",
    "Events",
    "Interactions",
    "build_interactions",
    "event_weights",
    "cold_items",
    "cold_norm",
    "cold_vectors",
    "fit_text_map",
    "map_text",
    "train",
    "train_events",
    "validation_split",
]
