"""The CLI: every command has help and is documented; the embedded server starts and stops."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from pyembed_db.cli.main import build_parser

README = Path(__file__).resolve().parents[1] / "README.md"


def _commands(
    parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
) -> list[tuple[str, ...]]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append((*prefix, name))
                found += _commands(sub, (*prefix, name))
    return found


COMMANDS = _commands(build_parser())


def test_there_are_commands() -> None:
    assert ("migrate",) in COMMANDS and ("server", "start") in COMMANDS


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help(
    command: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([*command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: pyembed-db " + " ".join(command))
    assert len(out.splitlines()) >= 3


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_is_in_the_readme(command: tuple[str, ...]) -> None:
    text = README.read_text(encoding="utf-8")
    assert re.search(r"pyembed-db " + r"\s+".join(map(re.escape, command)) + r"\b", text), command


def test_server_start_status_stop() -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="pe-cli-", dir="/tmp"))
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["PYEMBED_DATA_DIR"] = str(data_dir)

    def run(*args: str) -> dict[str, object]:
        result = subprocess.run(
            [sys.executable, "-m", "pyembed_db.cli.main", *args, "--json"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        return dict(json.loads(result.stdout))

    try:
        assert run("server", "status")["running"] is False
        started = run("server", "start")
        assert started["running"] is True and str(data_dir) in str(started["url"])
        assert run("server", "status")["running"] is True
        assert run("migrate")["to"] is not None
        assert run("migrate")["changed"] is False
        assert run("server", "stop")["stopped"] is True
        assert run("server", "status")["running"] is False
    finally:
        subprocess.run(
            [sys.executable, "-m", "pyembed_db.cli.main", "server", "stop"],
            env=env,
            capture_output=True,
        )
        shutil.rmtree(data_dir, ignore_errors=True)
