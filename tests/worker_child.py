"""A worker process for tests/test_worker_processes.py (run with the venv's python).

    python tests/worker_child.py URL [--once] [--batch-size N] [--barrier] [--stall FILE]

``--barrier`` loads the model, then waits for the test to release advisory lock 4242 so that
several workers start claiming at the same moment. ``--stall FILE`` makes the first batch write
FILE and sleep (``--stall-seconds``, default 60) inside its transaction, after the claim and
before the commit, so the test can kill or signal the worker mid-batch. Prints the worker's
stats as JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from pyembed_db.db import connect
from pyembed_db.embed import encoder as encoder_module
from pyembed_db.embed import load_active_encoder
from pyembed_db.embed.sync import embed_step
from pyembed_db.jobs import run_worker

BARRIER_LOCK = 4242


def _stall_first_batch(marker: Path, seconds: float) -> None:
    original = encoder_module.Encoder.encode
    stalled: list[bool] = []

    def encode(self: Any, texts: list[str]) -> np.ndarray:
        if not stalled:
            stalled.append(True)
            marker.write_text(str(len(texts)))
            time.sleep(seconds)  # SIGTERM does not cut this short; SIGKILL does
        return original(self, texts)

    encoder_module.Encoder.encode = encode  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--once", action="store_true")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--interval", type=float, default=300.0)
    parser.add_argument("--barrier", action="store_true")
    parser.add_argument("--stall")
    parser.add_argument("--stall-seconds", type=float, default=60.0)
    args = parser.parse_args()
    with connect(args.url) as conn:
        load_active_encoder(conn)  # cached: the claims below do not wait for model loading
        if args.barrier:
            conn.execute("select pg_advisory_lock_shared(%s)", (BARRIER_LOCK,))
    if args.stall:
        _stall_first_batch(Path(args.stall), args.stall_seconds)
    stats = run_worker(args.url, once=args.once, interval=args.interval,
                       batch_size=args.batch_size, steps=[("embed_items", embed_step)])
    print(json.dumps(stats.done))


if __name__ == "__main__":
    main()
