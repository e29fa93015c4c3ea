"""Access to the ``.sql`` files shipped in the package (``sql/`` in the source tree)."""

from __future__ import annotations

from importlib import resources
from importlib.abc import Traversable


def _root() -> Traversable:
    return resources.files("pyembed_db.sql")


def read(relative_path: str) -> str:
    """Text of one SQL file, e.g. ``read("schema/0001_base.up.sql")``."""
    return _root().joinpath(relative_path).read_text(encoding="utf-8")


def function_files() -> list[str]:
    """The idempotent ``functions/*.sql`` files, in the order they must be applied."""
    names = [f.name for f in _root().joinpath("functions").iterdir() if f.name.endswith(".sql")]
    return [f"functions/{name}" for name in sorted(names)]
