"""A shutdown that ends: the process exits at once when its graceful shutdown overruns.

A graceful shutdown waits on what the server does not control: a graph node that ignores its
cancellation (catching ``CancelledError`` and working on), or one that blocks the event loop
with synchronous work. Either would keep the process, its port and its embedded Postgres for
as long as the node pleases. Once a shutdown begins, a watchdog thread gives it
:func:`shutdown_deadline` seconds; past that it logs why, releases what ``release`` holds (the
embedded Postgres) and ends the process with exit code :data:`HARD_STOP_EXIT`. Runs it leaves
behind keep their lease until it lapses; then any process's sweeper puts them back in the queue,
as after a crash.

This module imports nothing heavy: the CLI arms it from a signal handler.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

from state.settings import Settings

__all__ = ["HARD_STOP_EXIT", "HARD_STOP_MARGIN", "HardStop", "shutdown_deadline"]

log = logging.getLogger(__name__)

HARD_STOP_EXIT = 70
"""The exit code of a process whose shutdown overran (``EX_SOFTWARE``)."""

HARD_STOP_MARGIN = 15.0
"""Seconds on top of the waits a graceful shutdown is allowed (closing the pool, the broker)."""


def shutdown_deadline(settings: Settings) -> float:
    """Seconds a graceful shutdown may take before the process exits at once.

    uvicorn first waits up to the shutdown grace for open connections (the streams of runs in
    flight), then the workers wait up to the grace again for the runs themselves, then pending
    traces are flushed; :data:`HARD_STOP_MARGIN` covers the rest.
    """
    grace = max(settings.server.shutdown_grace_seconds, 1.0)
    return 2 * grace + settings.observability.trace_flush_timeout + HARD_STOP_MARGIN


class HardStop:
    """Ends the process if a shutdown has not ended ``after`` seconds after :meth:`arm`.

    Args:
        after: seconds the graceful shutdown may take.
        release: called (in the watchdog's thread) just before the process exits hard, to
            release what outlives a process otherwise (the embedded Postgres).
    """

    def __init__(self, after: float, *, release: Callable[[], None] | None = None) -> None:
        self.after = after
        self._release = release
        self._armed = False
        self._finished = threading.Event()
        self._lock = threading.Lock()

    def arm(self) -> None:
        """A shutdown has begun: start counting (once; from any thread, signal handlers too)."""
        if self._armed:
            return
        self._armed = True
        threading.Thread(target=self._watch, name="staffgraph-hard-stop", daemon=True).start()

    def finished(self) -> None:
        """The graceful shutdown is over: nothing to stop any more."""
        with self._lock:
            self._finished.set()

    def _watch(self) -> None:
        if self._finished.wait(self.after):
            return
        with self._lock:
            if self._finished.is_set():
                return
            log.error(
                "the shutdown did not finish within %.0f s (a run ignoring its cancellation, or "
                "blocking the event loop?); exiting now",
                self.after,
            )
            if self._release is not None:
                try:
                    self._release()
                except Exception:
                    log.exception("releasing the process's resources failed")
            os._exit(HARD_STOP_EXIT)
