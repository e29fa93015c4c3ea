"""Events' references to users, items and event types (sql/functions/05_references.sql).

They are checked per statement instead of by foreign keys; these tests hold them to what the
foreign keys guaranteed, including against concurrent transactions.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors

EVENT = "insert into pyembed.events (user_id, item_id, event_type) values (%s, %s, %s)"


@pytest.fixture
def ids(db_url: str) -> Iterator[tuple[int, int]]:
    """A fresh user and item (committed); removed afterwards."""
    with psycopg.connect(db_url) as conn:
        user = conn.execute("insert into pyembed.users (external_id) values (gen_random_uuid()) "
                            "returning user_id").fetchone()[0]
        item = conn.execute("insert into pyembed.items (external_id) values (gen_random_uuid()) "
                            "returning item_id").fetchone()[0]
    yield user, item
    with psycopg.connect(db_url) as conn:
        conn.execute("delete from pyembed.users where user_id = %s", (user,))
        conn.execute("delete from pyembed.items where item_id = %s", (item,))


def _events(conn: psycopg.Connection[Any], column: str, key: int) -> int:
    return int(conn.execute(f"select count(*) from pyembed.events where {column} = %s",
                            (key,)).fetchone()[0])


@pytest.mark.parametrize(("bad", "column", "detail"), [
    ("user", "user_id", 'Key (user_id)=(999999999) is not present in table "users".'),
    ("item", "item_id", 'Key (item_id)=(999999999) is not present in table "items".'),
    ("type", "event_type", 'Key (event_type)=(teleport) is not present in table "event_types".'),
])
def test_missing_reference_is_a_foreign_key_violation(db_url: str, ids: tuple[int, int],
                                                      bad: str, column: str,
                                                      detail: str) -> None:
    user, item = ids
    rows = [(user, item, "view")] * 3 + [(999999999 if bad == "user" else user,
                                          999999999 if bad == "item" else item,
                                          "teleport" if bad == "type" else "view")]
    with psycopg.connect(db_url) as conn:
        with pytest.raises(errors.ForeignKeyViolation) as info:
            conn.cursor().executemany(EVENT, rows)
        assert info.value.diag.message_detail == detail
        assert info.value.diag.constraint_name == f"events_{column}_fkey"
        conn.rollback()
        assert _events(conn, "user_id", user) == 0


def test_update_to_a_missing_reference_is_refused(db_url: str, ids: tuple[int, int]) -> None:
    user, item = ids
    with psycopg.connect(db_url) as conn:
        conn.execute(EVENT, (user, item, "view"))
        with pytest.raises(errors.ForeignKeyViolation):
            conn.execute("update pyembed.events set item_id = 999999999 where user_id = %s",
                         (user,))


def test_deleting_users_and_items_deletes_their_events(db_url: str,
                                                       ids: tuple[int, int]) -> None:
    user, item = ids
    with psycopg.connect(db_url) as conn:
        other = conn.execute("insert into pyembed.items (external_id) values "
                             "(gen_random_uuid()) returning item_id").fetchone()[0]
        conn.cursor().executemany(EVENT, [(user, item, "view"), (user, other, "like")])
        conn.commit()
        conn.execute("delete from pyembed.items where item_id = %s", (other,))
        assert (_events(conn, "user_id", user), _events(conn, "item_id", other)) == (1, 0)
        conn.execute("delete from pyembed.users where user_id = %s", (user,))
        assert _events(conn, "item_id", item) == 0


def test_event_type_in_use_cannot_be_deleted_or_renamed(db_url: str,
                                                        ids: tuple[int, int]) -> None:
    user, item = ids
    with psycopg.connect(db_url) as conn:
        conn.execute("insert into pyembed.event_types (event_type, weight) values "
                     "('share', 2), ('unused', 1)")
        conn.execute(EVENT, (user, item, "share"))
        for statement in ("delete from pyembed.event_types where event_type = 'share'",
                          "update pyembed.event_types set event_type = 'shared' "
                          "where event_type = 'share'"):
            with pytest.raises(errors.ForeignKeyViolation) as info, conn.transaction():
                conn.execute(statement)
            assert "(event_type)=(share) is still referenced" in str(info.value.diag.message_detail)
        conn.execute("update pyembed.event_types set weight = 3 where event_type = 'share'")
        conn.execute("delete from pyembed.event_types where event_type = 'unused'")
        conn.rollback()


@pytest.mark.parametrize("table", ["users", "items", "event_types"])
def test_truncate_of_a_referenced_table_alone_is_refused(db_url: str, ids: tuple[int, int],
                                                         table: str) -> None:
    user, item = ids
    with psycopg.connect(db_url) as conn:
        conn.execute(EVENT, (user, item, "view"))
        with pytest.raises(errors.FeatureNotSupported, match="referenced in a foreign key"):
            conn.execute(f"truncate pyembed.{table} cascade")
        conn.rollback()
        conn.execute(EVENT, (user, item, "view"))
        conn.execute(f"truncate pyembed.{table}, pyembed.events cascade")
        assert conn.execute("select count(*) from pyembed.events").fetchone() == (0,)
        conn.rollback()


def test_ids_cannot_change(db_url: str, ids: tuple[int, int]) -> None:
    user, _ = ids
    with psycopg.connect(db_url) as conn, pytest.raises(errors.ForeignKeyViolation):
        conn.execute("update pyembed.users set user_id = default where user_id = %s", (user,))


@pytest.mark.parametrize("isolation", ["repeatable read", "serializable"])
def test_deletes_outside_read_committed_are_refused(db_url: str, ids: tuple[int, int],
                                                    isolation: str) -> None:
    user, _ = ids
    with psycopg.connect(db_url) as conn:
        conn.execute(f"set transaction isolation level {isolation}")
        with pytest.raises(errors.FeatureNotSupported, match="READ COMMITTED"):
            conn.execute("delete from pyembed.users where user_id = %s", (user,))


def _waiting(db_url: str, pid: int) -> Callable[[], bool]:
    def check() -> bool:
        with psycopg.connect(db_url) as admin:
            row = admin.execute("select wait_event_type from pg_stat_activity where pid = %s",
                                (pid,)).fetchone()
        return bool(row and row[0] == "Lock")
    return check


def _wait_for(condition: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the other transaction never waited"
        time.sleep(0.05)


def _in_thread(db_url: str, statement: str, args: tuple[Any, ...]) -> tuple[threading.Thread,
                                                                            dict[str, Any]]:
    """Run one statement in its own transaction on a thread; its backend pid and outcome."""
    out: dict[str, Any] = {}
    ready = threading.Event()

    def run() -> None:
        with psycopg.connect(db_url) as conn:
            out["pid"] = conn.info.backend_pid
            ready.set()
            try:
                conn.execute(statement, args)
                conn.commit()
                out["result"] = "ok"
            except psycopg.Error as exc:
                out["result"] = exc.sqlstate

    thread = threading.Thread(target=run)
    thread.start()
    ready.wait(10)
    return thread, out


def test_delete_during_a_load_waits_and_then_deletes_its_events(db_url: str,
                                                                ids: tuple[int, int]) -> None:
    user, item = ids
    with psycopg.connect(db_url) as loader:
        loader.cursor().executemany(EVENT, [(user, item, "view")] * 5)
        thread, out = _in_thread(db_url, "delete from pyembed.users where user_id = %s", (user,))
        _wait_for(_waiting(db_url, out["pid"]))  # the key share lock of the load holds it
        loader.commit()
        thread.join(30)
        assert out["result"] == "ok"
        assert _events(loader, "user_id", user) == 0, "the load's events outlived their user"


def test_load_after_an_uncommitted_delete_waits_and_then_fails(db_url: str,
                                                               ids: tuple[int, int]) -> None:
    user, item = ids
    with psycopg.connect(db_url) as deleter:
        deleter.execute("delete from pyembed.items where item_id = %s", (item,))
        thread, out = _in_thread(db_url, EVENT, (user, item, "view"))
        _wait_for(_waiting(db_url, out["pid"]))
        deleter.commit()
        thread.join(30)
        assert out["result"] == "23503"
        assert _events(deleter, "item_id", item) == 0
