"""A worker process for tests/test_worker_processes.py (run with the venv's python).

    python tests/worker_child.py URL [--once] [--batch-size N] [--barrier] [--stall FILE]

``--barrier`` loads the model, then waits for the test to release advisory lock 4242 so that
several workers start claiming at the same moment. ``--stall FILE`` makes the first batch write
FILE and sleep (``--stall-seconds``, default 60) inside its transaction, after the claim and
before the commit, so the test can kill or signal the worker mid-batch. Prints the worker's
stats as JSON.

Used by tests/test_faults.py too: ``--steps all`` runs every default step (items, then users)
instead of only the item step; ``--stall-users FILE`` stalls the first user-refresh batch the
same way, after the SQL refresh wrote its vectors and before the commit; ``--release FILE``
makes a stall last until FILE exists rather than ``--stall-seconds``; ``--full-stats`` prints
``{"done": ..., "rounds": ..., "reconnects": ...}`` instead of the per-step counts.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pyembed_db import users as users_module
from pyembed_db.db import connect
from pyembed_db.embed import encoder as encoder_module
from pyembed_db.embed import load_active_encoder
from pyembed_db.embed.sync import embed_step
from pyembed_db.jobs import default_steps, run_worker

BARRIER_LOCK = 4242


def _pause(seconds: float, release: Path | None) -> None:
    """Sleep ``seconds``, or until ``release`` exists; SIGTERM does not cut this short."""
    if release is None:
        time.sleep(seconds)
        return
    while not release.exists():
        time.sleep(0.05)


def _stall_first_batch(marker: Path, seconds: float, release: Path | None = None) -> None:
    original = encoder_module.Encoder.encode
    stalled: list[bool] = []

    def encode(self: Any, texts: list[str]) -> np.ndarray:
        if not stalled:
            stalled.append(True)
            marker.write_text(str(len(texts)))
            _pause(seconds, release)  # SIGKILL does cut it short
        return original(self, texts)

    encoder_module.Encoder.encode = encode  # type: ignore[method-assign]


def _stall_first_user_batch(marker: Path, seconds: float, release: Path | None) -> None:
    original: Callable[..., int] = users_module.write_user_vectors
    stalled: list[bool] = []

    def write_user_vectors(conn: Any, user_ids: list[int], model_id: int, **kinds: Any) -> int:
        if not stalled:
            stalled.append(True)
            marker.write_text(str(len(user_ids)))
            _pause(seconds, release)
        return original(conn, user_ids, model_id, **kinds)

    users_module.write_user_vectors = write_user_vectors


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--once", action="store_true")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--interval", type=float, default=300.0)
    parser.add_argument("--barrier", action="store_true")
    parser.add_argument("--stall")
    parser.add_argument("--stall-seconds", type=float, default=60.0)
    parser.add_argument("--steps", choices=["embed", "all"], default="embed")
    parser.add_argument("--stall-users")
    parser.add_argument("--release")
    parser.add_argument("--full-stats", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    release = Path(args.release) if args.release else None
    with connect(args.url) as conn:
        load_active_encoder(conn)  # cached: the claims below do not wait for model loading
        if args.barrier:
            conn.execute("select pg_advisory_lock_shared(%s)", (BARRIER_LOCK,))
    if args.stall:
        _stall_first_batch(Path(args.stall), args.stall_seconds, release)
    if args.stall_users:
        _stall_first_user_batch(Path(args.stall_users), args.stall_seconds, release)
    steps = default_steps() if args.steps == "all" else [("embed_items", embed_step)]
    stats = run_worker(args.url, once=args.once, interval=args.interval,
                       batch_size=args.batch_size, steps=steps)
    if args.full_stats:
        print(json.dumps({"done": stats.done, "rounds": stats.rounds,
                          "reconnects": stats.reconnects}))
    else:
        print(json.dumps(stats.done))


if __name__ == "__main__":
    main()
