"""The connection pool: waits while Postgres is busy, gives up fast while it is unreachable.

A caller waiting for a connection is in one of two situations that look the same from inside
the pool: every connection is busy (wait: one will be free soon), or Postgres is down and no
connection can be made (give up now: the server answers 503 with ``Retry-After``, a worker
retries with backoff). :class:`OutageAwarePool` tells them apart: after ``unreachable_after``
seconds without a connection it makes one probe connection of its own; if that fails too,
Postgres is unreachable and the caller gets ``PoolTimeout`` at once, otherwise it keeps
waiting up to the pool's full timeout.

A connection is checked (one empty query, a round trip) on checkout only when it sat in the
pool for :data:`CHECK_IDLE_AFTER` seconds or more, or when its socket has something to read:
an idle connection's socket is silent unless the server ended the session (a restart or a
terminated backend sends an error and closes it), and looking costs one ``poll`` system call.
Checking every checkout with a query cost ten of a run's 37 statements.
"""

from __future__ import annotations

import asyncio
import logging
import select
import time
from typing import Any
from weakref import WeakKeyDictionary

import psycopg
from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool, PoolTimeout

__all__ = ["CHECK_IDLE_AFTER", "OutageAwarePool", "PooledConnection"]

CHECK_IDLE_AFTER = 1.0
"""Seconds in the pool after which a connection is checked before it is handed out."""

log = logging.getLogger(__name__)


class OutageAwarePool(AsyncConnectionPool):
    """``AsyncConnectionPool`` that fails fast while Postgres is unreachable."""

    def __init__(
        self,
        conninfo: str,
        *,
        unreachable_after: float,
        check_idle_after: float = CHECK_IDLE_AFTER,
        **kwargs: Any,
    ) -> None:
        """Create the pool.

        Args:
            conninfo: libpq URL.
            unreachable_after: seconds without a connection after which Postgres is probed.
            check_idle_after: seconds in the pool after which a connection is checked on
                checkout (see :data:`CHECK_IDLE_AFTER`).
            **kwargs: as ``AsyncConnectionPool`` (``timeout`` is the longest wait while busy).
        """
        kwargs.setdefault("check", self._check_if_idle)
        super().__init__(conninfo, **kwargs)
        self._returned_at: WeakKeyDictionary[Any, float] = WeakKeyDictionary()
        self.check_idle_after = check_idle_after
        self._url = conninfo
        self.unreachable_after = unreachable_after
        self._down_until = 0.0
        self._probe: asyncio.Future[bool] | None = None
        self._probed_at = float("-inf")
        self._probe_answer = True

    async def getconn(self, timeout: float | None = None) -> Any:
        """A connection; ``PoolTimeout`` within ``unreachable_after`` while Postgres is down."""
        total = self.timeout if timeout is None else timeout
        first = min(total, self.unreachable_after)
        if time.monotonic() < self._down_until:
            first = min(first, 0.2)  # known down a moment ago: do not queue behind it
        try:
            return await super().getconn(first)
        except PoolTimeout:
            if total <= first or not await self._reachable():
                raise
        return await super().getconn(total - first)

    # psycopg_pool types its own as a generator-based context manager; this one is used the
    # same way (``async with``), hence the ignore.
    def connection(self, timeout: float | None = None) -> PooledConnection:  # type: ignore[override]
        """A connection for an ``async with`` block, returned to the pool after it (as
        psycopg_pool's; see :class:`PooledConnection`)."""
        return PooledConnection(self, timeout)

    async def putconn(self, conn: Any) -> None:
        """Return ``conn`` to the pool, noting when (see :data:`CHECK_IDLE_AFTER`)."""
        self._returned_at[conn] = time.monotonic()
        await super().putconn(conn)

    async def _check_if_idle(self, conn: Any) -> None:
        returned = self._returned_at.get(conn)
        recent = returned is not None and time.monotonic() - returned < self.check_idle_after
        if recent and not _has_input(conn.fileno()):
            return
        await AsyncConnectionPool.check_connection(conn)

    async def _reachable(self) -> bool:
        """Whether Postgres accepts a connection: one probe at a time, its answer kept 1 s.

        Every waiter of a busy pool asks at once; probing for each would add a connection
        per waiter to a server that may already be at its connection limit.
        """
        now = time.monotonic()
        if now < self._probed_at + 1.0:
            return self._probe_answer
        if self._probe is None:
            self._probe = asyncio.ensure_future(self._connect_once())
        probe = self._probe
        try:
            return await asyncio.shield(probe)
        finally:
            if probe.done() and self._probe is probe:
                self._probe = None

    async def _connect_once(self) -> bool:
        try:
            conn = await psycopg.AsyncConnection.connect(
                self._url, connect_timeout=max(1, int(self.unreachable_after))
            )
        except (psycopg.OperationalError, OSError) as exc:
            log.warning("Postgres is unreachable: %s", str(exc).strip().splitlines()[0])
            self._down_until = time.monotonic() + 1.0
            answer = False
        else:
            await conn.close()
            answer = True
        self._probed_at, self._probe_answer = time.monotonic(), answer
        return answer


class PooledConnection:
    """``async with pool.connection() as conn``: a connection of ``pool`` for the block.

    psycopg_pool's block ends with the connection's own context exit: a commit, or a rollback
    after an error, each taking the connection's lock and running its protocol generator even
    when there is nothing to end. The pool's connections autocommit, so there rarely is: here
    the commit or rollback is made only when a transaction is open (a block that began one by
    hand, or a connection opened without autocommit). A class rather than a generator-based
    context manager: a run checks out twice, and a generator costs each checkout its frames,
    its first-iteration hook and its finalisation.
    """

    __slots__ = ("_conn", "_pool", "_timeout")

    def __init__(self, pool: OutageAwarePool, timeout: float | None) -> None:
        self._pool = pool
        self._timeout = timeout
        self._conn: Any = None

    async def __aenter__(self) -> Any:
        self._conn = await self._pool.getconn(self._timeout)
        return self._conn

    async def __aexit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        conn, self._conn = self._conn, None
        try:
            if conn.closed or conn.info.transaction_status == TransactionStatus.IDLE:
                return
            if exc_type is None:
                await conn.commit()
                return
            try:
                await conn.rollback()
            except Exception as exc:  # the error being raised matters more
                log.warning("rollback failed on returning a connection: %s", exc)
        finally:
            await self._pool.putconn(conn)


def _has_input(fileno: int) -> bool:
    """Whether the socket has bytes (or an end of file) waiting, without blocking."""
    poller = select.poll()
    poller.register(fileno, select.POLLIN)
    return bool(poller.poll(0))
