"""Validation split carved from the training events, and the choice of parameters on it.

Nothing here looks at a test split: :func:`validation_split` holds out the last ``holdout``
events of every user who has more (by time, ties by event id), exactly like the evaluation's
own split, but applied to the training events only.
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidInputError
from .interactions import Events


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


def validation_split(events: Events, holdout: int) -> tuple[Events, Events]:
    """(train, validation): validation = the last ``holdout`` events of each user who has more.

    Example::

        fit_events, valid_events = validation_split(train_events, holdout=10)
    """
    mask = holdout_mask(events.user_ids, events.occurred_at, events.event_ids, holdout)
    return events.subset(~mask), events.subset(mask)
