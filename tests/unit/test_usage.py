"""Token accounting: per run, node, role and model, from callbacks and from messages."""

from __future__ import annotations

from typing import Any

import orjson
from langchain.agents import create_agent
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import tool
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.graph.state import CompiledStateGraph

from nodes.offline import MODEL_NAME, OfflineChatModel
from state.usage import (
    ROLE_METADATA_KEY,
    UNATTRIBUTED,
    RunUsage,
    TokenCount,
    UsageCallbackHandler,
    usage_from_messages,
)


class MeteredModel(BaseChatModel):
    """A provider stand-in that reports fixed ``usage_metadata`` on every reply."""

    usage: dict[str, int]
    model: str = "gpt-4o-mini"

    @property
    def _llm_type(self) -> str:
        return "metered"

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        reply = AIMessage(
            content="done",
            usage_metadata=UsageMetadata(
                input_tokens=self.usage["input"],
                output_tokens=self.usage["output"],
                total_tokens=self.usage["input"] + self.usage["output"],
            ),
            response_metadata={"model_name": self.model},
        )
        return ChatResult(generations=[ChatGeneration(message=reply)])


def staff_graph() -> CompiledStateGraph[Any, Any, Any, Any]:
    """researcher and writer are role agents (subgraphs); critic is a plain node with a role."""
    researcher = create_agent(
        MeteredModel(usage={"input": 100, "output": 20}), tools=[], name="researcher"
    )
    writer = create_agent(
        MeteredModel(usage={"input": 40, "output": 60}, model="gpt-4o-2024-08-06"),
        tools=[],
        name="writer",
    )
    critic_model = MeteredModel(usage={"input": 5, "output": 1})

    async def critic(state: MessagesState) -> dict[str, Any]:
        return {"messages": [await critic_model.ainvoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("researcher", researcher)
    builder.add_node("writer", writer)
    builder.add_node("critic", critic, metadata={ROLE_METADATA_KEY: "critic"})
    builder.add_edge(START, "researcher")
    builder.add_edge("researcher", "writer")
    builder.add_edge("writer", "critic")
    builder.add_edge("critic", END)
    return builder.compile(name="staff")


async def test_handler_sums_known_usage_per_role_node_and_model() -> None:
    handler = UsageCallbackHandler()
    await staff_graph().ainvoke({"messages": [HumanMessage("report")]}, {"callbacks": [handler]})
    usage = handler.usage

    assert usage.total == TokenCount(
        input_tokens=145, output_tokens=81, total_tokens=226, calls=3, estimated_calls=0
    )
    assert {role: c.total_tokens for role, c in usage.by_role().items()} == {
        "critic": 6,
        "researcher": 120,
        "writer": 100,
    }
    assert {node: c.calls for node, c in usage.by_node().items()} == {
        "critic": 1,
        "researcher/model": 1,
        "writer/model": 1,
    }
    assert usage.by_model()["gpt-4o-mini"].input_tokens == 105
    assert usage.by_model()["gpt-4o-2024-08-06"].output_tokens == 60
    assert not usage.total.estimated


async def test_role_key_wins_over_agent_name() -> None:
    agent = create_agent(MeteredModel(usage={"input": 3, "output": 4}), tools=[], name="agent")
    handler = UsageCallbackHandler()
    await agent.with_config(metadata={ROLE_METADATA_KEY: "analyst"}).ainvoke(
        {"messages": [HumanMessage("go")]}, {"callbacks": [handler]}
    )
    assert list(handler.usage.by_role()) == ["analyst"]


async def test_streamed_run_counts_the_same_as_invoked() -> None:
    graph = staff_graph()
    invoked, streamed = UsageCallbackHandler(), UsageCallbackHandler()
    await graph.ainvoke({"messages": [HumanMessage("x")]}, {"callbacks": [invoked]})
    async for _ in graph.astream(
        {"messages": [HumanMessage("x")]}, {"callbacks": [streamed]}, stream_mode="messages"
    ):
        pass
    assert streamed.usage == invoked.usage


@tool
def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression such as 2+2."""
    return "4"


async def test_offline_model_usage_is_marked_estimate_and_matches_messages() -> None:
    agent = create_agent(OfflineChatModel(), tools=[calculator], name="accountant")
    handler = UsageCallbackHandler()
    result = await agent.ainvoke(
        {"messages": [HumanMessage("calculate 2+2")]}, {"callbacks": [handler]}
    )
    usage = handler.usage
    assert usage.total.calls == 2  # the tool call, then the answer
    assert usage.total.estimated and usage.total.estimated_calls == 2
    assert list(usage.by_model()) == [MODEL_NAME]
    # The budget guard reads state, not callbacks: both must give the same numbers per role.
    from_state = usage_from_messages(result["messages"])
    assert (
        from_state.tokens_by_role()
        == usage.tokens_by_role()
        == {"accountant": usage.total.total_tokens}
    )
    assert from_state.total.estimated


def test_usage_from_messages_counts_each_message_once_and_skips_others() -> None:
    reply = AIMessage(
        content="a",
        id="m1",
        name="writer",
        usage_metadata=UsageMetadata(input_tokens=10, output_tokens=2, total_tokens=12),
        response_metadata={"model_name": "gpt-4o-mini"},
    )
    anonymous = AIMessage(
        content="b", usage_metadata=UsageMetadata(input_tokens=1, output_tokens=1, total_tokens=2)
    )
    usage = usage_from_messages([HumanMessage("q"), reply, reply, anonymous, AIMessage("no usage")])
    assert usage.tokens_by_role() == {UNATTRIBUTED: 2, "writer": 12}
    assert usage.total.calls == 2
    assert usage_from_messages([]).total == TokenCount()


def test_json_round_trip_and_merge_per_assistant() -> None:
    first = RunUsage()
    first.add_call(input_tokens=10, output_tokens=5, node="a", role="researcher", model="m")
    first.add_call(
        input_tokens=1, output_tokens=1, node="b", role="writer", model="m", estimated=True
    )
    second = RunUsage()
    second.add_call(input_tokens=4, output_tokens=4, node="a", role="researcher", model="m")

    stored = orjson.loads(orjson.dumps(first.to_dict()))
    assert stored["total_tokens"] == 17 and stored["estimated"] is True
    assert stored["by_role"]["researcher"]["estimated"] is False
    assert RunUsage.from_dict(stored) == first

    summed = RunUsage.sum([first, RunUsage.from_dict(second.to_dict())])
    assert summed == first.merge(second)
    assert summed.by_role()["researcher"] == TokenCount(
        input_tokens=14, output_tokens=9, total_tokens=23, calls=2
    )
    assert summed.total.estimated_calls == 1
    assert RunUsage.from_dict({}) == RunUsage() and not RunUsage.from_dict(None)


def test_from_dict_bounds_hostile_input() -> None:
    hostile = {
        "entries": [
            {"node": "n" * 10_000, "role": f"r{i}", "model": 7, "input_tokens": -5, "calls": 1}
            for i in range(5_000)
        ]
        + ["junk", {"input_tokens": float("nan"), "output_tokens": 10**30, "calls": True}]
    }
    usage = RunUsage.from_dict(hostile)
    assert len(usage) <= 513  # the bound plus the shared overflow bucket
    assert max(len(key.node) for key in usage.entries) <= 128
    assert usage.total.input_tokens == 0
    assert usage.total.output_tokens <= 10**15
    assert {key.model for key in usage.entries} <= {UNATTRIBUTED, "other"}


def test_usage_bounds_distinct_entries() -> None:
    usage = RunUsage()
    for i in range(2_000):
        usage.add_call(input_tokens=1, output_tokens=0, role=f"role-{i}")
    assert len(usage) <= 513
    assert usage.total.input_tokens == 2_000
