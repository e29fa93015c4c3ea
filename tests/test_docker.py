"""docker/: Docker cannot run here, so the compose file and Dockerfile are checked statically
against the repository and the CLI they call."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from pyembed_db.cli.main import build_parser

DOCKER = Path(__file__).resolve().parents[1] / "docker"
ROOT = DOCKER.parent


def _compose() -> dict[str, Any]:
    return dict(yaml.safe_load((DOCKER / "compose.yaml").read_text(encoding="utf-8")))


def test_database_is_the_official_pgvector_image_with_pgvector_0_8_or_later() -> None:
    image = _compose()["services"]["db"]["image"]
    found = re.fullmatch(r"pgvector/pgvector:(\d+)\.(\d+)\.\d+-pg\d+", image)
    assert found and (int(found[1]), int(found[2])) >= (0, 8), image


def test_every_pyembed_service_runs_a_real_cli_command_against_the_db() -> None:
    services = _compose()["services"]
    pyembed = {name: s for name, s in services.items() if name != "db"}
    assert {"migrate", "worker", "cli"} <= set(pyembed)
    for name, service in pyembed.items():
        assert service["build"]["dockerfile"] == "docker/Dockerfile", name
        assert "@db:5432/" in service["environment"]["DATABASE_URL"], name
        assert "models:/data" in service["volumes"], name
        build_parser().parse_args(service["command"])  # exits on an unknown command or flag
    worker = pyembed["worker"]
    assert worker["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert worker["stop_signal"] == "SIGTERM"


def test_dockerfile_copies_what_exists_and_keeps_models_in_the_shared_volume() -> None:
    text = (DOCKER / "Dockerfile").read_text(encoding="utf-8")
    for line in re.findall(r"^COPY (.+) \S+$", text, flags=re.M):
        for source in line.split():
            assert (ROOT / source).exists(), source
    assert "PYEMBED_DATA_DIR=/data" in text and 'ENTRYPOINT ["pyembed-db"]' in text
