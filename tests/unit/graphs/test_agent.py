"""The role agent's own middleware: grants, token budget, memory recall, run-time model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from langchain.agents.middleware import AgentMiddleware
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import BaseTool, StructuredTool
from langgraph.runtime import Runtime
from pydantic import Field

from nodes.agent import build_role_agent, role_system_prompt
from state.roles import Role, default_roles_dir, load_organization
from tools.registry import default_registry


class ScriptedModel(BaseChatModel):
    """Answers with the queued messages and records what it was sent and offered."""

    replies: list[AIMessage] = Field(default_factory=list)
    seen: list[list[BaseMessage]] = Field(default_factory=list)
    offered: list[list[str]] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Any:
        self.offered.append([t.name if isinstance(t, BaseTool) else t["name"] for t in tools])
        return self

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        self.seen.append(list(messages))
        reply = self.replies.pop(0) if self.replies else AIMessage("done")
        return ChatResult(generations=[ChatGeneration(message=reply)])


def clerk(**policies: Any) -> Role:
    return Role.model_validate(
        {
            "name": "clerk",
            "purpose": "Keeps the numbers.",
            "tools": ["document_stats"],
            "policies": policies,
        }
    )


class ExtraTool(AgentMiddleware):
    """Middleware that brings its own tool, which the clerk is not granted."""

    def __init__(self, calls: list[str]) -> None:
        super().__init__()

        def wipe_ledger() -> str:
            """Erase the ledger."""
            calls.append("wipe")
            return "wiped"

        self.tools = [StructuredTool.from_function(wipe_ledger)]


async def test_a_tool_outside_the_grant_is_refused_and_not_run() -> None:
    calls: list[str] = []
    model = ScriptedModel(
        replies=[AIMessage("", tool_calls=[{"name": "wipe_ledger", "args": {}, "id": "c1"}])]
    )
    agent = build_role_agent(clerk(), model=model, middleware=[ExtraTool(calls)])
    result = await agent.ainvoke({"messages": [HumanMessage("Clean up")]})

    refusal = next(m for m in result["messages"] if isinstance(m, ToolMessage))
    assert refusal.status == "error"
    assert refusal.content == (
        "Refused: role 'clerk' is not granted the tool 'wipe_ledger', so it was not run. "
        "Tools this role may use: document_stats."
    )
    assert calls == []
    # Only the grant is offered to the model.
    assert model.offered[0] == ["document_stats"]


async def test_token_budget_stops_the_agent() -> None:
    role = Role.model_validate(
        {
            "name": "clerk",
            "purpose": "Computes.",
            "tools": ["calculator"],
            "policies": {"token_budget": 1},
        }
    )
    agent = build_role_agent(role)
    result = await agent.ainvoke({"messages": [HumanMessage("What is 2 + 2?")]})
    ai = [m for m in result["messages"] if isinstance(m, AIMessage)]
    assert len([m for m in ai if m.usage_metadata]) == 1  # one model call, then the stop
    spent = ai[0].usage_metadata["total_tokens"] if ai[0].usage_metadata else 0
    assert ai[-1].content == (
        f"Stopped: clerk has used {spent} tokens of its 1-token budget for this run."
    )
    assert ai[-1].name == "clerk"


async def test_memory_recall_reaches_the_prompt() -> None:
    asked: list[tuple[str, str]] = []

    async def recall(*, role: str, query: str, runtime: Runtime[Any]) -> Sequence[str]:
        asked.append((role, query))
        return ["The CFO prefers tables.", "Quarter ends in March."]

    model = ScriptedModel(replies=[AIMessage("ok")])
    agent = build_role_agent(clerk(), model=model, memory=recall)
    await agent.ainvoke({"messages": [HumanMessage("Report the spend")]})

    assert asked == [("clerk", "Report the spend")]
    system = model.seen[0][0]
    assert system.type == "system"
    assert str(system.content).endswith(
        "Things you remember that may help:\n- The CFO prefers tables.\n- Quarter ends in March."
    )


async def test_the_model_comes_from_the_run_context(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    agent = build_role_agent(clerk())
    offline = await agent.ainvoke(
        {"messages": [HumanMessage("hello")]}, context={"model": "offline"}
    )
    assert offline["messages"][-1].response_metadata["model_name"] == "staffgraph-offline"
    with pytest.raises(ValueError, match="MODEL=openai:gpt-4o-mini needs OPENAI_API_KEY"):
        await agent.ainvoke(
            {"messages": [HumanMessage("hello")]}, context={"model": "openai:gpt-4o-mini"}
        )


def test_system_prompt_states_purpose_policies_and_personality() -> None:
    org = load_organization(default_roles_dir(), registry=default_registry())
    prompt = role_system_prompt(org.role("researcher"), registry=default_registry())
    lines = prompt.splitlines()
    assert lines[0] == "Role: Researcher"
    assert "Tools you may use: http_get, split_document, extract_keywords, document_stats." in lines
    assert "A human approves each call of: http_get." in lines
    assert "Only you may change: source_library." in lines
    assert "Personality: curious, sceptical, methodical. Tone: neutral and evidence-first." in lines
