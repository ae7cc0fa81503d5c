"""Assistants endpoints of the LangGraph Server API."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from langgraph.pregel import Pregel
from starlette.responses import Response

from server.auditing import actor_of
from server.auth import Access, matches, protect
from server.graph_schemas import graph_schemas
from server.graphs import assistant_id_for
from server.ids import new_id
from server.json_body import JsonRoute
from server.limits import model_problem
from server.routes._common import (
    fail,
    json_response,
    no_content,
    page_response,
    select_fields,
    valid_uuid,
)
from server.runtime import RuntimeDep
from server.schemas import (
    AssistantCount,
    AssistantCreate,
    AssistantLatest,
    AssistantPatch,
    AssistantSearch,
    AssistantVersionsSearch,
)

__all__ = ["router"]

router = APIRouter(tags=["Assistants"], route_class=JsonRoute)

Create = Annotated[Access, protect("assistants", "create")]
Read = Annotated[Access, protect("assistants", "read")]
Update = Annotated[Access, protect("assistants", "update")]
Delete = Annotated[Access, protect("assistants", "delete")]
Search = Annotated[Access, protect("assistants", "search")]


def _graph_or_404(runtime: RuntimeDep, graph_id: str) -> None:
    if graph_id not in runtime.registry:
        fail(
            404, f"Graph '{graph_id}' not found. Expected one of: {sorted(runtime.registry.ids())}"
        )


def _config_and_context(
    runtime: RuntimeDep, config: dict[str, Any] | None, context: dict[str, Any] | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    config = dict(config or {})
    configurable = config.get("configurable")
    chosen = configurable.get("model") if isinstance(configurable, dict) else None
    problem = model_problem(
        runtime.allowed_models,
        runtime.settings.model,
        {
            "body.context.model": (context or {}).get("model"),
            "body.config.configurable.model": chosen,
        },
    )
    if problem is not None:
        fail(422, problem)
    if context and config.get("configurable"):
        fail(
            400,
            "Cannot specify both configurable and context. Prefer setting context alone. "
            "Context was introduced in LangGraph 0.6.0 and is the long term planned "
            "replacement for configurable.",
        )
    if context:
        # Graphs written before context existed read these values from configurable.
        config["configurable"] = dict(context)
    return config, dict(context or {})


async def _resolve(
    runtime: RuntimeDep,
    assistant_id: str,
    access: Access,
    *,
    value: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The assistant by UUID, or by graph id (its default assistant), if the caller may act on
    it; another owner's assistant answers 404 exactly like a missing one."""
    if assistant_id in runtime.registry:
        assistant_id = assistant_id_for(assistant_id)
    assistant_id = valid_uuid(assistant_id, "assistant")
    flt = await access.check({"assistant_id": assistant_id, **(value or {})})
    row = await runtime.assistants.get(assistant_id)
    if row is None or not matches(flt, row["metadata"]):
        fail(404, f"Assistant with ID {assistant_id} not found")
    return row


@router.post("/assistants")
async def create_assistant(body: AssistantCreate, runtime: RuntimeDep, access: Create) -> Response:
    """Create an assistant (``if_exists``: ``raise`` → 409, ``do_nothing`` → the existing one)."""
    _graph_or_404(runtime, body.graph_id)
    assistant_id = valid_uuid(body.assistant_id, "assistant") if body.assistant_id else new_id()
    config, context = _config_and_context(runtime, body.config, body.context)
    value: dict[str, Any] = {
        "assistant_id": assistant_id,
        "graph_id": body.graph_id,
        "config": config,
        "context": context,
        "metadata": dict(body.metadata or {}),
        "name": body.name or "Untitled",
    }
    await access.check(value)
    row = await runtime.assistants.create(
        assistant_id,
        graph_id=body.graph_id,
        name=body.name or "Untitled",
        description=body.description,
        config=config,
        context=context,
        metadata=value.get("metadata") or {},
    )
    if row is None:
        if body.if_exists == "do_nothing":
            existing = await runtime.assistants.get(assistant_id)
            if existing is not None and await access.visible(
                existing["metadata"], {"assistant_id": assistant_id}, action="read"
            ):
                return json_response(existing)
        fail(409, f"Assistant {assistant_id} already exists")
    return json_response(row)


@router.post("/assistants/search")
async def search_assistants(
    runtime: RuntimeDep, access: Search, body: AssistantSearch | None = None
) -> Response:
    """List assistants matching graph id, name and metadata; paging headers included."""
    body = body or AssistantSearch()
    flt = await access.check(
        {
            "graph_id": body.graph_id,
            "metadata": body.metadata or {},
            "limit": body.limit,
            "offset": body.offset,
        }
    )
    rows, total = await runtime.assistants.search(
        auth=flt,
        graph_id=body.graph_id,
        name=body.name,
        metadata=body.metadata,
        limit=body.limit,
        offset=body.offset,
        sort_by=body.sort_by,
        sort_order=body.sort_order,
    )
    rows = select_fields(rows, body.select)
    return page_response(rows, total, offset=body.offset, limit=body.limit)


@router.post("/assistants/count")
async def count_assistants(
    runtime: RuntimeDep, access: Search, body: AssistantCount | None = None
) -> Response:
    """How many assistants match."""
    body = body or AssistantCount()
    flt = await access.check({"graph_id": body.graph_id, "metadata": body.metadata or {}})
    total = await runtime.assistants.count(
        graph_id=body.graph_id, name=body.name, metadata=body.metadata, auth=flt
    )
    return json_response(total)


@router.get("/assistants/{assistant_id}")
async def get_assistant(assistant_id: str, runtime: RuntimeDep, access: Read) -> Response:
    """One assistant."""
    return json_response(await _resolve(runtime, assistant_id, access))


@router.patch("/assistants/{assistant_id}")
async def patch_assistant(
    assistant_id: str, body: AssistantPatch, runtime: RuntimeDep, access: Update
) -> Response:
    """Record a new version with the given fields changed (metadata is merged)."""
    assistant_id = valid_uuid(assistant_id, "assistant")
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    value: dict[str, Any] = {
        "graph_id": changes.get("graph_id"),
        "config": changes.get("config") or {},
        "context": changes.get("context"),
        "metadata": dict(changes.get("metadata") or {}),
        "name": changes.get("name"),
    }
    await _resolve(runtime, assistant_id, access, value=value)
    if "metadata" in changes:
        changes["metadata"] = value.get("metadata") or {}
    if "graph_id" in changes:
        _graph_or_404(runtime, changes["graph_id"])
    if "config" in changes or "context" in changes:
        config, context = _config_and_context(
            runtime, changes.get("config"), changes.get("context")
        )
        if "config" in changes or context:
            changes["config"] = config
    row = await runtime.assistants.patch(assistant_id, changes)
    if row is None:
        fail(404, f"Assistant with ID {assistant_id} not found")
    return json_response(row)


@router.delete("/assistants/{assistant_id}")
async def delete_assistant(
    assistant_id: str, runtime: RuntimeDep, access: Delete, delete_threads: bool = False
) -> Response:
    """Delete an assistant (and, with ``delete_threads``, the threads it ran on).

    Its queued and running runs are cancelled first and end ``interrupted``; their threads
    are left ``idle``, as the reference leaves them.
    """
    assistant_id = valid_uuid(assistant_id, "assistant")
    await _resolve(runtime, assistant_id, access)
    stopped = await runtime.cancel(action="interrupt", assistant_id=assistant_id, wait=True)
    deleted = await runtime.assistants.delete(
        assistant_id, delete_threads=delete_threads, actor=actor_of(access.caller)
    )
    if not deleted:
        fail(404, f"Assistant with ID {assistant_id} not found")
    await runtime.runs.settle_cancelled(sorted({tid for tid, _ in stopped.running}))
    return no_content()


@router.post("/assistants/{assistant_id}/versions")
async def list_versions(
    assistant_id: str,
    runtime: RuntimeDep,
    access: Read,
    body: AssistantVersionsSearch | None = None,
) -> Response:
    """Stored versions of the assistant, newest first."""
    body = body or AssistantVersionsSearch()
    row = await _resolve(runtime, assistant_id, access)
    versions = await runtime.assistants.versions(
        str(row["assistant_id"]), metadata=body.metadata, limit=body.limit, offset=body.offset
    )
    return json_response(versions)


@router.post("/assistants/{assistant_id}/latest")
async def set_latest(
    assistant_id: str, body: AssistantLatest, runtime: RuntimeDep, access: Update
) -> Response:
    """Make a stored version the current one."""
    assistant_id = valid_uuid(assistant_id, "assistant")
    await _resolve(runtime, assistant_id, access, value={"version": body.version})
    row = await runtime.assistants.set_latest(assistant_id, body.version)
    if row is None:
        fail(404, f"Assistant {assistant_id} has no version {body.version}")
    return json_response(row)


def _xray(value: str | None) -> bool | int:
    """The reference's reading of ``xray``: empty, ``true``/``True``, ``false``/``False``, or a
    positive integer depth; anything else (``0`` included) is a 422.
    """
    if not value:
        return False
    if value in ("true", "True"):
        return True
    if value in ("false", "False"):
        return False
    try:
        depth = int(value)
    except ValueError:
        fail(422, "Invalid xray value")
    if depth <= 0:
        fail(422, "Invalid xray value")
    return depth


@router.get("/assistants/{assistant_id}/graph")
async def get_graph(
    assistant_id: str,
    runtime: RuntimeDep,
    access: Read,
    xray: str | None = Query(default=None, max_length=10),
) -> Response:
    """Nodes and edges of the assistant's graph (``xray``: draw subgraphs, bool or depth)."""
    depth = _xray(xray)
    row = await _resolve(runtime, assistant_id, access)
    graph = await _plain_graph(runtime, row["graph_id"])
    drawable = (await graph.aget_graph(xray=depth)).to_json()
    nodes = []
    for node in drawable.get("nodes", []):
        data = node.get("data")
        if isinstance(data, dict):
            node = {**node, "data": {k: v for k, v in data.items() if k != "id"}}
        nodes.append(node)
    return json_response({"nodes": nodes, "edges": drawable.get("edges", [])})


@router.get("/assistants/{assistant_id}/schemas")
async def get_schemas(assistant_id: str, runtime: RuntimeDep, access: Read) -> Response:
    """Input, output, state, config and context JSON schemas of the assistant's graph."""
    row = await _resolve(runtime, assistant_id, access)
    graph = await _plain_graph(runtime, row["graph_id"])
    return json_response({"graph_id": row["graph_id"], **graph_schemas(graph)})


@router.get("/assistants/{assistant_id}/subgraphs")
@router.get("/assistants/{assistant_id}/subgraphs/{namespace}")
async def get_subgraphs(
    assistant_id: str,
    runtime: RuntimeDep,
    access: Read,
    namespace: str | None = None,
    recurse: bool = False,
) -> Response:
    """Schemas of the graph's subgraphs (optionally under ``namespace``, recursively)."""
    row = await _resolve(runtime, assistant_id, access)
    graph = await _plain_graph(runtime, row["graph_id"])
    found: dict[str, Any] = {}
    async for name, subgraph in graph.aget_subgraphs(namespace=namespace, recurse=recurse):
        found[name] = graph_schemas(subgraph)
    return json_response(found)


async def _plain_graph(runtime: RuntimeDep, graph_id: str) -> Pregel:
    if graph_id not in runtime.registry:
        fail(
            404, f"Graph '{graph_id}' not found. Expected one of: {sorted(runtime.registry.ids())}"
        )
    return await runtime.graphs.plain(graph_id)
