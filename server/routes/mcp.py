"""``/mcp``: the assistants as tools over the MCP Streamable HTTP transport (stateless, JSON).

Like the reference server, this endpoint keeps no MCP session: every POST carries one JSON-RPC
message and gets its answer as one JSON body (never an SSE stream, never an
``Mcp-Session-Id``), so any server process can answer any message. ``GET`` (a server-to-client
stream) is 405 and ``DELETE`` (ending a session) is 404, as the transport prescribes for a
server that offers neither. Requests: ``initialize``, ``ping``, ``tools/list``,
``tools/call``; notifications and responses are acknowledged with 202.
"""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from server.auth import Access, protect
from server.json_body import JsonRoute
from server.routes._common import json_response
from server.routes._mcp_tools import call_tool, list_tools
from server.runtime import RuntimeDep
from server.versions import STAFFGRAPH_VERSION

__all__ = ["router"]

log = logging.getLogger(__name__)

router = APIRouter(tags=["MCP"], route_class=JsonRoute)

# Listing tools is an assistants search; calling one is a stateless run (authorized as such).
McpAccess = Annotated[Access, protect("assistants", "search")]

# The transport versions this endpoint speaks; an unknown request gets the latest (the client
# then decides whether it can live with it), as the lifecycle section of the spec allows.
SUPPORTED_PROTOCOL_VERSIONS = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
LATEST_PROTOCOL_VERSION = SUPPORTED_PROTOCOL_VERSIONS[-1]

METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602


class RpcError(Exception):
    """A JSON-RPC error answered in the response body (HTTP 200)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _transport_error(message: str, status: int = 400) -> Response:
    # The reference answers transport-level problems with {"error": ...}; ``detail`` is this
    # server's error key everywhere else, so both are given.
    return json_response({"error": message, "detail": message}, status_code=status)


def _accepts(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "application/json" in accept or "text/event-stream" in accept


@router.get("/mcp")
async def mcp_get(access: McpAccess) -> Response:
    """No server-to-client stream is offered: 405, as the transport prescribes."""
    await access.check({})
    return _transport_error("This MCP endpoint offers no GET stream; POST messages", 405)


@router.delete("/mcp")
async def mcp_delete(access: McpAccess) -> Response:
    """There are no MCP sessions to end (the endpoint is stateless): 404."""
    await access.check({})
    return _transport_error("No MCP session to end: this endpoint is stateless", 404)


def _transport_problem(request: Request, message: Any) -> str | None:
    """Why the transport refuses the message (checked in the reference's order), if it does."""
    if not _accepts(request):
        return "Accept header must include application/json or text/event-stream"
    if not isinstance(message, dict):
        # Batches were dropped from the transport in 2025-06-18; the reference refuses them too.
        return "Invalid message format."
    if message.get("jsonrpc") != "2.0":
        return "Invalid JSON-RPC message. Missing or invalid jsonrpc version."
    return None


@router.post("/mcp")
async def mcp_post(request: Request, runtime: RuntimeDep, access: McpAccess) -> Response:
    """Answer one JSON-RPC message."""
    try:
        # Strict and within the body budget (server.json_body): a value nothing can store is
        # a 422 naming it, an over-budget body a 413.
        message = await request.json()
    except json.JSONDecodeError:
        return _transport_error("Invalid JSON")
    problem = _transport_problem(request, message)
    if problem is not None:
        return _transport_error(problem)
    request_id, method = message.get("id"), message.get("method")
    if request_id is None and not method:
        return _transport_error(
            "Invalid message format. A message is either a JSON-RPC request, response or "
            "notification."
        )
    if request_id is None or not method:
        return Response(status_code=202)  # a notification or a response: nothing to answer
    if not isinstance(request_id, str | int) or isinstance(request_id, bool):
        return _transport_error("Invalid JSON-RPC message. The id must be a string or a number.")
    try:
        result = await _dispatch(runtime, access, method, message.get("params"))
        body: dict[str, Any] = {"result": result}
    except RpcError as exc:
        body = {"error": {"code": exc.code, "message": exc.message}}
    return json_response({"jsonrpc": "2.0", "id": request_id, **body})


async def _dispatch(
    runtime: RuntimeDep, access: Access, method: Any, params: Any
) -> dict[str, Any]:
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise RpcError(INVALID_PARAMS, "Invalid params: params must be an object")
    if method == "initialize":
        return _initialize(params)
    if method == "ping":
        return {}
    if method == "tools/list":
        return await list_tools(runtime, access, params.get("cursor"))
    if method == "tools/call":
        return await _call(runtime, access, params)
    raise RpcError(METHOD_NOT_FOUND, f"Method not found: {method}")


def _initialize(params: dict[str, Any]) -> dict[str, Any]:
    requested = params.get("protocolVersion")
    negotiated = requested if requested in SUPPORTED_PROTOCOL_VERSIONS else LATEST_PROTOCOL_VERSION
    return {
        "protocolVersion": negotiated,
        "capabilities": {"tools": {"listChanged": False}},
        "serverInfo": {"name": "staffgraph", "version": STAFFGRAPH_VERSION},
    }


async def _call(runtime: RuntimeDep, access: Access, params: dict[str, Any]) -> dict[str, Any]:
    name = params.get("name")
    arguments = params.get("arguments")
    context = params.get("context")
    if context is not None and not isinstance(context, dict):
        raise RpcError(INVALID_PARAMS, "Invalid params: context must be an object")
    result = await call_tool(runtime, access, name, arguments, context)
    if result.unknown is not None:
        raise RpcError(INVALID_PARAMS, result.unknown)
    return result.body
