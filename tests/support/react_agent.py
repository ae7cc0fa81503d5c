"""Graphs written the way LangGraph's templates write them, for parity tests against the reference.

Shaped like the ReAct agent template: a ``@dataclass(kw_only=True)`` context whose fields all
have defaults and descriptions, nodes reading ``runtime.context``, a state that is a plain
``typing.TypedDict`` (which pydantic refuses on Python 3.11), and graph factories taking
``(config, runtime: ServerRuntime[Context])`` — one of them an async context manager.

The factories record each call (what the server handed them) as one JSON line in the file named
by ``STAFFGRAPH_TEST_FACTORY_LOG`` when it is set, so a test can compare what ``langgraph dev``
and staffgraph pass.
"""

from __future__ import annotations

import contextlib
import json
import operator
import os
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field, is_dataclass
from typing import Annotated, Any, Literal, TypedDict

from langchain_core.messages import AIMessage, AnyMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph import START, StateGraph, add_messages
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from langgraph_sdk.runtime import ServerRuntime

SYSTEM_PROMPT = "You are a helpful AI assistant."


@dataclass(kw_only=True)
class Context:
    """The configurable parameters of the agent (all have defaults, as in the template)."""

    system_prompt: str = field(
        default=SYSTEM_PROMPT,
        metadata={"description": "The system prompt to use for the agent's interactions."},
    )
    model: str = field(
        default="offline/echo",
        metadata={"description": "The name of the language model, as provider/model-name."},
    )
    max_search_results: int = field(
        default=10,
        metadata={"description": "The maximum number of search results to return."},
    )


class InputState(TypedDict):
    """What a caller sends: the conversation so far."""

    messages: Annotated[Sequence[AnyMessage], add_messages]


class State(InputState, total=False):
    """The agent's full state."""

    is_last_step: bool
    steps: int


async def call_model(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
    """Answer with the model and prompt the run's context names (the template's call_model)."""
    last = state["messages"][-1]
    text = last.content if isinstance(last.content, str) else str(last.content)
    reply = (
        f"[{runtime.context.model}|{runtime.context.max_search_results}] "
        f"{runtime.context.system_prompt} {text}"
    )
    return {"messages": [AIMessage(content=reply)], "steps": state.get("steps", 0) + 1}


def route_model_output(state: State) -> Literal["__end__", "tools"]:
    """End unless the last AI message asked for tools (the template's router)."""
    last = state["messages"][-1]
    if not isinstance(last, AIMessage):
        raise ValueError(f"Expected AIMessage in output edges, but got {type(last).__name__}")
    return "tools" if last.tool_calls else "__end__"


async def tools(state: State) -> dict[str, Any]:
    """Stand-in for the template's ToolNode (this model never calls tools)."""
    return {}


def _build() -> StateGraph[State, Context, InputState, State]:
    builder = StateGraph(State, input_schema=InputState, context_schema=Context)
    builder.add_node(call_model)
    builder.add_node(tools)
    builder.add_edge(START, "call_model")
    builder.add_conditional_edges("call_model", route_model_output)
    builder.add_edge("tools", "call_model")
    return builder


react_agent = _build().compile(name="ReAct Agent")
"""The template's module-level graph: ``"react": "./react_agent.py:react_agent"``."""


def _record(event: str, config: RunnableConfig | None, runtime: Any) -> None:
    path = os.environ.get("STAFFGRAPH_TEST_FACTORY_LOG")
    if not path:
        return
    execution = getattr(runtime, "execution_runtime", None)
    context = getattr(execution, "context", None) if execution is not None else None
    entry = {
        "event": event,
        "runtime_type": type(runtime).__name__,
        "access_context": getattr(runtime, "access_context", None),
        "user": repr(getattr(runtime, "user", None)),
        "has_store": getattr(runtime, "store", None) is not None,
        "is_execution": execution is not None,
        "context": asdict(context) if is_dataclass(context) else context,
        "context_type": type(context).__name__,
        "config_is_dict": isinstance(config, dict),
        "configurable_keys": sorted((config or {}).get("configurable", {})),
    }
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps(entry, default=repr) + "\n")


def make_graph(config: RunnableConfig, runtime: ServerRuntime[Context]) -> CompiledStateGraph:
    """A graph factory taking the run's config and the server's runtime."""
    _record("call", config, runtime)
    return _build().compile(name="ReAct Agent")


@contextlib.asynccontextmanager
async def managed_graph(
    config: RunnableConfig, runtime: ServerRuntime[Context]
) -> AsyncIterator[CompiledStateGraph]:
    """An async context-manager factory: resources open while the graph is in use."""
    _record("enter", config, runtime)
    try:
        yield _build().compile(name="ReAct Agent")
    finally:
        _record("exit", config, runtime)


class Handle:
    """An object pydantic cannot describe (no schema, not a model)."""


class ToolsState(TypedDict, total=False):
    """A state with one channel pydantic cannot type: it is shown as "any", the rest typed."""

    query: str
    handle: Handle
    hits: Annotated[list[str], operator.add]


async def search(state: ToolsState) -> dict[str, Any]:
    """Record the query as a hit."""
    return {"hits": [state.get("query", "")]}


_tools_builder = StateGraph(ToolsState)
_tools_builder.add_node(search)
_tools_builder.add_edge(START, "search")
opaque = _tools_builder.compile(name="opaque")
"""A graph whose state has an inexpressible channel."""


_nested_builder = StateGraph(State, input_schema=InputState, context_schema=Context)
_nested_builder.add_node("agent", react_agent)
_nested_builder.add_edge(START, "agent")
nested = _nested_builder.compile(name="nested")
"""The template agent as a subgraph node: its messages stream with a namespace."""
