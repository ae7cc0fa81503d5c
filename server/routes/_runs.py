"""Helpers shared by the runs routers: creating runs and answering with a stream or a wait."""

from __future__ import annotations

from starlette.responses import Response

from server.routes._common import raise_run_error
from server.routes._waiting import json_stream, wait_body
from server.routes.webhooks import check_webhook_or_422
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
    if body.webhook is not None:
        await check_webhook_or_422(body.webhook, runtime.settings.webhooks)
    try:
        return await runtime.create_run(body, thread_id=thread_id)
    except RunError as exc:
        raise_run_error(exc)


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


async def wait(runtime: Runtime, body: RunCreate, thread_id: str | None) -> Response:
    created = await create(runtime, body, thread_id)
    # Even a stateless wait names its temporary thread here, as the reference does.
    base = paths(created, stateless=False)
    output = wait_body(
        runtime,
        thread_id=created.thread_id,
        run_id=created.run_id,
        cancel_on_disconnect=body.on_disconnect == "cancel",
    )
    return json_stream(output, headers={"Content-Location": base, "Location": f"{base}/join"})
