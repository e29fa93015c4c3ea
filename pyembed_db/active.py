"""The active text model's id: the one lookup users, training and evaluate share.

A module of its own because :mod:`pyembed_db.users` imports :mod:`pyembed_db.training`, so
neither can hold it for the other.
"""

from __future__ import annotations

from typing import Any

import psycopg

from . import sqlfiles


def active_model_id(conn: psycopg.Connection[Any]) -> int | None:
    """The active text model's id, or None when no model is active (``pyembed.active_model_id``
    raises PE001 instead).

    Example::

        model_id = active_model_id(conn)
    """
    row = conn.execute(sqlfiles.read("queries/active_text_model.sql")).fetchone()
    return int(row[0]) if row else None
