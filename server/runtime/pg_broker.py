"""Run event logs in Postgres, shared by every server process, for deployments without Redis.

The default broker when a server runs several processes (``staffgraph serve --processes N``)
and no ``REDIS_URL`` is set: the run's worker may be in one process and its stream's reader in
another. Logs are rows of the ``run_events`` table (migration 0110: unlogged, expiring), ids
``<ms>-<seq>`` rising within a stream. Each append notifies ``staffgraph_events`` with the
stream's name; one ``LISTEN`` connection per process wakes the local readers of that stream,
which then read the rows after their cursor. Readers also read again after every idle tick
(:data:`~server.runtime.broker.HEARTBEAT_SECONDS`), so a notification lost while the listener
reconnects delays events but never loses them. Cancel signals go through Postgres as without
any broker (``carries_cancel`` is false).

**Local first.** Most readers of a run are in the process that executes it: the ``runs/wait``
or ``runs/stream`` request that created it (a run is claimed by the process that creates it).
Writing every event of every run to Postgres for them cost two statements an event and more
than doubled a run's CPU. So the log of a run without ``stream_resumable`` lives in this
process's memory (an :class:`~server.runtime.broker.InProcessBroker`), where local readers
follow it, and goes to Postgres only once a reader elsewhere wants it:

- a reader in another process (a join, a thread stream) sends ``NOTIFY staffgraph_event_wants``
  with the stream's name when it starts and again every heartbeat interval while it reads;
- every process remembers wanted streams for :data:`WANT_SECONDS`; the one executing the run
  (now, or later: a queued run is checked when it is claimed) then writes the whole log so far
  to Postgres, keeping its ids, and every later event as it comes, the done marker included.

A reader elsewhere therefore gets every event, history included, at most one heartbeat late
if its first notification was lost. A run's events written this way are the log of the process
that ran it: a run taken over by another process after its first lost its lease may show both
attempts' events, as the log of a Redis stream would. Thread announcements are written only
while some thread stream wants them. A thread stream's want counts in its own process at once
and in another once the notification reaches it (a process that was not listening when it was
sent learns it at the next renewal); a run another process started before then is found by the
thread stream in Postgres after each run it follows and at each heartbeat, among the runs in
flight or ended since the previous check (:mod:`server.runtime.thread_runs`), its log then
written for the stream as for any reader elsewhere.

Logs of resumable runs (replayable from any process, ids and all) and done markers written for
runs this process does not execute (a queued run cancelled or deleted, a run whose worker was
lost) go to Postgres at once, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from server.runtime.broker import (
    DONE_EVENT,
    HEARTBEAT_SECONDS,
    WATCHING,
    Broker,
    CancelHandler,
    InProcessBroker,
    StreamEvent,
    parse_event_id,
)
from state.retry import retrying

__all__ = ["LISTEN_WAIT_SECONDS", "WANT_SECONDS", "PostgresBroker"]

log = logging.getLogger(__name__)

_CHANNEL = "staffgraph_events"
_WANTS = "staffgraph_event_wants"
LISTEN_WAIT_SECONDS = 5.0
"""How long :meth:`PostgresBroker.start` waits for its ``LISTEN`` connection."""
WANT_SECONDS = 3 * HEARTBEAT_SECONDS
"""How long a process remembers that a reader wants a stream (readers renew it every heartbeat
interval, so a want outlives a notification or two lost on the way)."""
_RUNNING_TTL = 86_400.0
_SWEEP_SECONDS = 30.0
_PAGE = 500


_MIRROR = """
WITH added AS (
    INSERT INTO run_events (stream, ms, seq, event, data, expires_at)
    SELECT %(stream)s, e.ms, e.seq, e.event, e.data, now() + make_interval(secs => %(ttl)s)
      FROM unnest(%(ms)s::bigint[], %(seq)s::int[], %(event)s::text[], %(data)s::bytea[])
           AS e(ms, seq, event, data)
    ON CONFLICT (stream, ms, seq) DO NOTHING
), ended AS (
    UPDATE run_events SET expires_at = now() + make_interval(secs => %(ttl)s)
     WHERE %(done)s AND stream = %(stream)s
)
SELECT pg_notify('staffgraph_events', %(stream)s)
"""
"""Append a run's events kept in memory with their ids (one writer per run: this process),
renewing the whole log's expiry when the done marker is among them."""


@dataclass
class _LocalRun:
    """A run without ``stream_resumable`` that this process executes: its log is in memory."""

    mirrored: bool = False
    """Whether a reader elsewhere wanted the log: every event then goes to Postgres too."""
    written: int = 0
    """Position in the in-memory log up to which Postgres has the events."""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class PostgresBroker(Broker):
    """Broker on Postgres tables and ``LISTEN``/``NOTIFY``: any process reads any run's log."""

    kind = "postgres"

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        url: str,
        *,
        replay_ttl: float = 600.0,
        finished_ttl: float = 60.0,
    ) -> None:
        """Create the broker (it listens once :meth:`start` is called).

        Args:
            pool: the server's connection pool (appends and reads).
            url: libpq URL for the ``LISTEN`` connection.
            replay_ttl: seconds a finished resumable run's log stays replayable.
            finished_ttl: seconds any other finished log is kept (late joiners, runs/wait).
        """
        self._pool = pool
        self._url = url
        self._replay_ttl = replay_ttl
        self._finished_ttl = finished_ttl
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._local = InProcessBroker(replay_ttl=replay_ttl, finished_ttl=finished_ttl)
        self._runs: dict[str, _LocalRun] = {}
        self._wanted: dict[str, float] = {}
        self._mirrors: set[asyncio.Task[None]] = set()
        self._listening = asyncio.Event()

    async def start(self, on_cancel: CancelHandler | None = None) -> None:
        """Listen for appends and wants, and start deleting expired logs.

        Returns once the ``LISTEN`` connection is up (a want sent by another process as this
        one starts serving is not missed), or after :data:`LISTEN_WAIT_SECONDS` if Postgres
        does not answer: the listener goes on trying in the background.
        """
        await self._local.start()
        self._tasks = [
            asyncio.create_task(self._listen(), name="pg-broker-listen"),
            asyncio.create_task(self._sweep(), name="pg-broker-sweep"),
        ]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(LISTEN_WAIT_SECONDS):
                await self._listening.wait()

    async def close(self) -> None:
        """Stop listening and sweeping; wake every reader (each reads once more)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.set()
        await self._local.close()

    # -- runs this process executes -------------------------------------------------------

    def begin(self, run_id: str, *, resumable: bool) -> None:
        """Keep the run's log here (unless it is resumable); mirror it if it is wanted."""
        if resumable or run_id in self._runs:
            return
        # The in-memory log expires as the in-process broker's do (a day unfinished, the
        # finished or replay TTL once ended); this entry goes with it (:meth:`_forget_expired`).
        local = self._runs[run_id] = _LocalRun()
        self._local.open_log(run_id)
        if self._is_wanted(f"run:{run_id}"):
            self._mirror(run_id, local)

    def _is_wanted(self, stream: str) -> bool:
        return self._wanted.get(stream, 0.0) > time.monotonic()

    def _mirror(self, run_id: str, local: _LocalRun) -> None:
        """From now on the run's log goes to Postgres too, starting with what it holds.

        Asked again (a reader renewing its want), it writes what an earlier write that failed
        left behind, if anything.
        """
        local.mirrored = True
        task = asyncio.create_task(self._flush(run_id, local), name=f"pg-broker-mirror-{run_id}")
        self._mirrors.add(task)
        task.add_done_callback(self._mirrors.discard)

    async def _flush(self, run_id: str, local: _LocalRun) -> None:
        """Write the in-memory events Postgres does not have yet, in order, ids kept.

        A failure is logged, not raised: the run and its local readers go on, the next event
        tries again, and readers elsewhere still learn the run's end from its row.
        """
        async with local.lock:
            events, end = self._local.events_from(run_id, local.written)
            if not events:
                return
            done = any(ev.event == DONE_EVENT for ev in events)
            positions = [parse_event_id(ev.id) or (0, 0) for ev in events]
            params = {
                "stream": f"run:{run_id}",
                "ms": [ms for ms, _ in positions],
                "seq": [seq for _, seq in positions],
                "event": [ev.event for ev in events],
                "data": [ev.data for ev in events],
                "ttl": self._finished_ttl if done else _RUNNING_TTL,
                "done": done,
            }

            async def write() -> None:
                async with self._pool.connection() as conn:
                    await conn.execute(_MIRROR, params)

            try:
                await retrying(write, what=f"writing the log of run {run_id}")
            except Exception as exc:
                log.warning("could not write the log of run %s to Postgres: %s", run_id, exc)
                return
            local.written = end

    # -- writing ----------------------------------------------------------------------------

    async def _append(self, stream: str, event: str, data: bytes, *, ttl: float) -> None:
        async def append() -> None:
            async with self._pool.connection() as conn:
                await conn.execute(
                    "SELECT staffgraph_append_event(%s, %s, %s, %s, %s)",
                    (stream, event, data, ttl, event == DONE_EVENT),
                )

        await retrying(append, what=f"appending to {stream}")

    async def publish(self, run_id: str, event: str, data: bytes) -> None:
        """Append an event to the run's log (in memory for a run begun here)."""
        local = self._runs.get(run_id)
        if local is None:
            await self._append(f"run:{run_id}", event, data, ttl=_RUNNING_TTL)
            return
        await self._local.publish(run_id, event, data)
        if local.mirrored:
            await self._flush(run_id, local)

    async def finish(self, run_id: str, data: bytes, *, resumable: bool) -> None:
        """Append the done marker; the log then expires after the replay TTL."""
        local = self._runs.get(run_id)
        if local is None:
            ttl = self._replay_ttl if resumable else self._finished_ttl
            await self._append(f"run:{run_id}", DONE_EVENT, data, ttl=ttl)
            return
        await self._local.finish(run_id, data, resumable=resumable)
        if local.mirrored:
            await self._flush(run_id, local)

    async def announce(self, thread_id: str, run_id: str) -> None:
        """Record that a run started on the thread, if a thread stream anywhere watches it."""
        stream = f"thread:{thread_id}"
        if self._is_wanted(stream):
            await self._append(stream, "run", run_id.encode(), ttl=_RUNNING_TTL)

    # -- reading ----------------------------------------------------------------------------

    async def _rows(self, stream: str, after: tuple[int, int]) -> list[StreamEvent]:
        async def read() -> list[StreamEvent]:
            async with self._pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT ms, seq, event, data FROM run_events "
                    "WHERE stream = %s AND (ms, seq) > (%s, %s) ORDER BY ms, seq LIMIT %s",
                    (stream, after[0], after[1], _PAGE),
                )
                rows = await cur.fetchall()
            return [_event(row) for row in rows]

        return await retrying(read, what=f"reading {stream}")

    async def _tail(self, stream: str) -> tuple[int, int]:
        async def read() -> tuple[int, int]:
            async with self._pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT ms, seq FROM run_events WHERE stream = %s "
                    "ORDER BY ms DESC, seq DESC LIMIT 1",
                    (stream,),
                )
                row = await cur.fetchone()
            return _position(row) if row is not None else (0, -1)

        return await retrying(read, what=f"reading the end of {stream}")

    async def _want(self, stream: str) -> None:
        """Tell every process that a reader here wants ``stream`` (see the module's notes)."""
        try:
            async with self._pool.connection() as conn:
                await conn.execute("SELECT pg_notify(%s, %s)", (_WANTS, stream))
        except Exception as exc:  # the next idle tick asks again
            log.warning("could not ask for the log of %s: %s", stream, exc)

    async def _keep_wanting(self, stream: str) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            await self._want(stream)

    async def _follow(
        self, stream: str, cursor: tuple[int, int], *, want: bool = False
    ) -> AsyncGenerator[StreamEvent | None, None]:
        """Events of ``stream`` after ``cursor`` as they come; ``None`` on idle ticks.

        ``want``: ask for the stream (see the module's notes) now, and again every
        :data:`~server.runtime.broker.HEARTBEAT_SECONDS` for as long as this reader exists,
        whether its consumer reads on or not (a thread stream following one run leaves its
        announcements unread meanwhile): the want never lapses while the reader is there.
        """
        waiter = asyncio.Event()
        self._waiters.setdefault(stream, set()).add(waiter)
        try:
            async with self._wanting(stream) if want else contextlib.nullcontext():
                while True:
                    # Cleared before reading: an append notified during the read sets it again.
                    waiter.clear()
                    batch = await self._rows(stream, cursor)
                    for ev in batch:
                        cursor = parse_event_id(ev.id) or cursor
                        yield ev
                    if len(batch) == _PAGE:
                        continue
                    try:
                        async with asyncio.timeout(HEARTBEAT_SECONDS):
                            await waiter.wait()
                    except TimeoutError:
                        yield None
        finally:
            waiters = self._waiters.get(stream)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._waiters[stream]

    @contextlib.asynccontextmanager
    async def _wanting(self, stream: str) -> AsyncIterator[None]:
        """Ask for ``stream`` now (it counts in this process at once, before the notification
        comes back), and again every :data:`~server.runtime.broker.HEARTBEAT_SECONDS` until the
        block ends."""
        self._on_want(stream)
        await self._want(stream)
        renewing = asyncio.create_task(self._keep_wanting(stream), name=f"pg-broker-want-{stream}")
        try:
            yield
        finally:
            renewing.cancel()

    async def subscribe(
        self, run_id: str, *, after: str | None = None, live: bool = False
    ) -> AsyncGenerator[StreamEvent | None, None]:
        """Events of the run from the chosen position until the done marker (yielded).

        A run whose log is in this process's memory is read there. Elsewhere, ``live`` starts
        at the end of the log in Postgres or, when Postgres has none of it yet (a log that
        still lives in the memory of the process executing the run), at this moment.
        """
        if run_id in self._runs and self._local.has(run_id):
            async for ev in self._local.subscribe(run_id, after=after, live=live):
                yield ev
            return
        stream = f"run:{run_id}"
        position = parse_event_id(after)
        if position is None:
            position = (0, -1)
            if live and after is None:
                position = await self._tail(stream)
                if position == (0, -1):
                    position = (time.time_ns() // 1_000_000, -1)
        events = self._follow(stream, position, want=True)
        try:
            async for ev in events:
                yield ev
                if ev is not None and ev.event == DONE_EVENT:
                    return
        finally:
            await events.aclose()

    async def subscribe_end(self, run_id: str) -> AsyncGenerator[StreamEvent | None, None]:
        """The run's done marker alone; from memory for a run whose log is here."""
        if run_id in self._runs and self._local.has(run_id):
            events = self._local.subscribe_end(run_id)
        else:
            events = super().subscribe_end(run_id)
        try:
            async for ev in events:
                yield ev
        finally:
            await events.aclose()

    async def _watch_thread(self, thread_id: str) -> AsyncGenerator[str | None, None]:
        """Ids of runs that start on the thread from now on; ``None`` on idle ticks.

        Runs this process starts are announced from :data:`~server.runtime.broker.WATCHING`
        on (:meth:`_wanting` notes the want here at once); another process announces them once
        the want has reached it, a notification away, and until then the thread stream's
        checks in Postgres stand in (:mod:`server.runtime.thread_runs`).
        """
        stream = f"thread:{thread_id}"
        cursor = await self._tail(stream)
        async with self._wanting(stream):  # from now, not from the watcher's first read
            events = self._follow(stream, cursor)
            try:
                yield WATCHING
                async for ev in events:
                    yield None if ev is None else ev.data.decode()
            finally:
                await events.aclose()

    # -- background -------------------------------------------------------------------------

    def _wake(self, stream: str) -> None:
        for waiter in self._waiters.get(stream, ()):
            waiter.set()

    async def _listen(self) -> None:
        delay = 0.1
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
                try:
                    await conn.execute(f"LISTEN {_CHANNEL}")
                    await conn.execute(f"LISTEN {_WANTS}")
                    self._listening.set()
                    delay = 0.1
                    # Appends made while nobody listened: every reader reads again.
                    for stream in list(self._waiters):
                        self._wake(stream)
                    async for note in conn.notifies():
                        if note.channel == _WANTS:
                            self._on_want(note.payload)
                        else:
                            self._wake(note.payload)
                finally:
                    await conn.close()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("lost the run events LISTEN connection; reconnecting", exc_info=True)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    def _on_want(self, stream: str) -> None:
        """A reader somewhere wants ``stream``: remember it; mirror the run if it is here."""
        self._wanted[stream] = time.monotonic() + WANT_SECONDS
        run_id = stream.removeprefix("run:")
        local = self._runs.get(run_id)
        if local is not None:
            self._mirror(run_id, local)

    def _forget_expired(self) -> None:
        now = time.monotonic()
        for stream in [s for s, until in self._wanted.items() if until <= now]:
            del self._wanted[stream]
        for run_id in [r for r in self._runs if not self._local.has(r)]:
            del self._runs[run_id]

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(_SWEEP_SECONDS)
            self._forget_expired()
            try:
                async with self._pool.connection() as conn:
                    await conn.execute("DELETE FROM run_events WHERE expires_at < now()")
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("deleting expired run events failed", exc_info=True)


def _position(row: Any) -> tuple[int, int]:
    return int(row["ms"]), int(row["seq"])


def _event(row: Any) -> StreamEvent:
    return StreamEvent(f"{row['ms']}-{row['seq']}", row["event"], bytes(row["data"]))
