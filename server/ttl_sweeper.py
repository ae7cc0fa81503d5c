"""The thread TTL sweeper: a background task of every server process.

Every ``checkpointer.ttl.sweep_interval_minutes`` (langgraph.json, default 5) it deletes or
prunes the threads whose TTL ran out, at most ``sweep_limit`` per pass, and goes again at once
while a pass comes back full. Processes share the work through Postgres row locks (see
:mod:`server.repos.thread_ttl`). A failed pass is logged and retried on the next tick: an
outage delays sweeping, it never stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from server.config import ThreadTTLConfig
from server.repos.thread_ttl import SweepResult, ThreadTTLRepo

__all__ = ["ThreadTTLSweeper"]

log = logging.getLogger(__name__)


class ThreadTTLSweeper:
    """Sweeps expired threads until stopped."""

    def __init__(self, repo: ThreadTTLRepo, config: ThreadTTLConfig | None) -> None:
        """Sweep with ``repo`` on the schedule of ``config`` (defaults when ``None``)."""
        self._repo = repo
        self._config = config or ThreadTTLConfig()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start sweeping in the background."""
        self._task = asyncio.create_task(self._loop(), name="thread-ttl-sweeper")

    async def stop(self) -> None:
        """Stop sweeping (a pass in progress is rolled back by its transaction)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def sweep_once(self) -> SweepResult:
        """One pass: at most ``sweep_limit`` expired threads."""
        result = await self._repo.sweep(limit=self._config.sweep_limit)
        if result.deleted or result.pruned:
            log.info(
                "thread TTL sweep: %d deleted, %d pruned to their latest checkpoint",
                len(result.deleted),
                len(result.pruned),
            )
        return result

    async def _loop(self) -> None:
        interval = self._config.sweep_interval_minutes * 60
        while True:
            try:
                result = await self.sweep_once()
            except Exception:
                log.warning("thread TTL sweep failed; retrying in %.0f s", interval, exc_info=True)
            else:
                if len(result.deleted) + len(result.pruned) >= self._config.sweep_limit:
                    continue  # more are due: no need to wait for the next tick
            await asyncio.sleep(interval)
