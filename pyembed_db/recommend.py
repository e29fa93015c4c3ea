"""Recommendations: the Python face of ``pyembed.recommend`` (sql/functions/40_recommend.sql).

Everything happens in SQL, so applications in any language get the same results; this module
resolves external ids, validates arguments and maps rows onto :class:`Recommendation` (or onto
ORM :class:`~pyembed_db.orm.Item` objects with :func:`recommend_items`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import psycopg

from . import sqlfiles
from .arguments import (
    check_fraction,
    check_id,
    check_integer,
    check_k,
    check_text,
    filters_json,
)
from .errors import InvalidInputError, translate
from .users import UserRef, resolve_one, resolve_user

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from .orm import Item

ItemRef = int | str
VECTOR_KINDS = ("auto", "long_term", "short_term", "interest")
METHODS = ("behavior", "text", "popular")


@dataclass(frozen=True)
class Recommendation:
    """One recommended item; ``score`` is 1 - distance (higher is better).

    ``source`` says where it came from: ``behavior`` (the behavior model), ``long_term``,
    ``short_term``, ``interest:N`` (text vectors), ``examples`` (positive examples only) or
    ``popular`` (popularity: blended in, or the cold-start fallback).
    """

    item_id: int
    external_id: str
    title: str | None
    score: float
    source: str


@dataclass(frozen=True)
class HistoryEvent:
    """One of a user's events with the item it was about (:func:`user_history`)."""

    occurred_at: datetime
    event_type: str
    value: float | None
    item_id: int
    external_id: str
    title: str | None


def user_history(conn: psycopg.Connection[Any], user: UserRef, limit: int = 10
                 ) -> list[HistoryEvent]:
    """The ``limit`` most recent events of ``user`` (user_id int or external id str), newest
    first: what ``pyembed-db recommend`` prints beside the recommendations.

    Example::

        [h.title for h in user_history(conn, "196", limit=3)]
    """
    params = {"user_id": resolve_user(conn, user),
              "limit": check_integer(limit, "limit", low=0)}
    rows = conn.execute(sqlfiles.read("queries/user_history.sql"), params).fetchall()
    return [HistoryEvent(*row) for row in rows]


def resolve_items(conn: psycopg.Connection[Any], items: Sequence[ItemRef] | None) -> list[int]:
    """Item ids of ``items`` (ints are item ids, strs external ids); NotFoundError if unknown."""
    if not items:
        return []
    wrong = [i for i in items if isinstance(i, bool) or not isinstance(i, (int, str))]
    if wrong:
        raise InvalidInputError(f"an item is an int item_id or a str external id, got {wrong[0]!r}")
    for item in items:
        if isinstance(item, str):
            check_text(item, "item id")
        else:
            check_id(item, "item_id")
    external = [i for i in items if isinstance(i, str)]
    found: dict[str, int] = {}
    if external:
        ids = resolve_one(conn, "queries/recommend_resolve_items.sql", {"external_ids": external})
        found = dict(zip(external, (int(i) for i in ids), strict=True))
    return [found[i] if isinstance(i, str) else int(i) for i in items]


def recommend(
    conn: psycopg.Connection[Any],
    user: UserRef,
    k: int = 10,
    filters: dict[str, Any] | None = None,
    *,
    exclude_seen: bool = True,
    diversity: float = 0.0,
    positive: Sequence[ItemRef] | None = None,
    negative: Sequence[ItemRef] | None = None,
    vectors: str = "auto",
    popularity: float | None = None,
    model_id: int | None = None,
    method: str | None = None,
) -> list[Recommendation]:
    """Top-``k`` items for ``user`` (user_id int or external id str) within ``filters``.

    ``method``: ``behavior`` (the active behavior model, see ``pyembed-db train``), ``text``
    (the user's text vectors) or ``popular``; None = the method the behavior model chose on
    validation (``text`` when none is trained). ``popularity`` (0..1) blends popularity into
    the ranking (default: the weight chosen on validation for ``behavior``, 0 for ``text``).

    Example::

        for rec in recommend(conn, "196", k=5, filters={"category": "Comedy"}, diversity=0.3):
            print(rec.title, rec.score, rec.source)
    """
    if vectors not in VECTOR_KINDS:
        raise InvalidInputError(f"vectors must be one of {', '.join(VECTOR_KINDS)}")
    if method is not None and method not in METHODS:
        raise InvalidInputError(f"method must be one of {', '.join(METHODS)}")
    params = {
        "user_id": resolve_user(conn, user),
        "k": check_k(k),
        "filters": filters_json(filters),
        "exclude_seen": exclude_seen,
        "diversity": check_fraction(diversity, "diversity"),
        "positive": resolve_items(conn, positive) or None,
        "negative": resolve_items(conn, negative) or None,
        "model_id": None if model_id is None else check_integer(model_id, "model_id"),
        "vectors": vectors,
        "popularity": None if popularity is None else check_fraction(popularity, "popularity"),
        "method": method,
    }
    try:
        rows = conn.execute(sqlfiles.read("queries/recommend.sql"), params).fetchall()
    except psycopg.Error as exc:
        raise translate(exc) from exc
    return [Recommendation(int(r[0]), str(r[1]), r[2], float(r[3]), str(r[4])) for r in rows]


def recommend_items(session: Session, user: UserRef, k: int = 10,
                    filters: dict[str, Any] | None = None, **options: Any) -> list[Item]:
    """ORM helper: the recommended items as mapped :class:`Item` objects, best first.

    Takes the same options as :func:`recommend`.

    Example::

        with Session(engine) as session:
            titles = [item.title for item in recommend_items(session, "196", k=5)]
    """
    from .orm import driver_connection, items_by_id

    recs = recommend(driver_connection(session), user, k, filters, **options)
    by_id = items_by_id(session, [r.item_id for r in recs])
    return [by_id[r.item_id] for r in recs if r.item_id in by_id]
