"""A running run's checkpoint writes, sent together per turn of the event loop behind its fence.

Used by :class:`state.checkpoints.FencedPostgresSaver` for the writes a run makes (with
:data:`state.fencing.RUN_FENCE` set); see :class:`RunWrites`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from psycopg_pool import AsyncConnectionPool

from state.fencing import LeaseLost, RunFence, check_fence, lease_lost_as
from state.retry import is_transient, retrying

__all__ = ["RunWrites"]

log = logging.getLogger(__name__)


class _Write:
    """One write statement a run asked for, waiting to be sent, and its caller's future."""

    __slots__ = ("done", "params", "sql", "what")

    def __init__(
        self, sql: Mapping[bool, str], params: dict[str, Any], what: str, done: asyncio.Future[None]
    ) -> None:
        self.sql = sql
        self.params = params
        self.what = what
        self.done = done


class RunWrites:
    """The checkpoint writes of running runs, each run's sent together per turn of the event loop.

    LangGraph saves a task's writes in the background, in the same turn of the event loop as a
    checkpoint: the input checkpoint and the writes of the task that consumes the input, a
    step's last task writes and the checkpoint that ends the step. Sent apart, each cost a pool
    checkout, a fence check, a round trip and a commit. Here a run's first write queues a
    send for the loop's next turn (``call_soon``), and the writes the run asks for until then
    go with it as one pipeline: the fence check, each statement, one Sync. Postgres runs that as
    one transaction, so the writes land together or not at all. A write alone is sent as
    before, one statement selecting its rows from the fence.

    - A lost lease fails every write of the send with :class:`LeaseLost`.
    - A connection-level failure sends them all again (:func:`retrying`): every statement is an
      upsert, so a repeat is harmless.
    - Any other error (Postgres refused one statement, and with it the whole transaction):
      each write is sent again on its own, so only the caller whose write fails gets the error.
    - A caller cancelled before the send starts has its write dropped; once the send started,
      the write goes on, as a statement already sent to Postgres would.
    """

    def __init__(self, pool: AsyncConnectionPool) -> None:
        """Send the writes over connections of ``pool``."""
        self._pool = pool
        self._queued: dict[RunFence, list[_Write]] = {}
        self._sending: set[asyncio.Task[None]] = set()

    async def write(
        self, fence: RunFence, sql: Mapping[bool, str], params: dict[str, Any], what: str
    ) -> None:
        """Queue one write for ``fence``'s run and wait until it is committed.

        Raises:
            LeaseLost: the run's lease is lost; nothing of the send was written.
        """
        loop = asyncio.get_running_loop()
        queued = self._queued.get(fence)
        if queued is None:
            queued = self._queued[fence] = []
            loop.call_soon(self._send_queued, fence)
        write = _Write(sql, params, what, loop.create_future())
        queued.append(write)
        await write.done

    def _send_queued(self, fence: RunFence) -> None:
        task = asyncio.ensure_future(self._send(fence, self._queued.pop(fence)))
        self._sending.add(task)  # the loop holds tasks weakly
        task.add_done_callback(self._sending.discard)

    async def _send(self, fence: RunFence, writes: list[_Write]) -> None:
        writes = [write for write in writes if not write.done.done()]  # not cancelled
        if not writes:
            return
        try:
            error = await self._sent(fence, writes)
        except BaseException:  # cancelled (shutdown): so are the callers
            for write in writes:
                write.done.cancel()
            raise
        if len(writes) > 1 and error is not None:
            if not isinstance(error, LeaseLost) and not is_transient(error):
                log.debug("%d checkpoint writes sent together failed (%s)", len(writes), error)
                for write in writes:
                    await self._send(fence, [write])
                return
        for write in writes:
            _settle(write.done, error)

    async def _sent(self, fence: RunFence, writes: list[_Write]) -> Exception | None:
        """Send ``writes`` (retried); the error that failed them, if any."""
        try:
            with lease_lost_as(fence):
                if len(writes) == 1:
                    await retrying(lambda: self._alone(fence, writes[0]), what=writes[0].what)
                else:
                    await retrying(
                        lambda: self._together(fence, writes),
                        what=f"saving {len(writes)} checkpoint writes",
                    )
        except Exception as exc:
            return exc
        return None

    async def _alone(self, fence: RunFence, write: _Write) -> None:
        params = {**write.params, "fence_run": fence.run_id, "fence_token": fence.token}
        async with self._pool.connection() as conn, conn.cursor(binary=True) as cur:
            await cur.execute(write.sql[True], params)

    async def _together(self, fence: RunFence, writes: list[_Write]) -> None:
        # Postgres runs what a pipeline sends before its Sync as one implicit transaction: the
        # fence's error (surfacing as the pipeline syncs) skips every statement after it.
        async with (
            self._pool.connection() as conn,
            conn.pipeline(),
            conn.cursor(binary=True) as cur,
        ):
            await check_fence(cur, fence)
            for write in writes:
                await cur.execute(write.sql[False], write.params)


def _settle(done: asyncio.Future[None], error: Exception | None) -> None:
    """Answer a write's caller (unless it stopped waiting): ``None``, or ``error`` raised."""
    if done.done():
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)
