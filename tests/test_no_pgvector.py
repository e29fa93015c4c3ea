"""A server without pgvector gives a clear message (a real PostgreSQL without the extension).

Uses the Debian PostgreSQL binaries of the machine image, which have no pgvector.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyembed_db import ConfigurationError, migrate

BIN_DIRS = sorted(glob.glob("/usr/lib/postgresql/*/bin"))


def _as_postgres(*cmd: str) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else list(cmd)


@pytest.fixture(scope="module")
def plain_postgres_url() -> Iterator[str]:
    if not BIN_DIRS:
        pytest.skip("no plain (pgvector-less) PostgreSQL binaries on this machine")
    bin_dir = Path(BIN_DIRS[-1])
    root = Path(tempfile.mkdtemp(prefix="pe-plain-", dir="/tmp"))
    data = root / "data"
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    subprocess.run(
        _as_postgres(str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"),
        check=True,
        capture_output=True,
    )
    subprocess.run(
        _as_postgres(
            str(bin_dir / "pg_ctl"),
            "-D",
            str(data),
            "-w",
            "-l",
            str(root / "log"),
            "-o",
            f"-h '' -k {root}",
            "start",
        ),
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql://postgres@/postgres?host={root}"
    finally:
        subprocess.run(
            _as_postgres(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"),
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


def test_migrate_without_pgvector_is_a_clear_error(plain_postgres_url: str) -> None:
    with pytest.raises(ConfigurationError, match="pgvector is not available"):
        migrate.upgrade(plain_postgres_url)


def test_cli_without_pgvector_exits_2_with_message(plain_postgres_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": plain_postgres_url}
    result = subprocess.run(
        [sys.executable, "-m", "pyembed_db.cli.main", "migrate"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "pgvector is not available" in result.stderr
    assert "Traceback" not in result.stderr
