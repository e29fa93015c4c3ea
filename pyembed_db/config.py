"""Settings from environment variables, read in exactly one place.

``DATABASE_URL``      use this PostgreSQL server instead of the embedded one.
``PYEMBED_DATA_DIR``  where the embedded server keeps its data (default: the user data dir).
``PYEMBED_THREADS``   onnxruntime intra-op threads (default: all cores).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs


@dataclass(frozen=True)
class Settings:
    """Resolved settings; build one with :func:`load_settings`."""

    database_url: str | None
    data_dir: Path
    threads: int

    @property
    def pgdata(self) -> Path:
        """Directory of the embedded server's cluster."""
        return self.data_dir / "pgdata"


def load_settings() -> Settings:
    """Read settings from the environment.

    Example::

        >>> load_settings().threads >= 1
        True
    """
    data_dir = os.environ.get("PYEMBED_DATA_DIR") or platformdirs.user_data_dir("pyembed-db")
    raw_threads = os.environ.get("PYEMBED_THREADS") or ""
    if raw_threads and not (raw_threads.isdigit() and int(raw_threads) >= 1):
        from .errors import ConfigurationError

        raise ConfigurationError(f"PYEMBED_THREADS must be a positive integer, got {raw_threads!r}")
    threads = int(raw_threads or os.cpu_count() or 1)
    return Settings(
        database_url=os.environ.get("DATABASE_URL") or None,
        data_dir=Path(data_dir).expanduser().resolve(),
        threads=max(1, threads),
    )
