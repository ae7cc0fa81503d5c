"""A graph whose node swallows the first cancellation it gets, as some libraries do."""

from __future__ import annotations

import asyncio
import operator
from typing import Annotated, Any

from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict


class StubbornState(TypedDict, total=False):
    """How long the node works, and what it did."""

    seconds: float
    log: Annotated[list[str], operator.add]


async def work(state: StubbornState) -> dict[str, Any]:
    """Work for ``seconds``; a cancellation on the way is caught and the work goes on."""
    seconds = min(float(state.get("seconds", 0.0)), 60.0)
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        await asyncio.sleep(seconds)
        return {"log": ["swallowed a cancel"]}
    return {"log": ["done"]}


builder = StateGraph(StubbornState)
builder.add_node("work", work)
builder.add_edge(START, "work")
builder.add_edge("work", END)
graph = builder.compile(name="stubborn")
