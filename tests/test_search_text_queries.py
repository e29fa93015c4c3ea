"""Text queries end to end: items embedded by the real default model, then searched by text."""

from __future__ import annotations

import pytest

import pyembed_db as pe
from pyembed_db.db import connect
from pyembed_db.embed import drain, register_default_model

ITEMS = [
    ("m1", "Star Wars", "A farm boy joins rebels to fight an empire among the stars.", "Sci-Fi"),
    ("m2", "Alien", "The crew of a spaceship is hunted by a deadly creature in space.", "Sci-Fi"),
    ("m3", "Pride and Prejudice", "A witty romance between proud gentry in rural England.",
     "Romance"),
    ("m4", "The Great British Bake Off", "Amateur bakers compete with cakes and bread.",
     "Documentary"),
]


@pytest.fixture(scope="module")
def text_items(module_db_url: str) -> None:
    with connect(module_db_url) as conn:
        register_default_model(conn)
        conn.cursor().executemany(
            "insert into pyembed.items (external_id, title, body, category, tags) "
            "values (%s, %s, %s, %s, array[%s])", [(*row, row[3]) for row in ITEMS])
        conn.commit()
        drain(conn)


@pytest.fixture
def text_url(text_items: None, db_url: str) -> str:
    return db_url


def test_text_query_is_embedded_with_the_active_model(text_url: str) -> None:
    with connect(text_url) as conn:
        hits = pe.search(conn, "space adventure", k=2)
        assert {h.external_id for h in hits} == {"m1", "m2"}
        romance = pe.search(conn, "space adventure", k=3, filters={"category": "Romance"})
        assert [h.external_id for h in romance] == ["m3"]


def test_hybrid_text_search_uses_keywords_and_meaning(text_url: str) -> None:
    with connect(text_url) as conn:
        hits = pe.search_text(conn, "cakes", k=4)
        assert hits[0].external_id == "m4" and hits[0].text_rank == 1
        assert all(h.vector_rank is not None for h in hits)
        keywords_only = pe.search_text(conn, "romance", k=4, vector=False)
        assert [h.external_id for h in keywords_only] == ["m3"]
