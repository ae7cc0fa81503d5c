"""Helpers shared by the runs routers: creating runs and answering with a stream or a wait."""

from __future__ import annotations

import asyncio

from fastapi import Request
from starlette.responses import Response

from server.routes._common import json_response, raise_run_error
from server.runtime import CreatedRun, RunError, Runtime
from server.runtime.sse import run_events, sse_response
from server.schemas import RunCreate

__all__ = ["NO_MATCH", "create", "paths", "stream", "wait"]

NO_MATCH = (
    "No matching runs to cancel. Please verify the thread ID and run IDs are correct, and the "
    "runs haven't been deleted or completed."
)


def paths(created: CreatedRun, *, stateless: bool) -> str:
    if stateless:
        return f"/runs/{created.run_id}"
    return f"/threads/{created.thread_id}/runs/{created.run_id}"


async def create(runtime: Runtime, body: RunCreate, thread_id: str | None) -> CreatedRun:
    try:
        return await runtime.create_run(body, thread_id=thread_id)
    except RunError as exc:
        raise_run_error(exc)


async def _client_gone(request: Request) -> None:
    # The body is read already, so the next ASGI message is the disconnect: an event, not a poll.
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _wait_output(
    request: Request, runtime: Runtime, created: CreatedRun, *, cancel_on_disconnect: bool
) -> bytes | None:
    if not cancel_on_disconnect:
        return (await runtime.wait(created.run_id))[1]
    waiter = asyncio.ensure_future(runtime.wait(created.run_id))
    gone = asyncio.ensure_future(_client_gone(request))
    done, _ = await asyncio.wait({waiter, gone}, return_when=asyncio.FIRST_COMPLETED)
    if waiter in done:
        gone.cancel()
        return waiter.result()[1]
    waiter.cancel()
    await runtime.cancel_on_disconnect(created.thread_id, created.run_id)
    return None


async def stream(runtime: Runtime, body: RunCreate, thread_id: str | None) -> Response:
    created = await create(runtime, body, thread_id)
    base = paths(created, stateless=thread_id is None)
    events = run_events(
        runtime,
        created.run_id,
        thread_id=created.thread_id,
        with_ids=created.resumable,
        cancel_on_disconnect=body.on_disconnect == "cancel",
    )
    return sse_response(events, headers={"Content-Location": base, "Location": f"{base}/stream"})


async def wait(
    request: Request, runtime: Runtime, body: RunCreate, thread_id: str | None
) -> Response:
    created = await create(runtime, body, thread_id)
    base = paths(created, stateless=thread_id is None)
    output = await _wait_output(
        request, runtime, created, cancel_on_disconnect=body.on_disconnect == "cancel"
    )
    return json_response(
        output or b"{}", headers={"Content-Location": base, "Location": f"{base}/join"}
    )
