"""``/mcp``: the assistants as MCP tools, driven by the official ``mcp`` client and raw httpx.

Expected answers were recorded from ``langgraph dev`` (langgraph-api 0.16.7) serving
``tests/support/langgraph.json``: the same tool definitions, the same ``tools/call`` results
(the Python repr of the run's output; the exception's class name with ``isError``), the same
JSON-RPC errors and transport status codes.
"""

from __future__ import annotations

import ast
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import PaginatedRequestParams

from tests.support.server import LiveServer

ACCEPT = {"accept": "application/json, text/event-stream", "content-type": "application/json"}

# tools/list entry for the `simple` graph as langgraph dev lists it: the message list becomes one
# string argument, the other channels keep their schema.
REFERENCE_SIMPLE_TOOL = {
    "name": "simple",
    "title": "simple",
    "description": "Tool based on the simple assistant",
    "inputSchema": {
        "description": "Chat transcript plus a counter.",
        "properties": {
            "messages": {
                "type": "string",
                "title": "Messages",
                "description": "The user message to send to the agent.",
            },
            "count": {"title": "Count", "type": "integer"},
            "turns": {"title": "Turns", "type": "integer"},
        },
        "title": "MessagesState",
        "type": "object",
    },
    "annotations": {
        "readOnlyHint": False,
        "destructiveHint": False,
        "idempotentHint": False,
        "openWorldHint": True,
    },
}
REFERENCE_HITL_SCHEMA = {
    "description": "A proposal that a human reviews before it is acted on.",
    "properties": {
        "proposal": {"title": "Proposal", "type": "string"},
        "approved": {"title": "Approved", "type": "boolean"},
        "log": {"items": {"type": "string"}, "title": "Log", "type": "array"},
    },
    "title": "HitlState",
    "type": "object",
}
# Keys (in order) of a message in the repr langgraph dev answers a tools/call with.
REFERENCE_HUMAN_KEYS = ["content", "additional_kwargs", "response_metadata", "type", "name", "id"]
REFERENCE_AI_KEYS = [
    *REFERENCE_HUMAN_KEYS,
    "tool_calls",
    "invalid_tool_calls",
    "usage_metadata",
]


@asynccontextmanager
async def mcp_session(server: LiveServer) -> AsyncIterator[ClientSession]:
    """The official client, initialised. (Not a fixture: anyio's cancel scopes must be left in
    the task that entered them, and pytest-asyncio tears fixtures down in another.)"""
    async with streamable_http_client(f"{server.url}/mcp") as streams:
        async with ClientSession(streams[0], streams[1]) as client:
            await client.initialize()
            yield client


async def _all_tools(client: ClientSession) -> list[dict[str, Any]]:
    tools: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params = PaginatedRequestParams(cursor=cursor) if cursor else None
        page = await client.list_tools(params=params)
        tools += [t.model_dump(by_alias=True, exclude_none=True) for t in page.tools]
        cursor = page.next_cursor
        if cursor is None:
            return tools


def _text(result: Any) -> str:
    assert len(result.content) == 1 and result.content[0].type == "text"
    return str(result.content[0].text)


async def test_initialize_negotiates_the_client_version(live_server: LiveServer) -> None:
    async with mcp_session(live_server) as session:
        init = await session.initialize()
        assert init.protocol_version == "2025-11-25"
        assert init.capabilities.tools is not None and init.capabilities.tools.list_changed is False


async def test_tools_are_the_assistants_with_the_reference_definitions(
    live_server: LiveServer,
) -> None:
    async with mcp_session(live_server) as session:
        tools = {t["name"]: t for t in await _all_tools(session)}
        assert {"simple", "chat", "hitl", "failing", "parent", "slow", "greeter"} <= set(tools)
        assert tools["simple"] == REFERENCE_SIMPLE_TOOL
        assert tools["hitl"]["inputSchema"] == REFERENCE_HITL_SCHEMA
        assert tools["chat"]["description"] == "Tool based on the chat assistant"


async def test_call_runs_the_assistant_and_answers_the_repr_of_its_output(
    live_server: LiveServer,
) -> None:
    async with mcp_session(live_server) as session:
        result = await session.call_tool("simple", {"messages": "hi"})
        assert result.is_error is False
        # The text is a Python literal (the reference's repr); literal_eval never runs code.
        output = ast.literal_eval(_text(result))
        assert list(output) == ["messages", "count"]
        human, ai = output["messages"]
        assert list(human) == REFERENCE_HUMAN_KEYS and list(ai) == REFERENCE_AI_KEYS
        assert (human["type"], human["content"]) == ("human", "hi")
        assert (ai["type"], ai["content"]) == ("ai", "echo: hi")
        assert output["count"] == 1


async def test_a_failing_run_is_a_tool_error_named_after_the_exception(
    live_server: LiveServer,
) -> None:
    async with mcp_session(live_server) as session:
        result = await session.call_tool("failing", {"x": 1})
        assert result.is_error is True
        assert _text(result) == "ValueError"


async def test_an_interrupted_run_answers_its_values_and_interrupt(live_server: LiveServer) -> None:
    async with mcp_session(live_server) as session:
        output = ast.literal_eval(_text(await session.call_tool("hitl", {})))
        assert output["proposal"] == "send the report" and output["log"] == ["proposed"]
        (pending,) = output["__interrupt__"]
        assert pending["value"] == {"question": "approve?", "proposal": "send the report"}


async def test_unknown_tool_is_an_invalid_params_error(live_server: LiveServer) -> None:
    async with mcp_session(live_server) as session:
        with pytest.raises(MCPError) as caught:
            await session.call_tool("nope", {})
        assert (caught.value.code, caught.value.message) == (-32602, "Unknown tool: nope")


async def test_named_assistants_become_tools_named_after_them(live_server: LiveServer) -> None:
    async with mcp_session(live_server) as session:
        tag = uuid.uuid4().hex[:8]
        async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as http:
            created = await http.post(
                "/assistants",
                json={
                    "graph_id": "simple",
                    "name": f"Weekly report {tag}!",
                    "description": "Writes the weekly report.",
                },
            )
            assert created.status_code == 200, created.text
            for _ in range(2):  # two assistants whose names normalise alike: one tool, no call
                twin = await http.post(
                    "/assistants", json={"graph_id": "simple", "name": f"twin {tag}"}
                )
                assert twin.status_code == 200, twin.text
        tools = {t["name"]: t for t in await _all_tools(session)}
        weekly = tools[f"Weekly_report_{tag}"]
        assert weekly["title"] == f"Weekly report {tag}!"
        assert weekly["description"] == "Writes the weekly report."
        assert weekly["inputSchema"] == REFERENCE_SIMPLE_TOOL["inputSchema"]
        assert sum(1 for name in tools if name == f"twin_{tag}") == 1

        output = ast.literal_eval(
            _text(await session.call_tool(f"Weekly_report_{tag}", {"messages": "go"}))
        )
        assert output["messages"][-1]["content"] == "echo: go"
        with pytest.raises(MCPError) as caught:
            await session.call_tool(f"twin_{tag}", {"messages": "go"})
        assert (caught.value.code, caught.value.message) == (
            -32602,
            "Multiple tools found with the same name.",
        )


# --- the wire, with raw httpx --------------------------------------------------------------


async def _post(
    http: httpx.AsyncClient, body: Any, headers: dict[str, str] = ACCEPT
) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await http.post("/mcp", content=content, headers=headers)


async def test_tools_call_takes_the_run_context(live_server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as http:
        response = await _post(
            http,
            {
                "jsonrpc": "2.0",
                "id": 7,
                "method": "tools/call",
                "params": {
                    "name": "greeter",
                    "arguments": {"name": "Ada"},
                    "context": {"greeting": "hey"},
                },
            },
        )
    assert response.status_code == 200
    body = response.json()
    assert (body["jsonrpc"], body["id"]) == ("2.0", 7)
    (content,) = body["result"]["content"]
    assert ast.literal_eval(content["text"]) == {"name": "Ada", "said": "hey Ada", "tagged": "|"}


# (request, HTTP status, JSON body or None for an empty 202) as langgraph dev answers; this
# server adds `detail` (its error key everywhere) next to the reference's `error`.
REFERENCE_WIRE: list[tuple[str, Any, int, Any]] = [
    (
        "initialize echoes a supported version",
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {"protocolVersion": "2025-03-26", "capabilities": {}},
        },
        200,
        {
            "jsonrpc": "2.0",
            "id": 1,
            "result": {
                "protocolVersion": "2025-03-26",
                "capabilities": {"tools": {"listChanged": False}},
            },
        },
    ),
    (
        "initialize answers the latest for an unknown version",
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {"protocolVersion": "1999-01-01"},
        },
        200,
        {
            "jsonrpc": "2.0",
            "id": 1,
            "result": {
                "protocolVersion": "2025-11-25",
                "capabilities": {"tools": {"listChanged": False}},
            },
        },
    ),
    (
        "ping",
        {"jsonrpc": "2.0", "id": "abc", "method": "ping"},
        200,
        {"jsonrpc": "2.0", "id": "abc", "result": {}},
    ),
    (
        "unknown method",
        {"jsonrpc": "2.0", "id": 9, "method": "resources/list"},
        200,
        {
            "jsonrpc": "2.0",
            "id": 9,
            "error": {"code": -32601, "message": "Method not found: resources/list"},
        },
    ),
    (
        "tools/call without a name",
        {"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {}},
        200,
        {"jsonrpc": "2.0", "id": 4, "error": {"code": -32602, "message": "Unknown tool: None"}},
    ),
    (
        "arguments that are not a state",
        {
            "jsonrpc": "2.0",
            "id": 4,
            "method": "tools/call",
            "params": {"name": "greeter", "arguments": "str"},
        },
        200,
        {
            "jsonrpc": "2.0",
            "id": 4,
            "result": {
                "isError": True,
                "content": [{"type": "text", "text": "InvalidUpdateError"}],
            },
        },
    ),
    ("notification", {"jsonrpc": "2.0", "method": "notifications/initialized"}, 202, None),
    ("response", {"jsonrpc": "2.0", "id": 10, "result": {}}, 202, None),
    ("invalid JSON", b"{not json", 400, {"error": "Invalid JSON"}),
    ("empty body", b"", 400, {"error": "Invalid JSON"}),
    (
        "a batch",
        [{"jsonrpc": "2.0", "id": 1, "method": "ping"}],
        400,
        {"error": "Invalid message format."},
    ),
    ("a number", 42, 400, {"error": "Invalid message format."}),
    (
        "no jsonrpc version",
        {"id": 1, "method": "tools/list"},
        400,
        {"error": "Invalid JSON-RPC message. Missing or invalid jsonrpc version."},
    ),
]


@pytest.mark.parametrize(
    ("request_body", "status", "expected"),
    [case[1:] for case in REFERENCE_WIRE],
    ids=[case[0] for case in REFERENCE_WIRE],
)
async def test_wire_matches_the_reference(
    live_server: LiveServer, request_body: Any, status: int, expected: Any
) -> None:
    async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as http:
        response = await _post(http, request_body)
    assert response.status_code == status, response.text
    if expected is None:
        assert response.content == b""
        return
    body = response.json()
    if "error" in expected and isinstance(expected["error"], str):
        assert body == {**expected, "detail": expected["error"]}
    elif "result" in expected and "protocolVersion" in expected["result"]:
        assert body["result"]["serverInfo"]["name"] == "staffgraph"
        del body["result"]["serverInfo"]
        assert body == expected
    else:
        assert body == expected


async def test_accept_header_must_allow_json_or_sse(live_server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as http:
        response = await _post(
            http,
            {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
            headers={"content-type": "application/json"},
        )
    assert response.status_code == 400
    assert response.json()["error"] == (
        "Accept header must include application/json or text/event-stream"
    )


@pytest.mark.parametrize(
    "message",
    [
        {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": 5},
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": ["simple"]},
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "simple", "context": "not an object"},
        },
    ],
    ids=["list params not an object", "call params a list", "context not an object"],
)
async def test_malformed_params_are_invalid_params_never_500(
    live_server: LiveServer, message: dict[str, Any]
) -> None:
    async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as http:
        response = await _post(http, message)
    assert response.status_code == 200
    assert response.json()["error"]["code"] == -32602


async def test_odd_ids_and_cursors_are_answered(live_server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as http:
        odd_id = await _post(http, {"jsonrpc": "2.0", "id": {"a": 1}, "method": "ping"})
        cursor = await _post(
            http,
            {"jsonrpc": "2.0", "id": 3, "method": "tools/list", "params": {"cursor": {"x": 1}}},
        )
    assert odd_id.status_code == 400 and "id" in odd_id.json()["detail"]
    assert cursor.status_code == 200 and cursor.json()["result"]["tools"]


async def test_no_get_stream_and_no_sessions(live_server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as http:
        get = await http.get("/mcp", headers={"accept": "text/event-stream"})
        delete = await http.delete("/mcp")
        initialized = await _post(
            http, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}
        )
    assert get.status_code == 405
    assert delete.status_code == 404
    assert "mcp-session-id" not in initialized.headers
