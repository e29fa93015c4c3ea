"""Keeping vectors in sync: triggers, the worker step, skips, retries, re-embed and activate."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import psycopg
import pytest

from pyembed_db import InvalidInputError, ModelError, database_status, reembed
from pyembed_db.cli.main import main
from pyembed_db.db import connect
from pyembed_db.embed import (
    activate_model,
    drain,
    embed_step,
    get_model,
    register_default_model,
    register_exported,
    register_model,
    set_model_status,
)


def _queued(conn: psycopg.Connection[Any]) -> set[str]:
    rows = conn.execute(
        "select i.external_id from pyembed.item_queue q join pyembed.items i using (item_id)"
    ).fetchall()
    return {r[0] for r in rows}


def _insert_items(conn: psycopg.Connection[Any], rows: list[tuple[Any, ...]]) -> None:
    conn.cursor().executemany(
        "insert into pyembed.items (external_id, title, body, price) values (%s, %s, %s, %s)", rows
    )
    conn.commit()


@pytest.fixture(scope="module")
def default_model(module_db_url: str) -> None:
    with connect(module_db_url) as conn:
        register_default_model(conn)


@pytest.fixture
def model_url(default_model: None, db_url: str) -> str:
    return db_url


@pytest.fixture
def embedded_items(model_url: str) -> None:
    """Items t1 and t2 with vectors of the default model."""
    with connect(model_url) as conn:
        _insert_items(conn, [("t1", "Red hat", None, 10), ("t2", "Blue scarf", None, 20)])
        drain(conn)


def test_triggers_queue_text_changes_only(model_url: str) -> None:
    with connect(model_url) as conn:
        _insert_items(conn, [("t1", "Red hat", None, 10), ("t2", "Blue scarf", None, 20)])
        assert {"t1", "t2"} <= _queued(conn)
        drain(conn)
        assert _queued(conn) == set()
        conn.execute("update pyembed.items set price = 99 where external_id = 't1'")
        conn.execute("update pyembed.items set created_at = now() where external_id = 't2'")
        conn.commit()
        assert _queued(conn) == set()
        conn.execute("update pyembed.items set title = 'Green hat' where external_id = 't1'")
        conn.execute("update pyembed.items set tags = '{wool}' where external_id = 't2'")
        conn.commit()
        assert _queued(conn) == {"t1", "t2"}
        drain(conn)


def test_unchanged_text_is_not_embedded_again(model_url: str) -> None:
    with connect(model_url) as conn:
        _insert_items(conn, [("u1", "Leather boots", "Warm, waterproof", 80)])
        drain(conn)
        first = conn.execute(
            "select e.embedded_at, e.embedding from pyembed.item_embeddings e "
            "join pyembed.items i using (item_id) where i.external_id = 'u1'"
        ).fetchone()
        assert first is not None
        conn.execute("insert into pyembed.item_queue select item_id from pyembed.items "
                     "where external_id = 'u1'")
        conn.commit()
        assert drain(conn) == 1
        second = conn.execute(
            "select e.embedded_at from pyembed.item_embeddings e "
            "join pyembed.items i using (item_id) where i.external_id = 'u1'"
        ).fetchone()
        assert second == (first[0],)


def test_vectors_are_semantically_sane(model_url: str) -> None:
    with connect(model_url) as conn:
        _insert_items(conn, [("s1", "Wool winter coat", None, 1), ("s2", "Warm coat for winter",
                              None, 1), ("s3", "Stainless steel kitchen knife", None, 1)])
        drain(conn)
        rows = conn.execute(
            "select i.external_id, e.embedding from pyembed.item_embeddings e "
            "join pyembed.items i using (item_id) where i.external_id in ('s1', 's2', 's3') "
            "order by 1"
        ).fetchall()
        v = {ext: vec.to_numpy() for ext, vec in rows}
        assert v["s1"] @ v["s2"] > v["s1"] @ v["s3"] + 0.3


def test_bad_inputs_each_get_an_outcome(model_url: str) -> None:
    huge = "very long text " * 70_000  # ~1 MB
    with connect(model_url) as conn:
        _insert_items(conn, [
            ("b-empty", "", None, 1),
            ("b-space", "   \t\n", "  ", 1),
            ("b-null", None, None, 1),
            ("b-null-title", None, "A body without a title", 1),
            ("b-huge", "Huge", huge, 1),
            ("b-emoji", "Party 🎉 hat", "ünïcödé ✓", 1),
        ])
        drain(conn)
        assert _queued(conn) == set()
        embedded = {r[0] for r in conn.execute(
            "select i.external_id from pyembed.item_embeddings e join pyembed.items i "
            "using (item_id) where i.external_id like 'b-%'").fetchall()}
        skipped = dict(conn.execute(
            "select i.external_id, s.reason from pyembed.item_embedding_skips s "
            "join pyembed.items i using (item_id) where i.external_id like 'b-%'").fetchall())
        assert embedded == {"b-null-title", "b-huge", "b-emoji"}
        assert skipped == {"b-empty": "empty text", "b-space": "empty text",
                           "b-null": "empty text"}
        # Giving an item text later replaces its skip with a vector.
        conn.execute("update pyembed.items set title = 'Now named' where external_id = 'b-null'")
        conn.commit()
        drain(conn)
        assert conn.execute(
            "select count(*) from pyembed.item_embedding_skips s join pyembed.items i "
            "using (item_id) where i.external_id = 'b-null'").fetchone() == (0,)


def test_failed_batch_stays_queued_with_error(model_url: str, monkeypatch: Any) -> None:
    from pyembed_db.embed import encoder as encoder_module

    with connect(model_url) as conn:
        _insert_items(conn, [("f1", "Fragile vase", None, 5)])

        def explode(self: Any, texts: list[str]) -> np.ndarray:
            raise RuntimeError("onnxruntime fell over")

        monkeypatch.setattr(encoder_module.Encoder, "encode", explode)
        assert embed_step(conn) == 1
        row = conn.execute(
            "select q.attempts, q.last_error, q.not_before > now() from pyembed.item_queue q "
            "join pyembed.items i using (item_id) where i.external_id = 'f1'"
        ).fetchone()
        assert row is not None and row[0] == 1 and "onnxruntime fell over" in row[1] and row[2]
        monkeypatch.undo()
        conn.execute("update pyembed.item_queue set not_before = now()")
        conn.commit()
        drain(conn)
        assert _queued(conn) == set()


def test_one_failing_item_neither_stalls_its_batch_nor_retries_forever(
    model_url: str, monkeypatch: Any
) -> None:
    from pyembed_db.embed import encoder as encoder_module
    from pyembed_db.embed.sync import MAX_ATTEMPTS

    real_encode = encoder_module.Encoder.encode

    def poisoned(self: Any, texts: list[str]) -> np.ndarray:
        if any("Poison" in t for t in texts):
            raise RuntimeError("cannot embed this one")
        return real_encode(self, texts)

    with connect(model_url) as conn:
        _insert_items(conn, [("p-ok-1", "Teapot", None, 5), ("p-bad", "Poison pill", None, 5),
                             ("p-ok-2", "Kettle", None, 5)])
        monkeypatch.setattr(encoder_module.Encoder, "encode", poisoned)
        drain(conn)
        embedded = {r[0] for r in conn.execute(
            "select i.external_id from pyembed.item_embeddings e join pyembed.items i "
            "using (item_id) where i.external_id like 'p-%'").fetchall()}
        assert embedded == {"p-ok-1", "p-ok-2"}  # the good items of the batch went through
        for attempt in range(2, MAX_ATTEMPTS + 1):
            conn.execute("update pyembed.item_queue set not_before = now()")
            conn.commit()
            drain(conn)
            queued = conn.execute(
                "select q.attempts from pyembed.item_queue q join pyembed.items i "
                "using (item_id) where i.external_id = 'p-bad'").fetchall()
            assert queued == ([] if attempt == MAX_ATTEMPTS else [(attempt,)])
        reason = conn.execute(
            "select s.reason from pyembed.item_embedding_skips s join pyembed.items i "
            "using (item_id) where i.external_id = 'p-bad'").fetchall()
    assert len(reason) >= 1 and all(f"failed {MAX_ATTEMPTS} times" in r[0]
                                    and "cannot embed this one" in r[0] for r in reason)


def test_reembed_fills_shadow_model_then_activate_switches(
    model_url: str, embedded_items: None, exported_minilm: dict[str, Any]
) -> None:
    with connect(model_url) as conn:
        old = get_model(conn, "all-MiniLM-L6-v2")
        with pytest.raises(InvalidInputError, match="cannot activate 'fp16'"):
            register_exported(conn, exported_minilm, name="minilm-export", activate="fp16")
        # A model is active already: the exported ones are registered, not activated.
        registered = register_exported(conn, exported_minilm, name="minilm-export",
                                       activate="fp32")
        assert [(m.version, m.status) for m in registered] == [("fp32", "registered"),
                                                               ("int8", "registered")]
        assert registered[0].config["min_cosine_vs_torch"] > 0.99
        new = registered[0]
        with pytest.raises(ModelError, match="reembed"):
            activate_model(conn, new.name, new.version)
        done = reembed(conn, new.label)
        counts = dict(conn.execute(
            "select model_id, count(*) from pyembed.item_embeddings group by 1").fetchall())
        assert counts[new.model_id] == counts[old.model_id] == done.model.vectors > 0
        assert done.model.status == "syncing" and done.items >= done.model.vectors
        with pytest.raises(ModelError, match="active text model"):
            set_model_status(conn, old.label, "registered")
        assert set_model_status(conn, new.label, "registered").status == "registered"
        assert set_model_status(conn, new.label, "syncing").status == "syncing"
        status = database_status(conn)
        assert status.functions == "current" and status.counts["item_queue"] == 0
        assert {m["model_id"]: m["vectors"] for m in status.models}[new.model_id] == counts[
            new.model_id]
        assert conn.execute("select pyembed.active_model_id()").fetchone() == (old.model_id,)
        # While syncing, a changed item is re-embedded for both models.
        conn.execute("update pyembed.items set title = 'Changed' where external_id = 't1'")
        conn.commit()
        drain(conn)
        hashes = conn.execute(
            "select count(distinct content_hash), count(*) from pyembed.item_embeddings e "
            "join pyembed.items i using (item_id) where i.external_id = 't1'").fetchone()
        assert hashes == (1, 2)
        conn.execute("insert into pyembed.users (external_id) values ('switcher')")
        conn.execute("insert into pyembed.events (user_id, item_id, event_type) select u.user_id, "
                     "i.item_id, 'view' from pyembed.users u, pyembed.items i "
                     "where u.external_id = 'switcher' and i.external_id = 't1'")
        conn.execute("delete from pyembed.user_queue")
        conn.commit()
        activate_model(conn, new.name, new.version)
        # Their vectors of the old model are useless now: every user with events is queued.
        assert conn.execute("select count(*) from pyembed.user_queue q join pyembed.users u "
                            "using (user_id) where u.external_id = 'switcher'").fetchone() == (1,)
        statuses = dict(conn.execute(
            "select model_id, status from pyembed.embedding_models").fetchall())
        assert statuses[new.model_id] == "active" and statuses[old.model_id] == "registered"
        index = conn.execute(
            "select indexdef from pg_indexes where indexname = %s",
            (f"item_embeddings_hnsw_m{new.model_id}",)).fetchone()
        assert index is not None and f"model_id = {new.model_id}" in index[0]


def test_changed_model_file_is_refused(model_url: str, tmp_path: Any,
                                       exported_minilm: dict[str, Any]) -> None:
    import shutil

    from pyembed_db.embed import load_model

    copy = tmp_path / "model.onnx"
    shutil.copyfile(exported_minilm["models"]["int8"], copy)
    with connect(model_url) as conn:
        info = register_model(conn, str(copy), exported_minilm["tokenizer"], name="tamper")
        with copy.open("ab") as handle:
            handle.write(b"\0")
        with pytest.raises(ModelError, match="changed since registration"):
            load_model(conn, info)
        with pytest.raises(ModelError, match="already registered with another file"):
            register_model(conn, str(copy), exported_minilm["tokenizer"], name="tamper")


def test_first_vector_of_an_item_queues_its_users(model_url: str) -> None:
    """A user refreshed before an item had a vector left it out: its first vector queues them."""
    with connect(model_url) as conn:
        _insert_items(conn, [("late", "Late arrival", None, 5)])
        conn.execute("insert into pyembed.users (external_id) values ('early-bird')")
        conn.execute("insert into pyembed.events (user_id, item_id, event_type) select u.user_id, "
                     "i.item_id, 'purchase' from pyembed.users u, pyembed.items i "
                     "where u.external_id = 'early-bird' and i.external_id = 'late'")
        conn.execute("delete from pyembed.user_queue")
        conn.commit()
        drain(conn)
        queued = conn.execute("select u.external_id from pyembed.user_queue q "
                              "join pyembed.users u using (user_id)").fetchall()
        assert queued == [("early-bird",)]
        conn.execute("delete from pyembed.user_queue")
        conn.execute("update pyembed.items set title = 'Late arrival, revised' "
                     "where external_id = 'late'")
        conn.commit()
        drain(conn)  # a new vector for an item that had one: users wait for their next event
        assert conn.execute("select count(*) from pyembed.user_queue").fetchone() == (0,)


def test_first_vector_written_from_sql_queues_its_users(model_url: str,
                                                       embedded_items: None) -> None:
    """The re-queue is a trigger: a vector written by any SQL client (as the worker role) counts."""
    with connect(model_url) as conn:
        conn.execute("insert into pyembed.items (external_id, title) values ('sql-vec', '')")
        conn.execute("insert into pyembed.users (external_id) values ('sql-user')")
        conn.execute("insert into pyembed.events (user_id, item_id, event_type) select u.user_id, "
                     "i.item_id, 'view' from pyembed.users u, pyembed.items i "
                     "where u.external_id = 'sql-user' and i.external_id = 'sql-vec'")
        conn.execute("delete from pyembed.user_queue")
        conn.execute("set role pyembed_worker")
        conn.execute("insert into pyembed.item_embeddings (model_id, item_id, embedding, "
                     "content_hash) select pyembed.active_model_id(), i.item_id, "
                     "pyembed.item_vector(i2.item_id), '\\x00' from pyembed.items i, "
                     "pyembed.items i2 where i.external_id = 'sql-vec' and i2.item_id = "
                     "(select min(item_id) from pyembed.item_embeddings)")
        queued = conn.execute("select u.external_id from pyembed.user_queue q "
                              "join pyembed.users u using (user_id)").fetchall()
        conn.rollback()
    assert queued == [("sql-user",)]


def test_stale_items_names_items_whose_vector_is_not_current(model_url: str) -> None:
    from pyembed_db.embed import active_model
    from pyembed_db.embed.sync import stale_items

    with connect(model_url) as conn:
        _insert_items(conn, [("st1", "Wool socks", None, 3)])
        drain(conn)
        model = active_model(conn)
        assert model is not None
        item = conn.execute("select item_id from pyembed.items where external_id = 'st1'"
                            ).fetchone()
        before = stale_items(conn, model)
        skipped = {r[0] for r in conn.execute(
            "select item_id from pyembed.item_embedding_skips where model_id = %s",
            (model.model_id,))}
        assert item is not None and item[0] not in before and set(before) <= skipped
        conn.execute("update pyembed.items set title = 'Silk socks' where external_id = 'st1'")
        assert stale_items(conn, model) == sorted([*before, item[0]])
        conn.rollback()


def test_cli_status_prints_what_database_status_reads(
    model_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with connect(model_url) as conn:
        status = database_status(conn)
    assert main(["--database-url", model_url, "status", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["counts"] == status.counts and printed["functions"] == "current"
    assert [m["model_id"] for m in printed["models"]] == [m["model_id"] for m in status.models]
