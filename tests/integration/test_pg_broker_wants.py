"""The Postgres broker's wants, with two brokers on one real Postgres standing for two processes.

``theirs`` runs the runs and announces them; ``ours`` reads. Each has its own ``LISTEN``
connection, as each server process does. The heartbeat (and with it the life of a want) is
shortened so that a want outliving several of them takes a second, not a minute.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import psycopg
import pytest

from server.runtime import pg_broker
from server.runtime.broker import DONE_EVENT
from server.runtime.pg_broker import PostgresBroker
from state.db import Persistence
from tests.support.runs import next_announced

HEARTBEAT = 0.2


@pytest.fixture
async def brokers(
    persistence: Persistence, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[PostgresBroker, PostgresBroker]]:
    monkeypatch.setattr(pg_broker, "HEARTBEAT_SECONDS", HEARTBEAT)
    monkeypatch.setattr(pg_broker, "WANT_SECONDS", 3 * HEARTBEAT)
    theirs = PostgresBroker(persistence.pool, database_url)
    ours = PostgresBroker(persistence.pool, database_url)
    await theirs.start()
    await ours.start()
    try:
        yield theirs, ours
    finally:
        await ours.close()
        await theirs.close()


async def _wanted(listener: psycopg.AsyncConnection[object], stream: str) -> None:
    """Until a want for ``stream`` goes by (every broker listening has it then too)."""
    async for note in listener.notifies(timeout=10):
        if note.payload == stream:
            return
    raise AssertionError(f"no want for {stream}")


async def test_a_thread_watcher_left_unread_keeps_wanting_its_announcements(
    brokers: tuple[PostgresBroker, PostgresBroker], database_url: str
) -> None:
    """A thread stream busy with one run reads no announcements meanwhile; its want must not
    lapse, or a run announced then is never written for it."""
    theirs, ours = brokers
    thread_id = str(uuid.uuid4())
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as listener:
        await listener.execute("LISTEN staffgraph_event_wants")
        watcher = await ours.watch_thread(thread_id)
        first = asyncio.ensure_future(next_announced(watcher, within=10))
        await _wanted(listener, f"thread:{thread_id}")
        # A first announcement the watcher reads, written as any process's would be (whether
        # the other broker has handled the want this very moment is not the point here).
        await listener.execute(
            "SELECT staffgraph_append_event(%s, 'run', %s, 60, false)",
            (f"thread:{thread_id}", b"run-1"),
        )
        assert await first == "run-1"
        # Unread for five wants' lifetimes, as while the stream follows run-1.
        await asyncio.sleep(5 * 3 * HEARTBEAT)
        await theirs.announce(thread_id, "run-2")
        assert await next_announced(watcher, within=10 * HEARTBEAT) == "run-2"
        await watcher.aclose()


async def test_a_run_wanted_midway_is_written_from_its_first_event(
    brokers: tuple[PostgresBroker, PostgresBroker],
) -> None:
    """The reader elsewhere gets what came before its want, then the rest, then the end."""
    theirs, ours = brokers
    run_id = str(uuid.uuid4())
    theirs.begin(run_id, resumable=False)
    await theirs.publish(run_id, "values", b'{"n": 1}')
    reader = ours.subscribe(run_id)
    seen = [await anext(reader)]
    await theirs.publish(run_id, "values", b'{"n": 2}')
    await theirs.finish(run_id, b"done", resumable=False)
    async with asyncio.timeout(10):
        async for event in reader:
            seen.append(event)
    assert [(e.event, e.data) for e in seen if e is not None] == [
        ("values", b'{"n": 1}'),
        ("values", b'{"n": 2}'),
        (DONE_EVENT, b"done"),
    ]
