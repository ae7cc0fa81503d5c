"""Where run events go between the worker that produces them and the clients that read them.

A run's events form an append-only log with ids ``<epoch_ms>-<seq>`` (the Redis stream id
format, so both brokers look the same to clients). The log ends with a *done* marker carrying
the run's final status and output, which is what ``runs/wait`` and ``join`` return.

:class:`InProcessBroker` keeps logs in memory (one process). ``RedisBroker`` (in
``server.runtime.redis_broker``) keeps them in Redis Streams so any process can serve, join or
replay a run, and carries cancellation between processes.
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field

__all__ = [
    "DONE_EVENT",
    "HEARTBEAT_SECONDS",
    "Broker",
    "InProcessBroker",
    "StreamEvent",
    "WATCHING",
    "parse_event_id",
]

DONE_EVENT = "__done__"
"""Name of the final marker of a run's log; never sent to clients (see ``encode_done``)."""

HEARTBEAT_SECONDS = 5.0
"""Idle time after which subscribers get ``None`` (the SSE layer sends ``: heartbeat``)."""

WATCHING = ""
"""First item of a broker's ``_watch_thread``: announcements from here on reach the watcher."""

MAX_EVENTS_PER_RUN = 10_000
"""Oldest events beyond this many are dropped from a run's log (memory bound)."""


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One event of a run's log."""

    id: str
    event: str
    data: bytes


CancelHandler = Callable[[str, str], None]
"""Called with ``(run_id, action)`` when another process asks to cancel a run."""


def parse_event_id(value: str | None) -> tuple[int, int] | None:
    """``"<ms>-<seq>"`` as a sortable pair; ``None`` for missing, ``-1`` or malformed ids."""
    if not value:
        return None
    ms, _, seq = value.strip().partition("-")
    if not ms.isdigit() or not (seq or "0").isdigit():
        return None
    return int(ms), int(seq or 0)


class Broker(ABC):
    """Run event logs, thread announcements and (optionally) cancel signals."""

    kind: str = "abstract"
    carries_cancel = False
    """Whether :meth:`send_cancel` reaches other processes (else the caller uses Postgres)."""

    async def start(self, on_cancel: CancelHandler | None = None) -> None:  # noqa: B027
        """Open connections; ``on_cancel`` receives cancel signals from other processes."""

    async def close(self) -> None:  # noqa: B027
        """Release connections."""

    @abstractmethod
    async def publish(self, run_id: str, event: str, data: bytes) -> None:
        """Append an event to the run's log."""

    @abstractmethod
    async def finish(self, run_id: str, data: bytes, *, resumable: bool) -> None:
        """Append the done marker and start the log's replay TTL."""

    @abstractmethod
    def subscribe(
        self, run_id: str, *, after: str | None = None, live: bool = False
    ) -> AsyncGenerator[StreamEvent | None, None]:
        """Events of the run, ending after the done marker (which is yielded too).

        Args:
            run_id: the run.
            after: yield only events after this id (``-1``: everything).
            live: start at the end of the log (events from now on). Ignored with ``after``.

        Yields ``None`` after :data:`HEARTBEAT_SECONDS` without an event.
        """

    async def subscribe_end(self, run_id: str) -> AsyncGenerator[StreamEvent | None, None]:
        """The run's done marker alone (``None`` on idle ticks, as :meth:`subscribe`): what a
        caller waiting for the run's output needs. Ends without it when the broker closes.

        Reads the log and passes over the events before the marker; a broker that can wait for
        the marker alone overrides it.
        """
        async for event in self.subscribe(run_id):
            if event is None or event.event == DONE_EVENT:
                yield event

    def begin(self, run_id: str, *, resumable: bool) -> None:  # noqa: B027
        """Note that this process is about to execute ``run_id`` (before its first event).

        A broker that keeps the logs of the runs it executes near them (the Postgres broker)
        starts the run's log here, so that the process's own readers find it from the start.
        """

    @abstractmethod
    async def announce(self, thread_id: str, run_id: str) -> None:
        """Tell thread watchers that ``run_id`` started on ``thread_id``."""

    async def watch_thread(self, thread_id: str) -> AsyncGenerator[str | None, None]:
        """Ids of runs that start on the thread, ``None`` on idle ticks: every run announced
        once this returns, whenever the generator is read.

        A thread stream starts watching before it reads the runs in flight, so a run that
        starts in between is in one or the other (or both: the stream skips a run it
        followed). Started lazily, at its first read, the watcher missed a run announced
        between that read and the read of the runs in flight, for good if the run also ended
        before the stream next asked Postgres. Close the generator (``aclose``) when done.
        """
        watcher = self._watch_thread(thread_id)
        try:
            first = await anext(watcher)
        except BaseException:
            await watcher.aclose()
            raise
        if first != WATCHING:
            await watcher.aclose()
            raise RuntimeError(f"{type(self).__name__}._watch_thread did not yield WATCHING first")
        return watcher

    @abstractmethod
    def _watch_thread(self, thread_id: str) -> AsyncGenerator[str | None, None]:
        """:data:`WATCHING` once announcements on the thread reach this generator, then the
        ids of runs announced since, and ``None`` on idle ticks."""

    async def send_cancel(self, run_id: str, action: str) -> None:  # noqa: B027
        """Ask whichever process runs ``run_id`` to stop it (only if :attr:`carries_cancel`)."""


@dataclass
class _Log:
    events: list[StreamEvent] = field(default_factory=list)
    dropped: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once, when the done marker is appended (or the broker closes)."""
    expires_at: float = 0.0
    watchers: int = 0
    """Readers of a thread's log (:meth:`InProcessBroker.watch_thread`) at the moment."""

    @property
    def done(self) -> bool:
        return self.ended.is_set()

    def notify(self) -> None:
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()

    def end(self) -> None:
        """No more events: wake every reader, those waiting for the end included."""
        self.ended.set()
        self.notify()


class InProcessBroker(Broker):
    """Logs in this process's memory: the default, for one server process."""

    kind = "in-process"

    def __init__(self, *, replay_ttl: float = 600.0, finished_ttl: float = 60.0) -> None:
        """Create the broker.

        Args:
            replay_ttl: seconds a finished resumable run's log stays replayable.
            finished_ttl: seconds any other finished log is kept (late joiners, runs/wait).
        """
        self._logs: dict[str, _Log] = {}
        self._threads: dict[str, _Log] = {}
        self._replay_ttl = replay_ttl
        self._finished_ttl = finished_ttl
        self._last_ms = 0
        self._seq = 0
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self, on_cancel: CancelHandler | None = None) -> None:
        """Start dropping expired logs in the background."""
        self._sweeper = asyncio.create_task(self._sweep(), name="broker-sweeper")

    async def close(self) -> None:
        """Stop the background sweeper and wake every subscriber."""
        if self._sweeper is not None:
            self._sweeper.cancel()
        for log in self._logs.values():
            log.end()

    def _next_id(self) -> str:
        ms = time.time_ns() // 1_000_000
        if ms <= self._last_ms:
            ms = self._last_ms
            self._seq += 1
        else:
            self._last_ms, self._seq = ms, 0
        return f"{ms}-{self._seq}"

    def _log(self, run_id: str) -> _Log:
        log = self._logs.get(run_id)
        if log is None:
            # A log nobody finishes (the run is executed elsewhere) still goes away eventually.
            log = self._logs[run_id] = _Log(expires_at=time.monotonic() + 86_400)
        return log

    async def publish(self, run_id: str, event: str, data: bytes) -> None:
        """Append an event."""
        log = self._log(run_id)
        log.events.append(StreamEvent(self._next_id(), event, data))
        if len(log.events) > MAX_EVENTS_PER_RUN:
            excess = len(log.events) - MAX_EVENTS_PER_RUN
            del log.events[:excess]
            log.dropped += excess
        log.notify()

    def has(self, run_id: str) -> bool:
        """Whether the run has a log here (published to, finished or begun, and not expired)."""
        return run_id in self._logs

    def events_from(self, run_id: str, index: int) -> tuple[list[StreamEvent], int]:
        """The run's events from position ``index`` of its log on, and the position after them.

        Positions count every event ever appended, those dropped past
        :data:`MAX_EVENTS_PER_RUN` included; a position among the dropped starts at the oldest
        kept.
        """
        log = self._logs.get(run_id)
        if log is None:
            return [], index
        start = max(index - log.dropped, 0)
        return log.events[start:], log.dropped + len(log.events)

    def open_log(self, run_id: str) -> None:
        """Create the run's log now, empty, if it has none (readers then wait on it)."""
        self._log(run_id)

    async def finish(self, run_id: str, data: bytes, *, resumable: bool) -> None:
        """Append the done marker."""
        log = self._log(run_id)
        log.events.append(StreamEvent(self._next_id(), DONE_EVENT, data))
        log.expires_at = time.monotonic() + (self._replay_ttl if resumable else self._finished_ttl)
        log.end()

    async def subscribe_end(self, run_id: str) -> AsyncGenerator[StreamEvent | None, None]:
        """The done marker alone: the reader wakes once, at the end, not for every event."""
        log = self._log(run_id)
        while not log.done:
            try:
                async with asyncio.timeout(HEARTBEAT_SECONDS):
                    await log.ended.wait()
            except TimeoutError:
                yield None
        if log.events and log.events[-1].event == DONE_EVENT:
            yield log.events[-1]

    async def subscribe(
        self, run_id: str, *, after: str | None = None, live: bool = False
    ) -> AsyncGenerator[StreamEvent | None, None]:
        """Events of the run from the chosen position until the done marker."""
        log = self._log(run_id)
        position = parse_event_id(after)
        if position is not None:
            cursor = log.dropped + next(
                (i for i, ev in enumerate(log.events) if parse_event_id(ev.id) > position),  # type: ignore[operator]
                len(log.events),
            )
        elif live and after is None and not log.done:
            cursor = log.dropped + len(log.events)
        else:
            cursor = log.dropped
        while True:
            changed = log.changed
            start = max(cursor - log.dropped, 0)
            batch = log.events[start:]
            cursor = log.dropped + len(log.events)
            for ev in batch:
                yield ev
                if ev.event == DONE_EVENT:
                    return
            if log.done:
                return
            try:
                async with asyncio.timeout(HEARTBEAT_SECONDS):
                    await changed.wait()
            except TimeoutError:
                yield None

    async def announce(self, thread_id: str, run_id: str) -> None:
        """Record that a run started on the thread, for the thread's watchers if it has any.

        Watchers read only what is announced after they start (runs already in flight come
        from Postgres), so a thread nobody watches keeps no log: kept for every thread that
        ever ran, a day each, the logs grew by about 2 KB a run with stateless runs (a new
        thread each), without bound.
        """
        log = self._threads.get(thread_id)
        if log is None:
            return
        log.events.append(StreamEvent(self._next_id(), "run", run_id.encode()))
        if len(log.events) > 100:
            del log.events[:-100]
        log.expires_at = time.monotonic() + 86_400
        log.notify()

    async def _watch_thread(self, thread_id: str) -> AsyncGenerator[str | None, None]:
        """Run ids as they start on the thread (announced runs are kept while it is watched)."""
        log = self._threads.get(thread_id)
        if log is None:
            log = self._threads[thread_id] = _Log(expires_at=time.monotonic() + 86_400)
        log.watchers += 1
        last = parse_event_id(log.events[-1].id) if log.events else (0, 0)
        try:
            yield WATCHING
            while True:
                changed = log.changed
                for ev in list(log.events):
                    position = parse_event_id(ev.id)
                    if position is not None and last is not None and position > last:
                        last = position
                        yield ev.data.decode()
                try:
                    async with asyncio.timeout(HEARTBEAT_SECONDS):
                        await changed.wait()
                except TimeoutError:
                    yield None
        finally:
            log.watchers -= 1
            if log.watchers == 0 and self._threads.get(thread_id) is log:
                del self._threads[thread_id]  # the last watcher left

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(10)
            now = time.monotonic()
            for logs in (self._logs, self._threads):
                for key in [k for k, log in logs.items() if log.expires_at < now]:
                    logs.pop(key, None)
