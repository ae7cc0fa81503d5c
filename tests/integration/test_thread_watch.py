"""A thread watcher hears of every run announced once ``watch_thread`` returns, on every broker.

A thread stream starts watching, then reads the runs in flight: a run that starts in between
must be in one or the other. The watcher used to start listening only at its first read, which
the stream makes after following the runs in flight (and, even with none, after that read): a
run announced before then was not delivered, and missed for good if it ended before the
stream's next check of the runs in flight. Each broker here is real (Postgres, Redis).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from server.runtime import broker as broker_module
from server.runtime import pg_broker
from server.runtime.broker import Broker, InProcessBroker
from server.runtime.pg_broker import PostgresBroker
from server.runtime.redis_broker import RedisBroker
from state.db import Persistence
from tests.support.runs import next_announced

HEARTBEAT = 0.2


@pytest.fixture(params=["memory", "postgres", "redis"])
async def broker(
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    persistence: Persistence,
    database_url: str,
    redis_url: str,
) -> AsyncIterator[Broker]:
    monkeypatch.setattr(broker_module, "HEARTBEAT_SECONDS", HEARTBEAT)
    monkeypatch.setattr(pg_broker, "HEARTBEAT_SECONDS", HEARTBEAT)
    made: Broker
    if request.param == "memory":
        made = InProcessBroker()
    elif request.param == "postgres":
        made = PostgresBroker(persistence.pool, database_url)
    else:
        made = RedisBroker(redis_url)
    await made.start()
    try:
        yield made
    finally:
        await made.close()


async def test_a_run_announced_before_the_watcher_is_first_read_reaches_it(broker: Broker) -> None:
    thread_id = str(uuid.uuid4())
    watcher = await broker.watch_thread(thread_id)
    try:
        # The stream reads the runs in flight (or follows one) before it reads the watcher.
        await broker.announce(thread_id, "run-1")
        await broker.announce(thread_id, "run-2")
        assert await next_announced(watcher, within=10 * HEARTBEAT) == "run-1"
        assert await next_announced(watcher, within=10 * HEARTBEAT) == "run-2"
        # And on, as before: a run announced while the watcher waits.
        waiting = asyncio.ensure_future(next_announced(watcher, within=10 * HEARTBEAT))
        await asyncio.sleep(HEARTBEAT)
        await broker.announce(thread_id, "run-3")
        assert await waiting == "run-3"
    finally:
        await watcher.aclose()


async def test_a_watcher_hears_nothing_announced_before_it_watched(broker: Broker) -> None:
    thread_id = str(uuid.uuid4())
    early = await broker.watch_thread(thread_id)  # a stream already there keeps the log going
    try:
        await broker.announce(thread_id, "before")
        watcher = await broker.watch_thread(thread_id)
        try:
            await broker.announce(thread_id, "after")
            assert await next_announced(watcher, within=10 * HEARTBEAT) == "after"
        finally:
            await watcher.aclose()
    finally:
        await early.aclose()
