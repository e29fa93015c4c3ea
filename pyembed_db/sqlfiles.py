"""Access to the ``.sql`` files shipped in the package (``sql/`` in the source tree)."""

from __future__ import annotations

import hashlib
from functools import cache
from importlib import resources
from importlib.abc import Traversable

# Every grant of the schema, applied after the function files.
GRANTS = "grants.sql"


def _root() -> Traversable:
    return resources.files("pyembed_db.sql")


@cache
def read(relative_path: str) -> str:
    """Text of one SQL file, e.g. ``read("schema/0001_base.up.sql")`` (read once per process)."""
    return _root().joinpath(relative_path).read_text(encoding="utf-8")


def function_files() -> list[str]:
    """The idempotent ``functions/*.sql`` files, in the order they must be applied."""
    names = [f.name for f in _root().joinpath("functions").iterdir() if f.name.endswith(".sql")]
    return [f"functions/{name}" for name in sorted(names)]


def functions_sha256() -> str:
    """One checksum over the names and texts of the function files and the grants.

    Example::

        >>> len(functions_sha256())
        64
    """
    digest = hashlib.sha256()
    for path in [*function_files(), GRANTS]:
        digest.update(path.encode() + b"\0" + read(path).encode() + b"\0")
    return digest.hexdigest()
