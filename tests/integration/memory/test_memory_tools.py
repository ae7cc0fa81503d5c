"""The remember / recall / forget tools and the agent middleware, in graph runs."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode

from nodes.agent import build_role_agent
from nodes.memory import (
    RememberEpisodeMiddleware,
    StoreRecall,
    memory_recall_middleware,
    memory_tools,
    register_memory_tools,
)
from nodes.offline import OfflineChatModel
from state.db import Persistence
from state.memory import MemoryKind, MemoryScope, MemoryStore, Provenance
from state.roles import Organization
from tests.integration.memory.conftest import FINANCE, WRITER, Context
from tools import ToolRegistry, ToolRisk, default_registry

ORG = Organization(roles=(WRITER, FINANCE))


def _tool_graph(persistence: Persistence) -> Any:
    builder = StateGraph(MessagesState, context_schema=Context)
    builder.add_node("tools", ToolNode(memory_tools(organization=ORG)))
    builder.add_edge(START, "tools")
    return builder.compile(checkpointer=persistence.checkpointer, store=persistence.store)


async def _call(
    graph: Any, name: str, args: dict[str, Any], *, user: str | None, role: str = "writer"
) -> str:
    """Run one tool call as ``role`` for ``user``; return the tool's answer."""
    call = {"name": name, "args": args, "id": f"call-{uuid4().hex[:8]}", "type": "tool_call"}
    values = await graph.ainvoke(
        {"messages": [AIMessage("", tool_calls=[call])]},
        config={
            "configurable": {"thread_id": f"tools-{uuid4().hex[:8]}"},
            "metadata": {"lc_agent_name": role},
            "run_id": str(uuid4()),
        },
        context=Context(user_id=user),
    )
    reply = values["messages"][-1]
    assert isinstance(reply, ToolMessage)
    return str(reply.content)


def test_tools_declare_risks_and_register() -> None:
    registry = default_registry()
    registered = register_memory_tools(registry, organization=ORG)
    assert [t.name for t in registered] == ["remember", "recall", "forget"]
    assert registry.risk_of("recall") is ToolRisk.READ
    assert registry.risk_of("remember") is ToolRisk.WRITE
    assert registry.risk_of("forget") is ToolRisk.WRITE
    assert {t.name: t.metadata for t in memory_tools()} == {
        "remember": {"risk": "write"},
        "recall": {"risk": "read"},
        "forget": {"risk": "write"},
    }
    # the injected runtime is not part of what the model sees
    schema = memory_tools()[0].tool_call_schema.model_json_schema()
    assert set(schema["properties"]) == {"text", "kind", "rule"}
    assert len(ToolRegistry(memory_tools())) == 3


async def test_remember_recall_forget_through_tool_calls(persistence: Persistence) -> None:
    graph = _tool_graph(persistence)
    created = await _call(
        graph, "remember", {"text": "The user's team ships releases on Thursdays."}, user="alice"
    )
    assert created.startswith("Remembered a new fact (ref user/writer/semantic/fact-")
    ref = created.split("ref ", 1)[1].rstrip(").")

    same = await _call(
        graph, "remember", {"text": "The user's team ships releases on Thursdays."}, user="alice"
    )
    assert same == f"Already remembered; renewed it (ref {ref})."

    recalled = await _call(graph, "recall", {"query": "When are releases shipped?"}, user="alice")
    assert "The user's team ships releases on Thursdays." in recalled
    assert f"ref {ref}" in recalled and "by writer (tool), for user alice" in recalled

    # bob sees nothing of alice's, and cannot forget it by ref (refs never name a user)
    assert await _call(graph, "recall", {"query": "releases Thursdays"}, user="bob") == (
        "No memories found."
    )
    assert await _call(graph, "forget", {"ref": ref}, user="bob") == f"No memory {ref} to forget."
    # finance cannot reach into the writer's area
    refused = await _call(graph, "forget", {"ref": ref}, user="alice", role="finance")
    assert "may only use its own memory area" in refused

    assert await _call(graph, "forget", {"ref": ref}, user="alice") == f"Forgot {ref}."
    assert await _call(graph, "recall", {"query": "releases Thursdays"}, user="alice") == (
        "No memories found."
    )


async def test_remember_instruction_is_a_pending_proposal(persistence: Persistence) -> None:
    graph = _tool_graph(persistence)
    answer = await _call(
        graph,
        "remember",
        {
            "text": "Open every email with the reader's name.",
            "kind": "instruction",
            "rule": "greet",
        },
        user="alice",
    )
    assert answer == (
        "Proposed instruction greet v1 (ref org/writer/procedural/greet-v1). It is pending "
        "approval and is not used until approved."
    )
    assert "Open every email" not in await _call(
        graph, "recall", {"query": "email reader name"}, user="alice"
    )
    # organisation memories cannot be forgotten from a tool
    refused = await _call(graph, "forget", {"ref": "org/writer/procedural/greet-v1"}, user="alice")
    assert "cannot be forgotten by an agent" in refused


async def test_tool_errors_come_back_to_the_model(persistence: Persistence) -> None:
    graph = _tool_graph(persistence)
    assert "is not a memory reference" in await _call(
        graph, "forget", {"ref": "../../etc/passwd"}, user="alice"
    )
    too_long = await _call(graph, "remember", {"text": "x" * 2_001}, user="alice")
    assert "at most 2000 characters" in too_long
    anonymous = await _call(graph, "remember", {"text": "The sky is green."}, user=None)
    assert anonymous == "Not remembered: no user is identified for this conversation."


class _SeenPrompts(AgentMiddleware):
    """Records the system prompt of every model call (an observer, not a replacement)."""

    def __init__(self) -> None:
        super().__init__()
        self.prompts: list[str] = []

    async def awrap_model_call(self, request: ModelRequest, handler: Any) -> ModelResponse:
        self.prompts.append(str(request.system_message.content if request.system_message else ""))
        return await handler(request)


async def test_role_agent_recalls_through_middleware_and_remembers_episodes(
    persistence: Persistence,
) -> None:
    memory = MemoryStore(persistence.store)
    alice = MemoryScope(role="writer", user_id="alice", domains=WRITER.domains)
    await memory.write_fact(
        alice,
        "The brand voice is calm and avoids exclamation marks.",
        provenance=Provenance(recorded_by="writer", run_id="run-earlier"),
        area="brand",
    )
    await memory.write_fact(
        MemoryScope(role="writer", user_id="bob"),
        "Bob's brand voice is loud and full of exclamation marks.",
        provenance=Provenance(recorded_by="writer"),
    )
    seen = _SeenPrompts()
    agent = build_role_agent(
        WRITER,
        model=OfflineChatModel(),
        memory=StoreRecall(organization=ORG),
        middleware=[seen, RememberEpisodeMiddleware(WRITER)],
        context_schema=Context,
        checkpointer=persistence.checkpointer,
        store=persistence.store,
    )
    run_id = str(uuid4())
    await agent.ainvoke(
        {
            "messages": [
                HumanMessage(
                    "Draft a product announcement in the brand voice, avoiding exclamation marks."
                )
            ]
        },
        config={"configurable": {"thread_id": "agent-thread"}, "run_id": run_id},
        context=Context(user_id="alice"),
    )
    (prompt,) = seen.prompts
    assert "[fact] The brand voice is calm and avoids exclamation marks." in prompt
    assert "run run-earlier" in prompt and "ref user/brand/semantic/" in prompt
    assert "Bob" not in prompt

    (episode,) = await memory.recall(alice, "product announcement", kinds=[MemoryKind.EPISODIC])
    assert episode.key == f"run-{run_id}"
    assert (
        episode.value["task"]
        == "Draft a product announcement in the brand voice, avoiding exclamation marks."
    )
    assert episode.provenance.thread_id == "agent-thread"


async def test_memory_recall_middleware_factory(persistence: Persistence) -> None:
    memory = MemoryStore(persistence.store)
    await memory.write_fact(
        MemoryScope(role="finance", user_id="alice", domains=FINANCE.domains),
        "Travel above 2,000 euros needs the CFO's approval.",
        provenance=Provenance(recorded_by="finance"),
        area="budget",
    )
    seen = _SeenPrompts()
    agent = build_role_agent(
        FINANCE,
        model=OfflineChatModel(),
        middleware=[memory_recall_middleware(FINANCE, k=2), seen],
        context_schema=Context,
        store=persistence.store,
    )
    await agent.ainvoke(
        {"messages": [HumanMessage("Who approves travel above 2,000 euros?")]},
        context=Context(user_id="alice"),
    )
    assert "needs the CFO's approval" in seen.prompts[0]
