"""A Redis write whose reply is lost with its connection is retried without repeating its event.

A proxy between the broker and a real ``redis-server`` forwards one write to Redis, waits for
Redis to answer (so the event is in the stream), then drops the connection instead of passing
the answer on. The broker cannot know the write happened and retries it; the run's stream must
still hold every event once, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from urllib.parse import urlparse

from server.runtime.broker import DONE_EVENT, StreamEvent
from server.runtime.redis_broker import RedisBroker


class ReplyDroppingProxy:
    """TCP in front of Redis; drops the connection that carries the next write of ``marker``
    once Redis has answered it."""

    def __init__(self, target: str) -> None:
        self._target = urlparse(target)
        self._marker: bytes | None = None
        self.cuts = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pumps: set[asyncio.Task[None]] = set()
        self._handlers: set[asyncio.Task[None]] = set()

    def drop_reply_to(self, marker: bytes) -> None:
        """Drop the answer to the next command that contains ``marker``."""
        self._marker = marker

    async def __aenter__(self) -> ReplyDroppingProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in [*self._pumps, *self._handlers]:
            task.cancel()
        await asyncio.gather(*self._pumps, *self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._target.scheme == "unix":
            return await asyncio.open_unix_connection(self._target.path)
        return await asyncio.open_connection(self._target.hostname, self._target.port or 6379)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Ends quietly when the proxy stops (asyncio logs a connection handler cancelled).
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        with contextlib.suppress(asyncio.CancelledError):
            await self._relay(reader, writer)
        self._handlers.discard(handler)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await self._open()
        cut = asyncio.Event()

        async def upstream() -> None:
            while chunk := await reader.read(65536):
                if self._marker is not None and self._marker in chunk:
                    self._marker = None
                    cut.set()
                up_writer.write(chunk)
                await up_writer.drain()

        async def downstream() -> None:
            while chunk := await up_reader.read(65536):
                if cut.is_set():  # Redis did the write and answered; the client never hears
                    self.cuts += 1
                    return
                writer.write(chunk)
                await writer.drain()

        pumps = [asyncio.create_task(upstream()), asyncio.create_task(downstream())]
        self._pumps.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            self._pumps.difference_update(pumps)
            for w in (writer, up_writer):
                w.close()
                with contextlib.suppress(Exception):
                    await w.wait_closed()


async def _read_all(broker: RedisBroker, run_id: str) -> list[StreamEvent]:
    events: list[StreamEvent] = []
    async with asyncio.timeout(30):
        async for item in broker.subscribe(run_id):
            if item is not None:
                events.append(item)
    return events


async def test_a_write_retried_after_a_lost_reply_appends_its_event_once(redis_url: str) -> None:
    run_id = str(uuid.uuid4())
    async with ReplyDroppingProxy(redis_url) as proxy:
        broker = RedisBroker(f"redis://127.0.0.1:{proxy.port}")
        await broker.start()
        try:
            await broker.publish(run_id, "values", b'{"n": 1}')
            proxy.drop_reply_to(b'{"n": 2}')
            await broker.publish(run_id, "values", b'{"n": 2}')  # retried, and returns
            proxy.drop_reply_to(b"thread-announcement")
            await broker.announce("thread-announcement", run_id)
            await broker.publish(run_id, "values", b'{"n": 3}')
            proxy.drop_reply_to(b"the-end")
            await broker.finish(run_id, b"success\nthe-end", resumable=True)
            assert proxy.cuts == 3  # three writes landed whose answers were lost
            events = await _read_all(broker, run_id)
            announced = await broker.client.xrange(b"staffgraph:thread:thread-announcement")
        finally:
            await broker.close()
    assert [(e.event, e.data) for e in events] == [
        ("values", b'{"n": 1}'),
        ("values", b'{"n": 2}'),
        ("values", b'{"n": 3}'),
        (DONE_EVENT, b"success\nthe-end"),
    ]
    ids = [tuple(int(part) for part in e.id.split("-")) for e in events]
    assert ids == sorted(set(ids))
    assert [fields[b"r"] for _, fields in announced] == [run_id.encode()]
