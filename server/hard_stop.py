"""A shutdown that ends: the process exits at once when its graceful shutdown overruns.

A graceful shutdown waits on what the server does not control: a graph node that ignores its
cancellation (catching ``CancelledError`` and working on), or one that blocks the event loop
with synchronous work. Either would keep the process, its port and its embedded Postgres for
as long as the node pleases. Once a shutdown begins, a watchdog thread gives it
:func:`shutdown_deadline` seconds; past that it logs why, releases what ``release`` holds (the
embedded Postgres, for at most :data:`RELEASE_WAIT` seconds) and ends the process with exit
code :data:`HARD_STOP_EXIT`. Runs it leaves behind keep their lease until it lapses; then any
process's sweeper puts them back in the queue, as after a crash.

The watchdog thread is started before the server runs and only waits until it is armed: a
signal handler must not start a thread (``Thread.start`` takes a lock the interrupted code may
hold), but it may set an event.

This module imports nothing heavy: the CLI arms it from a signal handler.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

from state.settings import Settings

__all__ = ["HARD_STOP_EXIT", "HARD_STOP_MARGIN", "RELEASE_WAIT", "HardStop", "shutdown_deadline"]

log = logging.getLogger(__name__)

HARD_STOP_EXIT = 70
"""The exit code of a process whose shutdown overran (``EX_SOFTWARE``)."""

HARD_STOP_MARGIN = 15.0
"""Seconds on top of the waits a graceful shutdown is allowed (closing the pool, the broker)."""

RELEASE_WAIT = 20.0
"""Seconds a hard stop waits for ``release`` (stopping the embedded Postgres) before exiting."""


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
        release: called (in a thread of its own, for at most :data:`RELEASE_WAIT` seconds) just
            before the process exits hard, to release what outlives a process otherwise (the
            embedded Postgres).
        exit_process: ends the process; :func:`os._exit` (tests pass another).
        say: prints the one line of a failed start (see :meth:`arm`) as the process's last,
            after the watchdog's own; ``None``: the line is lost with the process.
    """

    def __init__(
        self,
        after: float,
        *,
        release: Callable[[], None] | None = None,
        exit_process: Callable[[int], object] = os._exit,
        say: Callable[[str], object] | None = None,
    ) -> None:
        self.after = after
        self._release = release
        self._exit_process = exit_process
        self._say = say
        self._failure: str | None = None
        self._armed = threading.Event()
        self._finished = threading.Event()
        self._lock = threading.Lock()

    def start(self) -> threading.Thread:
        """Start the watchdog thread, idle until :meth:`arm` (call before the server runs).

        Returns:
            The thread: it ends once :meth:`finished` is called, or once it has acted.
        """
        watcher = threading.Thread(target=self._watch, name="staffgraph-hard-stop", daemon=True)
        watcher.start()
        return watcher

    def arm(self, failure: str | None = None) -> None:
        """A shutdown has begun: start counting (from any thread, signal handlers too).

        ``failure``: the one line a failed start ends with, when the start failing is what
        began the shutdown; a hard stop prints it (``say``) before ending the process, which
        would otherwise end without saying why it did not start.
        """
        if failure is not None and self._failure is None:
            self._failure = failure
        self._armed.set()

    def finished(self) -> None:
        """The graceful shutdown is over: nothing to stop any more. Once this returns, the
        watchdog will not act (if it is acting, this waits until the process has ended)."""
        with self._lock:
            self._finished.set()
        self._armed.set()  # wakes an idle watchdog so that it ends

    def _watch(self) -> None:
        self._armed.wait()
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
                releaser = threading.Thread(target=self._release_quietly, daemon=True)
                releaser.start()
                releaser.join(RELEASE_WAIT)
            if self._failure is not None and self._say is not None:
                try:
                    self._say(self._failure)
                except Exception:  # the exit matters more
                    log.exception("printing the failed start's line failed")
            self._exit_process(HARD_STOP_EXIT)

    def _release_quietly(self) -> None:
        assert self._release is not None
        try:
            self._release()
        except Exception:
            log.exception("releasing the process's resources failed")
