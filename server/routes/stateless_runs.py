"""Stateless runs (on a temporary thread) and bulk cancellation."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query
from starlette.responses import Response

from server.auth import Access, protect
from server.json_body import JsonRoute
from server.routes._common import fail, json_response, no_content, valid_uuid
from server.routes._runs import NO_MATCH, create, paths, stream, wait
from server.routes._threads import load_thread
from server.runtime import RuntimeDep
from server.schemas import RunCreate, RunsCancel

__all__ = ["router"]

router = APIRouter(tags=["Stateless Runs"], route_class=JsonRoute)

CreateRun = Annotated[Access, protect("threads", "create_run")]


@router.post("/runs")
async def create_stateless_run(body: RunCreate, runtime: RuntimeDep, access: CreateRun) -> Response:
    """Create a background run on a temporary thread."""
    created = await create(runtime, body, None, access)
    return json_response(created.run, headers={"Content-Location": paths(created, stateless=True)})


@router.post("/runs/stream")
async def stream_stateless_run(body: RunCreate, runtime: RuntimeDep, access: CreateRun) -> Response:
    """Create a run on a temporary thread and stream its events (SSE)."""
    return await stream(runtime, body, None, access)


@router.post("/runs/wait")
async def wait_stateless_run(body: RunCreate, runtime: RuntimeDep, access: CreateRun) -> Response:
    """Create a run on a temporary thread and answer with its final values."""
    return await wait(runtime, body, None, access)


@router.post("/runs/batch")
async def create_batch(
    runtime: RuntimeDep,
    access: CreateRun,
    body: Annotated[list[RunCreate], Body(min_length=1, max_length=100)],
) -> Response:
    """Create several background stateless runs."""
    runs = [(await create(runtime, item, None, access)).run for item in body]
    return json_response(runs)


@router.post("/runs/cancel")
async def cancel_runs(
    body: RunsCancel,
    runtime: RuntimeDep,
    access: Annotated[Access, protect("threads", "update")],
    action: str = Query(default="interrupt", pattern="^(interrupt|rollback)$"),
) -> Response:
    """Cancel runs by id (on a thread) or every run in a status (of the caller's threads)."""
    if body.run_ids is None and body.status is None and body.thread_id is None:
        fail(422, "Give run_ids (with thread_id), thread_id, or status")
    run_ids = [valid_uuid(r, "run") for r in body.run_ids] if body.run_ids is not None else None
    thread_id = valid_uuid(body.thread_id, "thread") if body.thread_id else None
    value = {"action": action, "metadata": {"run_ids": run_ids, "status": body.status}}
    if thread_id is not None:
        await load_thread(runtime, thread_id, access, value=value)
    else:
        flt = await access.check(value)
        if flt is not None:
            # Scoped: cancel only in the caller's threads, one thread at a time.
            touched = False
            for owned in await runtime.threads.with_active_runs(status=body.status, auth=flt):
                done = await runtime.cancel(
                    action=action, thread_id=owned, run_ids=run_ids, status=body.status
                )
                touched = touched or bool(done.running or done.settled)
            if run_ids and not touched:
                fail(404, NO_MATCH)
            return no_content()
    result = await runtime.cancel(
        action=action, thread_id=thread_id, run_ids=run_ids, status=body.status
    )
    if run_ids and not result.running and not result.settled:
        fail(404, NO_MATCH)
    return no_content()
