"""pyembed-db: vector search, embeddings and recommendations inside PostgreSQL + pgvector.

Public API (everything else is internal)::

    import pyembed_db as pe
    pe.migrate.upgrade()
    with pe.connect() as conn: ...
"""

from __future__ import annotations

from . import migrate
from .config import Settings, load_settings
from .db import connect, create_sa_engine
from .errors import (
    ConfigurationError,
    InvalidInputError,
    LoadError,
    ModelError,
    NotFoundError,
    PyembedError,
    ServerError,
)
from .load import load_file, load_rows
from .server import database_url

__all__ = [
    "ConfigurationError",
    "InvalidInputError",
    "LoadError",
    "ModelError",
    "NotFoundError",
    "PyembedError",
    "ServerError",
    "Settings",
    "connect",
    "create_sa_engine",
    "database_url",
    "load_file",
    "load_rows",
    "load_settings",
    "migrate",
]
