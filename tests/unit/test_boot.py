"""A shutdown while the app is still starting ends, whatever the start was doing.

:class:`StartingApp` is driven through the ASGI lifespan protocol as uvicorn drives it, with
apps written as a user would: a Starlette lifespan that opens something and closes it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

import pytest
from starlette.applications import Starlette

from server.boot import StartingApp


class Lifespan:
    """Drives an ASGI app's lifespan: startup now, shutdown when asked."""

    def __init__(self, app: StartingApp) -> None:
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.sent: list[str] = []
        self._task = asyncio.create_task(
            app({"type": "lifespan", "asgi": {"version": "3.0"}}, self._inbox.get, self._send)
        )

    async def _send(self, message: MutableMapping[str, Any]) -> None:
        self.sent.append(message["type"])

    async def started(self) -> None:
        await self._inbox.put({"type": "lifespan.startup"})
        async with asyncio.timeout(10):
            while "lifespan.startup.complete" not in self.sent:
                await asyncio.sleep(0)

    async def shutdown(self, *, within: float) -> None:
        """Ask for the shutdown; it must be complete within ``within`` seconds."""
        await self._inbox.put({"type": "lifespan.shutdown"})
        await asyncio.wait_for(self._task, within)
        assert self.sent[-1] == "lifespan.shutdown.complete"


def _no_line(exc: Exception) -> str:
    return f"could not start: {exc}"


async def test_a_lifespan_start_that_ignores_its_cancellation_does_not_hold_the_shutdown(
    caplog: pytest.LogCaptureFixture,
) -> None:
    entered = asyncio.Event()
    give_up = asyncio.Event()

    @asynccontextmanager
    async def stubborn(app: Starlette) -> AsyncIterator[None]:
        entered.set()
        while not give_up.is_set():  # a start-up that retries whatever happens, cancellation too
            try:
                await give_up.wait()
            except asyncio.CancelledError:
                continue
        raise RuntimeError("gave up")
        yield

    starting = StartingApp(lambda: Starlette(lifespan=stubborn), describe=_no_line, stop_wait=0.5)
    lifespan = Lifespan(starting)
    await lifespan.started()
    await entered.wait()
    with caplog.at_level(logging.WARNING, logger="server.boot"):
        await lifespan.shutdown(within=10)
    assert starting.failure is None
    assert starting.app is None
    assert "the app's start did not stop within" in caplog.text
    # The start left behind ends once its lifespan gives up; it is not a failure either.
    (left,) = [task for task in asyncio.all_tasks() if task.get_name() == "staffgraph-start"]
    give_up.set()
    await asyncio.wait_for(left, 10)
    assert starting.failure is None


async def test_a_start_that_finishes_despite_the_shutdown_is_closed_and_never_served() -> None:
    entered = asyncio.Event()
    closed: list[str] = []
    served: list[str] = []

    @asynccontextmanager
    async def absorbing(app: Starlette) -> AsyncIterator[None]:
        entered.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            pass  # finishes its start anyway
        try:
            yield
        finally:
            closed.append("closed")

    starting = StartingApp(
        lambda: Starlette(lifespan=absorbing),
        describe=_no_line,
        started=lambda: served.append("started"),
    )
    lifespan = Lifespan(starting)
    await lifespan.started()
    await entered.wait()
    await lifespan.shutdown(within=10)
    assert closed == ["closed"]
    assert served == []
    assert starting.app is None


async def test_a_start_closing_itself_after_the_signal_is_not_cut_short_by_the_shutdown() -> None:
    # The signal comes while the lifespan is starting; its start ends anyway, and StartingApp
    # closes what it opened. The shutdown that follows must let that close finish (it stops
    # the workers, which requeue what they claimed) rather than cancel it.
    entered, let_enter = asyncio.Event(), asyncio.Event()
    closing, let_close = asyncio.Event(), asyncio.Event()
    closed: list[str] = []

    @asynccontextmanager
    async def slow(app: Starlette) -> AsyncIterator[None]:
        entered.set()
        await let_enter.wait()
        try:
            yield
        finally:
            closing.set()
            await let_close.wait()
            closed.append("closed")

    starting = StartingApp(lambda: Starlette(lifespan=slow), describe=_no_line)
    lifespan = Lifespan(starting)
    await lifespan.started()
    await entered.wait()
    starting.stop_waiting()  # what the signal handler does
    let_enter.set()
    await asyncio.wait_for(closing.wait(), 10)  # closing what it opened, unasked
    shutdown = asyncio.create_task(lifespan.shutdown(within=10))
    for _ in range(100):  # the shutdown reaches StartingApp's stop meanwhile
        await asyncio.sleep(0)
    let_close.set()
    await shutdown
    assert closed == ["closed"]
    assert starting.app is None


async def test_a_start_failing_after_the_shutdown_began_is_not_a_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A SIGTERM to the process group also kills the embedded Postgres's pg_ctl mid-start: the
    # build fails because of the shutdown, and the process must end as a shutdown does.
    release = threading.Event()
    described = asyncio.Event()
    loop = asyncio.get_running_loop()
    failures: list[str] = []

    def build() -> Starlette:
        release.wait(10)
        raise RuntimeError("pg_ctl died with SIGTERM")

    def describe(exc: Exception) -> str:
        loop.call_soon_threadsafe(described.set)
        return f"embedded Postgres did not start ({exc})"

    starting = StartingApp(build, describe=describe)
    starting.on_failure = lambda: failures.append("failed")
    lifespan = Lifespan(starting)
    await lifespan.started()
    with caplog.at_level(logging.INFO, logger="server.boot"):
        starting.stop_waiting()  # what the signal handler does
        release.set()
        await described.wait()  # the failed start's handler ran to its end meanwhile
        await lifespan.shutdown(within=10)
    assert starting.failure is None
    assert failures == []
    assert "interrupted by the shutdown: embedded Postgres did not start" in caplog.text


async def test_a_start_failing_without_a_shutdown_is_a_failure() -> None:
    failed = asyncio.Event()
    starting = StartingApp(lambda: _raise(RuntimeError("no graphs")), describe=_no_line)
    starting.on_failure = failed.set
    lifespan = Lifespan(starting)
    await lifespan.started()
    await asyncio.wait_for(failed.wait(), 10)
    await lifespan.shutdown(within=10)
    assert starting.failure == "could not start: no graphs"


def _raise(exc: Exception) -> Starlette:
    raise exc
