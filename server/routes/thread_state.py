"""Thread state endpoints: current state, state at a checkpoint, update_state, history."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from langgraph.errors import InvalidUpdateError
from starlette.responses import Response

from server.auth import Access, protect
from server.json_body import JsonRoute
from server.routes._common import fail, json_response
from server.routes._decision_audit import record_state_write
from server.routes._gates import guard_update_state
from server.routes._threads import EMPTY_STATE, load_graph, load_thread, record_state, state_config
from server.runtime import Runtime, RuntimeDep
from server.schemas import (
    CheckpointConfig,
    ThreadHistory,
    ThreadStateAtCheckpoint,
    ThreadStateUpdate,
)
from server.serde import snapshot_to_dict

__all__ = ["router"]

router = APIRouter(tags=["Threads"], route_class=JsonRoute)

Read = Annotated[Access, protect("threads", "read")]
Update = Annotated[Access, protect("threads", "update")]


async def _state(
    runtime: Runtime,
    access: Access,
    thread_id: str,
    checkpoint: CheckpointConfig | None,
    *,
    subgraphs: bool,
) -> Response:
    thread = await load_thread(runtime, thread_id, access)
    graph = await load_graph(runtime, thread, required=False)
    if graph is None:
        return json_response(EMPTY_STATE)
    state = await graph.aget_state(
        state_config(str(thread["thread_id"]), checkpoint), subgraphs=subgraphs
    )
    return json_response(snapshot_to_dict(state))


@router.get("/threads/{thread_id}/state")
async def get_state(
    thread_id: str, runtime: RuntimeDep, access: Read, subgraphs: bool = False
) -> Response:
    """The thread's latest state (with subgraph states when asked)."""
    return await _state(runtime, access, thread_id, None, subgraphs=subgraphs)


@router.get("/threads/{thread_id}/state/{checkpoint_id}")
async def get_state_at(
    thread_id: str, checkpoint_id: str, runtime: RuntimeDep, access: Read, subgraphs: bool = False
) -> Response:
    """The thread's state at a checkpoint."""
    checkpoint = CheckpointConfig(checkpoint_id=checkpoint_id[:100])
    return await _state(runtime, access, thread_id, checkpoint, subgraphs=subgraphs)


@router.post("/threads/{thread_id}/state/checkpoint")
async def post_state_at(
    thread_id: str, body: ThreadStateAtCheckpoint, runtime: RuntimeDep, access: Read
) -> Response:
    """The thread's state at the checkpoint in the body."""
    return await _state(runtime, access, thread_id, body.checkpoint, subgraphs=body.subgraphs)


@router.post("/threads/{thread_id}/state")
async def update_state(
    thread_id: str, body: ThreadStateUpdate, runtime: RuntimeDep, access: Update
) -> Response:
    """Write values as if ``as_node`` produced them (``__copy__`` forks a checkpoint)."""
    thread = await load_thread(runtime, thread_id, access)
    graph = await load_graph(runtime, thread, required=True, access="threads.update")
    assert graph is not None
    tid = str(thread["thread_id"])
    gates = await guard_update_state(
        runtime,
        access.caller,
        access.approvals,
        graph,
        thread,
        as_node=body.as_node,
        checkpoint=body.checkpoint,
        checkpoint_id=body.checkpoint_id,
    )
    config = state_config(tid, body.checkpoint, checkpoint_id=body.checkpoint_id)
    try:
        new_config = await graph.aupdate_state(config, body.values, as_node=body.as_node)
    except (InvalidUpdateError, ValueError, KeyError) as exc:
        fail(400, str(exc).strip("'\"") or type(exc).__name__)
    await record_state(runtime, graph, tid)
    if gates:
        await record_state_write(
            runtime,
            thread_id=tid,
            actor=access.caller.identity or None,
            gates=gates,
            as_node=body.as_node,
            checkpoint_id=new_config["configurable"].get("checkpoint_id"),
        )
    configurable = new_config["configurable"]
    ref = {
        "thread_id": str(configurable.get("thread_id", tid)),
        "checkpoint_ns": configurable.get("checkpoint_ns", ""),
        "checkpoint_id": configurable.get("checkpoint_id"),
    }
    return json_response(
        {"checkpoint": ref, "configurable": ref, "checkpoint_id": ref["checkpoint_id"]}
    )


async def _history(
    runtime: Runtime, access: Access, thread_id: str, body: ThreadHistory
) -> Response:
    thread = await load_thread(runtime, thread_id, access)
    graph = await load_graph(runtime, thread, required=False)
    if graph is None:
        return json_response([])
    tid = str(thread["thread_id"])
    before: Any = None
    if isinstance(body.before, str):
        before = state_config(tid, CheckpointConfig(checkpoint_id=body.before))
    elif body.before is not None:
        before = state_config(tid, body.before)
    states = [
        snapshot_to_dict(state)
        async for state in graph.aget_state_history(
            state_config(tid, body.checkpoint),
            filter=body.metadata,
            before=before,
            limit=body.limit,
        )
    ]
    return json_response(states)


@router.get("/threads/{thread_id}/history")
async def get_history(
    thread_id: str,
    runtime: RuntimeDep,
    access: Read,
    limit: int = Query(default=10, ge=1, le=1000),
    before: str | None = Query(default=None, max_length=100),
) -> Response:
    """Checkpoints of the thread, newest first."""
    return await _history(runtime, access, thread_id, ThreadHistory(limit=limit, before=before))


@router.post("/threads/{thread_id}/history")
async def post_history(
    thread_id: str, runtime: RuntimeDep, access: Read, body: ThreadHistory | None = None
) -> Response:
    """Checkpoints of the thread, newest first, filtered by metadata / before a checkpoint."""
    return await _history(runtime, access, thread_id, body or ThreadHistory())
