"""A run's checkpoint writes: sent together behind its lease fence, on a real Postgres.

Rows written by one transaction share its id (the ``xmin`` system column), so the tests read
which writes committed together from Postgres itself.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from typing import Any

import psycopg
import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.graph import END, START, StateGraph
from psycopg.rows import dict_row
from typing_extensions import TypedDict

from state.checkpoints import FencedPostgresSaver
from state.db import Persistence
from state.fencing import RUN_FENCE, LeaseLost, RunFence


class Count(TypedDict):
    n: int


async def _bump(state: Count) -> dict[str, Any]:
    return {"n": state.get("n", 0) + 1}


def _graph(saver: FencedPostgresSaver) -> Any:
    builder = StateGraph(Count)
    builder.add_node("bump", _bump)
    builder.add_edge(START, "bump")
    builder.add_edge("bump", END)
    return builder.compile(checkpointer=saver)


def _saver(persistence: Persistence) -> FencedPostgresSaver:
    saver = persistence.checkpointer
    assert isinstance(saver, FencedPostgresSaver)
    return saver


async def _running_run(persistence: Persistence, *, token: int) -> tuple[str, str]:
    """A thread and a run ``running`` on it under lease ``token``."""
    thread_id, run_id = str(uuid.uuid4()), str(uuid.uuid4())
    async with persistence.pool.connection() as conn:
        await conn.execute("INSERT INTO threads (thread_id) VALUES (%s)", (thread_id,))
        await conn.execute(
            "INSERT INTO runs (run_id, thread_id, assistant_id, status, fencing_token) "
            "VALUES (%s, %s, %s, 'running', %s)",
            (run_id, thread_id, str(uuid.uuid4()), token),
        )
    return thread_id, run_id


async def _rows(persistence: Persistence, thread_id: str) -> list[tuple[str, str, str]]:
    """``(table, what, transaction id)`` of every checkpoint row of the thread, in step order."""
    async with persistence.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT 'checkpoint' AS tab, metadata ->> 'step' AS what, xmin::text AS xid, "
            "       checkpoint_id AS id "
            "  FROM checkpoints WHERE thread_id = %(t)s "
            "UNION ALL "
            "SELECT 'writes', task_id || '/' || idx, xmin::text, checkpoint_id "
            "  FROM checkpoint_writes WHERE thread_id = %(t)s "
            "ORDER BY id, tab, what",
            {"t": thread_id},
        )
        return [(row["tab"], row["what"], row["xid"]) for row in await cur.fetchall()]


def _config(thread_id: str, checkpoint_id: str | None = None) -> RunnableConfig:
    configurable: dict[str, Any] = {"thread_id": thread_id, "checkpoint_ns": ""}
    if checkpoint_id is not None:
        configurable["checkpoint_id"] = checkpoint_id
    return {"configurable": configurable}


async def test_a_runs_writes_of_one_turn_commit_together(
    persistence: Persistence,
) -> None:
    thread_id, run_id = await _running_run(persistence, token=1)
    RUN_FENCE.set(RunFence(run_id, 1))
    try:
        result = await _graph(_saver(persistence)).ainvoke(
            {"n": 0}, _config(thread_id), durability="sync"
        )
    finally:
        RUN_FENCE.set(None)
    assert result == {"n": 1}

    rows = await _rows(persistence, thread_id)
    checkpoints = {what: xid for table, what, xid in rows if table == "checkpoint"}
    assert set(checkpoints) == {"-1", "0", "1"}
    writes = [(what, xid) for table, what, xid in rows if table == "writes"]
    assert len(writes) == 3  # __start__'s two (n, branch), bump's one
    # Five statements in three transactions (five when every write was sent alone): the input
    # checkpoint with the writes of the task it starts (made in the same turn of the event
    # loop), the next checkpoint alone, and bump's writes with the checkpoint that ends its step.
    assert len({xid for _, _, xid in rows}) == 3
    assert {xid for _, xid in writes[:2]} == {checkpoints["-1"]}
    assert writes[2][1] == checkpoints["1"]


async def test_writes_sent_together_under_a_lost_lease_write_nothing(
    persistence: Persistence,
) -> None:
    thread_id, run_id = await _running_run(persistence, token=2)
    saver = _saver(persistence)
    checkpoint = empty_checkpoint()
    RUN_FENCE.set(RunFence(run_id, 1))  # an older token: another worker took the run over
    try:
        results = await asyncio.gather(
            saver.aput(_config(thread_id), checkpoint, {"source": "loop", "step": 0}, {}),
            saver.aput_writes(_config(thread_id, checkpoint["id"]), [("n", 1)], "task-a"),
            saver.aput_writes(_config(thread_id, checkpoint["id"]), [("n", 2)], "task-b"),
            return_exceptions=True,
        )
    finally:
        RUN_FENCE.set(None)
    assert all(isinstance(result, LeaseLost) for result in results), results
    assert await _rows(persistence, thread_id) == []


async def test_a_write_postgres_refuses_fails_alone(persistence: Persistence) -> None:
    thread_id, run_id = await _running_run(persistence, token=1)
    saver = _saver(persistence)
    checkpoint = empty_checkpoint()
    RUN_FENCE.set(RunFence(run_id, 1))
    try:
        writes, refused = await asyncio.gather(
            saver.aput_writes(_config(thread_id, checkpoint["id"]), [("n", 1)], "task-a"),
            # json.dumps writes NaN, which jsonb refuses: this statement alone fails.
            saver.aput(
                _config(thread_id),
                checkpoint,
                {"source": "loop", "step": 0, "score": math.nan},  # type: ignore[typeddict-unknown-key]
                {},
            ),
            return_exceptions=True,
        )
    finally:
        RUN_FENCE.set(None)
    assert writes is None
    assert isinstance(refused, psycopg.errors.InvalidTextRepresentation), refused
    rows = await _rows(persistence, thread_id)
    assert [(table, what) for table, what, _ in rows] == [("writes", "task-a/0")]


async def test_a_write_whose_caller_stopped_waiting_before_the_send_is_dropped(
    persistence: Persistence,
) -> None:
    thread_id, run_id = await _running_run(persistence, token=1)
    saver = _saver(persistence)
    RUN_FENCE.set(RunFence(run_id, 1))
    try:
        checkpoint_id = empty_checkpoint()["id"]
        dropped = asyncio.ensure_future(
            saver.aput_writes(_config(thread_id, checkpoint_id), [("n", 1)], "task-a")
        )
        await asyncio.sleep(0)  # it queued its write; the send starts on the loop's next turn
        dropped.cancel()
        kept = saver.aput_writes(_config(thread_id, checkpoint_id), [("n", 2)], "task-b")
        await kept
    finally:
        RUN_FENCE.set(None)
    with pytest.raises(asyncio.CancelledError):
        await dropped
    rows = await _rows(persistence, thread_id)
    assert [(table, what) for table, what, _ in rows] == [("writes", "task-b/0")]
