"""Threads endpoints of the LangGraph Server API: CRUD, search, count, prune, copy, storage."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from langgraph.errors import InvalidUpdateError
from langgraph.pregel import Pregel
from langgraph.types import StateUpdate
from starlette.responses import Response

from server.auditing import actor_of
from server.auth import Access, matches, protect
from server.deps import Ctx
from server.ids import new_id
from server.json_body import JsonRoute
from server.routes import thread_state
from server.routes._common import (
    fail,
    json_response,
    no_content,
    page_response,
    select_fields,
    valid_uuid,
)
from server.routes._runs import stop_deleted_runs
from server.routes._threads import apply_ttl, load_graph, load_thread, record_state, state_config
from server.runtime import RuntimeDep
from server.runtime.run_config import command_from
from server.schemas import ThreadCount, ThreadCreate, ThreadPatch, ThreadPrune, ThreadSearch

__all__ = ["router"]

router = APIRouter(tags=["Threads"], route_class=JsonRoute)

Create = Annotated[Access, protect("threads", "create")]
Read = Annotated[Access, protect("threads", "read")]
Update = Annotated[Access, protect("threads", "update")]
Delete = Annotated[Access, protect("threads", "delete")]
Search = Annotated[Access, protect("threads", "search")]


def _update_values(values: Any, command: dict[str, Any] | None) -> Any:
    return values if command is None else command_from(command)


@router.post("/threads")
async def create_thread(
    runtime: RuntimeDep, ctx: Ctx, access: Create, body: ThreadCreate | None = None
) -> Response:
    """Create a thread (``if_exists``), optionally pre-seeded with ``supersteps``."""
    body = body or ThreadCreate()
    thread_id = valid_uuid(body.thread_id, "thread") if body.thread_id else new_id()
    value: dict[str, Any] = {
        "thread_id": thread_id,
        "metadata": dict(body.metadata or {}),
        "if_exists": body.if_exists or "raise",
    }
    await access.check(value)
    metadata = value.get("metadata") or {}
    graph: Pregel | None = None
    if body.supersteps:
        graph = await load_graph(
            runtime,
            {"thread_id": thread_id, "metadata": metadata},
            required=True,
            access="threads.update",
        )
    row, created = await runtime.threads.create(
        thread_id, metadata=metadata, if_exists=body.if_exists or "raise"
    )
    if row is None or (
        not created
        and not await access.visible(row["metadata"], {"thread_id": thread_id}, action="read")
    ):
        fail(409, f"Thread with ID {thread_id} already exists")
    if created:
        await apply_ttl(ctx, thread_id, body.ttl, created=True)
    if created and graph is not None and body.supersteps:
        steps = [
            [
                StateUpdate(
                    _update_values(update.values, update.command),
                    update.as_node,
                    None,
                )
                for update in step.updates
            ]
            for step in body.supersteps
        ]
        try:
            await graph.abulk_update_state(state_config(thread_id), steps)
        except (InvalidUpdateError, ValueError, KeyError) as exc:
            await runtime.threads.delete(
                thread_id, actor=actor_of(access.caller), reason="invalid supersteps"
            )
            fail(400, f"Invalid supersteps: {exc}")
        await record_state(runtime, graph, thread_id)
        row = await runtime.threads.get(thread_id)
    return json_response(row)


@router.post("/threads/search")
async def search_threads(
    runtime: RuntimeDep, access: Search, body: ThreadSearch | None = None
) -> Response:
    """Threads matching ids, metadata, values and status; paging headers included."""
    body = body or ThreadSearch()
    ids = [valid_uuid(i, "thread") for i in body.ids] if body.ids is not None else None
    flt = await access.check(
        {
            "metadata": body.metadata or {},
            "values": body.values or {},
            "status": body.status,
            "limit": body.limit,
            "offset": body.offset,
            "ids": ids,
        }
    )
    rows, total = await runtime.threads.search(
        auth=flt,
        ids=ids,
        metadata=body.metadata,
        values=body.values,
        status=body.status,
        limit=body.limit,
        offset=body.offset,
        sort_by=body.sort_by,
        sort_order=body.sort_order,
    )
    rows = select_fields(rows, body.select)
    if body.extract:
        for row in rows:
            values = row.get("values") or {}
            row["extracted"] = {
                name: values.get(path) if isinstance(values, dict) else None
                for name, path in body.extract.items()
            }
    return page_response(rows, total, offset=body.offset, limit=body.limit)


@router.post("/threads/count")
async def count_threads(
    runtime: RuntimeDep, access: Search, body: ThreadCount | None = None
) -> Response:
    """How many threads match."""
    body = body or ThreadCount()
    flt = await access.check(
        {"metadata": body.metadata or {}, "values": body.values or {}, "status": body.status}
    )
    total = await runtime.threads.count(
        metadata=body.metadata, values=body.values, status=body.status, auth=flt
    )
    return json_response(total)


@router.post("/threads/prune")
async def prune_threads(body: ThreadPrune, runtime: RuntimeDep, access: Delete) -> Response:
    """Delete threads, or keep only their latest checkpoint (``keep_latest``).

    Only threads the caller may delete are pruned; others count as missing.
    """
    ids = [valid_uuid(i, "thread") for i in body.thread_ids]
    flt = await access.check({"thread_ids": ids})
    if flt is not None:
        rows = [await runtime.threads.get(thread_id) for thread_id in ids]
        ids = [i for i, row in zip(ids, rows, strict=True) if row and matches(flt, row["metadata"])]
    if body.strategy == "delete":
        for thread_id in ids:
            await runtime.cancel(action="interrupt", thread_id=thread_id)
    pruned = await runtime.threads.prune(ids, strategy=body.strategy, actor=actor_of(access.caller))
    return json_response({"pruned_count": pruned})


@router.get("/threads/{thread_id}")
async def get_thread(
    thread_id: str,
    runtime: RuntimeDep,
    access: Read,
    include: str | None = Query(default=None, max_length=200),
) -> Response:
    """One thread with its status, values, interrupts and error."""
    return json_response(await load_thread(runtime, thread_id, access))


@router.patch("/threads/{thread_id}")
async def patch_thread(
    thread_id: str, body: ThreadPatch, runtime: RuntimeDep, ctx: Ctx, access: Update
) -> Response:
    """Merge metadata into the thread's; a ``ttl`` restarts its TTL from now."""
    value: dict[str, Any] = {"thread_id": thread_id, "metadata": dict(body.metadata or {})}
    await load_thread(runtime, thread_id, access, value=value)
    thread_id = valid_uuid(thread_id, "thread")
    row = await runtime.threads.patch(thread_id, metadata=value.get("metadata") or {})
    if row is None:
        fail(404, f"Thread with ID {thread_id} not found")
    await apply_ttl(ctx, thread_id, body.ttl, created=False)
    return json_response(row)


@router.delete("/threads/{thread_id}")
async def delete_thread(thread_id: str, runtime: RuntimeDep, access: Delete) -> Response:
    """Delete the thread, its runs (stopping any that run) and its checkpoints."""
    thread_id = str((await load_thread(runtime, thread_id, access))["thread_id"])
    # Its runs are flagged, and stopped only once the thread is gone: a running run's end then
    # finds no thread, and its runs/wait and join answer that the run no longer exists (as the
    # reference does), never its last values.
    stopped = await runtime.runs.cancel(action="interrupt", thread_id=thread_id)
    deleted = await runtime.threads.delete(thread_id, actor=actor_of(access.caller))
    await stop_deleted_runs(runtime, stopped)  # gone either way: by us, or by a racing delete
    if not deleted:
        fail(404, f"Thread with ID {thread_id} not found")
    return no_content()


@router.post("/threads/{thread_id}/copy")
async def copy_thread(thread_id: str, runtime: RuntimeDep, access: Read) -> Response:
    """A new thread with the same metadata, state and checkpoint history."""
    thread_id = str((await load_thread(runtime, thread_id, access))["thread_id"])
    copy_id = new_id()
    await access.check({"thread_id": copy_id}, action="create")
    row = await runtime.threads.copy(thread_id, copy_id)
    if row is None:
        fail(404, f"Thread with ID {thread_id} not found")
    return json_response(row)


@router.get("/threads/{thread_id}/storage")
async def thread_storage(thread_id: str, runtime: RuntimeDep, access: Read) -> Response:
    """Bytes used by the thread's checkpoints."""
    thread = await load_thread(runtime, thread_id, access)
    return json_response(await runtime.threads.storage(str(thread["thread_id"])))


# State, history and update_state live in their own module to keep each router small.
router.include_router(thread_state.router)
