"""The public API of ``pyembed_db``: every listed name resolves, and importing the package or
the CLI does not pull in the heavy libraries only some commands need (their start time)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pyembed_db

STUB = Path(pyembed_db.__file__).with_suffix(".pyi")
# Libraries only the ORM, migrations, embedding or training need (0.2-0.6 s of import each).
HEAVY = ("sqlalchemy", "alembic", "onnxruntime", "tokenizers", "implicit", "torch")


def _loaded_after(code: str) -> set[str]:
    """The HEAVY top-level modules a fresh interpreter has loaded after running ``code``."""
    probe = f"{code}\nimport sys\nprint(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True,
                         text=True).stdout.split()
    return set(HEAVY) & set(out)


def _stub_all() -> list[str]:
    for node in ast.parse(STUB.read_text()).body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            return list(ast.literal_eval(node.value))
    raise AssertionError(f"no __all__ in {STUB}")


def test_every_public_name_resolves_and_the_stub_lists_the_same_names() -> None:
    assert sorted(_stub_all()) == sorted(pyembed_db.__all__)
    for name in pyembed_db.__all__:
        assert getattr(pyembed_db, name) is not None, name
    assert set(pyembed_db.__all__) <= set(dir(pyembed_db))
    assert isinstance(pyembed_db.__version__, str)


def test_an_unknown_name_is_an_attribute_error() -> None:
    try:
        pyembed_db.no_such_function  # noqa: B018
    except AttributeError as exc:
        assert "no_such_function" in str(exc)
    else:
        raise AssertionError("pyembed_db.no_such_function resolved")


def test_importing_the_package_and_connect_loads_no_heavy_library() -> None:
    assert _loaded_after("import pyembed_db as pe\npe.connect\npe.search") == set()


def test_the_cli_parser_loads_no_heavy_library() -> None:
    assert _loaded_after("from pyembed_db.cli.main import build_parser\nbuild_parser()") == set()


def test_a_public_name_loads_its_library_when_used() -> None:
    # The laziness must not lose anything: asking for the ORM engine brings SQLAlchemy in.
    assert _loaded_after("import pyembed_db as pe\npe.create_sa_engine") == set()
    assert "sqlalchemy" in _loaded_after(
        "import pyembed_db as pe\npe.create_sa_engine('postgresql://u@h/db').dispose()")
