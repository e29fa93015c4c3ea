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
        _check_json_strings(filters, "filters")
    except RecursionError:
        raise InvalidInputError("filters are nested too deeply") from None
    try:
        return json.dumps(filters or {}, allow_nan=False)
    except RecursionError:
        raise InvalidInputError("filters are nested too deeply") from None
    except ValueError as exc:
        raise InvalidInputError(f"filters: {exc} (NaN and Infinity are not JSON)") from None
    except TypeError as exc:
        raise InvalidInputError(f"filters: {exc}") from None


BIGINT_MAX = 2**63 - 1
INTEGER_MAX = 2**31 - 1
MAX_DIMENSIONS = 16_000  # pgvector's limit for the vector type

# Unicode categories that render as nothing: whitespace, controls, format characters (zero-width
# space U+200B, marks U+200E/U+200F, BOM U+FEFF, word joiner U+2060...).
_INVISIBLE = {"Cc", "Cf", "Zs", "Zl", "Zp"}


def is_blank(text: str) -> bool:
    """True when ``text`` has no visible character (a query or item text with nothing to embed).

    Example::

        >>> is_blank("\\u200b \\ufeff"), is_blank("a")
        (True, False)
    """
    import unicodedata

    return all(ch.isspace() or unicodedata.category(ch) in _INVISIBLE for ch in text)


def check_text(value: str, what: str) -> str:
    """``value`` when PostgreSQL can store it as text (no NUL, no lone surrogate)."""
    if "\x00" in value:
        raise InvalidInputError(f"{what} contains a NUL character, which text cannot hold")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInputError(f"{what} is not valid UTF-8 (a lone surrogate)") from None
    return value


def check_integer(value: object, what: str, *, low: int = 1, high: int = INTEGER_MAX) -> int:
    """``value`` when it is an int in ``low..high`` (bool is not an int here).

    Example::

        >>> check_integer(60, "rrf_k")
        60
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(f"{what} must be an integer, got {type(value).__name__}")
    if not low <= value <= high:
        raise InvalidInputError(f"{what} must be between {low} and {high}, got {value}")
    return value


def check_id(value: object, what: str) -> int:
    """A bigint id (user_id, item_id)."""
    return check_integer(value, what, low=-BIGINT_MAX - 1, high=BIGINT_MAX)


def check_fraction(value: object, what: str) -> float:
    """``value`` when it is a real number in 0..1.

    Example::

        >>> check_fraction(0.3, "diversity")
        0.3
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInputError(f"{what} must be a number between 0 and 1, "
                                f"got {type(value).__name__}")
    if not 0 <= value <= 1:  # NaN fails too
        raise InvalidInputError(f"{what} must be between 0 and 1, got {value}")
    return float(value)


def _check_json_strings(value: Any, what: str) -> None:
    if isinstance(value, str):
        check_text(value, what)
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str):
                check_text(key, what)
            _check_json_strings(item, what)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _check_json_strings(item, what)
