"""Run event logs in Postgres, shared by every server process, for deployments without Redis.

The default broker when a server runs several processes (``staffgraph serve --processes N``)
and no ``REDIS_URL`` is set: the run's worker may be in one process and its stream's reader in
another. Logs are rows of the ``run_events`` table (migration 0110: unlogged, expiring), ids
``<ms>-<seq>`` assigned by ``staffgraph_append_event`` so that they rise within a stream
whichever process writes. Each append notifies ``staffgraph_events`` with the stream's name;
one ``LISTEN`` connection per process wakes the local readers of that stream, which then read
the rows after their cursor. Readers also read again after every idle tick
(:data:`~server.runtime.broker.HEARTBEAT_SECONDS`), so a notification lost while the listener
reconnects delays events but never loses them. Cancel signals go through Postgres as without
any broker (``carries_cancel`` is false).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from server.runtime.broker import (
    DONE_EVENT,
    HEARTBEAT_SECONDS,
    Broker,
    CancelHandler,
    StreamEvent,
    parse_event_id,
)
from state.retry import retrying

__all__ = ["PostgresBroker"]

log = logging.getLogger(__name__)

_CHANNEL = "staffgraph_events"
_RUNNING_TTL = 86_400.0
_SWEEP_SECONDS = 30.0
_PAGE = 500


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

    async def start(self, on_cancel: CancelHandler | None = None) -> None:
        """Listen for appends and start deleting expired logs."""
        self._tasks = [
            asyncio.create_task(self._listen(), name="pg-broker-listen"),
            asyncio.create_task(self._sweep(), name="pg-broker-sweep"),
        ]

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
        """Append an event to the run's log."""
        await self._append(f"run:{run_id}", event, data, ttl=_RUNNING_TTL)

    async def finish(self, run_id: str, data: bytes, *, resumable: bool) -> None:
        """Append the done marker; the log then expires after the replay TTL."""
        ttl = self._replay_ttl if resumable else self._finished_ttl
        await self._append(f"run:{run_id}", DONE_EVENT, data, ttl=ttl)

    async def announce(self, thread_id: str, run_id: str) -> None:
        """Record that a run started on the thread."""
        await self._append(f"thread:{thread_id}", "run", run_id.encode(), ttl=_RUNNING_TTL)

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

    async def _follow(
        self, stream: str, cursor: tuple[int, int]
    ) -> AsyncGenerator[StreamEvent | None, None]:
        """Events of ``stream`` after ``cursor`` as they come; ``None`` on idle ticks."""
        waiter = asyncio.Event()
        self._waiters.setdefault(stream, set()).add(waiter)
        try:
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

    async def subscribe(
        self, run_id: str, *, after: str | None = None, live: bool = False
    ) -> AsyncGenerator[StreamEvent | None, None]:
        """Events of the run from the chosen position until the done marker (yielded)."""
        stream = f"run:{run_id}"
        position = parse_event_id(after)
        if position is None:
            position = await self._tail(stream) if live and after is None else (0, -1)
        events = self._follow(stream, position)
        try:
            async for ev in events:
                yield ev
                if ev is not None and ev.event == DONE_EVENT:
                    return
        finally:
            await events.aclose()

    async def watch_thread(self, thread_id: str) -> AsyncGenerator[str | None, None]:
        """Ids of runs that start on the thread from now on; ``None`` on idle ticks."""
        stream = f"thread:{thread_id}"
        events = self._follow(stream, await self._tail(stream))
        try:
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
                    delay = 0.1
                    # Appends made while nobody listened: every reader reads again.
                    for stream in list(self._waiters):
                        self._wake(stream)
                    async for note in conn.notifies():
                        self._wake(note.payload)
                finally:
                    await conn.close()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("lost the run events LISTEN connection; reconnecting", exc_info=True)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(_SWEEP_SECONDS)
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
