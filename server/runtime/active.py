"""A run executing in this process: its handle and the publisher of its events."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from server.runtime.broker import Broker
from state.checkpoints import PrefetchedCheckpoint
from state.retry import is_transient

__all__ = ["ActiveRun", "RunPublisher"]

log = logging.getLogger(__name__)


@dataclass
class ActiveRun:
    """A run executing in this process."""

    run_id: str
    thread_id: str
    token: int
    task: asyncio.Task[Any] | None = None
    cancel_action: str | None = None
    """Set when the run is to stop on purpose (``interrupt`` / ``rollback``)."""
    streaming: bool = False
    """The graph is executing: only then does a cancel interrupt the task. Before, the flag is
    checked when the graph would start; after, the result is being recorded and must be."""
    claimed_at: float = field(default_factory=time.monotonic)
    """When this process got the lease (monotonic clock)."""
    lost: bool = False
    """The lease is not provably ours: another worker may own the run; write nothing."""
    ending_at: float | None = None
    """When the run's finish was sent (monotonic clock); ``None`` before. The finish is a
    write fenced by the lease token, refused if the lease is gone. From then on a heartbeat
    that no longer finds the run running does not stop it: that is what the finish itself did
    once it committed, and the run must still announce its end and start the thread's next
    queued run (whose lease the finish granted, from about this moment)."""
    done: asyncio.Event = field(default_factory=asyncio.Event)

    checkpoint: PrefetchedCheckpoint | None = None
    """The thread's latest checkpoint, read when the run was claimed (its first read)."""
    cancelled_at: float | None = None
    """When the task was last cancelled for :attr:`cancel_action` (monotonic clock)."""

    def stop(self, action: str) -> None:
        """Ask the run to stop (``interrupt`` / ``rollback``); idempotent."""
        if self.cancel_action is not None:
            return
        self.cancel_action = action
        if self.streaming and self.task is not None:
            self.cancelled_at = time.monotonic()
            self.task.cancel()

    def ensure_stopped(self, grace: float) -> None:
        """Cancel the task again if its graph still executes ``grace`` seconds after a cancel.

        Something on the way (a library catching ``CancelledError``) may swallow a
        cancellation; the run would then go on to its end, where Postgres refuses to record
        it as anything but the cancel. Delivered again here, the cancel stops it now.
        """
        task = self.task
        if self.cancelled_at is None or not self.streaming or task is None or task.done():
            return
        if time.monotonic() - self.cancelled_at < grace:
            return
        log.warning("run %s still executes after its cancel; cancelling it again", self.run_id)
        while task.cancelling():  # the swallowed request must not count against the new one
            task.uncancel()
        self.cancelled_at = time.monotonic()
        task.cancel()

    def lose(self) -> None:
        """The lease is gone: stop at once, whatever the run is doing, and record nothing."""
        if not self.lost:
            self.lost = True
            if self.task is not None:
                self.task.cancel()


class RunPublisher:
    """Publishes one run's events; a broker down past its retries stops publishing, not the run.

    The run goes on and its end is recorded in Postgres, where followers find it.
    """

    def __init__(self, broker: Broker, run_id: str) -> None:
        self._broker = broker
        self._run_id = run_id
        self._broken = False

    async def publish(self, event: str, data: bytes) -> None:
        if self._broken:
            return
        try:
            await self._broker.publish(self._run_id, event, data)
        except Exception as exc:
            if not is_transient(exc):
                raise
            self._broken = True
            log.warning(
                "the broker stayed unreachable (%s); run %s goes on without streaming",
                exc,
                self._run_id,
            )

    async def announce(self, thread_id: str) -> None:
        try:
            await self._broker.announce(thread_id, self._run_id)
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning("could not announce run %s (%s)", self._run_id, exc)
