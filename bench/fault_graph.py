"""The graph the fault bench and the fault tests run: five steps, each with side effects.

Every step sleeps, then makes two side effects that append a line ``<thread> <step>`` to a file
in ``$FAULT_EFFECTS_DIR``: one plain (``plain.log``: what a node without the ledger does) and
one through a ``write`` tool called with the effect ledger (``ledgered.log``). A step executed
again after a fault repeats the plain effect; the ledgered one must appear once per step.
"""

from __future__ import annotations

import asyncio
import operator
import os
from pathlib import Path
from typing import Annotated, Any

from langchain_core.tools import tool
from langgraph.config import get_config
from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

from nodes.effects import call_once

STEPS = ("s1", "s2", "s3", "s4", "s5")


class FaultState(TypedDict, total=False):
    """How long each step works, and the steps done."""

    step_seconds: float
    done: Annotated[list[str], operator.add]


def _append(name: str, line: str) -> None:
    # One small write with O_APPEND: lines from concurrent processes never interleave.
    path = Path(os.environ["FAULT_EFFECTS_DIR"]) / name
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


@tool
def record_effect(label: str) -> str:
    """Record that ``label`` happened (a side effect outside the graph's state)."""
    _append("ledgered.log", label)
    return f"recorded {label}"


record_effect.metadata = {"risk": "write"}


def _step(name: str) -> Any:
    async def step(state: FaultState) -> dict[str, Any]:
        half = float(state.get("step_seconds", 0.2)) / 2
        await asyncio.sleep(half)
        label = f"{get_config()['configurable']['thread_id']} {name}"
        _append("plain.log", label)
        await call_once(
            record_effect, {"name": "record_effect", "args": {"label": label}, "id": name}
        )
        await asyncio.sleep(half)
        return {"done": [name]}

    step.__name__ = name
    return step


builder = StateGraph(FaultState)
previous = START
for _name in STEPS:
    builder.add_node(_name, _step(_name))
    builder.add_edge(previous, _name)
    previous = _name
builder.add_edge(previous, END)
graph = builder.compile(name="faulty")
