"""Bulk loading: ML-100K with exact counts, every file format, and bad input that loses nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pyembed_db import LoadError
from pyembed_db.datasets import movielens
from pyembed_db.load import load_file

COUNTS_SQL = (
    "select (select count(*) from pyembed.users), (select count(*) from pyembed.items), "
    "(select count(*) from pyembed.events)"
)


def _counts(conn: psycopg.Connection[Any]) -> tuple[int, int, int]:
    row = conn.execute(COUNTS_SQL).fetchone()
    assert row is not None
    return (int(row[0]), int(row[1]), int(row[2]))


@pytest.fixture(scope="module")
def movielens_url(pg_admin_url: str, template_db_url: str) -> Iterator[str]:
    """MovieLens 100K loaded into a database of its own: the other tests load into empty ones."""
    from conftest import create_database, drop_database

    url = create_database(pg_admin_url, "ml", template=template_db_url)
    with psycopg.connect(url) as conn:
        movielens.load_movielens(conn)
    yield url
    drop_database(pg_admin_url, url)


@pytest.fixture
def loaded_url(movielens_url: str, clone_db: Callable[[str], str]) -> str:
    return clone_db(movielens_url)


def test_movielens_loads_exact_counts(loaded_url: str) -> None:
    with psycopg.connect(loaded_url) as conn:
        assert _counts(conn) == (943, 1682, 100_000)
        title, category, tags, year = (
            conn.execute(
                "select title, category, tags, attributes->>'year' from pyembed.items "
                "where external_id = '1'"
            ).fetchone()
            or ()
        )
        assert (title, category, tags, year) == (
            "Toy Story",
            "Animation",
            ["Animation", "Children's", "Comedy"],
            "1995",
        )
        ratings = conn.execute(
            "select min(value), max(value), count(distinct user_id) from pyembed.events"
        ).fetchone()
        assert ratings == (1.0, 5.0, 943)
        # Every new item and every user with events is queued for the worker.
        assert conn.execute("select count(*) from pyembed.item_queue").fetchone() == (1682,)
        assert conn.execute("select count(*) from pyembed.user_queue").fetchone() == (943,)


def test_movielens_second_load_adds_nothing(loaded_url: str) -> None:
    with psycopg.connect(loaded_url) as conn:
        counts = movielens.load_movielens(conn)
        assert counts["events"] == 0
        assert _counts(conn) == (943, 1682, 100_000)


def _write_csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_parquet_jsonl_all_load(db_url: str, tmp_path: Path) -> None:
    users = _write_csv(tmp_path / "users.csv", 'external_id,attributes\nfmt-u1,"{""tier"": 1}"\n')
    items_path = tmp_path / "items.parquet"
    pq.write_table(
        pa.table(
            {
                "external_id": ["fmt-i1", "fmt-i2"],
                "title": ["Red shoe", "Blue hat"],
                "tags": [["shoes", "red"], ["hats"]],
                "price": [19.99, 5.0],
            }
        ),
        items_path,
    )
    events = tmp_path / "events.jsonl"
    events.write_text(
        "\n".join(
            json.dumps(e)
            for e in [
                {
                    "user": "fmt-u1",
                    "item": "fmt-i1",
                    "event_type": "view",
                    "occurred_at": "2024-05-01T10:00:00Z",
                },
                {
                    "user": "fmt-u1",
                    "item": "fmt-i2",
                    "event_type": "purchase",
                    "occurred_at": 1714557600,
                },
            ]
        )
        + "\n"
    )
    with psycopg.connect(db_url) as conn:
        assert load_file(conn, "users", users) == 1
        assert load_file(conn, "items", items_path) == 2
        assert load_file(conn, "events", events) == 2
        row = conn.execute(
            "select i.tags, i.price::float8, u.attributes from pyembed.events e "
            "join pyembed.items i using (item_id) join pyembed.users u using (user_id) "
            "where i.external_id = 'fmt-i1'"
        ).fetchone()
        assert row == (["shoes", "red"], 19.99, {"tier": 1})


BAD_FILES = {
    "missing column": ("events.csv", "user,item\nu,i\n", "missing required column(s) event_type"),
    "unknown column": ("items.csv", "external_id,colour\ni,red\n", "unknown column(s) colour"),
    "unknown user": (
        "events.csv",
        "user,item,event_type\nbad-u1,bad-i1,view\nnobody,bad-i1,view\n",
        "row 2: unknown user 'nobody'",
    ),
    "unknown item": (
        "events.csv",
        "user,item,event_type\nbad-u1,ghost,view\n",
        "row 1: unknown item 'ghost'",
    ),
    "unknown event type": (
        "events.csv",
        "user,item,event_type\nbad-u1,bad-i1,teleport\n",
        "row 1: unknown event type 'teleport'",
    ),
    "malformed timestamp": (
        "events.csv",
        "user,item,event_type,occurred_at\nbad-u1,bad-i1,view,2024-01-01\n"
        "bad-u1,bad-i1,view,yesterday-ish\n",
        "row 2: occurred_at: not a timestamp",
    ),
    "bad json attributes": ("users.csv", "external_id,attributes\nx,{oops\n", "row 1: attributes"),
    "attributes not an object": (
        "users.csv",
        'external_id,attributes\nx,"[1,2]"\n',
        "must be a JSON object",
    ),
    "duplicate id": ("users.csv", "external_id\nd1\nd2\nd1\n", "row 3: duplicate external_id"),
    "empty id": ("users.csv", "external_id\nok\n  \n", "row 2: external_id is required"),
    "negative price": ("items.csv", "external_id,price\np1,-3\n", "row 1: price: must be >= 0"),
    "nan value": (
        "events.csv",
        "user,item,event_type,value\nbad-u1,bad-i1,rating,nan\n",
        "row 1: value: must be finite",
    ),
    "nul character": ("items.csv", "external_id,title\nn1,a\x00b\n", "NUL"),
    "bad jsonl line": ("users.jsonl", '{"external_id": "j1"}\n{"external_id": \n', "row 2"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_input_names_the_row_and_writes_nothing(db_url: str, tmp_path: Path, case: str) -> None:
    name, text, message = BAD_FILES[case]
    path = _write_csv(tmp_path / name, text)
    kind = name.split(".")[0]
    with psycopg.connect(db_url) as conn:
        load_file(conn, "users", _write_csv(tmp_path / "u.csv", "external_id\nbad-u1\n"))
        load_file(conn, "items", _write_csv(tmp_path / "i.csv", "external_id\nbad-i1\n"))
        before = _counts(conn)
        with pytest.raises(LoadError) as excinfo:
            load_file(conn, kind, path)
        assert message in str(excinfo.value)
        assert str(path) in str(excinfo.value)
        assert _counts(conn) == before


def test_invalid_utf8_is_rejected(db_url: str, tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    path.write_bytes(b"external_id,title\nu8,caf\xe9\n")
    with psycopg.connect(db_url) as conn:
        before = _counts(conn)
        with pytest.raises(LoadError, match="not valid UTF-8"):
            load_file(conn, "items", path)
        assert _counts(conn) == before


def test_cli_load_reports_row_and_exits_2(db_url: str, tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "events.csv", "user,item,event_type\nnobody,x,view\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pyembed_db.cli.main",
            "--database-url",
            db_url,
            "load",
            "events",
            str(path),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "row 1: unknown user 'nobody'" in result.stderr


# ------------------------------------------------- issue 10, case 6: formats and value types

LONG = 200_000  # over the csv module's default field limit (131,072), under the text limit


def _items(conn: psycopg.Connection[Any], prefix: str) -> list[tuple[Any, ...]]:
    return conn.execute(
        "select external_id, title, length(body), category from pyembed.items "
        "where external_id like %s order by external_id", (prefix + "%",)).fetchall()


@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
def test_field_over_131072_characters_loads(db_url: str, tmp_path: Path, suffix: str) -> None:
    sep = "," if suffix == ".csv" else "\t"
    path = _write_csv(tmp_path / f"items{suffix}",
                      f"external_id{sep}body\nlong{suffix}{sep}{'x' * LONG}\n")
    with psycopg.connect(db_url) as conn:
        assert load_file(conn, "items", path) == 1
        assert _items(conn, f"long{suffix}") == [(f"long{suffix}", None, LONG, None)]


@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
def test_field_over_the_text_limit_names_the_row(db_url: str, tmp_path: Path,
                                                 suffix: str) -> None:
    from pyembed_db.load_formats import FIELD_LIMIT

    sep = "," if suffix == ".csv" else "\t"
    path = _write_csv(tmp_path / f"items{suffix}", f"external_id{sep}body\nok{sep}short\n"
                      f"huge{sep}{'x' * (FIELD_LIMIT + 1)}\n")
    with psycopg.connect(db_url) as conn:
        before = _counts(conn)
        with pytest.raises(LoadError) as info:
            load_file(conn, "items", path)
        assert info.value.row == 2
        assert f"longer than {FIELD_LIMIT:,} characters" in str(info.value)
        assert _counts(conn) == before


def test_long_id_in_tsv_is_a_row_error(db_url: str, tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "users.tsv", f"external_id\nfine\n{'u' * LONG}\n")
    with psycopg.connect(db_url) as conn, pytest.raises(LoadError) as info:
        load_file(conn, "users", path)
    assert info.value.row == 2
    assert "external_id is longer than 512 characters" in str(info.value)


def test_tsv_quotes_are_ordinary_characters(db_url: str, tmp_path: Path) -> None:
    # With CSV quoting the first title would swallow the rows up to the next quote.
    path = _write_csv(tmp_path / "items.tsv", 'external_id\ttitle\tcategory\n'
                      'tq1\t"Quoted start\tbooks\ntq2\tplain\ttoys\ntq3\tends with "\tgames\n')
    with psycopg.connect(db_url) as conn:
        assert load_file(conn, "items", path) == 3
        assert [(r[0], r[1], r[3]) for r in _items(conn, "tq")] == [
            ("tq1", '"Quoted start', "books"), ("tq2", "plain", "toys"),
            ("tq3", 'ends with "', "games")]


WRONG_TYPES = [
    pytest.param("items", {"external_id": "wt1", "title": {"a": 1}},
                 "title: must be a string, got dict", id="object as title"),
    pytest.param("items", {"external_id": "wt1", "category": True},
                 "category: must be a string, got bool", id="boolean as category"),
    pytest.param("items", {"external_id": "wt1", "title": 1.5},
                 "title: must be a string, got float", id="float as title"),
    pytest.param("items", {"external_id": ["wt1"]}, "external_id: must be a string, got list",
                 id="list as id"),
    pytest.param("items", {"external_id": "wt1", "price": True},
                 "price: must be a number, got bool", id="boolean as price"),
    pytest.param("items", {"external_id": "wt1", "created_at": {"y": 2024}},
                 "created_at: must be a timestamp", id="object as timestamp"),
    pytest.param("events", {"user": "tu", "item": "ti", "event_type": "rating", "value": True},
                 "value: must be a number, got bool", id="boolean as value"),
    pytest.param("events", {"user": "tu", "item": "ti", "event_type": ["view"]},
                 "event_type: must be a string, got list", id="list as event type"),
]


@pytest.mark.parametrize(("kind", "record", "message"), WRONG_TYPES)
def test_jsonl_wrong_type_is_a_row_error(db_url: str, tmp_path: Path, kind: str,
                                         record: dict[str, Any], message: str) -> None:
    good = ({"external_id": "wt0"} if kind == "items"
            else {"user": "tu", "item": "ti", "event_type": "view"})
    path = tmp_path / f"{kind}.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(record) + "\n")
    with psycopg.connect(db_url) as conn:
        load_file(conn, "users", _write_csv(tmp_path / "u.csv", "external_id\ntu\n"))
        load_file(conn, "items", _write_csv(tmp_path / "i.csv", "external_id\nti\n"))
        before = _counts(conn)
        with pytest.raises(LoadError) as info:
            load_file(conn, kind, path)
        assert info.value.row == 2, str(info.value)
        assert message in str(info.value)
        assert _counts(conn) == before


def test_parquet_bytes_are_a_row_error(db_url: str, tmp_path: Path) -> None:
    path = tmp_path / "items.parquet"
    pq.write_table(pa.table({"external_id": ["pb1", "pb2"], "title": [b"ok", b"\x00\xff"]}),
                   path)
    with psycopg.connect(db_url) as conn:
        before = _counts(conn)
        with pytest.raises(LoadError) as info:
            load_file(conn, "items", path)
        assert info.value.row == 1
        assert "title: must be a string, got bytes" in str(info.value)
        assert _counts(conn) == before


def test_parquet_integer_ids_load_as_text(db_url: str, tmp_path: Path) -> None:
    path = tmp_path / "users.parquet"
    pq.write_table(pa.table({"external_id": pa.array([90001, 90002], pa.int64())}), path)
    with psycopg.connect(db_url) as conn:
        assert load_file(conn, "users", path) == 2
        assert conn.execute("select count(*) from pyembed.users where external_id in "
                            "('90001', '90002')").fetchone() == (2,)


def _nested(depth: int) -> str:
    return '{"a": ' * depth + "1" + "}" * depth


def test_deeply_nested_jsonl_line_is_a_row_error(db_url: str, tmp_path: Path) -> None:
    path = tmp_path / "users.jsonl"
    path.write_text('{"external_id": "deep0"}\n'
                    '{"external_id": "deep1", "attributes": ' + _nested(100_000) + "}\n")
    with psycopg.connect(db_url) as conn, pytest.raises(LoadError) as info:
        load_file(conn, "users", path)
    assert info.value.row == 2
    assert "nested too deeply" in str(info.value)


def test_deeply_nested_attributes_text_is_a_row_error(db_url: str, tmp_path: Path) -> None:
    nested = _nested(100_000).replace('"', '""')
    path = _write_csv(tmp_path / "users.csv", f'external_id,attributes\ndeep2,"{nested}"\n')
    with psycopg.connect(db_url) as conn, pytest.raises(LoadError) as info:
        load_file(conn, "users", path)
    assert info.value.row == 1
    assert "attributes: JSON nested too deeply" in str(info.value)


@pytest.mark.parametrize("name", ["users.csv", "users.tsv", "users.parquet"])
def test_duplicate_header_column_is_refused(db_url: str, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    if name.endswith(".parquet"):
        pq.write_table(pa.Table.from_arrays([pa.array(["a"]), pa.array(["b"])],
                                            names=["external_id", "external_id"]), path)
    else:
        sep = "," if name.endswith(".csv") else "\t"
        _write_csv(path, f"external_id{sep}attributes{sep}external_id\ndup1{sep}{sep}dup2\n")
    with psycopg.connect(db_url) as conn:
        before = _counts(conn)
        with pytest.raises(LoadError, match=r"duplicate column\(s\) external_id"):
            load_file(conn, "users", path)
        assert _counts(conn) == before


def test_load_rows_refuses_a_row_that_is_not_a_mapping(db_url: str) -> None:
    from pyembed_db.load import load_rows

    with psycopg.connect(db_url) as conn, pytest.raises(LoadError) as info:
        load_rows(conn, "users", ["external_id"], [{"external_id": "m1"}, ["m2"]])  # type: ignore[list-item]
    assert info.value.row == 2
    assert "each row must be a mapping" in str(info.value)


def test_events_load_analyzes_users_and_items_it_joins(pg_admin_url: str, tmp_path: Path) -> None:
    """Right after `load users` / `load items` (autovacuum off here, as if it had not run yet)
    the events merge must not be planned on missing statistics."""
    from conftest import create_database, drop_database

    from pyembed_db import migrate

    url = create_database(pg_admin_url)
    try:
        migrate.upgrade(url)
        with psycopg.connect(url) as conn:
            for table in ("users", "items"):
                conn.execute(f"alter table pyembed.{table} set (autovacuum_enabled = off)")
            conn.commit()
            load_file(conn, "users", _write_csv(tmp_path / "u.csv", "external_id\n" + "".join(
                f"au{n}\n" for n in range(300))))
            load_file(conn, "items", _write_csv(tmp_path / "i.csv", "external_id\n" + "".join(
                f"ai{n}\n" for n in range(500))))
            stats = "select reltuples from pg_class where oid = %s::regclass"
            assert conn.execute(stats, ("pyembed.users",)).fetchone() == (-1,)
            load_file(conn, "events", _write_csv(tmp_path / "e.csv", "user,item,event_type\n"
                                                 "au1,ai2,view\n"))
            assert conn.execute(stats, ("pyembed.users",)).fetchone() == (300,)
            assert conn.execute(stats, ("pyembed.items",)).fetchone() == (500,)
    finally:
        drop_database(pg_admin_url, url)
