"""What a run names must exist: nodes to interrupt at or go to, the checkpoint to start from.

Checked when the run is created, so a mistake is a 422 (or a 404 for a checkpoint) naming the
field instead of a run that fails later. Each check costs a lookup only when its field is set.
"""

from __future__ import annotations

from langgraph.constants import END
from langgraph.pregel import Pregel

from server.routes._common import fail
from server.runtime import Runtime
from server.runtime.graph_cache import UnknownGraph
from server.schemas import RunCreate

__all__ = ["check_run_targets"]


async def check_run_targets(runtime: Runtime, body: RunCreate, thread_id: str | None) -> None:
    """Refuse a run naming nodes its graph lacks (422) or a checkpoint its thread lacks (404).

    A node inside a member may be named as the xray drawing names it (``writer:model``): its
    first part must be a node of the graph.
    """
    named = _named_nodes(body)
    if named:
        graph = await _graph_of(runtime, body.assistant_id)
        if graph is not None:
            _check_nodes(graph, named)
    checkpoint_id = body.checkpoint_id or (
        body.checkpoint.checkpoint_id if body.checkpoint else None
    )
    if checkpoint_id and thread_id is not None:
        ns = (body.checkpoint.checkpoint_ns if body.checkpoint else None) or ""
        config = {
            "configurable": {
                "thread_id": thread_id,
                "checkpoint_ns": ns,
                "checkpoint_id": checkpoint_id,
            }
        }
        if await runtime.graphs.checkpointer.aget_tuple(config) is None:  # type: ignore[arg-type]
            fail(404, f"Checkpoint {checkpoint_id} not found on thread {thread_id}")


def _named_nodes(body: RunCreate) -> dict[str, list[str]]:
    named: dict[str, list[str]] = {}
    for field in ("interrupt_before", "interrupt_after"):
        value = getattr(body, field)
        if isinstance(value, list) and value:
            named[field] = value
    goto = body.command.goto if body.command is not None else None
    if goto is not None:
        items = goto if isinstance(goto, list) else [goto]
        names = [item if isinstance(item, str) else item.node for item in items]
        if names:
            named["command.goto"] = names
    return named


async def _graph_of(runtime: Runtime, assistant: str) -> Pregel | None:
    """The assistant's graph; ``None`` when the assistant is missing (the create's 404)."""
    if assistant in runtime.registry:
        graph_id = assistant
    else:
        try:
            assistant_id = runtime.resolve_assistant(assistant)
        except Exception:  # noqa: BLE001 - the create answers the same input with its own 422
            return None
        row = await runtime.assistants.get(assistant_id)
        if row is None:
            return None
        graph_id = row["graph_id"]
    try:
        return await runtime.graphs.plain(graph_id)
    except UnknownGraph:
        return None


def _check_nodes(graph: Pregel, named: dict[str, list[str]]) -> None:
    nodes = set(graph.nodes)
    for field, names in named.items():
        unknown = [n for n in names if n != END and n.split(":", 1)[0] not in nodes]
        if unknown:
            known = ", ".join(sorted(n for n in nodes if not n.startswith("__")))
            fail(
                422,
                f"body.{field}: unknown node {', '.join(map(repr, unknown))} in graph "
                f"'{graph.name}'; its nodes are: {known}",
            )
