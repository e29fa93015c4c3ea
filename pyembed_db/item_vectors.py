"""Item vectors of one model read in bulk, as one float32 matrix for numpy.

The rows arrive as binary ``COPY``: every row of one model has the same layout (an int8 id and
a vector of the model's dimension), so the whole stream is one numpy structured view. A row
per vector through the driver cost a Python object and a conversion per row (100k vectors of
384 dimensions: 3.3 s), and the earlier packed ``string_agg`` read 1.9-2.6 s; the copy takes
a fraction of either (tests/test_user_vectors.py checks it against the plain rows).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg

from . import sqlfiles
from .errors import ModelError

Ids = npt.NDArray[np.int64]
Vectors = npt.NDArray[np.float32]

# binary COPY: signature, flags, then the length of a header extension (none today); each row
# then starts with its field count, each field with its length; the stream ends with -1
_SIGNATURE = len(b"PGCOPY\n\xff\r\n\0") + 4
_TRAILER = 2


def read_item_vectors(conn: psycopg.Connection[Any], model_id: int,
                      item_ids: Ids | None = None) -> tuple[Ids, Vectors]:
    """(sorted item ids, their vectors in ``model_id`` as rows of one float32 matrix): of
    ``item_ids`` (unknown ids and items without a vector are left out), or of every item with
    a vector in the model when None.

    Example::

        ids, vectors = read_item_vectors(conn, model_id, np.array([3, 1, 2]))
    """
    items = None if item_ids is None else np.asarray(item_ids, dtype=np.int64).tolist()
    with conn.cursor() as cur, cur.copy(sqlfiles.read("queries/item_vectors_copy.sql"),
                                        {"model_id": model_id, "items": items}) as copy:
        data = bytearray()
        for block in copy:
            data += block
    header = _SIGNATURE + 4 + int.from_bytes(data[_SIGNATURE:_SIGNATURE + 4], "big")
    if len(data) <= header + _TRAILER:
        return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
    dims = int(np.frombuffer(data, dtype=">i2", count=1, offset=header + 2 + 4 + 8 + 4)[0])
    row = np.dtype([("fields", ">i2"), ("id_length", ">i4"), ("id", ">i8"),
                    ("vector_length", ">i4"), ("dims", ">i2"), ("unused", ">i2"),
                    ("values", ">f4", (dims,))])
    body = len(data) - header - _TRAILER
    rows = np.frombuffer(data, dtype=row, offset=header, count=body // row.itemsize)
    if body % row.itemsize or not (rows["dims"] == dims).all() or not (rows["fields"] == 2).all():
        raise ModelError(f"model {model_id} holds item vectors of more than one dimension")
    return rows["id"].astype(np.int64), rows["values"].astype(np.float32)
