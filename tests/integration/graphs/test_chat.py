"""Chat graph: a role agent with tools, its approvals, and its content policy."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.types import Command

from graphs.chat import build_chat
from graphs.chat import graph as chat_graph
from state.db import Persistence
from state.roles import Circle, Organization, Role
from tests.integration.graphs.conftest import Ledger, attach, thread
from tools.registry import ToolRegistry, default_registry

PUBLISH = "Publish a note titled Quarterly results"


def desk(ledger: Ledger) -> tuple[Organization, ToolRegistry]:
    """One circle with an editor who may publish (write risk, human approval)."""
    registry = default_registry()
    registry.register(ledger.tool())
    editor = Role.model_validate(
        {
            "name": "editor",
            "purpose": "Publishes notes to the team board.",
            "tools": ["publish_note"],
            "policies": {
                "approval_required": ["write"],
                "content": {"banned_terms": ["quarterly"]},
            },
        }
    )
    circle = Circle(name="desk", purpose="Keeps the team board.", lead="editor")
    return Organization(circles=(circle,), roles=(editor,)), registry


async def test_a_chat_session_keeps_every_turn(persistence: Persistence) -> None:
    graph = attach(chat_graph, persistence)
    config = thread()
    first = await graph.ainvoke({"messages": [HumanMessage("What is 12 * (3 + 4)?")]}, config)
    human, call, result, answer = first["messages"]
    assert call.tool_calls[0]["name"] == "calculator"
    assert call.tool_calls[0]["args"] == {"expression": "12 * (3 + 4)"}
    assert isinstance(result, ToolMessage) and result.content == "84"
    assert answer.name == "analyst"
    assert answer.content.endswith("calculator returned: 84.")
    assert first["policy"] == {"passed": True, "reasons": []}

    second = await graph.ainvoke({"messages": [HumanMessage("And 2 ** 10?")]}, config)
    assert [m.type for m in second["messages"]] == ["human", "ai", "tool", "ai"] * 2
    assert second["messages"][6].content == "1024"


async def paused_publish(graph: Any, config: dict[str, Any]) -> dict[str, Any]:
    paused = await graph.ainvoke({"messages": [HumanMessage(PUBLISH)]}, config)
    (request,) = paused["__interrupt__"]
    return request.value


async def test_write_tool_waits_for_approval_then_runs_once(persistence: Persistence) -> None:
    ledger = Ledger()
    org, registry = desk(ledger)
    graph = attach(build_chat("editor", org=org, registry=registry), persistence)
    config = thread()
    value = await paused_publish(graph, config)

    (action,) = value["action_requests"]
    assert action["name"] == "publish_note"
    assert action["description"].startswith(
        "Editor wants to call 'publish_note' (risk: write). Policy: role 'editor' requires "
        "approval for 'write' (policies.approval_required)."
    )
    assert value["review_configs"] == [
        {
            "action_name": "publish_note",
            "allowed_decisions": ["approve", "edit", "reject", "respond"],
        }
    ]
    assert ledger.calls == []  # no side effect before approval

    result = await graph.ainvoke(Command(resume={"decisions": [{"type": "approve"}]}), config)
    assert ledger.calls == [action["args"]]
    assert isinstance(result["messages"][-1], AIMessage)
    assert "publish_note returned: published" in result["messages"][-1].content
    # Running the thread again does not repeat the completed effect.
    await graph.ainvoke(None, config)
    assert ledger.calls == [action["args"]]


@pytest.mark.parametrize(
    ("decision", "calls", "tool_reply"),
    [
        (
            {
                "type": "edit",
                "edited_action": {"name": "publish_note", "args": {"title": "Q3 numbers"}},
            },
            [{"title": "Q3 numbers"}],
            "published Q3 numbers",
        ),
        (
            {"type": "reject", "message": "not yet"},
            [],
            "User rejected the tool call for `publish_note` with reason: not yet",
        ),
        ({"type": "respond", "message": "Already on the board."}, [], "Already on the board."),
    ],
)
async def test_edit_reject_and_respond(
    persistence: Persistence,
    decision: dict[str, Any],
    calls: list[dict[str, Any]],
    tool_reply: str,
) -> None:
    ledger = Ledger()
    org, registry = desk(ledger)
    graph = attach(build_chat("editor", org=org, registry=registry), persistence)
    config = thread()
    await paused_publish(graph, config)
    result = await graph.ainvoke(Command(resume={"decisions": [decision]}), config)
    assert ledger.calls == calls
    tool_message = next(m for m in result["messages"] if isinstance(m, ToolMessage))
    assert tool_reply in tool_message.content


async def test_content_policy_verdict_is_recorded(persistence: Persistence) -> None:
    ledger = Ledger()
    org, registry = desk(ledger)
    graph = attach(build_chat("editor", org=org, registry=registry), persistence)
    result = await graph.ainvoke(
        {"messages": [HumanMessage("Summarise the quarterly figures")]}, thread()
    )
    hits = result["messages"][-1].content.lower().count("quarterly")
    assert hits > 0
    assert result["policy"] == {
        "passed": False,
        "reasons": [f"uses the banned term 'quarterly' ({hits}x)."],
    }
