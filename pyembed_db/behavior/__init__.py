"""Behavior (collaborative) item and user vectors, trained from events; no database access.

The database side stores :attr:`BehaviorModel.item_vectors` in pgvector and serves
``dot(user_vector, item_vector)`` with the inner-product operator; user vectors come from
:meth:`BehaviorModel.fold_in` of that user's events only, so new events never need a retrain.

- :mod:`.interactions` the user x item confidence matrix built from weighted, decayed events
- :mod:`.train` the models (low-rank EASE, iALS) behind one :class:`BehaviorModel`
- :mod:`.cold` a ridge map from text vectors to behavior vectors for items with few events
- :mod:`.tune` the validation split and the choice of parameters and fusion weights
"""

from __future__ import annotations

from .cold import fit_text_map, map_text
from .interactions import Events, Interactions, build_interactions, event_weights
from .train import BehaviorModel, BehaviorParams, train, train_events
from .tune import validation_split

__all__ = [
    "BehaviorModel",
    "BehaviorParams",
    "Events",
    "Interactions",
    "build_interactions",
    "event_weights",
    "fit_text_map",
    "map_text",
    "train",
    "train_events",
    "validation_split",
]
