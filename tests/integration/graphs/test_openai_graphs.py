"""Every graph with ChatOpenAI, chosen per run by context, against the loopback endpoint."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from langchain_core.messages import HumanMessage, ToolMessage
from langgraph.types import Command

from graphs.chat import build_chat
from graphs.chat import graph as chat_graph
from graphs.governance import graph as governance_graph
from graphs.parallel import graph as parallel_graph
from graphs.pipeline import graph as pipeline_graph
from graphs.reflective import graph as reflective_graph
from graphs.staff import graph as staff_graph
from graphs.supervisor import graph as supervisor_graph
from state.db import Persistence
from state.roles import Organization
from tests.integration.graphs.conftest import attach, thread

if TYPE_CHECKING:
    from tests.support.openai_stub import OpenAIStub

MODEL = {"model": "openai:gpt-4o-mini"}


@pytest.fixture
def stub(openai_stub: OpenAIStub, monkeypatch: pytest.MonkeyPatch) -> OpenAIStub:
    """The deployment's OpenAI settings point at the stub; runs pick OpenAI by context."""
    openai_stub.reset()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-stub-key")
    monkeypatch.setenv("OPENAI_BASE_URL", openai_stub.base_url)
    return openai_stub


def tool_names(body: dict[str, Any]) -> list[str]:
    return [t["function"]["name"] for t in body.get("tools") or []]


async def test_supervisor_delegates_to_two_members_at_once(
    persistence: Persistence, stub: OpenAIStub
) -> None:
    stub.script_reply(
        tool_calls=[
            {"name": "transfer_to_writer", "arguments": {"task": "Draft the launch note"}},
            {
                "name": "transfer_to_finance",
                "arguments": {"task": "Price the launch", "expected_output": "one number"},
            },
            {"name": "transfer_to_ghost", "arguments": {"task": "Haunt"}},
            {"name": "transfer_to_analyst", "arguments": {"context": "no task given"}},
        ]
    )
    graph = attach(supervisor_graph, persistence)
    result = await graph.ainvoke(
        {"messages": [HumanMessage("Plan the launch")]}, thread(), context=MODEL
    )
    lead_request = stub.chat_requests()[0]
    assert lead_request["model"] == "gpt-4o-mini"
    assert tool_names(lead_request) == [
        "transfer_to_writer",
        "transfer_to_analyst",
        "transfer_to_finance",
    ]
    call = result["messages"][1]
    answers = {m.tool_call_id: m for m in result["messages"] if isinstance(m, ToolMessage)}
    # Every call is answered exactly once: two hand-backs and two refusals.
    assert set(answers) == {c["id"] for c in call.tool_calls}
    ghost = answers[call.tool_calls[2]["id"]]
    assert ghost.status == "error"
    assert ghost.content == (
        "Error: transfer_to_ghost is not a handoff of this team; use one of "
        "transfer_to_writer, transfer_to_analyst, transfer_to_finance."
    )
    no_task = answers[call.tool_calls[3]["id"]]
    assert no_task.status == "error"
    assert no_task.content.startswith("Error: invalid brief for transfer_to_analyst (task: ")
    assert {h["member"] for h in result["handoffs"]} == {"writer", "finance"}
    finance = next(h for h in result["handoffs"] if h["member"] == "finance")
    assert finance["brief"] == {
        "task": "Price the launch",
        "context": "",
        "expected_output": "one number",
    }
    assert finance["messages"][0].content == "Price the launch\n\nExpected output: one number"
    assert result["messages"][-1].content.startswith("stub reply:")


@pytest.mark.parametrize(
    "graph",
    [staff_graph, pipeline_graph, parallel_graph, reflective_graph],
    ids=["staff", "pipeline", "parallel", "reflective"],
)
async def test_graph_runs_end_to_end_on_openai(
    persistence: Persistence, stub: OpenAIStub, graph: Any
) -> None:
    request = "Summarise the launch plan"
    result = await attach(graph, persistence).ainvoke(
        {"messages": [HumanMessage(request)]}, thread(), context=MODEL
    )
    assert result["messages"][-1].type == "ai"
    assert result["messages"][-1].content
    bodies = stub.chat_requests()
    assert bodies and all(b["model"] == "gpt-4o-mini" for b in bodies)


async def test_chat_on_openai(persistence: Persistence, stub: OpenAIStub) -> None:
    result = await attach(chat_graph, persistence).ainvoke(
        {"messages": [HumanMessage("2 + 2")]}, thread(), context=MODEL
    )
    tool = next(m for m in result["messages"] if isinstance(m, ToolMessage))
    assert (tool.name, tool.content) == ("calculator", "4")
    assert result["messages"][-1].content == "stub reply: 4"


async def test_governance_on_openai(persistence: Persistence, stub: OpenAIStub) -> None:
    proposal = {
        "role": "finance",
        "attribute": "domains",
        "operation": "add",
        "value": "invoices",
        "motivation": "Finance reconciles invoices already.",
    }
    stub.script_reply(tool_calls=[{"name": "ChangeProposal", "arguments": proposal}])
    graph = attach(governance_graph, persistence)
    config = thread()
    paused = await graph.ainvoke(
        {"messages": [HumanMessage("Nobody owns invoices")]}, config, context=MODEL
    )
    assert paused["proposal"] == proposal
    done = await graph.ainvoke(
        Command(resume={"decisions": [{"type": "approve"}]}), config, context=MODEL
    )
    assert done["outcome"] == {"status": "applied", "role": "finance", "version": 1}


async def test_a_call_outside_the_grant_is_refused_not_run(
    persistence: Persistence, stub: OpenAIStub, org: Organization
) -> None:
    # The model asks for a tool the writer is not granted (and that would reach the network).
    stub.script_reply(
        tool_calls=[{"name": "http_get", "arguments": {"url": "https://example.com/"}}]
    )
    graph = attach(build_chat("writer", org=org), persistence)
    result = await graph.ainvoke({"messages": [HumanMessage("Fetch it")]}, thread(), context=MODEL)
    refusal = next(m for m in result["messages"] if isinstance(m, ToolMessage))
    assert refusal.status == "error"
    # The chat grants the read-only memory tool `recall` on top of the role's own tools.
    assert refusal.content == (
        "Refused: role 'writer' is not granted the tool 'http_get', so it was not run. Tools "
        "this role may use: document_stats, extract_keywords, recall, split_document."
    )
    # The model was only ever offered the granted tools.
    assert tool_names(stub.chat_requests()[0]) == [
        "document_stats",
        "split_document",
        "extract_keywords",
        "recall",
    ]
    assert result["messages"][-1].content.startswith("stub reply: Refused: role 'writer'")
