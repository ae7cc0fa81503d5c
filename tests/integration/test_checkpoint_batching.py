"""A run's checkpoint writes of one turn of the event loop go to Postgres as one transaction."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

import pytest
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.postgres.base import WRITES_IDX_MAP
from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

from state.checkpoint_writes import MAX_BATCH
from state.db import Persistence
from state.fencing import RUN_FENCE, LeaseLost, RunFence

ERROR = "__error__"
"""LangGraph's channel for a task's error: one of the special channels whose writes replace."""


class Count(TypedDict):
    n: int


async def _bump(state: Count) -> dict[str, Any]:
    return {"n": state.get("n", 0) + 1}


async def _running_run(persistence: Persistence, *, token: int) -> tuple[str, str]:
    """A thread and a run on it held under lease ``token``: (thread_id, run_id)."""
    thread_id, run_id = str(uuid.uuid4()), str(uuid.uuid4())
    async with persistence.pool.connection() as conn:
        await conn.execute("INSERT INTO threads (thread_id) VALUES (%s)", (thread_id,))
        await conn.execute(
            "INSERT INTO runs (run_id, thread_id, assistant_id, status, fencing_token) "
            "VALUES (%s, %s, %s, 'running', %s)",
            (run_id, thread_id, str(uuid.uuid4()), token),
        )
    return thread_id, run_id


async def _rows(persistence: Persistence, thread_id: str) -> list[tuple[str, str, int]]:
    """Every checkpoint and pending-writes row of the thread: (table, checkpoint_id, xmin)."""
    async with persistence.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT 'checkpoint' AS kind, checkpoint_id, xmin::text::bigint AS tx FROM checkpoints"
            " WHERE thread_id = %(t)s UNION ALL"
            " SELECT 'writes', checkpoint_id, xmin::text::bigint FROM checkpoint_writes"
            " WHERE thread_id = %(t)s",
            {"t": thread_id},
        )
        rows = await cur.fetchall()
    return [(str(r["kind"]), str(r["checkpoint_id"]), int(r["tx"])) for r in rows]


async def test_a_steps_checkpoint_and_the_writes_saved_with_it_commit_together(
    persistence: Persistence,
) -> None:
    builder = StateGraph(Count)
    builder.add_node("bump", _bump)
    builder.add_edge(START, "bump")
    builder.add_edge("bump", END)
    graph = builder.compile(checkpointer=persistence.checkpointer)
    thread_id, run_id = await _running_run(persistence, token=1)
    config = {"configurable": {"thread_id": thread_id}}
    token = RUN_FENCE.set(RunFence(run_id, 1))
    try:
        assert await graph.ainvoke({"n": 0}, config, durability="sync") == {"n": 1}
    finally:
        RUN_FENCE.reset(token)
    history = [c async for c in persistence.checkpointer.alist(config)]
    steps = {c.metadata["step"]: c.config["configurable"]["checkpoint_id"] for c in history}
    assert sorted(steps) == [-1, 0, 1]
    rows = await _rows(persistence, thread_id)
    xmin = {(table, checkpoint_id): x for table, checkpoint_id, x in rows}
    # LangGraph saves the input checkpoint with the input's writes, and the bump's writes
    # with the checkpoint after it: each pair at once, so each pair is one transaction.
    assert xmin["checkpoint", steps[-1]] == xmin["writes", steps[-1]]
    assert xmin["writes", steps[0]] == xmin["checkpoint", steps[1]]
    assert len({x for _, _, x in rows}) == 3  # five writes, three transactions


async def test_a_batch_lands_whole_or_not_at_all(persistence: Persistence) -> None:
    saver = persistence.checkpointer
    thread_id, run_id = await _running_run(persistence, token=1)
    config = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
    checkpoint = empty_checkpoint()
    saved = {**config["configurable"], "checkpoint_id": checkpoint["id"]}

    async def both(task_path: str) -> list[Any]:
        return await asyncio.gather(
            saver.aput(config, checkpoint, {"step": -1, "source": "input"}, {}),
            saver.aput_writes({"configurable": saved}, [("n", 1)], "task-1", task_path),
            return_exceptions=True,
        )

    token = RUN_FENCE.set(RunFence(run_id, 1))
    try:
        # The second write cannot be sent (Postgres text holds no NUL): the first one, in the
        # same batch, does not land either, and both callers fail.
        failed = await both("bad\x00path")
        assert all(isinstance(result, Exception) for result in failed), failed
        assert await _rows(persistence, thread_id) == []
        assert await both("") == [{"configurable": saved}, None]
    finally:
        RUN_FENCE.reset(token)
    rows = await _rows(persistence, thread_id)
    assert len(rows) == 2 and len({x for _, _, x in rows}) == 1


@pytest.mark.parametrize("first_writes", [[("n", 1)], []], ids=["writes", "no writes"])
async def test_a_lost_lease_fails_every_write_of_the_batch(
    persistence: Persistence, first_writes: list[tuple[str, Any]]
) -> None:
    saver = persistence.checkpointer
    thread_id, run_id = await _running_run(persistence, token=2)
    config = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
    checkpoint = empty_checkpoint()
    saved = {"configurable": {**config["configurable"], "checkpoint_id": checkpoint["id"]}}
    token = RUN_FENCE.set(RunFence(run_id, 1))  # a stale token: another worker holds token 2
    try:
        # The batch's first write may have no rows at all: the checkpoint after it is still
        # checked against the lease.
        results = await asyncio.gather(
            saver.aput_writes(saved, first_writes, "task-1"),
            saver.aput(config, checkpoint, {"step": -1, "source": "input"}, {}),
            saver.aput_writes(saved, [("n", 2)], "task-2"),
            return_exceptions=True,
        )
    finally:
        RUN_FENCE.reset(token)
    assert [type(result) for result in results] == [LeaseLost] * 3
    assert await _rows(persistence, thread_id) == []


@pytest.fixture(autouse=True)
def _no_fence_left() -> Any:
    yield
    assert RUN_FENCE.get() is None


async def test_a_long_batch_is_cut_into_statements_of_at_most_max_batch(
    persistence: Persistence,
) -> None:
    saver = persistence.checkpointer
    thread_id, run_id = await _running_run(persistence, token=1)
    saved = {"configurable": {"thread_id": thread_id, "checkpoint_ns": "", "checkpoint_id": "c"}}
    token = RUN_FENCE.set(RunFence(run_id, 1))
    try:
        await asyncio.gather(
            *(saver.aput_writes(saved, [("n", i)], f"task-{i}") for i in range(MAX_BATCH + 2))
        )
    finally:
        RUN_FENCE.reset(token)
    sizes = Counter(tx for _, _, tx in await _rows(persistence, thread_id))
    assert sorted(sizes.values()) == [2, MAX_BATCH]


async def test_two_writes_of_one_task_in_a_turn_land_in_order(persistence: Persistence) -> None:
    saver = persistence.checkpointer
    thread_id, run_id = await _running_run(persistence, token=1)
    config = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
    checkpoint = empty_checkpoint()
    await saver.aput(config, checkpoint, {"step": -1, "source": "input"}, {})
    saved = {"configurable": {**config["configurable"], "checkpoint_id": checkpoint["id"]}}
    assert ERROR in WRITES_IDX_MAP
    token = RUN_FENCE.set(RunFence(run_id, 1))
    try:
        # Writes to a special channel replace an earlier attempt's: the later one wins, as
        # when each write was a statement of its own.
        await asyncio.gather(
            saver.aput_writes(saved, [(ERROR, "first")], "task-1"),
            saver.aput_writes(saved, [(ERROR, "second")], "task-1"),
        )
    finally:
        RUN_FENCE.reset(token)
    stored = await saver.aget_tuple(saved)
    assert stored is not None
    assert [(task, channel, value) for task, channel, value in stored.pending_writes or []] == [
        ("task-1", ERROR, "second")
    ]
