"""Small graphs for server tests, shaped like those the reference transcript was captured with."""

from __future__ import annotations

import asyncio
import operator
import time
from dataclasses import dataclass, field
from typing import Annotated, Any

from langchain_core.messages import AIMessage, AnyMessage
from langchain_core.runnables import RunnableConfig
from langgraph.config import get_config, get_stream_writer
from langgraph.graph import END, START, StateGraph, add_messages
from langgraph.runtime import Runtime
from langgraph.types import interrupt
from typing_extensions import TypedDict

from nodes.offline import OfflineChatModel


class MessagesState(TypedDict, total=False):
    """Chat transcript plus a counter."""

    messages: Annotated[list[AnyMessage], add_messages]
    count: int
    turns: int


async def echo(state: MessagesState) -> dict[str, Any]:
    """Reply with the last message's text."""
    last = state["messages"][-1]
    return {"messages": [AIMessage(content=f"echo: {last.content}")]}


async def count(state: MessagesState) -> dict[str, Any]:
    """Count messages seen."""
    return {"count": state.get("count", 0) + 1}


simple_builder = StateGraph(MessagesState)
simple_builder.add_node("a", echo)
simple_builder.add_node("b", count)
simple_builder.add_edge(START, "a")
simple_builder.add_edge("a", "b")
simple_builder.add_edge("b", END)
simple = simple_builder.compile(name="simple")


_chat_model = OfflineChatModel()


async def chat_node(state: MessagesState) -> dict[str, Any]:
    """Stream a reply from the offline model and report progress on the custom stream."""
    get_stream_writer()({"progress": "calling model"})
    reply = await _chat_model.ainvoke(state["messages"])
    return {"messages": [reply]}


async def count_turns(state: MessagesState) -> dict[str, Any]:
    """Count conversation turns."""
    return {"turns": state.get("turns", 0) + 1}


chat_builder = StateGraph(MessagesState)
chat_builder.add_node("chat", chat_node)
chat_builder.add_node("count", count_turns)
chat_builder.add_edge(START, "chat")
chat_builder.add_edge("chat", "count")
chat_builder.add_edge("count", END)
chat = chat_builder.compile(name="chat")


class HitlState(TypedDict, total=False):
    """A proposal that a human reviews before it is acted on."""

    proposal: str
    approved: bool
    log: Annotated[list[str], operator.add]


async def propose(state: HitlState) -> dict[str, Any]:
    """Propose an action."""
    return {"proposal": state.get("proposal") or "send the report", "log": ["proposed"]}


async def review(state: HitlState) -> dict[str, Any]:
    """Ask a human whether to go ahead."""
    answer = interrupt({"question": "approve?", "proposal": state["proposal"]})
    approved = bool(answer.get("approve")) if isinstance(answer, dict) else bool(answer)
    return {"approved": approved, "log": ["reviewed"]}


async def act(state: HitlState) -> dict[str, Any]:
    """Act on the decision."""
    return {"log": ["acted" if state.get("approved") else "skipped"]}


hitl_builder = StateGraph(HitlState)
hitl_builder.add_node("propose", propose)
hitl_builder.add_node("review", review)
hitl_builder.add_node("act", act)
hitl_builder.add_edge(START, "propose")
hitl_builder.add_edge("propose", "review")
hitl_builder.add_edge("review", "act")
hitl_builder.add_edge("act", END)
hitl = hitl_builder.compile(name="hitl")


class FailState(TypedDict, total=False):
    """A value the failing node sees."""

    x: int


async def fail(state: FailState) -> dict[str, Any]:
    """Always raise."""
    raise ValueError("intentional failure for testing")


failing_builder = StateGraph(FailState)
failing_builder.add_node("fail", fail)
failing_builder.add_edge(START, "fail")
failing_builder.add_edge("fail", END)
failing = failing_builder.compile(name="failing")


class NoteState(TypedDict, total=False):
    """A note the graph writes; ``nul`` asks for one Postgres's jsonb cannot hold."""

    nul: bool
    note: str


async def write_note(state: NoteState) -> dict[str, Any]:
    """Write the note, with a NUL character in it when the input asks for one."""
    return {"note": "before\x00after" if state.get("nul") else "plain"}


notes_builder = StateGraph(NoteState)
notes_builder.add_node("write", write_note)
notes_builder.add_edge(START, "write")
notes_builder.add_edge("write", END)
notes = notes_builder.compile(name="notes")


class LogState(TypedDict, total=False):
    """A log the parent and the subgraph append to."""

    log: Annotated[list[str], operator.add]


async def sub_step(state: LogState) -> dict[str, Any]:
    """Write to the custom stream from inside a subgraph."""
    get_stream_writer()({"sub": "hello from subgraph"})
    return {"log": ["sub ran"]}


child_builder = StateGraph(LogState)
child_builder.add_node("sub_step", sub_step)
child_builder.add_edge(START, "sub_step")
child_builder.add_edge("sub_step", END)
child = child_builder.compile(name="child")


async def first(state: LogState) -> dict[str, Any]:
    """Parent's own step."""
    return {"log": ["parent first"]}


parent_builder = StateGraph(LogState)
parent_builder.add_node("first", first)
parent_builder.add_node("child", child)
parent_builder.add_edge(START, "first")
parent_builder.add_edge("first", "child")
parent_builder.add_edge("child", END)
parent = parent_builder.compile(name="parent")


class NapState(TypedDict, total=False):
    """How long the node works, and what it did."""

    seconds: float
    log: Annotated[list[str], operator.add]


async def nap(state: NapState) -> dict[str, Any]:
    """Work for ``seconds`` (capped at a minute): long enough to be cancelled or queued behind."""
    await asyncio.sleep(min(float(state.get("seconds", 0.0)), 60.0))
    return {"log": [f"slept {state.get('seconds', 0.0)}"]}


async def after_nap(state: NapState) -> dict[str, Any]:
    """A second step, so a cancelled run leaves a checkpoint behind the first."""
    return {"log": ["done"]}


slow_builder = StateGraph(NapState)
slow_builder.add_node("nap", nap)
slow_builder.add_node("after_nap", after_nap)
slow_builder.add_edge(START, "nap")
slow_builder.add_edge("nap", "after_nap")
slow_builder.add_edge("after_nap", END)
slow = slow_builder.compile(name="slow")


@dataclass(kw_only=True)
class GreetContext:
    """Per-run settings of the greeter."""

    greeting: str = field(default="hello", metadata={"description": "Word to greet with."})


class GreetState(TypedDict, total=False):
    """Who to greet and what was said."""

    name: str
    said: str
    tagged: str


async def greet(state: GreetState, runtime: Runtime[GreetContext]) -> dict[str, Any]:
    """Greet with the run's context, and report the run's config metadata and tags."""
    config = get_config()
    return {
        "said": f"{runtime.context.greeting} {state.get('name', 'world')}",
        "tagged": ",".join(sorted(config.get("tags", [])))
        + "|"
        + str(config.get("metadata", {}).get("purpose", "")),
    }


def make_slow_to_build(config: RunnableConfig) -> Any:
    """A graph factory that blocks for ``configurable.build_seconds`` before returning ``simple``,
    as one that compiles a large graph or loads its tools synchronously would."""
    time.sleep(float((config.get("configurable") or {}).get("build_seconds") or 0))
    return simple


def make_greeter(config: RunnableConfig) -> Any:
    """A graph factory: the server builds this graph per run from the run's config."""
    builder = StateGraph(GreetState, context_schema=GreetContext)
    builder.add_node("greet", greet)
    builder.add_edge(START, "greet")
    builder.add_edge("greet", END)
    return builder.compile(name="greeter")
