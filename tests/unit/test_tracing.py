"""LangSmith tracing against a local collector: the trace tree, metadata, errors, outages."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from langchain_core.runnables.config import merge_configs
from langchain_core.tools import tool
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.prebuilt import ToolNode, tools_condition
from langsmith import utils as ls_utils

from bench.langsmith_collector import LangSmithCollector, TraceNode
from nodes.offline import OfflineChatModel
from server.observability.tracing import (
    PROJECT_KEY,
    LangSmithTracing,
    flush_traces,
    resolve_project,
    run_tracing_config,
    tracing_enabled,
)
from state.settings import TracingSettings, load_settings
from state.usage import ROLE_METADATA_KEY, UsageCallbackHandler

# A run that is not slowed by tracing finishes in well under this; a client that waited on a
# dead collector (3 attempts of a 3 s connect, a 10 s read) would not.
# Generous: the stalled collector never answers, so an unbounded run or flush would hang
# forever; these only need to be finite and far above a normal run on a loaded machine.
RUN_BOUND = 20.0
FLUSH_TIMEOUT = 0.5


@tool
def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression such as 2+2."""
    return "4"


def calculator_graph() -> CompiledStateGraph[Any, Any, Any, Any]:
    model = OfflineChatModel().bind_tools([calculator])

    async def agent(state: MessagesState) -> dict[str, Any]:
        return {"messages": [await model.ainvoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("agent", agent, metadata={ROLE_METADATA_KEY: "accountant"})
    builder.add_node("tools", ToolNode([calculator]))
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", tools_condition)
    builder.add_edge("tools", "agent")
    return builder.compile(name="calculator")


def failing_graph() -> CompiledStateGraph[Any, Any, Any, Any]:
    async def prepare(state: MessagesState) -> dict[str, Any]:
        return {}

    async def explode(state: MessagesState) -> dict[str, Any]:
        raise ValueError("the ledger does not balance")

    builder = StateGraph(MessagesState)
    builder.add_node("prepare", prepare)
    builder.add_node("explode", explode)
    builder.add_edge(START, "prepare")
    builder.add_edge("prepare", "explode")
    builder.add_edge("explode", END)
    return builder.compile(name="failing")


def tracing_from_env(
    collector: LangSmithCollector, monkeypatch: pytest.MonkeyPatch
) -> LangSmithTracing:
    """Configure tracing the way a deployment does: LANGSMITH_* variables."""
    monkeypatch.setenv("LANGSMITH_TRACING", "true")
    monkeypatch.setenv("LANGSMITH_ENDPOINT", collector.url)
    monkeypatch.setenv("LANGSMITH_API_KEY", "test")
    monkeypatch.setenv("LANGSMITH_PROJECT", "staffgraph-tests")
    settings = load_settings()
    assert tracing_enabled(settings)
    tracing = LangSmithTracing.from_settings(settings)
    assert tracing is not None
    return tracing


@pytest.fixture(autouse=True)
def fresh_langsmith_env() -> Iterator[None]:
    """langsmith caches the LANGSMITH_* variables it reads; keep ours from leaking."""
    ls_utils.get_env_var.cache_clear()  # type: ignore[attr-defined]
    yield
    ls_utils.get_env_var.cache_clear()  # type: ignore[attr-defined]


@pytest.fixture
def collector() -> Iterator[LangSmithCollector]:
    with LangSmithCollector() as running:
        yield running


def ids(**extra: str) -> dict[str, Any]:
    return {
        "run_id": str(uuid.uuid4()),
        "thread_id": str(uuid.uuid4()),
        "assistant_id": str(uuid.uuid4()),
        **extra,
    }


def roots_for(collector: LangSmithCollector, run_id: str) -> list[TraceNode]:
    return [root for root in collector.tree() if root.metadata.get("run_id") == run_id]


def root_done(run_id: str) -> Any:
    """Predicate: the run's root span arrived with its end time."""

    def check(c: LangSmithCollector) -> bool:
        return any(root.run.get("end_time") for root in roots_for(c, run_id))

    return check


async def test_one_root_per_run_with_metadata_and_children(
    collector: LangSmithCollector, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracing = tracing_from_env(collector, monkeypatch)
    run = ids(user_id="ada@example.com")
    pieces = run_tracing_config(
        tracing,
        graph_id="calculator",
        assistant_name="Bookkeeper",
        **run,
    )
    # langsmith turns compression on from its background thread once /info has answered;
    # spans posted before that go uncompressed (the first test of a session could lose it).
    deadline = time.monotonic() + 10  # langsmith offers no event for it: poll
    while tracing.client.compressed_traces is None and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert tracing.client.compressed_traces is not None
    usage = UsageCallbackHandler()
    result = await calculator_graph().ainvoke(
        {"messages": [HumanMessage("calculate 2+2")]},
        merge_configs(pieces, {"callbacks": [usage]}),
    )
    assert result["messages"][-1].content
    assert await tracing.aflush(10)
    assert collector.wait_for(root_done(run["run_id"]), timeout=10)

    (root,) = roots_for(collector, run["run_id"])
    assert root.name == "Bookkeeper"
    assert root.run_type == "chain"
    assert root.run["session_name"] == "staffgraph-tests"
    expected = {**run, "graph_id": "calculator"}
    assert {k: root.metadata.get(k) for k in expected} == expected
    assert [child.name for child in root.children] == ["agent", "tools", "agent"], root.outline()
    agent, tools, _ = root.children
    (model_span,) = [c for c in agent.children if c.run_type == "llm"]
    assert model_span.name == "OfflineChatModel"
    assert model_span.metadata[ROLE_METADATA_KEY] == "accountant"
    assert model_span.metadata["run_id"] == run["run_id"]  # ids ride on every span
    (tool_span,) = [c for c in tools.children if c.run_type == "tool"]
    assert tool_span.name == "calculator"
    assert tool_span.run["outputs"]
    assert all(node.error is None for node in root.walk())
    assert ("GET", "/info") in collector.requests
    assert "zstd" in collector.content_encodings  # the client compresses when /info allows
    assert collector.unhandled == []
    assert usage.usage.by_role()["accountant"].calls == 2


async def test_failing_node_records_the_error_on_its_span(
    collector: LangSmithCollector, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracing = tracing_from_env(collector, monkeypatch)
    run = ids()
    pieces = run_tracing_config(tracing, graph_id="failing", **run)
    with pytest.raises(ValueError, match="does not balance"):
        await failing_graph().ainvoke({"messages": [HumanMessage("go")]}, pieces)
    assert await tracing.aflush(10)
    assert collector.wait_for(root_done(run["run_id"]), timeout=10)

    (root,) = roots_for(collector, run["run_id"])
    assert root.name == "failing"  # no assistant name: the graph id
    prepare, explode = root.children
    assert prepare.name == "prepare" and prepare.error is None
    assert explode.name == "explode"
    assert explode.error and "the ledger does not balance" in explode.error
    assert root.error and "ValueError" in root.error


async def test_batch_endpoint_and_project_override(monkeypatch: pytest.MonkeyPatch) -> None:
    # A LangSmith that disables multipart makes the client use /runs/batch.
    with LangSmithCollector(multipart=False, compression=False) as collector:
        tracing = tracing_from_env(collector, monkeypatch)
        run = ids()
        assistant_config = {"configurable": {PROJECT_KEY: "team-finance"}}
        pieces = run_tracing_config(tracing, graph_id="calculator", config=assistant_config, **run)
        await calculator_graph().ainvoke({"messages": [HumanMessage("calculate 1+1")]}, pieces)
        assert await tracing.aflush(10)
        assert collector.wait_for(root_done(run["run_id"]), timeout=10)

        (root,) = roots_for(collector, run["run_id"])
        assert {node.run["session_name"] for node in root.walk()} == {"team-finance"}
        assert {c.name for c in root.children} == {"agent", "tools"}
        assert ("POST", "/runs/batch") in collector.requests
        assert ("POST", "/runs/multipart") not in collector.requests


async def test_runs_succeed_quickly_while_langsmith_is_down(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    collector = LangSmithCollector().start()
    tracing = tracing_from_env(collector, monkeypatch)
    collector.stop()  # every connection is now refused
    graph = calculator_graph()
    for _ in range(3):
        pieces = run_tracing_config(tracing, graph_id="calculator", **ids())
        result = await asyncio.wait_for(
            graph.ainvoke({"messages": [HumanMessage("calculate 3*3")]}, pieces), RUN_BOUND
        )
        assert result["messages"][-1].content
    start = time.monotonic()
    flush_traces(FLUSH_TIMEOUT, tracing=tracing)
    assert time.monotonic() - start < FLUSH_TIMEOUT + 5.0


async def test_runs_succeed_quickly_while_langsmith_hangs(
    collector: LangSmithCollector, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracing = tracing_from_env(collector, monkeypatch)
    collector.stall()  # requests are accepted and never answered
    graph = calculator_graph()
    for _ in range(3):
        pieces = run_tracing_config(tracing, graph_id="calculator", **ids())
        await asyncio.wait_for(
            graph.ainvoke({"messages": [HumanMessage("calculate 3*3")]}, pieces), RUN_BOUND
        )
    start = time.monotonic()
    assert await tracing.aflush(FLUSH_TIMEOUT) is False  # gave up instead of waiting
    assert time.monotonic() - start < FLUSH_TIMEOUT + 5.0


def test_config_without_tracing_still_names_the_run() -> None:
    pieces = run_tracing_config(
        None, graph_id="supervisor", run_id="r1", thread_id="t1", assistant_name="Front desk"
    )
    assert pieces == {
        "run_name": "Front desk",
        "metadata": {"graph_id": "supervisor", "run_id": "r1", "thread_id": "t1"},
        "tags": [],
    }
    assert not tracing_enabled(TracingSettings(tracing=False))
    assert LangSmithTracing.from_settings(TracingSettings(tracing=False)) is None


def test_project_precedence() -> None:
    tracing = LangSmithTracing.from_settings(
        TracingSettings(tracing=True, endpoint="http://127.0.0.1:9", project="default-project")
    )
    config = {
        "configurable": {PROJECT_KEY: "per-request"},
        "metadata": {PROJECT_KEY: "from-metadata"},
    }
    assert resolve_project(tracing, project="explicit", config=config) == "explicit"
    assert resolve_project(tracing, config=config) == "per-request"
    assert resolve_project(tracing, config={"metadata": config["metadata"]}) == "from-metadata"
    assert (
        resolve_project(tracing, config={"configurable": {PROJECT_KEY: "  "}}) == "default-project"
    )
    assert resolve_project(None) is None
