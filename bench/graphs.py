"""The trivial graph both servers run in the benchmark: one node, one state key."""

from __future__ import annotations

from typing import Any

from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict


class State(TypedDict, total=False):
    """A counter."""

    n: int


async def bump(state: State) -> dict[str, Any]:
    """Add one."""
    return {"n": state.get("n", 0) + 1}


builder = StateGraph(State)
builder.add_node("bump", bump)
builder.add_edge(START, "bump")
builder.add_edge("bump", END)
graph = builder.compile(name="trivial")
