"""Helpers shared by the threads routers: loading a thread and its graph, recording state."""

from __future__ import annotations

from typing import Any

from langgraph.pregel import Pregel

from server.graph_factory import AccessContext
from server.routes._common import fail, valid_uuid
from server.runtime import Runtime
from server.runtime.graph_cache import UnknownGraph
from server.schemas import CheckpointConfig
from server.serde import interrupt_to_dict

__all__ = ["EMPTY_STATE", "load_graph", "load_thread", "record_state", "state_config"]

EMPTY_STATE: dict[str, Any] = {
    "values": {},
    "next": [],
    "tasks": [],
    "metadata": None,
    "created_at": None,
    "checkpoint": None,
    "parent_checkpoint": None,
    "interrupts": [],
    "checkpoint_id": None,
    "parent_checkpoint_id": None,
}


async def load_thread(runtime: Runtime, thread_id: str) -> dict[str, Any]:
    thread_id = valid_uuid(thread_id, "thread")
    row = await runtime.threads.get(thread_id)
    if row is None:
        fail(404, f"Thread with ID {thread_id} not found")
    return row


async def load_graph(
    runtime: Runtime,
    thread: dict[str, Any],
    *,
    required: bool,
    access: AccessContext = "threads.read",
) -> Pregel | None:
    graph_id = (thread.get("metadata") or {}).get("graph_id")
    if not graph_id:
        if not required:
            return None
        fail(
            400,
            f"Thread '{thread['thread_id']}' has no assigned graph ID. This usually occurs when "
            "no runs have been made on this particular thread. This operation requires a graph "
            "ID. Please ensure a run has been made for the thread or manually update the thread "
            "metadata (by setting the 'graph_id' field) before running this operation.",
        )
    try:
        return await runtime.graphs.get(str(graph_id), access=access)
    except UnknownGraph:
        fail(404, f"Graph '{graph_id}' of thread {thread['thread_id']} is not served here")


def state_config(thread_id: str, checkpoint: CheckpointConfig | None = None, **extra: Any) -> Any:
    configurable: dict[str, Any] = {"thread_id": thread_id, "checkpoint_ns": ""}
    if checkpoint is not None:
        configurable.update(checkpoint.configurable())
    configurable.update({k: v for k, v in extra.items() if v})
    return {"configurable": configurable}


async def record_state(runtime: Runtime, graph: Pregel, thread_id: str) -> None:
    """Copy the thread's current state into its row (values, interrupts, status)."""
    state = await graph.aget_state({"configurable": {"thread_id": thread_id}})
    interrupts = {
        task.id: [interrupt_to_dict(i) for i in task.interrupts]
        for task in state.tasks
        if task.interrupts
    }
    await runtime.threads.record_state(
        thread_id,
        values=state.values,
        interrupts=interrupts,
        status="interrupted" if state.next else "idle",
    )
