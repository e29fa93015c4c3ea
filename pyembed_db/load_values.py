"""Validation of loaded values, one value at a time or a whole column at once.

Each kind of column has two checks that must agree:

- a *value* check (``text``, ``timestamp``...) that converts one value or raises
  :class:`RowError` with the message the user sees;
- a *column* check (``text_column``...) that converts a whole batch at once with C-level passes
  (``map``, ``str.join``, numpy) when every value is of the common clean kind, and otherwise
  returns ``None`` so that the batch goes through the value check (which then names the bad
  row). The column check never rejects anything itself: it only recognises the easy case.

Example::

    >>> text_column(["a", "b"], required=True, max_len=512)
    ['a', 'b']
    >>> text_column(["a", None], required=True, max_len=512) is None
    True
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import date, datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

import numpy as np

TEXT_LIMIT = 10_000_000  # characters of a title or body (documented in docs/loading.md)
ID_LIMIT = 512  # external ids (the schema's check constraint)
PRICE_LIMIT = Decimal(10) ** 12  # numeric(14, 2)
REAL_LIMIT = 3.4e38
NONE = type(None)


class RowError(ValueError):
    """A value in one row is invalid; the loader adds the row number."""


def type_name(value: Any) -> str:
    """The name of a value's type for messages (``dict``, ``list``, ``bool``, ``bytes``...)."""
    return type(value).__name__


# ------------------------------------------------------------------------------------ text

def text(value: Any, column: str, *, required: bool = False, max_len: int = TEXT_LIMIT) -> Any:
    """A string (integers are accepted as their decimal text), ``None`` for an empty value."""
    if value is None or (value == "" and isinstance(value, str) and not required):
        if required:
            raise RowError(f"{column} is required")
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise RowError(f"{column}: must be a string, got {type_name(value)}")
    result = value if isinstance(value, str) else str(value)
    if required and not result.strip():
        raise RowError(f"{column} is required")
    if "\x00" in result:
        raise RowError(f"{column} contains a NUL character")
    check_utf8(result, column)
    if len(result) > max_len:
        raise RowError(f"{column} is longer than {max_len:,} characters")
    return result


def check_utf8(value: str, column: str) -> None:
    """Lone surrogates: undecodable bytes of a file (read with surrogateescape) or a bad str."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise RowError(f"{column}: not valid UTF-8 at character {exc.start}") from None


def text_column(values: Sequence[Any], *, required: bool, max_len: int) -> list[Any] | None:
    """The column with empty strings as ``None`` when every value is a clean string, else None."""
    kinds = set(map(type, values))
    if kinds == {int}:  # integer ids (Parquet, JSON)
        values, kinds = list(map(str, values)), {str}
    if not kinds <= ({str} if required else {str, NONE}):
        return None
    strings = values if kinds == {str} else [v for v in values if v is not None]
    if required and ("" in strings or any(map(str.isspace, strings))):
        return None
    joined = "".join(strings)
    if "\x00" in joined or max(map(len, strings), default=0) > max_len:
        return None
    try:
        joined.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return list(values) if required else [v or None for v in values]


# ------------------------------------------------------------------------------ timestamps

def timestamp(value: Any, column: str) -> datetime | None:
    """ISO 8601 text (naive = UTC), Unix seconds (number or digits), or a datetime / date."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, bool) or not isinstance(value, (str, int, float, date)):
        raise RowError(f"{column}: must be a timestamp (ISO 8601 text or Unix seconds), "
                       f"got {type_name(value)}")
    stripped = str(value).strip()
    try:
        if isinstance(value, (int, float)):
            return datetime.fromtimestamp(value, tz=timezone.utc)
        if stripped.lstrip("-").replace(".", "", 1).isdigit():
            return datetime.fromtimestamp(float(stripped), tz=timezone.utc)
        parsed = datetime.fromisoformat(stripped.replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):  # NaN, out of range, malformed
        raise RowError(f"{column}: not a timestamp: {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def timestamp_column(values: Sequence[Any]) -> list[Any] | None:
    """ISO 8601 strings parsed at once; None when any value needs the value check."""
    kinds = set(map(type, values))
    if kinds <= {datetime, NONE}:
        parsed = list(values)
    elif kinds <= {str, NONE}:
        strings = [v for v in values if v]
        if any(map(str.isdigit, strings)):  # Unix seconds, not ISO basic format dates
            return None
        try:
            parsed = [datetime.fromisoformat(v) if v else None for v in values]
        except ValueError:
            return None
    else:
        return None
    utc = timezone.utc
    return [d if d is None or d.tzinfo else d.replace(tzinfo=utc) for d in parsed]


# --------------------------------------------------------------------------------- numbers

def number(value: Any, column: str, *, kind: type = float) -> Any:
    """A finite float (or Decimal with ``kind=Decimal``) from a number or its text."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
        raise RowError(f"{column}: must be a number, got {type_name(value)}")
    try:
        result = kind(str(value)) if kind is Decimal else kind(value)
        finite = math.isfinite(float(result))
    except (ValueError, TypeError, InvalidOperation, OverflowError):
        raise RowError(f"{column}: not a number: {value!r}") from None
    if not finite:
        raise RowError(f"{column}: must be finite, got {value!r}")
    return result


def real(value: Any, column: str) -> float | None:
    """A float that fits a PostgreSQL ``real``."""
    result = number(value, column)
    if result is None:
        return None
    if abs(result) > REAL_LIMIT:
        raise RowError(f"{column}: out of range for a real, got {value!r}")
    return float(result)


def real_column(values: Sequence[Any]) -> list[Any] | None:
    """Floats (None for empty values) when every value is a finite real; else None."""
    kinds = set(map(type, values))
    try:
        if kinds <= {str, NONE}:
            result = [float(v) if v else None for v in values]
        elif kinds <= {float, int, NONE}:
            result = [None if v is None else float(v) for v in values]
        else:
            return None
    except (ValueError, OverflowError):
        return None
    present = np.array([v for v in result if v is not None], dtype=np.float64)
    if not np.all(np.abs(present) <= REAL_LIMIT):  # NaN and infinities fail too
        return None
    return result


def price(value: Any) -> Decimal | None:
    """A price: a number >= 0 that fits numeric(14, 2)."""
    result = number(value, "price", kind=Decimal)
    if result is not None and result < 0:
        raise RowError(f"price: must be >= 0, got {result}")
    if result is not None and result >= PRICE_LIMIT:
        raise RowError(f"price: must be < {PRICE_LIMIT:,}, got {result}")
    return result  # type: ignore[no-any-return]


# ------------------------------------------------------------------------------ JSON, tags

def json_object(value: Any, column: str) -> str:
    """A JSON object (a dict or its JSON text), returned as JSON text for COPY."""
    if value is None or value == "":
        return "{}"
    try:
        if isinstance(value, str):
            value = json.loads(value)
        if isinstance(value, dict):
            dumped = json.dumps(value, allow_nan=False, ensure_ascii=False)
    except json.JSONDecodeError as exc:
        raise RowError(f"{column}: invalid JSON ({exc.msg})") from None
    except RecursionError:
        raise RowError(f"{column}: JSON nested too deeply") from None
    except (TypeError, ValueError) as exc:
        raise RowError(f"{column}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise RowError(f"{column}: must be a JSON object, got {type_name(value)}")
    if "\\u0000" in dumped:  # json.dumps escapes NUL; jsonb cannot hold it
        raise RowError(f"{column} contains a NUL character")
    check_utf8(dumped, column)
    return dumped


def tags(value: Any) -> list[str]:
    """A list of strings from a list, a JSON array text or ``a|b|c``."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        if value.lstrip().startswith("["):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise RowError(f"tags: invalid JSON array ({exc.msg})") from None
            except RecursionError:
                raise RowError("tags: JSON nested too deeply") from None
        else:
            value = [part.strip() for part in value.split("|")]
    if not isinstance(value, (list, tuple)) or not all(isinstance(t, str) for t in value):
        raise RowError("tags: must be a list of strings")
    for tag in value:
        if "\x00" in tag:
            raise RowError("tags contain a NUL character")
        check_utf8(tag, "tags")
    return [t for t in value if t]
