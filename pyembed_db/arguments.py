"""Checks of arguments shared by the Python faces of the SQL functions (search, recommend).

The SQL functions validate everything themselves; these checks run first so that a wrong Python
type becomes :class:`InvalidInputError` instead of a driver error, before any work is done.
"""

from __future__ import annotations

import json
from typing import Any

from .errors import InvalidInputError

MAX_K = 1000
MAX_QUERY_TEXT = 10_000  # characters; pyembed.search_text refuses longer texts too


def check_k(k: object) -> int:
    """``k`` when it is an int in 1..1000, else :class:`InvalidInputError`.

    Example::

        >>> check_k(10)
        10
    """
    if isinstance(k, bool) or not isinstance(k, int):
        raise InvalidInputError(f"k must be an integer, got {type(k).__name__}")
    if not 1 <= k <= MAX_K:
        raise InvalidInputError(f"k must be between 1 and {MAX_K}, got {k}")
    return k


def filters_json(filters: Any) -> str:
    """``filters`` as the JSON text the SQL functions take (which check its shape).

    Example::

        >>> filters_json({"category": "Drama"})
        '{"category": "Drama"}'
    """
    try:
        return json.dumps(filters or {}, allow_nan=False)
    except ValueError as exc:
        raise InvalidInputError(f"filters: {exc} (NaN and Infinity are not JSON)") from None
    except TypeError as exc:
        raise InvalidInputError(f"filters: {exc}") from None
