"""Keeping item vectors in sync: one worker step embeds one claimed batch of queued items.

A step runs in one transaction: claim (``FOR UPDATE SKIP LOCKED``), embed for every model being
kept in sync, upsert vectors, record skips, delete the queue rows, commit. A worker killed at any
point leaves its rows locked only until its connection drops, then another worker claims them.
Items whose text did not change since their vector was made are not embedded again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
from psycopg.rows import dict_row
from tqdm import tqdm

from .. import sqlfiles
from ..arguments import is_blank
from ..errors import translate
from .item_text import ItemTextTemplate, content_hash, text_columns
from .models import LoadedModel, ModelInfo, get_model, load_model, models_to_sync

log = logging.getLogger(__name__)

# Failures of one item before it is recorded as skipped (pyembed.item_embedding_skips) and
# dequeued; retries back off exponentially in between (queries/item_queue_retry.sql).
MAX_ATTEMPTS = 5


def _embed_for_model(
    conn: psycopg.Connection[Any], model: LoadedModel, items: list[dict[str, Any]]
) -> tuple[int, int]:
    """Embed ``items`` with ``model`` where their text changed; returns (embedded, skipped)."""
    model_id = model.info.model_id
    texts = {item["item_id"]: model.template.render(item["source"]) for item in items}
    hashes = {item_id: content_hash(text) for item_id, text in texts.items()}
    current = dict(conn.execute(sqlfiles.read("queries/item_embeddings_hashes.sql"),
                                {"model_id": model_id, "item_ids": list(texts)}).fetchall())
    todo = [i for i in texts if current.get(i) != hashes[i]]
    empty = [i for i in todo if is_blank(texts[i])]
    for item_id in empty:
        log.info("item %s skipped for %s: empty text", item_id, model.info.label)
        conn.execute(sqlfiles.read("queries/item_embedding_skip.sql"),
                     {"model_id": model_id, "item_id": item_id, "reason": "empty text",
                      "content_hash": hashes[item_id]})
    embeddable = [i for i in todo if not is_blank(texts[i])]
    if embeddable:
        vectors = model.encoder.encode([texts[i] for i in embeddable])
        if not np.isfinite(vectors).all():
            raise ValueError(f"{model.info.label} produced non-finite vectors")
        with conn.cursor() as cur:
            cur.executemany(sqlfiles.read("queries/item_embedding_upsert.sql"), [
                {"model_id": model_id, "item_id": i, "embedding": v, "content_hash": hashes[i]}
                for i, v in zip(embeddable, vectors, strict=True)
            ])
        conn.execute(sqlfiles.read("queries/item_skips_clear.sql"),
                     {"model_id": model_id, "item_ids": embeddable})
        truncated = model.encoder.last_stats.truncated
        if truncated:
            log.warning("%d items truncated to %d tokens by %s", truncated,
                        model.encoder.config.max_length, model.info.label)
    return len(embeddable), len(empty)


def embed_step(conn: psycopg.Connection[Any], batch_size: int = 128) -> int:
    """Claim and process one batch of the item queue; returns how many items it handled.

    Example::

        while embed_step(conn):
            pass
    """
    models = [load_model(conn, info) for info in models_to_sync(conn)]
    conn.commit()
    if not models:
        return 0
    item_ids = [row[0] for row in conn.execute(sqlfiles.read("queries/item_queue_claim.sql"),
                                               {"batch": batch_size})]
    if not item_ids:
        conn.commit()
        return 0
    with conn.cursor(row_factory=dict_row) as cur:
        items = cur.execute(sqlfiles.read("queries/item_texts.sql"),
                            {"item_ids": item_ids}).fetchall()
    try:
        _embed_items(conn, models, items)
    except (psycopg.OperationalError, psycopg.InterfaceError):
        raise  # the connection is gone: the rows unlock and stay queued
    except Exception as exc:
        conn.rollback()
        if len(items) == 1:
            _failed(conn, models, items[0], exc)
        else:
            # One bad item must not hold back the others: embed them one by one.
            log.warning("batch of %d items failed (%s); embedding them one by one",
                        len(items), exc)
            for item in items:
                try:
                    _embed_items(conn, models, [item])
                except (psycopg.OperationalError, psycopg.InterfaceError):
                    raise
                except Exception as item_exc:
                    conn.rollback()
                    _failed(conn, models, item, item_exc)
    return len(item_ids)


def _embed_items(conn: psycopg.Connection[Any], models: list[LoadedModel],
                 items: list[dict[str, Any]]) -> None:
    for model in models:
        _embed_for_model(conn, model, items)
    conn.execute(sqlfiles.read("queries/item_queue_done.sql"),
                 {"item_ids": [item["item_id"] for item in items]})
    conn.commit()


def _failed(conn: psycopg.Connection[Any], models: list[LoadedModel], item: dict[str, Any],
            exc: Exception) -> None:
    """Back off a failing item; after MAX_ATTEMPTS record it as skipped and dequeue it."""
    item_id, error = item["item_id"], f"{type(exc).__name__}: {exc}"
    row = conn.execute(sqlfiles.read("queries/item_queue_retry.sql"),
                       {"item_ids": [item_id], "error": error}).fetchone()
    attempts = int(row[0]) if row else 0
    if attempts >= MAX_ATTEMPTS:
        log.error("item %s failed %d times, skipped: %s", item_id, attempts, error)
        for model in models:
            conn.execute(sqlfiles.read("queries/item_embedding_skip.sql"), {
                "model_id": model.info.model_id, "item_id": item_id,
                "reason": f"failed {attempts} times: {error}"[:2000],
                "content_hash": content_hash(model.template.render(item["source"]))})
        conn.execute(sqlfiles.read("queries/item_queue_done.sql"), {"item_ids": [item_id]})
    else:
        log.error("item %s failed (attempt %d of %d), will retry: %s", item_id, attempts,
                  MAX_ATTEMPTS, error)
    conn.commit()


def stale_items(conn: psycopg.Connection[Any], model: ModelInfo) -> list[int]:
    """Items without exactly one vector of ``model`` made from their current text (a fault or
    consistency check: once the queue is drained, only items skipped for empty text remain).

    Example::

        assert stale_items(conn, active_model(conn)) == []
    """
    template = ItemTextTemplate.from_config(model.config, text_columns(conn))
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(sqlfiles.read("queries/item_vector_hashes.sql"),
                           {"model_id": model.model_id}).fetchall()
    return [row["item_id"] for row in rows
            if row["hashes"] != [content_hash(template.render(row["source"]))]]


def queue_depth(conn: psycopg.Connection[Any]) -> int:
    """Items waiting in the queue (including ones backing off after a failure)."""
    row = conn.execute(sqlfiles.read("queries/item_queue_depth.sql")).fetchone()
    return int(row[0]) if row else 0


def embed_all(conn: psycopg.Connection[Any], *, batch_size: int = 128,
              progress: bool = False) -> int:
    """Queue every item and drain the queue in this process, with a progress bar.

    Items whose vectors are current are only checked, not embedded again.
    """
    conn.execute("select pyembed.enqueue_items()")
    conn.commit()
    return drain(conn, batch_size=batch_size, progress=progress)


def drain(conn: psycopg.Connection[Any], *, batch_size: int = 128, progress: bool = False) -> int:
    """Run :func:`embed_step` until the queue has nothing ready; returns items handled."""
    done = 0
    with tqdm(total=queue_depth(conn), desc="embed items", unit="item",
              disable=not progress) as bar:
        while handled := embed_step(conn, batch_size):
            done += handled
            bar.update(handled)
    return done


@dataclass(frozen=True)
class Reembedded:
    """What :func:`reembed` did: the model afterwards (with its vector count) and the items
    handled (checked or embedded)."""

    model: ModelInfo
    items: int


def reembed(conn: psycopg.Connection[Any], model: str, *, batch_size: int = 128,
            progress: bool = False) -> Reembedded:
    """Fill the vectors of ``model`` (``NAME`` or ``NAME:VERSION``) while searches keep the
    active one: ``pyembed.reembed_model`` marks it ``syncing`` (the worker keeps it up to date
    from now on) and queues every item, then this process drains the queue.
    Switch afterwards with :func:`activate_model`.

    Example::

        done = reembed(conn, "all-MiniLM-L6-v2:fp32")
        activate_model(conn, done.model.label)
    """
    info = get_model(conn, model)
    try:
        conn.execute("select pyembed.reembed_model(%s)", (info.model_id,))
        conn.commit()
    except psycopg.Error as exc:
        conn.rollback()
        raise translate(exc) from exc
    items = drain(conn, batch_size=batch_size, progress=progress)
    return Reembedded(get_model(conn, info.name, info.version), items)
