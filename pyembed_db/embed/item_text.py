"""The text an item is embedded from, built by a per-model template.

Recformer-style flattening: the title first, then ``key: value`` pairs for the other fields and
for each attribute, joined with ``"; "``. Lists are joined with ``", "``. Which fields and which
attribute keys take part is configured per model (``embedding_models.config``)::

    {"text_fields": ["title", "body", "category", "tags", "attributes"],
     "attribute_keys": null}        # null: every attribute, sorted by key

Example: ``Toy Story; category: Animation; tags: Animation, Children's, Comedy; year: 1995``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

# The columns of pyembed.items the text is made from are declared in SQL
# (``pyembed.item_text_columns()``): the worker reads them with :func:`text_columns`, and the
# update trigger compares them. This copy only serves rendering without a database (benchmarks);
# tests/test_embed_sql.py checks it equals the SQL list.
OFFLINE_FIELDS = ("title", "body", "category", "tags", "attributes")


def _flat(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ", ".join(_flat(v) for v in value if _flat(v))
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {_flat(v)}" for k, v in sorted(value.items()) if _flat(v))
    return str(value).strip()


def text_columns(conn: psycopg.Connection[Any]) -> tuple[str, ...]:
    """The item columns an embedded text is made from, as declared in SQL.

    Example::

        text_columns(conn)   # ('title', 'body', 'category', 'tags', 'attributes')
    """
    row = conn.execute("select pyembed.item_text_columns()").fetchone()
    assert row is not None
    return tuple(row[0])


@dataclass(frozen=True)
class ItemTextTemplate:
    """Which item fields, in which order, make the embedded text."""

    fields: tuple[str, ...] = OFFLINE_FIELDS
    attribute_keys: tuple[str, ...] | None = None

    @classmethod
    def from_config(cls, config: Mapping[str, Any], columns: Sequence[str]) -> ItemTextTemplate:
        """Read ``text_fields`` / ``attribute_keys`` from a model's config; ``columns``
        (:func:`text_columns`) are the fields allowed and the default.

        Example::

            ItemTextTemplate.from_config({"text_fields": ["title"]}, text_columns(conn))
        """
        fields = tuple(config.get("text_fields") or columns)
        unknown = set(fields) - set(columns)
        if unknown:
            raise ValueError(f"unknown text_fields {sorted(unknown)}; use {sorted(columns)}")
        keys = config.get("attribute_keys")
        return cls(fields, tuple(keys) if keys is not None else None)

    def render(self, item: Mapping[str, Any]) -> str:
        """The text for one item (a mapping with title, body, category, tags, attributes)."""
        parts: list[str] = []
        for field in self.fields:
            if field == "title":
                parts.append(_flat(item.get("title")))
            elif field == "attributes":
                parts += self._attributes(item.get("attributes") or {})
            else:
                value = _flat(item.get(field))
                if value:
                    parts.append(f"{field}: {value}" if field != "body" else value)
        return "; ".join(p for p in parts if p)

    def _attributes(self, attributes: Mapping[str, Any]) -> list[str]:
        keys: Sequence[str] = (
            self.attribute_keys if self.attribute_keys is not None else sorted(attributes)
        )
        return [f"{k}: {_flat(attributes[k])}" for k in keys if _flat(attributes.get(k))]


def content_hash(text: str) -> bytes:
    """sha256 of the embedded text: an item is re-embedded only when this changes."""
    return hashlib.sha256(text.encode("utf-8")).digest()
