"""Bodies of ``runs/wait`` and ``join``: a newline every 5 s while the run is quiet, then the JSON.

The reference streams these responses (``application/json``, chunked) and writes ``b"\\n"``
each time :data:`~server.runtime.broker.HEARTBEAT_SECONDS` pass without the run ending, so
proxies and clients with read timeouts keep a long wait open. JSON parsers skip the leading
whitespace, so the body stays one JSON document.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.responses import StreamingResponse

from server.runtime import Runtime
from server.runtime.broker import DONE_EVENT
from server.runtime.outcome import decode_done

__all__ = ["KEEPALIVE", "join_body", "json_stream", "wait_body"]

KEEPALIVE = b"\n"


def json_stream(body: AsyncIterator[bytes], *, headers: dict[str, str]) -> StreamingResponse:
    """A streamed ``application/json`` response."""
    return StreamingResponse(body, media_type="application/json", headers=headers)


async def _until_done(runtime: Runtime, run_id: str) -> AsyncIterator[bytes | tuple[str, bytes]]:
    """Keep-alives while the run goes on, then ``(status, output)`` from its done marker."""
    async for event in runtime.follow(run_id):
        if event is None:
            yield KEEPALIVE
        elif event.event == DONE_EVENT:
            yield decode_done(event.data)
            return


async def wait_body(
    runtime: Runtime, *, thread_id: str, run_id: str, cancel_on_disconnect: bool
) -> AsyncIterator[bytes]:
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
) -> AsyncIterator[bytes]:
    """``join``: the thread's values once the run ends (or the run's error).

    With ``cancel_on_disconnect`` a client that leaves before the end cancels the run.
    """
    finished = False
    try:
        row = await runtime.runs.get(thread_id, run_id)
        if row is not None and row["status"] in ("pending", "running"):
            async for item in _until_done(runtime, run_id):
                if isinstance(item, bytes):
                    yield item
        finished = True
        yield await runtime.join(thread_id, run_id)
    finally:
        if not finished and cancel_on_disconnect:
            runtime.spawn(runtime.cancel_on_disconnect(thread_id, run_id))
