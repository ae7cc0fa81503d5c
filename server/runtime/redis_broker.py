"""Run event logs in Redis Streams, shared by every server process (``REDIS_URL``).

One stream per run (``XADD`` with ``MAXLEN``; ids ``<ms>-<seq>`` are what clients resume
from), one small stream per thread announcing runs as they start, and a pub/sub channel for
cancel signals. A finished run's stream expires after the replay TTL; a running one after a
day, so a crashed worker leaves nothing behind for long. A thread's stream expires after the
replay TTL from its last announcement.

Redis may restart under us. Socket reads wait longer than the ``XREAD`` block time (a quiet run
is not a dead connection); readers reconnect and go on from the last id they yielded, so a
subscriber sees no gap and no repeat; writes are retried with backoff for up to
``retry_seconds`` (the run waits rather than losing its events).

Writes are idempotent. A write whose reply was lost with its connection may or may not have
happened; retrying it blindly would repeat the event. So every write carries a token of its
own (field ``w``) and goes through one Lua script that appends only if the stream's last entry
does not already carry that token. A run's writer appends one event at a time, so the only
write that can have landed unanswered is the last one: the check is exact, and a retried write
appends its event once. (Redis forgets scripts when it restarts; redis-py loads it again.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncGenerator
from typing import Any

import redis.asyncio as redis

from server.runtime.broker import (
    DONE_EVENT,
    HEARTBEAT_SECONDS,
    MAX_EVENTS_PER_RUN,
    WATCHING,
    Broker,
    CancelHandler,
    StreamEvent,
    parse_event_id,
)
from state.retry import RetryPolicy, is_transient, retrying

__all__ = ["RedisBroker"]

log = logging.getLogger(__name__)

_RUNNING_TTL = 86_400
_BLOCK_MS = int(HEARTBEAT_SECONDS * 1000)
# A blocked XREAD answers within the block time; the socket waits that long plus a margin, so
# only a dead connection times out (redis-py's default socket timeout equals the block time).
_SOCKET_TIMEOUT = HEARTBEAT_SECONDS + 10.0
_CONNECT_TIMEOUT = 5.0


# KEYS[1]: the stream. ARGV: write token, MAXLEN, TTL, then field/value pairs. Appends the
# fields plus ``w`` = token unless the last entry already carries the token; returns the id.
_APPEND_ONCE = """
local top = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if top[1] then
    local fields = top[1][2]
    for i = 1, #fields, 2 do
        if fields[i] == 'w' and fields[i + 1] == ARGV[1] then
            return top[1][1]
        end
    end
end
local entry = {}
for i = 4, #ARGV do
    entry[#entry + 1] = ARGV[i]
end
entry[#entry + 1] = 'w'
entry[#entry + 1] = ARGV[1]
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', unpack(entry))
redis.call('EXPIRE', KEYS[1], ARGV[3])
return id
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisBroker(Broker):
    """Broker on Redis: streams survive the process and are readable from any process."""

    kind = "redis"
    carries_cancel = True

    def __init__(
        self,
        url: str,
        *,
        replay_ttl: int = 600,
        finished_ttl: int = 60,
        prefix: str = "staffgraph:",
        retry_seconds: float = 60.0,
    ) -> None:
        """Create the broker (connections open lazily, in :meth:`start`).

        Args:
            url: ``redis://``, ``rediss://`` or ``unix://`` URL.
            replay_ttl: seconds a finished resumable run stays replayable.
            finished_ttl: seconds any other finished run's stream is kept.
            prefix: key prefix (lets several deployments share one Redis).
            retry_seconds: how long a write keeps retrying while Redis is unreachable.
        """
        self._url = url
        self._replay_ttl = replay_ttl
        self._finished_ttl = finished_ttl
        self._prefix = prefix
        self._client: redis.Redis | None = None
        self._listener: asyncio.Task[None] | None = None
        self._writes = RetryPolicy(first_delay=0.1, max_delay=2.0, deadline=retry_seconds)

    @property
    def client(self) -> redis.Redis:
        """The connection pool (after :meth:`start`)."""
        if self._client is None:
            raise RuntimeError("RedisBroker.start() was not called")
        return self._client

    def _run_key(self, run_id: str) -> str:
        return f"{self._prefix}run:{run_id}"

    def _thread_key(self, thread_id: str) -> str:
        return f"{self._prefix}thread:{thread_id}"

    @property
    def _cancel_channel(self) -> str:
        return f"{self._prefix}cancel"

    async def start(self, on_cancel: CancelHandler | None = None) -> None:
        """Connect, check Redis answers, and listen for cancel signals."""
        self._client = redis.from_url(
            self._url,
            decode_responses=False,
            socket_timeout=_SOCKET_TIMEOUT,
            socket_connect_timeout=_CONNECT_TIMEOUT,
            health_check_interval=30,
        )
        await self._client.ping()
        self._append_once = self._client.register_script(_APPEND_ONCE)
        if on_cancel is not None:
            self._listener = asyncio.create_task(self._listen(on_cancel), name="redis-cancel")

    async def close(self) -> None:
        """Stop listening and close the pool."""
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
        if self._client is not None:
            await self._client.aclose()

    async def _listen(self, on_cancel: CancelHandler) -> None:
        delay = 0.1
        while True:
            pubsub = self.client.pubsub()
            try:
                await pubsub.subscribe(self._cancel_channel)
                delay = 0.1
                async for message in pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    run_id, _, action = _text(message["data"]).partition(":")
                    on_cancel(run_id, action or "interrupt")
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("lost the Redis cancel channel; reconnecting", exc_info=True)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    async def _append(
        self, key: str, fields: dict[str, Any], *, maxlen: int, ttl: int, what: str
    ) -> None:
        """Append ``fields`` to the stream ``key`` once, however often the write is retried."""
        token = os.urandom(8).hex()
        args: list[Any] = [token, maxlen, ttl]
        for name, value in fields.items():
            args += [name, value]
        await retrying(
            lambda: self._append_once(keys=[key], args=args),
            what=what,
            policy=self._writes,
        )

    async def publish(self, run_id: str, event: str, data: bytes) -> None:
        """Append the event (and keep the running-run expiry), retried while Redis is down.

        A retry after a reply lost in a broken connection does not repeat the event.
        """
        await self._append(
            self._run_key(run_id),
            {"e": event, "d": data},
            maxlen=MAX_EVENTS_PER_RUN,
            ttl=_RUNNING_TTL,
            what=f"publishing an event of run {run_id}",
        )

    async def finish(self, run_id: str, data: bytes, *, resumable: bool) -> None:
        """Append the done marker and start the replay TTL (retried while Redis is down)."""
        await self._append(
            self._run_key(run_id),
            {"e": DONE_EVENT, "d": data},
            maxlen=MAX_EVENTS_PER_RUN,
            ttl=self._replay_ttl if resumable else self._finished_ttl,
            what=f"ending the stream of run {run_id}",
        )

    async def _tail_id(self, key: str) -> str:
        last = await self.client.xrevrange(key, count=1)
        return _text(last[0][0]) if last else "0-0"

    async def subscribe(
        self, run_id: str, *, after: str | None = None, live: bool = False
    ) -> AsyncGenerator[StreamEvent | None, None]:
        """``XREAD`` the run's stream from the chosen position until the done marker."""
        key = self._run_key(run_id)
        position = parse_event_id(after)
        if position is not None:
            cursor = f"{position[0]}-{position[1]}"
        elif live and after is None:
            cursor = await retrying(lambda: self._tail_id(key), what=f"joining run {run_id}")
        else:
            cursor = "0-0"
        while True:
            reply = await self._read(key, cursor, count=500)
            if not reply:
                yield None
                continue
            for entry_id, fields in reply[0][1]:
                cursor = _text(entry_id)
                event = _text(fields[b"e"])
                yield StreamEvent(cursor, event, fields[b"d"])
                if event == DONE_EVENT:
                    return

    async def _read(self, key: str, cursor: str, *, count: int) -> Any:
        """One blocking ``XREAD`` after ``cursor``; ``None`` (an idle tick) when Redis is down.

        The caller keeps its cursor, so the next read after a reconnect goes on exactly where
        the last one stopped. The wait before that read is the idle tick's.
        """
        try:
            return await self.client.xread({key: cursor}, count=count, block=_BLOCK_MS)
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning("reading %s from Redis failed (%s); reconnecting", key, exc)
            await asyncio.sleep(1.0)
            return None

    async def announce(self, thread_id: str, run_id: str) -> None:
        """Add the run to the thread's announcement stream (retried while Redis is down).

        The stream lives for the replay TTL after its last announcement, not a day: watchers
        read it from where it ended when they started, and a thread's runs start one after
        another, each announced as the one before ends, when its watchers read the stream
        again. Kept a day, every thread that ever ran (each stateless run is on a new one)
        held a stream in Redis.
        """
        await self._append(
            self._thread_key(thread_id),
            {"r": run_id},
            maxlen=100,
            ttl=self._replay_ttl,
            what=f"announcing run {run_id}",
        )

    async def _watch_thread(self, thread_id: str) -> AsyncGenerator[str | None, None]:
        """Run ids as they start on the thread, from now on."""
        key = self._thread_key(thread_id)
        cursor = await retrying(lambda: self._tail_id(key), what="reading a thread's stream")
        yield WATCHING
        while True:
            reply = await self._read(key, cursor, count=100)
            if not reply:
                yield None
                continue
            for entry_id, fields in reply[0][1]:
                cursor = _text(entry_id)
                yield _text(fields[b"r"])

    async def send_cancel(self, run_id: str, action: str) -> None:
        """Publish a cancel signal to every process (retried briefly; Postgres is the fallback)."""
        await retrying(
            lambda: self.client.publish(self._cancel_channel, f"{run_id}:{action}"),
            what=f"signalling the cancel of run {run_id}",
        )
