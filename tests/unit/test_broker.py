"""The in-process broker: end-only subscriptions (the done marker alone, idle ticks, closing)
and thread announcements (kept only while the thread is watched)."""

from __future__ import annotations

import asyncio
import tracemalloc
from collections.abc import AsyncIterator

import pytest

import server.runtime.broker as broker_module
from server.runtime.broker import DONE_EVENT, InProcessBroker, StreamEvent


async def _collect(events: AsyncIterator[StreamEvent | None]) -> list[StreamEvent | None]:
    return [event async for event in events]


async def test_a_waiter_gets_the_done_marker_alone() -> None:
    broker = InProcessBroker()
    waiter = asyncio.create_task(_collect(broker.subscribe_end("run-1")))
    await asyncio.sleep(0)  # the waiter is waiting before anything is published
    for n in range(3):
        await broker.publish("run-1", "values", f'{{"n": {n}}}'.encode())
    await broker.finish("run-1", b'{"status": "success"}', resumable=False)

    got = await asyncio.wait_for(waiter, timeout=5)

    assert [(e.event, e.data) for e in got if e is not None] == [
        (DONE_EVENT, b'{"status": "success"}')
    ]
    # The full log still holds every event for streams and joins.
    everything = await _collect(broker.subscribe("run-1"))
    assert [e.event for e in everything if e is not None] == ["values"] * 3 + [DONE_EVENT]


async def test_a_run_that_already_ended_answers_at_once() -> None:
    broker = InProcessBroker()
    await broker.publish("run-2", "values", b"{}")
    await broker.finish("run-2", b"done", resumable=True)

    got = await asyncio.wait_for(_collect(broker.subscribe_end("run-2")), timeout=5)

    assert [e.data for e in got if e is not None] == [b"done"]


async def test_a_long_run_gives_idle_ticks_until_it_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(broker_module, "HEARTBEAT_SECONDS", 0.05)
    broker = InProcessBroker()
    events = broker.subscribe_end("run-3")

    assert await asyncio.wait_for(anext(events), timeout=5) is None  # still running
    await broker.publish("run-3", "values", b"{}")
    await broker.finish("run-3", b"done", resumable=False)
    rest = [e async for e in events if e is not None]

    assert [e.event for e in rest] == [DONE_EVENT]


async def test_closing_the_broker_ends_a_waiter_without_a_marker() -> None:
    broker = InProcessBroker()
    await broker.publish("run-4", "values", b"{}")
    waiter = asyncio.create_task(_collect(broker.subscribe_end("run-4")))
    await asyncio.sleep(0)

    await broker.close()

    assert [e for e in await asyncio.wait_for(waiter, timeout=5) if e is not None] == []


async def _held_by_announcing(
    broker: InProcessBroker, runs: int, *, thread: str | None = None
) -> int:
    """Bytes still allocated after announcing ``runs`` runs, each on a new thread, or all on
    ``thread``."""
    tracing = tracemalloc.is_tracing()  # PYTHONTRACEMALLOC: leave it on
    if not tracing:
        tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(runs):
            await broker.announce(thread or f"thread-{n}", f"run-{n}")
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        if not tracing:
            tracemalloc.stop()


async def test_runs_on_threads_nobody_watches_leave_nothing_behind() -> None:
    # Stateless runs each start on a new thread: 2,000 of them held about 1 MB for a day.
    held = await _held_by_announcing(InProcessBroker(), 2000)
    assert held < 20_000, held


async def test_a_watcher_hears_of_runs_started_while_it_watches_and_takes_its_log_along(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(broker_module, "HEARTBEAT_SECONDS", 0.05)
    broker = InProcessBroker()
    first, second = await broker.watch_thread("thread-w"), await broker.watch_thread("thread-w")
    ticks = [await asyncio.wait_for(anext(w), timeout=5) for w in (first, second)]
    assert ticks == [None, None]  # both watching, nothing started yet

    await broker.announce("thread-w", "run-a")
    await broker.announce("thread-other", "run-b")  # nobody watches that thread

    assert await asyncio.wait_for(anext(first), timeout=5) == "run-a"
    assert await asyncio.wait_for(anext(second), timeout=5) == "run-a"
    await first.aclose()
    await broker.announce("thread-w", "run-c")  # the second watcher is still there
    assert await asyncio.wait_for(anext(second), timeout=5) == "run-c"
    await second.aclose()
    # The last watcher gone, the thread's announcements are kept no more (a log keeps 100).
    held = await _held_by_announcing(broker, 500, thread="thread-w")
    assert held < 5_000, held
