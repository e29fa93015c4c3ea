"""Synthetic catalogs for the search tests: clustered unit vectors plus filterable attributes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import psycopg

CATEGORIES = ["books", "music", "games", "garden", "toys", "tools", "food", "rare"]
TAGS = ["red", "green", "blue", "new", "sale", "eco", "premium", "limited"]
EPOCH = datetime(2020, 1, 1, tzinfo=UTC)


@dataclass
class Catalog:
    """What was loaded: vectors and attributes in item_id order (row i is item ``ids[i]``)."""

    model_id: int
    ids: np.ndarray
    vectors: np.ndarray
    category: list[str]
    price: np.ndarray
    created_at: list[datetime]
    tags: list[list[str]]
    color: list[str]

    def brute_force(self, query: np.ndarray, mask: np.ndarray, k: int) -> list[int]:
        """Ids of the k nearest (cosine) among ``mask``, ties broken by id."""
        q = query / np.linalg.norm(query)
        dist = 1.0 - self.vectors @ q
        order = np.lexsort((self.ids, dist))
        return [int(self.ids[i]) for i in order if mask[i]][:k]


def make_model(conn: psycopg.Connection[Any], dims: int, name: str = "synthetic",
               storage: str = "vector", index: bool = True) -> int:
    """Register an active model row (fake checksum) and build its HNSW index."""
    conn.execute("update pyembed.embedding_models set status = 'retired' where status = 'active'")
    row = conn.execute(
        "insert into pyembed.embedding_models (name, dimensions, checksum, status) "
        "values (%s, %s, %s, 'active') returning model_id",
        (name, dims, "0" * 64),
    ).fetchone()
    assert row is not None
    if index:
        conn.execute("select pyembed.ensure_model_index(%s, %s)", (row[0], storage))
    return int(row[0])


def clustered(n: int, dims: int, clusters: int, rng: np.random.Generator) -> np.ndarray:
    """Unit vectors around ``clusters`` random centers."""
    centers = rng.normal(size=(clusters, dims))
    labels = rng.integers(0, clusters, size=n)
    x = centers[labels] + 0.6 * rng.normal(size=(n, dims))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def load_catalog(conn: psycopg.Connection[Any], n: int = 3000, dims: int = 32, seed: int = 7,
                 storage: str = "vector", prefix: str = "it") -> Catalog:
    """Insert ``n`` items with vectors for a new active model; commits and analyzes."""
    rng = np.random.default_rng(seed)
    model_id = make_model(conn, dims, name=f"synthetic-{prefix}-{dims}", storage=storage)
    vectors = clustered(n, dims, 20, rng)
    # Zipf-like categories: "books" ~ half, "rare" ~ 0.1%.
    weights = np.array([0.5, 0.2, 0.12, 0.08, 0.05, 0.035, 0.014, 0.001])
    category = [CATEGORIES[i] for i in rng.choice(len(CATEGORIES), size=n, p=weights)]
    price = np.round(rng.uniform(0, 100, size=n), 2)
    created = [EPOCH + timedelta(hours=int(h)) for h in rng.integers(0, 24 * 365, size=n)]
    tags = [[t for t in TAGS if rng.random() < 0.3] for _ in range(n)]
    color = [str(c) for c in rng.choice(["red", "black", "white"], size=n)]
    with conn.cursor().copy(
        "copy pyembed.items (external_id, title, category, price, created_at, tags, attributes) "
        "from stdin"
    ) as copy:
        for j in range(n):
            copy.write_row((f"{prefix}-{j}", f"item {j}", category[j], price[j], created[j],
                            tags[j], json.dumps({"color": color[j], "rank": j % 10})))
    ids = np.array([r[0] for r in conn.execute(
        "select item_id from pyembed.items where external_id like %s order by item_id",
        (f"{prefix}-%",))], dtype=np.int64)
    with conn.cursor().copy(
        "copy pyembed.item_embeddings (model_id, item_id, embedding, content_hash) from stdin"
    ) as copy:
        for item_id, v in zip(ids, vectors, strict=True):
            copy.write_row((model_id, int(item_id), "[" + ",".join(map(str, v)) + "]", b"x"))
    conn.commit()
    conn.execute("analyze pyembed.items")
    conn.execute("analyze pyembed.item_embeddings")
    conn.commit()
    return Catalog(model_id, ids, vectors, category, price, created, tags, color)
