"""Bodies of ``runs/wait`` and ``join``: a newline every 5 s while the run is quiet, then the JSON.

The reference streams these responses (``application/json``, chunked) and writes ``b"\\n"``
each time :data:`~server.runtime.broker.HEARTBEAT_SECONDS` pass without the run ending, so
proxies and clients with read timeouts keep a long wait open. JSON parsers skip the leading
whitespace, so the body stays one JSON document.

:class:`JsonWaitResponse` sends that body. A run that ends before the first keep-alive is due
(most runs) is answered in one piece, with a ``Content-Length``; a longer one is streamed,
keep-alives first, exactly as above. Either way a client that leaves before the end is noticed
at once, and the body's clean-up runs (cancelling the run when the request asked for that).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Mapping

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from server.runtime import Runtime
from server.runtime.broker import DONE_EVENT
from server.runtime.outcome import RUN_NOT_FOUND, decode_done
from server.serde import dumps

__all__ = ["KEEPALIVE", "JsonWaitResponse", "join_body", "wait_body"]

KEEPALIVE = b"\n"

log = logging.getLogger(__name__)


class JsonWaitResponse(Response):
    """An ``application/json`` answer produced by a body iterator of keep-alives, then the JSON.

    Unlike a generic streaming response it needs no task group: the body is read in the
    request's own task, and one listener task watches for the client leaving, cancelling that
    read if it does (the iterator's ``finally`` then runs, as for any disconnect).
    """

    media_type = "application/json"

    def __init__(self, body: AsyncGenerator[bytes, None], *, headers: Mapping[str, str]) -> None:
        """Wrap ``body`` (keep-alive newlines, then one JSON document) with ``headers``."""
        self.status_code = 200
        self.background = None
        self._body = body
        self._gone = False
        self._failed = False
        self.init_headers(headers)  # no ``body`` attribute: no Content-Length yet

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Send the body: whole when its first piece is the document, else chunked."""
        request = asyncio.current_task()
        assert request is not None
        listener = asyncio.create_task(self._watch(receive, request))
        try:
            await self._respond(send)
        except asyncio.CancelledError:
            if not self._gone:
                raise  # the server is shutting down
            request.uncancel()  # the client left: nothing more to send to it
        finally:
            listener.cancel()
            await self._body.aclose()

    async def _respond(self, send: Send) -> None:
        first = await self._next()
        if first != KEEPALIVE:
            first = first or b""
            headers = [*self.raw_headers, (b"content-length", str(len(first)).encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": first})
            return
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": first, "more_body": True})
        while (chunk := await self._next()) is not None:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async def _next(self) -> bytes | None:
        """The body's next piece, ``None`` at its end.

        A failure of the body (Postgres unreachable past the retries, a bug) ends it with an
        ``{"__error__": ...}`` document, as a run's error: the status line may be sent already,
        and an exception here would cut the connection instead of answering.
        """
        if self._failed:
            return None
        try:
            return await anext(self._body)
        except StopAsyncIteration:
            return None
        except Exception:
            log.error("waiting for a run failed", exc_info=True)
            self._failed = True
            error = {"error": "InternalServerError", "message": "the wait for the run failed"}
            return dumps({"__error__": error})

    async def _watch(self, receive: Receive, request: asyncio.Task[object]) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self._gone = True
        request.cancel()


async def _until_done(runtime: Runtime, run_id: str) -> AsyncIterator[bytes | tuple[str, bytes]]:
    """Keep-alives while the run goes on, then ``(status, output)`` from its done marker."""
    async for event in runtime.follow(run_id, end_only=True):
        if event is None:
            yield KEEPALIVE
        elif event.event == DONE_EVENT:
            yield decode_done(event.data)
            return


async def wait_body(
    runtime: Runtime, *, thread_id: str, run_id: str, cancel_on_disconnect: bool
) -> AsyncGenerator[bytes, None]:
    """``runs/wait``: the run's output (its final values, or ``{"__error__": ...}``).

    With ``cancel_on_disconnect`` a client that leaves before the end cancels the run.
    """
    finished = False
    try:
        async for item in _until_done(runtime, run_id):
            if isinstance(item, bytes):
                yield item
            else:
                finished = True
                yield item[1] or b"{}"
    finally:
        if not finished and cancel_on_disconnect:
            runtime.spawn(runtime.cancel_on_disconnect(thread_id, run_id))


async def join_body(
    runtime: Runtime, *, thread_id: str, run_id: str, cancel_on_disconnect: bool
) -> AsyncGenerator[bytes, None]:
    """``join``: the thread's values once the run ends (or the run's error).

    With ``cancel_on_disconnect`` a client that leaves before the end cancels the run.
    """
    finished = False
    try:
        row = await runtime.runs.get(thread_id, run_id)
        ended: bytes | None = None  # what the run's end told its followers
        if row is not None and row["status"] in ("pending", "running"):
            async for item in _until_done(runtime, run_id):
                if isinstance(item, bytes):
                    yield item
                else:
                    ended = item[1] or b"{}"
        finished = True
        output = await runtime.join(thread_id, run_id)
        # A run gone by the time it is read again: a rollback deleted it as it ended (its end
        # carries the thread's values), or it was deleted while running (its end says so).
        yield ended if output == RUN_NOT_FOUND and ended is not None else output
    finally:
        if not finished and cancel_on_disconnect:
            runtime.spawn(runtime.cancel_on_disconnect(thread_id, run_id))
