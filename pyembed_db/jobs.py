"""The worker: runs maintenance steps until idle, then sleeps until notified or the interval.

Steps are callables ``step(conn, batch_size) -> int`` returning the units of work done (0 when
nothing was ready). Several workers may run at once: each step claims its work with
``FOR UPDATE SKIP LOCKED``. The worker wakes on ``NOTIFY pyembed_work`` (sent by the triggers
when items change or events arrive) and every ``interval`` seconds; SIGTERM/SIGINT finish the
current batch and exit.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import psycopg

from .db import connect
from .embed.sync import embed_step

log = logging.getLogger(__name__)

Step = Callable[[psycopg.Connection[Any], int], int]
CHANNEL = "pyembed_work"


def default_steps() -> list[tuple[str, Step]]:
    """The steps a plain ``pyembed-db worker`` runs, in order."""
    steps: list[tuple[str, Step]] = [("embed_items", embed_step)]
    try:
        from .users import refresh_step
    except ImportError:
        return steps
    return [*steps, ("refresh_users", refresh_step)]


@dataclass
class WorkerStats:
    """What a worker did, per step."""

    done: dict[str, int] = field(default_factory=dict)
    rounds: int = 0


class _Stop:
    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: finishing the current batch, then exiting", signum)
        self.requested = True


def run_until_idle(conn: psycopg.Connection[Any], steps: Sequence[tuple[str, Step]],
                   batch_size: int, stats: WorkerStats, stop: _Stop | None = None) -> int:
    """Run every step repeatedly until none finds work; returns units done."""
    total = 0
    while not (stop and stop.requested):
        round_done = 0
        for name, step in steps:
            done = step(conn, batch_size)
            stats.done[name] = stats.done.get(name, 0) + done
            round_done += done
            if stop and stop.requested:
                break
        stats.rounds += 1
        total += round_done
        if round_done == 0:
            break
    return total


def _wait(listener: psycopg.Connection[Any], seconds: float, stop: _Stop) -> None:
    """Return on the first notification, a stop request, or after ``seconds``.

    Waits in slices of at most a second: a signal does not interrupt the socket wait.
    """
    end = time.monotonic() + seconds
    while not stop.requested and (left := end - time.monotonic()) > 0:
        for _ in listener.notifies(timeout=min(left, 1.0), stop_after=1):
            return


def run_worker(
    url: str | None = None,
    *,
    once: bool = False,
    interval: float = 60.0,
    batch_size: int = 128,
    steps: Sequence[tuple[str, Step]] | None = None,
    max_seconds: float | None = None,
) -> WorkerStats:
    """Run the worker loop (``pyembed-db worker``).

    With ``once`` it drains the queues and returns (for cron / systemd timers); otherwise it
    loops until SIGTERM/SIGINT (or ``max_seconds``), waking on NOTIFY or every ``interval``.

    Example::

        run_worker(once=True)
    """
    steps = list(steps or default_steps())
    stats = WorkerStats()
    stop = _Stop()
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    deadline = time.monotonic() + max_seconds if max_seconds else None
    try:
        with connect(url) as conn, connect(url, autocommit=True) as listener:
            listener.execute(f"listen {CHANNEL}")
            while not stop.requested:
                done = run_until_idle(conn, steps, batch_size, stats, stop)
                log.info("round done: %d units (%s)", done, stats.done)
                if once or stop.requested:
                    break
                wait = interval if deadline is None else min(interval, deadline - time.monotonic())
                if wait <= 0:
                    break
                _wait(listener, wait, stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return stats
