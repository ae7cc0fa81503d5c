"""The in-process broker's end-only subscription: the done marker alone, idle ticks, closing."""

from __future__ import annotations

import asyncio
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
