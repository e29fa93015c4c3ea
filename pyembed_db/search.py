"""Filtered nearest-neighbour search: the Python face of sql/functions/20_search.sql.

Everything runs in SQL (``pyembed.search``, ``search_similar``, ``search_text``,
``explain_search``), so every client gets the same results; this module validates arguments,
embeds text queries with the active model, resolves external ids and maps rows to dataclasses
(or to ORM :class:`~pyembed_db.orm.Item` objects with :func:`search_items`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import psycopg
from pgvector import Vector

from . import sqlfiles
from .arguments import (
    MAX_DIMENSIONS,
    MAX_QUERY_TEXT,
    check_integer,
    check_k,
    check_text,
    filters_json,
    is_blank,
)
from .errors import InvalidInputError, translate
from .recommend import ItemRef, resolve_items
from .users import UserRef, resolve_user

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from .orm import Item

Query = np.ndarray | Sequence[float] | str


@dataclass(frozen=True)
class SearchHit:
    """One result: ``distance`` in the model's metric (cosine distance: 0 = same direction)."""

    item_id: int
    external_id: str
    title: str | None
    distance: float


@dataclass(frozen=True)
class HybridHit:
    """One hybrid result: RRF ``score`` and the item's rank in each list (None when absent)."""

    item_id: int
    external_id: str
    title: str | None
    score: float
    text_rank: int | None
    vector_rank: int | None
    distance: float | None


def query_vector(conn: psycopg.Connection[Any], query: Query) -> Vector:
    """``query`` as a pgvector value: text is embedded with the active model.

    Raises :class:`InvalidInputError` for empty, non-1-D or non-finite (NaN, inf) vectors.

    Example::

        query_vector(conn, "space adventure")      # 384-d with all-MiniLM-L6-v2
    """
    if isinstance(query, str):
        if is_blank(check_text(query, "text query")):
            raise InvalidInputError("empty text query")
        from .embed import load_active_encoder

        array = load_active_encoder(conn).encoder.encode([query])[0]
    else:
        try:
            array = np.asarray(query, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"query must be a text or a vector of numbers: {exc}") from None
    if array.ndim != 1 or array.size == 0:
        raise InvalidInputError(f"query must be a non-empty 1-D vector, got shape {array.shape}")
    if array.size > MAX_DIMENSIONS:
        raise InvalidInputError(f"query vector has {array.size} dimensions "
                                f"(pgvector's limit is {MAX_DIMENSIONS})")
    if not np.isfinite(array).all():
        raise InvalidInputError("query vector contains NaN or Infinity")
    return Vector(array)


def _common(conn: psycopg.Connection[Any], k: int, filters: dict[str, Any] | None,
            exclude_user: UserRef | None, model_id: int | None) -> dict[str, Any]:
    """The arguments every search face shares, checked."""
    return {"k": check_k(k), "filters": filters_json(filters),
            "exclude_user": None if exclude_user is None else resolve_user(conn, exclude_user),
            "model_id": None if model_id is None else check_integer(model_id, "model_id")}


def _run(conn: psycopg.Connection[Any], query_file: str, params: dict[str, Any]) -> list[Any]:
    try:
        return conn.execute(sqlfiles.read(query_file), params).fetchall()
    except psycopg.Error as exc:
        raise translate(exc) from exc


def search(conn: psycopg.Connection[Any], query: Query, k: int = 10,
           filters: dict[str, Any] | None = None, *, exclude_user: UserRef | None = None,
           model_id: int | None = None) -> list[SearchHit]:
    """The ``k`` items nearest to ``query`` among those passing ``filters``, nearest first.

    ``query`` is a vector or a text (embedded with the active model). ``exclude_user`` (user_id
    or external id) drops the items that user has events on. Filter grammar (typed attribute
    ranges, ``not``...): docs/search.md. A zero query vector under cosine distance, a bad
    filter or ``k`` outside 1..1000 raise :class:`InvalidInputError`.

    Example::

        hits = search(conn, "space adventure", k=5, filters={"tags": {"contains": ["Sci-Fi"]}})
        print([h.title for h in hits])
    """
    params = {**_common(conn, k, filters, exclude_user, model_id),
              "query": query_vector(conn, query)}
    return [SearchHit(int(r[0]), str(r[1]), r[2], float(r[3]))
            for r in _run(conn, "queries/search.sql", params)]


def search_similar(conn: psycopg.Connection[Any], item: ItemRef, k: int = 10,
                   filters: dict[str, Any] | None = None, *, exclude_user: UserRef | None = None,
                   model_id: int | None = None) -> list[SearchHit]:
    """"More like this": the items nearest to ``item``'s own vector (item_id or external id),
    without the item itself; ``k`` up to 1000.

    Example::

        search_similar(conn, "50", k=5)     # Star Wars -> other space operas
    """
    params = {"item_id": resolve_items(conn, [item])[0],
              **_common(conn, k, filters, exclude_user, model_id)}
    return [SearchHit(int(r[0]), str(r[1]), r[2], float(r[3]))
            for r in _run(conn, "queries/search_similar.sql", params)]


def search_text(conn: psycopg.Connection[Any], text: str, k: int = 10,
                filters: dict[str, Any] | None = None, *, query: Query | None = None,
                exclude_user: UserRef | None = None, model_id: int | None = None,
                rrf_k: int = 60, vector: bool = True) -> list[HybridHit]:
    """Hybrid search: full-text matches of ``text`` fused with its nearest neighbours (RRF).

    The vector side embeds ``text`` with the active model unless ``query`` is given;
    ``vector=False`` ranks by keywords only.

    Example::

        search_text(conn, "star wars", k=5)[0].title     # 'Star Wars (1977)'
    """
    if not isinstance(text, str) or len(text) > MAX_QUERY_TEXT:
        raise InvalidInputError(f"text must be a string of at most {MAX_QUERY_TEXT} characters")
    check_text(text, "text")
    common = _common(conn, k, filters, exclude_user, model_id)
    rrf_k = check_integer(rrf_k, "rrf_k")
    vec = None
    if vector:
        vec = query_vector(conn, text if query is None else query)
    params = {"text": text, "query": vec, **common, "rrf_k": rrf_k}
    return [HybridHit(int(r[0]), str(r[1]), r[2], float(r[3]), r[4], r[5],
                      None if r[6] is None else float(r[6]))
            for r in _run(conn, "queries/search_text.sql", params)]


def explain_search(conn: psycopg.Connection[Any], query: Query, k: int = 10,
                   filters: dict[str, Any] | None = None, *, exclude_user: UserRef | None = None,
                   model_id: int | None = None) -> dict[str, Any]:
    """How :func:`search` runs this query: strategy, reason, estimates, settings, rows, time.

    Example::

        explain_search(conn, q, filters={"category": "Documentary"})["strategy"]   # 'exact'
    """
    params = {**_common(conn, k, filters, exclude_user, model_id),
              "query": query_vector(conn, query)}
    return dict(_run(conn, "queries/search_explain.sql", params)[0][0])


def search_items(session: Session, query: Query, k: int = 10,
                 filters: dict[str, Any] | None = None, **options: Any) -> list[tuple[Item, float]]:
    """ORM helper: ``(Item, distance)`` pairs from :func:`search`, nearest first.

    Takes the same options as :func:`search`.

    Example::

        with Session(engine) as session:
            for item, distance in search_items(session, "space adventure", k=5):
                print(item.title, item.category, distance)
    """
    from .orm import driver_connection, items_by_id

    hits = search(driver_connection(session), query, k, filters, **options)
    by_id = items_by_id(session, [h.item_id for h in hits])
    return [(by_id[h.item_id], h.distance) for h in hits if h.item_id in by_id]
