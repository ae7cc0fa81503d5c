"""``GET /assistants/{id}/schemas`` for graphs whose state is a ``typing.TypedDict`` (Python 3.11).

Expected bodies were observed on ``langgraph dev`` (langgraph-api 0.16.7, Python 3.11) serving
``tests/support/langgraph_parity.json``: pydantic refuses ``typing.TypedDict`` before 3.12, so
input and output schemas are null, but the state schema is still built channel by channel, a
channel pydantic cannot type being shown untyped; the config schema is the context schema.
"""

from __future__ import annotations

from typing import Any

import pytest
from langgraph_sdk import get_client

from server.graphs import assistant_id_for
from tests.support.parity import ParityServer, parity_server

__all__ = ["parity_server"]

CONTEXT_SCHEMA: dict[str, Any] = {
    "description": "The configurable parameters of the agent (all have defaults, as in the "
    "template).",
    "properties": {
        "system_prompt": {
            "default": "You are a helpful AI assistant.",
            "description": "The system prompt to use for the agent's interactions.",
            "title": "System Prompt",
            "type": "string",
        },
        "model": {
            "default": "offline/echo",
            "description": "The name of the language model, as provider/model-name.",
            "title": "Model",
            "type": "string",
        },
        "max_search_results": {
            "default": 10,
            "description": "The maximum number of search results to return.",
            "title": "Max Search Results",
            "type": "integer",
        },
    },
    "title": "Context",
    "type": "object",
}
MESSAGE_TYPES = [
    "AIMessage",
    "HumanMessage",
    "ChatMessage",
    "SystemMessage",
    "FunctionMessage",
    "ToolMessage",
    "AIMessageChunk",
    "HumanMessageChunk",
    "ChatMessageChunk",
    "SystemMessageChunk",
    "FunctionMessageChunk",
    "ToolMessageChunk",
]


@pytest.mark.parametrize("graph", ["react", "react_factory", "react_managed"])
async def test_template_graph_schemas(parity_server: ParityServer, graph: str) -> None:
    client = get_client(url=parity_server.url)
    schemas = await client.assistants.get_schemas(assistant_id_for(graph))
    assert schemas["graph_id"] == graph
    assert schemas["input_schema"] is None and schemas["output_schema"] is None
    state = schemas["state_schema"]
    assert state["title"] == "ReAct AgentState" and state["type"] == "object"
    assert list(state["properties"]) == ["messages", "is_last_step", "steps"]
    messages = state["properties"]["messages"]
    assert messages["default"] is None and messages["type"] == "array"
    assert [ref["$ref"] for ref in messages["items"]["oneOf"]] == [
        f"#/$defs/{name}" for name in MESSAGE_TYPES
    ]
    assert set(MESSAGE_TYPES) <= set(state["$defs"])
    assert state["properties"]["is_last_step"] == {
        "default": None,
        "title": "Is Last Step",
        "type": "boolean",
    }
    assert state["properties"]["steps"] == {"default": None, "title": "Steps", "type": "integer"}
    assert "required" not in state
    assert schemas["context_schema"] == CONTEXT_SCHEMA
    assert schemas["config_schema"] == CONTEXT_SCHEMA


async def test_inexpressible_channel_is_untyped(parity_server: ParityServer) -> None:
    schemas = await get_client(url=parity_server.url).assistants.get_schemas(
        assistant_id_for("opaque")
    )
    assert schemas == {
        "graph_id": "opaque",
        "input_schema": None,
        "output_schema": None,
        "state_schema": {
            "properties": {
                "query": {"default": None, "title": "Query", "type": "string"},
                "handle": {"default": None, "title": "Handle"},
                "hits": {
                    "default": None,
                    "items": {"type": "string"},
                    "title": "Hits",
                    "type": "array",
                },
            },
            "title": "opaque_state",
            "type": "object",
        },
        "config_schema": {},
        "context_schema": None,
    }
