"""pyembed-db: vector search, embeddings and recommendations inside PostgreSQL + pgvector.

Public API (everything else is internal)::

    import pyembed_db as pe
    pe.migrate.upgrade()
    with pe.connect() as conn: ...
"""

from __future__ import annotations

from importlib.metadata import version as _version

import lazy_loader

# The public API is listed in __init__.pyi and imported on first use: every CLI command and
# every `import pyembed_db` would otherwise pay for scipy, SQLAlchemy, Alembic and onnxruntime
# (1.5 s) whether it needs them or not.
__getattr__, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)

__version__ = _version("pyembed-db")
