"""Helpers shared by the threads routers: loading a thread and its graph, recording state."""

from __future__ import annotations

from typing import Any

from langgraph.pregel import Pregel

from server.auth import Access, matches
from server.auth.approvals import may_review
from server.context import AppContext
from server.graph_factory import AccessContext
from server.repos.thread_ttl import ThreadTTLRepo
from server.routes._common import fail, valid_uuid
from server.runtime import Runtime
from server.runtime.graph_cache import UnknownGraph
from server.schemas import CheckpointConfig, ThreadTTL
from server.serde import interrupt_to_dict

__all__ = [
    "EMPTY_STATE",
    "apply_ttl",
    "load_graph",
    "load_thread",
    "record_state",
    "state_config",
]

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


async def load_thread(
    runtime: Runtime,
    thread_id: str,
    access: Access,
    *,
    action: str | None = None,
    value: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The thread if the caller may ``action`` it (default: the route's action), else 404.

    Another owner's thread answers exactly as a missing one.
    """
    thread_id = valid_uuid(thread_id, "thread")
    flt = await access.check(
        {"thread_id": thread_id, **(value or {})}, resource="threads", action=action
    )
    row = await runtime.threads.get(thread_id)
    if row is None or not matches(flt, row["metadata"]):
        # An approver reads another owner's thread while it waits for their decision.
        reading = (action or access.action) == "read"
        if row is None or not reading or not may_review(access.caller, access.approvals, row):
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


async def apply_ttl(
    ctx: AppContext, thread_id: str, ttl: ThreadTTL | None, *, created: bool
) -> None:
    """Set the thread's TTL from the request, or (a new thread without one) the config's default.

    A ``ttl`` without minutes takes ``checkpointer.ttl.default_ttl`` (none configured: no expiry).
    """
    config = ctx.config.checkpointer.ttl if ctx.config.checkpointer else None
    default = config.default_ttl if config is not None else None
    if ttl is not None:
        minutes = ttl.ttl if ttl.ttl is not None else default
        strategy = ttl.strategy
    elif created and config is not None and default is not None:
        minutes, strategy = default, config.strategy
    else:
        return
    await ThreadTTLRepo(ctx.persistence.pool).set(thread_id, strategy=strategy, minutes=minutes)
