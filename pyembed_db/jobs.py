"""The worker: runs maintenance steps until idle, then sleeps until notified or the interval.

Steps are callables ``step(conn, batch_size) -> int`` returning the units of work done (0 when
nothing was ready). Several workers may run at once: each step claims its work with
``FOR UPDATE SKIP LOCKED``. The worker wakes on ``NOTIFY pyembed_work`` (sent by the triggers
when items change or events arrive) and every ``interval`` seconds; SIGTERM/SIGINT finish the
current batch and exit.

A lost connection (server restart or failover, ``pg_terminate_backend``, network drop) does not
end the worker: it logs a warning, waits with a capped exponential back-off, opens both
connections again and carries on. Nothing is lost or done twice meanwhile: each step commits its
batch together with the deletion of its queue rows, so a batch cut off with its connection was
never committed, PostgreSQL rolls it back and the rows are claimed again.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from .db import connect
from .embed.sync import embed_step
from .errors import ConnectionLost
from .server import database_url
from .training import train_step
from .users import refresh_step

log = logging.getLogger(__name__)

Step = Callable[[psycopg.Connection[Any], int], int]
CHANNEL = "pyembed_work"
APP_NAME = "pyembed-db worker"  # + the pid: pg_stat_activity.application_name of each worker
ONCE_GIVE_UP = 60.0  # seconds a --once worker keeps trying to reconnect
# libpq settings a URL may override: a dead peer is noticed within about a minute.
TCP_DEFAULTS = {"connect_timeout": "10", "keepalives_idle": "30", "keepalives_interval": "10",
                "keepalives_count": "3", "tcp_user_timeout": "60000"}


def default_steps() -> list[tuple[str, Step]]:
    """The steps a plain ``pyembed-db worker`` runs, in order."""
    return [("embed_items", embed_step), ("refresh_users", refresh_step),
            ("train_behavior", train_step)]


@dataclass
class WorkerStats:
    """What a worker did, per step, and how often it had to reconnect."""

    done: dict[str, int] = field(default_factory=dict)
    rounds: int = 0
    reconnects: int = 0


class _Stop:
    def __init__(self, max_seconds: float | None = None) -> None:
        self.requested = False
        self.deadline = time.monotonic() + max_seconds if max_seconds else math.inf

    def __call__(self, signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: finishing the current batch, then exiting", signum)
        self.requested = True

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def sleep(self, seconds: float) -> None:
        """Sleep, returning early on a stop request (a signal does not cut ``time.sleep``)."""
        end = time.monotonic() + min(seconds, max(self.left(), 0.0))
        while not self.requested and (left := end - time.monotonic()) > 0:
            time.sleep(min(left, 0.2))


@dataclass
class _Backoff:
    """Waits between reconnection attempts: ``first`` doubling up to ``cap`` seconds.

    Raises :class:`ConnectionLost` once the database has been unreachable for ``give_up``
    seconds (``math.inf``: never).
    """

    first: float = 0.5
    cap: float = 30.0
    give_up: float = math.inf
    _delay: float = field(init=False)
    _since: float | None = field(init=False)

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """The connection works again: the next failure starts a new outage."""
        self._delay, self._since = self.first, None

    def wait(self, exc: Exception, stop: _Stop) -> None:
        """Sleep before the next attempt, or raise :class:`ConnectionLost`."""
        now = time.monotonic()
        self._since = now if self._since is None else self._since
        down = now - self._since
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if down >= self.give_up:
            raise ConnectionLost(f"no database connection for {down:.0f} s, giving up: "
                                 f"{reason}") from exc
        delay = min(self._delay, self.give_up - down)
        log.warning("no database connection (%s); retrying in %.1f s", reason, delay)
        stop.sleep(delay)
        self._delay = min(self._delay * 2, self.cap)


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


def _conninfo(url: str) -> str:
    """``url`` with this worker's name and, unless the URL sets them, TCP timeouts.

    Without them a silently dropped network (no RST) is noticed only after the kernel's
    retransmission timeout (~15 min), and never on the idle LISTEN connection.
    """
    params = {**TCP_DEFAULTS, **conninfo_to_dict(url)}
    params["application_name"] = f"{APP_NAME} {os.getpid()}"
    return make_conninfo("", **params)


def _open(url: str) -> tuple[psycopg.Connection[Any], psycopg.Connection[Any]]:
    """The work connection and the LISTEN connection, named after this process."""
    conninfo = _conninfo(url)
    conn = connect(conninfo)
    try:
        listener = connect(conninfo, autocommit=True)
        listener.execute(f"listen {CHANNEL}")
    except BaseException:
        conn.close()
        raise
    return conn, listener


def _serve(conn: psycopg.Connection[Any], listener: psycopg.Connection[Any],
           steps: Sequence[tuple[str, Step]], batch_size: int, once: bool, interval: float,
           stats: WorkerStats, stop: _Stop) -> None:
    """The worker loop on one pair of connections; returns when the worker should exit."""
    while not stop.requested:
        # Runs first on every (re)connection: notifications sent while disconnected are lost.
        done = run_until_idle(conn, steps, batch_size, stats, stop)
        log.info("round done: %d units (%s)", done, stats.done)
        wait = min(interval, stop.left())
        if once or stop.requested or wait <= 0:
            return
        _wait(listener, wait, stop)


def run_worker(
    url: str | None = None,
    *,
    once: bool = False,
    interval: float = 60.0,
    batch_size: int = 128,
    steps: Sequence[tuple[str, Step]] | None = None,
    max_seconds: float | None = None,
    retry_delay: float = 0.5,
    max_retry_delay: float = 30.0,
    give_up_after: float | None = None,
) -> WorkerStats:
    """Run the worker loop (``pyembed-db worker``).

    With ``once`` it drains the queues and returns (for cron / systemd timers); otherwise it
    loops until SIGTERM/SIGINT (or ``max_seconds``), waking on NOTIFY or every ``interval``.
    When the database cannot be reached (at start or later) it retries, waiting ``retry_delay``
    seconds doubling up to ``max_retry_delay``; after ``give_up_after`` seconds without a
    connection it raises :class:`ConnectionLost`. ``give_up_after`` defaults to 60 s with
    ``once`` and to never (``math.inf``) without. Other errors end the worker, as they always did.

    Example::

        run_worker(once=True)
    """
    # Resolved once: a reconnection must not start an embedded server that was stopped.
    url = url or database_url()
    steps = list(steps or default_steps())
    stats = WorkerStats()
    stop = _Stop(max_seconds)
    if give_up_after is None:
        give_up_after = ONCE_GIVE_UP if once else math.inf
    backoff = _Backoff(retry_delay, max_retry_delay, give_up_after)
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while not stop.requested and stop.left() > 0:
            try:
                conn, listener = _open(url)
            except psycopg.OperationalError as exc:
                backoff.wait(exc, stop)
                continue
            rounds = stats.rounds
            try:
                with conn, listener:
                    _serve(conn, listener, steps, batch_size, once, interval, stats, stop)
                break
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                if not (conn.broken or listener.broken):
                    raise  # the connections are fine: a real error, not a lost connection
                stats.reconnects += 1
                if stats.rounds > rounds:  # this connection worked: a new outage begins
                    backoff.reset()
                backoff.wait(exc, stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return stats
