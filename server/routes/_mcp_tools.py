"""The assistants seen as MCP tools: their names, input schemas, and a stateless run per call.

What the reference shows, kept here: a tool is named after its assistant (whitespace runs
become ``_``, characters outside ``[A-Za-z0-9_.-]`` are dropped, at most 128 characters; the
first of two assistants with the same tool name wins), described by the assistant's
description or "Tool based on the <name> assistant", and takes the graph's input schema, where
a list of LangChain messages becomes one string (the user's message: ``add_messages`` turns a
string into a human message). A call runs the assistant on a temporary thread and answers with
the Python ``repr`` of its final values as text, or ``isError`` with the exception's class name.
"""

from __future__ import annotations

import copy
import logging
import re
from dataclasses import dataclass, field
from typing import Any

import orjson
from fastapi import HTTPException
from pydantic import ValidationError

from server.auth import Access
from server.errors import validation_detail
from server.graph_schemas import graph_schemas
from server.routes._runs import create
from server.runtime import Runtime
from server.schemas import RunCreate

__all__ = ["ToolCallResult", "call_tool", "list_tools", "tool_name"]

log = logging.getLogger(__name__)

PAGE_SIZE = 100
"""Tools per ``tools/list`` page (``nextCursor`` when a page is full)."""
MAX_ASSISTANTS = 1000
"""Assistants searched for a ``tools/call`` name."""

_INVALID = re.compile(r"[^A-Za-z0-9_.\-]")
_MESSAGE_DEFS = frozenset(
    f"{kind}{suffix}"
    for kind in ("AI", "Human", "Chat", "System", "Function", "Tool")
    for suffix in ("Message", "MessageChunk")
)
_SUPPORT_DEFS = frozenset(
    {
        "ToolCall",
        "ToolCallChunk",
        "InvalidToolCall",
        "UsageMetadata",
        "InputTokenDetails",
        "OutputTokenDetails",
    }
)
_ANNOTATIONS = {
    "readOnlyHint": False,
    "destructiveHint": False,
    "idempotentHint": False,
    "openWorldHint": True,
}


def tool_name(assistant_name: str) -> str:
    """The MCP tool name (``^[A-Za-z0-9_.-]{1,128}$``) of an assistant called ``assistant_name``."""
    return _INVALID.sub("", re.sub(r"\s+", "_", assistant_name.strip()))[:128]


def _is_message_list(prop: Any) -> bool:
    if not isinstance(prop, dict) or prop.get("type") != "array":
        return False
    items = prop.get("items") or {}
    options = items.get("oneOf") or items.get("anyOf") or []
    return any(
        isinstance(o, dict) and str(o.get("$ref", "")).removeprefix("#/$defs/") in _MESSAGE_DEFS
        for o in options
    )


def simplify_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``schema`` where message lists are one string and LangChain's defs are gone."""
    out = copy.deepcopy(schema)
    defs = out.get("$defs")
    if isinstance(defs, dict) and set(defs) & _MESSAGE_DEFS:
        for name in _MESSAGE_DEFS | _SUPPORT_DEFS:
            defs.pop(name, None)
        if not defs:
            del out["$defs"]
        props = out.get("properties") or {}
        for key, prop in props.items():
            if _is_message_list(prop):
                props[key] = {
                    "type": "string",
                    "title": prop.get("title", key),
                    "description": "The user message to send to the agent.",
                }
    out.setdefault("type", "object")
    return out


async def _tool(runtime: Runtime, row: dict[str, Any], name: str) -> dict[str, Any] | None:
    graph_id = row["graph_id"]
    if graph_id not in runtime.registry:
        return None
    graph = await runtime.graphs.plain(graph_id)
    schema = graph_schemas(graph).get("input_schema")
    if schema is None:
        # Like the reference: an assistant whose input has no JSON schema is left out.
        log.warning("MCP: assistant %s has no input schema; not listed", row["assistant_id"])
        return None
    return {
        "name": name,
        "title": row["name"],
        "description": row.get("description") or f"Tool based on the {row['name']} assistant",
        "inputSchema": simplify_schema(schema),
        "annotations": dict(_ANNOTATIONS),
    }


def _offset(cursor: Any) -> int:
    if isinstance(cursor, bool):
        return 0
    try:
        return max(0, int(cursor))
    except (TypeError, ValueError):
        return 0  # an unknown cursor starts from the beginning, as the reference does


async def _assistants(
    runtime: Runtime, access: Access, *, limit: int, offset: int
) -> list[dict[str, Any]]:
    # The caller's assistants only (and everyone's per-graph ones), as /assistants/search.
    flt = await access.check(
        {"graph_id": None, "metadata": {}, "limit": limit, "offset": offset},
        resource="assistants",
        action="search",
    )
    rows, _ = await runtime.assistants.search(
        auth=flt,
        graph_id=None,
        name=None,
        metadata=None,
        limit=limit,
        offset=offset,
        sort_by=None,
        sort_order=None,
    )
    return rows


async def list_tools(runtime: Runtime, access: Access, cursor: Any) -> dict[str, Any]:
    """One ``tools/list`` page starting at ``cursor`` (an offset; MCP cursors are strings)."""
    offset = _offset(cursor)
    rows = await _assistants(runtime, access, limit=PAGE_SIZE, offset=offset)
    seen: set[str] = set()
    tools: list[dict[str, Any]] = []
    for row in rows:
        name = tool_name(row["name"])
        if not name or name in seen:
            continue
        seen.add(name)
        tool = await _tool(runtime, row, name)
        if tool is not None:
            tools.append(tool)
    result: dict[str, Any] = {"tools": tools}
    if len(rows) == PAGE_SIZE:
        result["nextCursor"] = str(offset + PAGE_SIZE)
    return result


@dataclass
class ToolCallResult:
    """A ``tools/call`` outcome: a result body, or why the tool name matched nothing usable."""

    body: dict[str, Any] = field(default_factory=dict)
    unknown: str | None = None


def _error(text: str) -> ToolCallResult:
    return ToolCallResult({"isError": True, "content": [{"type": "text", "text": text}]})


async def _resolve(runtime: Runtime, access: Access, name: Any) -> tuple[str | None, str | None]:
    if not isinstance(name, str) or not name:
        return None, f"Unknown tool: {name}"
    rows = await _assistants(runtime, access, limit=MAX_ASSISTANTS, offset=0)
    matches = [row for row in rows if tool_name(row["name"]) == name]
    if not matches:
        return None, f"Unknown tool: {name}"
    if len(matches) > 1:
        return None, "Multiple tools found with the same name."
    return str(matches[0]["assistant_id"]), None


async def call_tool(
    runtime: Runtime,
    access: Access,
    name: Any,
    arguments: Any,
    context: dict[str, Any] | None,
) -> ToolCallResult:
    """Run the assistant called ``name`` on a temporary thread with ``arguments`` as its input.

    The run is the caller's, authorized like ``POST /runs`` (``server.routes._runs.create``).
    """
    assistant_id, unknown = await _resolve(runtime, access, name)
    if assistant_id is None:
        return ToolCallResult(unknown=unknown)
    try:
        body = RunCreate(
            assistant_id=assistant_id,
            input={} if arguments is None else arguments,
            context=context,
        )
    except ValidationError as exc:
        return _error(validation_detail(exc.errors()))
    try:
        created = await create(runtime, body, None, access)
    except HTTPException as exc:
        return _error(str(exc.detail))
    status, output = await runtime.wait(created.run_id)
    value = orjson.loads(output)
    if isinstance(value, dict) and "__error__" in value:
        error = value["__error__"]
        return _error(str(error.get("error") if isinstance(error, dict) else error))
    if status == "error":
        return _error("Error")
    # The reference answers with the Python repr of the run's JSON output; clients parse it.
    return ToolCallResult({"content": [{"type": "text", "text": repr(value)}]})
