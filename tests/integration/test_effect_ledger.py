"""The effect ledger and the lease fence on a real Postgres, with real LangGraph task ids."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Annotated, Any

import pytest
from langchain_core.messages import ToolMessage
from langchain_core.tools import InjectedToolCallId, tool
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command
from typing_extensions import TypedDict

from nodes.effects import call_once
from state.db import Persistence
from state.effects import CURRENT_LEDGER, EffectKey, EffectLedger, EffectUnknown
from state.fencing import RUN_FENCE, LeaseLost, RunFence


async def _thread(persistence: Persistence) -> str:
    thread_id = str(uuid.uuid4())
    async with persistence.pool.connection() as conn:
        await conn.execute("INSERT INTO threads (thread_id) VALUES (%s)", (thread_id,))
    return thread_id


async def _running_run(persistence: Persistence, thread_id: str, *, token: int) -> str:
    run_id = str(uuid.uuid4())
    async with persistence.pool.connection() as conn:
        await conn.execute(
            "INSERT INTO runs (run_id, thread_id, assistant_id, status, fencing_token) "
            "VALUES (%s, %s, %s, 'running', %s)",
            (run_id, thread_id, str(uuid.uuid4()), token),
        )
    return run_id


def _key(thread_id: str, call: str = "call-1") -> EffectKey:
    return EffectKey(thread_id, "", "task-1", call)


async def test_a_call_is_made_once_and_its_result_replayed(persistence: Persistence) -> None:
    ledger = EffectLedger(persistence.pool)
    key = _key(await _thread(persistence))
    calls: list[int] = []

    async def act() -> Any:
        calls.append(1)
        return {"sent": len(calls)}

    first = await ledger.once(key, act, tool_name="send")
    again = await ledger.once(key, act, tool_name="send")
    assert first == again == {"sent": 1}
    assert calls == [1]


async def test_concurrent_executions_of_one_call_act_once(persistence: Persistence) -> None:
    ledger = EffectLedger(persistence.pool)
    key = _key(await _thread(persistence))
    calls: list[int] = []
    entered = asyncio.Event()

    async def act() -> Any:
        calls.append(1)
        entered.set()
        await asyncio.sleep(0.3)  # the second execution arrives while this one is mid-call
        return "done"

    first = asyncio.create_task(ledger.once(key, act, tool_name="send"))
    await entered.wait()
    second = await ledger.once(key, act, tool_name="send")
    assert (await first, second) == ("done", "done")
    assert calls == [1]


async def test_a_crash_mid_call_is_not_repeated_unless_idempotent(
    persistence: Persistence,
) -> None:
    ledger = EffectLedger(persistence.pool)
    thread_id = await _thread(persistence)
    calls: list[str] = []

    async def crash() -> Any:
        calls.append("crash")
        raise asyncio.CancelledError  # the process died here: no clean failure recorded

    async def act() -> Any:
        calls.append("act")
        return "acted"

    for call_id, idempotent in (("once", False), ("again", True)):
        key = _key(thread_id, call_id)
        with pytest.raises(asyncio.CancelledError):
            await ledger.once(key, crash, tool_name="send", idempotent=idempotent)
        if idempotent:
            assert await ledger.once(key, act, tool_name="send", idempotent=True) == "acted"
        else:
            with pytest.raises(EffectUnknown, match="interrupted mid-call"):
                await ledger.once(key, act, tool_name="send")
            with pytest.raises(EffectUnknown):  # the same answer every time after
                await ledger.once(key, act, tool_name="send")
    assert calls == ["crash", "crash", "act"]


async def test_a_failed_call_is_not_an_effect(persistence: Persistence) -> None:
    ledger = EffectLedger(persistence.pool)
    key = _key(await _thread(persistence))

    async def fail() -> Any:
        raise ValueError("refused")

    async def act() -> Any:
        return "acted"

    with pytest.raises(ValueError):
        await ledger.once(key, fail, tool_name="send")
    assert await ledger.once(key, act, tool_name="send") == "acted"


async def test_a_worker_without_the_lease_records_nothing(persistence: Persistence) -> None:
    ledger = EffectLedger(persistence.pool)
    thread_id = await _thread(persistence)
    run_id = await _running_run(persistence, thread_id, token=2)
    calls: list[int] = []

    async def act() -> Any:
        calls.append(1)
        return "acted"

    RUN_FENCE.set(RunFence(run_id, 1))  # an older token: another worker took the run over
    try:
        with pytest.raises(LeaseLost):
            await ledger.once(_key(thread_id), act, tool_name="send")
    finally:
        RUN_FENCE.set(None)
    assert calls == []
    assert await ledger.recorded(_key(thread_id)) == (False, None)


class _State(TypedDict, total=False):
    log: list[str]


async def test_a_re_executed_task_gets_the_recorded_tool_result(
    persistence: Persistence,
) -> None:
    """A node that acted and then crashed before its checkpoint runs again: no second act."""
    effects: list[str] = []
    crashes = [True]

    @tool
    async def send(text: str) -> str:
        """Send ``text`` somewhere outside."""
        effects.append(text)
        return f"sent {text}"

    send.metadata = {"risk": "external"}

    async def node(state: _State) -> dict[str, Any]:
        result = await call_once(send, {"name": "send", "args": {"text": "hi"}, "id": "c1"})
        assert isinstance(result, ToolMessage)
        if crashes and crashes.pop():
            raise RuntimeError("worker died after the effect, before the checkpoint")
        return {"log": [str(result.content)]}

    builder = StateGraph(_State)
    builder.add_node("node", node)
    builder.add_edge(START, "node")
    builder.add_edge("node", END)
    graph = builder.compile(checkpointer=persistence.checkpointer)
    thread_id = await _thread(persistence)
    run_id = await _running_run(persistence, thread_id, token=1)
    config = {"configurable": {"thread_id": thread_id}}
    RUN_FENCE.set(RunFence(run_id, 1))
    CURRENT_LEDGER.set(EffectLedger(persistence.pool))
    try:
        with pytest.raises(RuntimeError, match="worker died"):
            await graph.ainvoke({"log": []}, config)
        out = await graph.ainvoke(None, config)  # the retry continues from the checkpoint
    finally:
        RUN_FENCE.set(None)
        CURRENT_LEDGER.set(None)
    assert out == {"log": ["sent hi"]}
    assert effects == ["hi"]


async def _twice_with_a_crash(
    persistence: Persistence, node: Any, crashes: list[bool]
) -> dict[str, Any]:
    """Run a one-node graph whose node crashes once after acting, then again from the
    checkpoint (as a requeued run does)."""
    builder = StateGraph(_State)
    builder.add_node("node", node)
    builder.add_edge(START, "node")
    builder.add_edge("node", END)
    graph = builder.compile(checkpointer=persistence.checkpointer)
    thread_id = await _thread(persistence)
    run_id = await _running_run(persistence, thread_id, token=1)
    config = {"configurable": {"thread_id": thread_id}}
    RUN_FENCE.set(RunFence(run_id, 1))
    CURRENT_LEDGER.set(EffectLedger(persistence.pool))
    try:
        with pytest.raises(RuntimeError, match="worker died"):
            await graph.ainvoke({"log": []}, config)
        assert crashes == []
        return await graph.ainvoke(None, config)
    finally:
        RUN_FENCE.set(None)
        CURRENT_LEDGER.set(None)


async def test_a_re_executed_task_gets_the_recorded_command(persistence: Persistence) -> None:
    """A tool that answers with a Command: the re-execution gets the same Command back."""
    effects: list[str] = []
    crashes = [True]
    got: list[Any] = []

    @tool
    async def book(room: str, tool_call_id: Annotated[str, InjectedToolCallId]) -> Command[Any]:
        """Book ``room``; the booking goes into the state."""
        effects.append(room)
        reply = ToolMessage(f"booked {room}", tool_call_id=tool_call_id, name="book")
        return Command(update={"log": [f"booked {room} #{len(effects)}"]}, resume=[reply])

    book.metadata = {"risk": "write"}

    async def node(state: _State) -> Command[Any]:
        result = await call_once(book, {"name": "book", "args": {"room": "r1"}, "id": "c1"})
        got.append(result)
        if crashes and crashes.pop():
            raise RuntimeError("worker died after the effect, before the checkpoint")
        assert isinstance(result, Command)
        return Command(update=result.update)

    out = await _twice_with_a_crash(persistence, node, crashes)
    assert effects == ["r1"]
    assert out == {"log": ["booked r1 #1"]}
    assert len(got) == 2 and got[1] == got[0]
    reply = got[1].resume[0]
    assert (reply.content, reply.tool_call_id) == ("booked r1", "c1")


@dataclass
class _Tag:
    """Not on the strict serializer's allow-list."""

    label: str


async def test_a_command_that_cannot_be_recorded_intact_replays_as_a_note(
    persistence: Persistence,
) -> None:
    effects: list[str] = []
    crashes = [True]

    @tool
    async def tag(label: str) -> Command[Any]:
        """Tag the thread (with an object the checkpoint serializer does not revive)."""
        effects.append(label)
        return Command(update={"log": [label]}, resume=_Tag(label))

    tag.metadata = {"risk": "write"}

    async def node(state: _State) -> dict[str, Any]:
        result = await call_once(tag, {"name": "tag", "args": {"label": "x"}, "id": "c1"})
        if crashes and crashes.pop():
            raise RuntimeError("worker died after the effect, before the checkpoint")
        assert isinstance(result, ToolMessage)
        return {"log": [str(result.content)]}

    out = await _twice_with_a_crash(persistence, node, crashes)
    assert effects == ["x"]
    assert out == {"log": ["tag already ran for this call; its effect was applied once."]}


async def test_checkpoint_writes_are_fenced_by_the_lease(persistence: Persistence) -> None:
    async def node(state: _State) -> dict[str, Any]:
        return {"log": ["ran"]}

    builder = StateGraph(_State)
    builder.add_node("node", node)
    builder.add_edge(START, "node")
    builder.add_edge("node", END)
    graph = builder.compile(checkpointer=persistence.checkpointer)
    thread_id = await _thread(persistence)
    run_id = await _running_run(persistence, thread_id, token=3)
    config = {"configurable": {"thread_id": thread_id}}
    RUN_FENCE.set(RunFence(run_id, 2))
    try:
        with pytest.raises(LeaseLost):
            await graph.ainvoke({"log": []}, config, durability="sync")
    finally:
        RUN_FENCE.set(None)
    assert await persistence.checkpointer.aget_tuple(config) is None  # nothing written
    RUN_FENCE.set(RunFence(run_id, 3))
    try:
        assert await graph.ainvoke({"log": []}, config) == {"log": ["ran"]}
    finally:
        RUN_FENCE.set(None)
    assert await persistence.checkpointer.aget_tuple(config) is not None
