"""A run's first checkpoint read, answered from the read made when the run was claimed."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base.id import uuid6
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.graph import END, START, StateGraph
from psycopg import pq
from typing_extensions import TypedDict

from server.config import load_config
from server.graphs import GraphRegistry
from server.repos import AssistantsRepo, RunsRepo
from server.runtime import Runtime
from server.schemas.runs import RunCreate
from state.checkpoints import (
    CLAIMED_CHECKPOINT,
    PREFETCHED_CHECKPOINT,
    FencedPostgresSaver,
    PrefetchedCheckpoint,
)
from state.db import Persistence, open_pool
from state.settings import Settings
from tests.support.runs import create_run
from tests.support.server import TEST_CONFIG

ASSISTANT = str(uuid.uuid4())


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


def _config(thread_id: str, **extra: Any) -> RunnableConfig:
    return {"configurable": {"thread_id": thread_id, "checkpoint_ns": "", **extra}}


async def _latest_row(persistence: Persistence, thread_id: str) -> Any:
    async with persistence.pool.connection() as conn:
        cur = await conn.cursor(binary=True).execute(
            "SELECT * FROM staffgraph_claimed_checkpoint("
            "jsonb_build_object('status', 'running', 'thread_id', %s::text))",
            (thread_id,),
        )
        return await cur.fetchone()


async def _create(runs: RunsRepo, thread_id: str, *, owner: str | None, temporary: bool = False):  # type: ignore[no-untyped-def]
    return await create_run(
        runs, thread_id, assistant_id=ASSISTANT, owner=owner, temporary=temporary
    )


async def test_the_first_latest_read_is_answered_from_the_prefetch_then_postgres(
    persistence: Persistence,
) -> None:
    saver = persistence.checkpointer
    graph = _graph(saver)
    thread_id = str(uuid.uuid4())
    await graph.ainvoke({"n": 0}, _config(thread_id))
    prefetched = PrefetchedCheckpoint(thread_id, await _latest_row(persistence, thread_id))
    first = await saver.aget_tuple(_config(thread_id))
    await graph.ainvoke({"n": 10}, _config(thread_id))  # newer checkpoints, after the prefetch
    assert first is not None

    token = PREFETCHED_CHECKPOINT.set(prefetched)
    try:
        answered = await saver.aget_tuple(_config(thread_id))
        again = await saver.aget_tuple(_config(thread_id))
    finally:
        PREFETCHED_CHECKPOINT.reset(token)
    # The first read is what was read when the run was claimed, as LangGraph's read gives it;
    # the prefetch is then used up and the next read sees Postgres (the newer checkpoint).
    assert answered == first
    assert again is not None and again.checkpoint["id"] != first.checkpoint["id"]
    assert again == await saver.aget_tuple(_config(thread_id))


async def test_a_first_read_it_does_not_answer_uses_it_up(persistence: Persistence) -> None:
    saver = persistence.checkpointer
    graph = _graph(saver)
    thread_id = str(uuid.uuid4())
    await graph.ainvoke({"n": 0}, _config(thread_id))
    old = await saver.aget_tuple(_config(thread_id))
    assert old is not None
    prefetched = PrefetchedCheckpoint(thread_id, await _latest_row(persistence, thread_id))
    await graph.ainvoke({"n": 10}, _config(thread_id))

    token = PREFETCHED_CHECKPOINT.set(prefetched)
    try:
        # A read of a given checkpoint (time travel) goes to Postgres...
        by_id = await saver.aget_tuple(_config(thread_id, checkpoint_id=old.checkpoint["id"]))
        # ...and no later read gets the (now stale) prefetched checkpoint.
        latest = await saver.aget_tuple(_config(thread_id))
    finally:
        PREFETCHED_CHECKPOINT.reset(token)
    assert by_id == old
    assert latest is not None and latest.checkpoint["id"] != old.checkpoint["id"]
    assert latest.checkpoint["channel_values"]["n"] == 11

    for other in (_config(str(uuid.uuid4())), _config(thread_id, checkpoint_ns="child:1")):
        assert not PrefetchedCheckpoint(thread_id, None).take(other)[0]


async def test_a_run_claimed_at_creation_carries_its_threads_latest_checkpoint(
    persistence: Persistence,
) -> None:
    await AssistantsRepo(persistence.pool).sync_defaults([(ASSISTANT, "simple")])
    runs = RunsRepo(persistence.pool)
    saver = persistence.checkpointer

    fresh = str(uuid.uuid4())
    created = await _create(runs, fresh, owner="w1")
    assert created.run is not None and created.run["status"] == "running"
    assert created.checkpoint is not None and created.checkpoint.thread_id == fresh
    # No checkpoint yet: the run's first read is answered with "none" without a query.
    assert created.checkpoint.take(_config(fresh)) == (True, None)

    used = str(uuid.uuid4())
    await _graph(saver).ainvoke({"n": 0}, _config(used))
    await _graph(saver).ainvoke({"n": 5}, _config(used))
    claimed = await _create(runs, used.upper(), owner="w1")  # any spelling of the UUID
    assert claimed.checkpoint is not None
    answered, row = claimed.checkpoint.take(_config(used))
    assert answered and row is not None
    assert await saver._load_checkpoint_tuple(row) == await saver.aget_tuple(_config(used))

    # Queued behind the running run, created for no worker, or temporary: nothing is read.
    assert (await _create(runs, used, owner="w1")).checkpoint is None
    assert (await _create(runs, str(uuid.uuid4()), owner=None)).checkpoint is None
    assert (await _create(runs, str(uuid.uuid4()), owner="w1", temporary=True)).checkpoint is None


async def test_creating_and_claiming_a_run_with_its_checkpoint_is_one_round_trip(
    persistence: Persistence, database_url: str, tmp_path: Path
) -> None:
    """libpq's trace of the create: one statement, every message sent before the first one
    answered (a statement for the checkpoint, even in the same pipeline, cost client CPU)."""
    await AssistantsRepo(persistence.pool).sync_defaults([(ASSISTANT, "simple")])
    pool = await open_pool(database_url, min_size=1, max_size=1, timeout=10)
    trace = tmp_path / "libpq.trace"
    try:
        with trace.open("w") as sink:
            async with pool.connection() as conn:
                conn.pgconn.trace(sink.fileno())
                conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
            created = await _create(RunsRepo(pool), str(uuid.uuid4()), owner="w1")
            async with pool.connection() as conn:
                conn.pgconn.untrace()
    finally:
        await pool.close()
    assert created.run is not None and created.run["status"] == "running"
    assert created.checkpoint is not None

    # One message a line, but a query's text may run over several: keep the messages' lines.
    lines = [
        line.split("\t")
        for line in trace.read_text().splitlines()
        if line.startswith(("F\t", "B\t"))
    ]
    start = next(i for i, line in enumerate(lines) if line[0] == "F" and line[2] == "Parse")
    end = next(i for i in range(start, len(lines)) if lines[i][2].startswith("ReadyForQuery"))
    exchange = lines[start : end + 1]
    directions = [line[0] for line in exchange]
    first_answer = directions.index("B")
    assert "F" not in directions[first_answer:], [line[2] for line in exchange]
    assert [line[2] for line in exchange if line[0] == "F"].count("Sync") == 1
    assert sum(line[2] == "Parse" for line in exchange) == 1  # the create, with the checkpoint


async def test_a_run_created_and_claimed_reads_no_checkpoint_before_its_graph_starts(
    persistence: Persistence, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the runtime: the first read of each run on a thread is the prefetched one."""
    reads: list[RunnableConfig] = []
    read_from_postgres = AsyncPostgresSaver.aget_tuple

    async def counted(self: AsyncPostgresSaver, config: RunnableConfig) -> Any:
        reads.append(config)
        return await read_from_postgres(self, config)

    monkeypatch.setattr(AsyncPostgresSaver, "aget_tuple", counted)
    runtime = Runtime(
        settings=Settings(),
        graphs=GraphRegistry.from_config(load_config(TEST_CONFIG)),
        persistence=persistence,
        database_url=database_url,
    )
    thread_id = str(uuid.uuid4())
    await runtime.start()
    try:
        outputs = []
        for text in ("one", "two"):
            body = RunCreate.model_validate(
                {
                    "assistant_id": "simple",
                    "input": {"messages": [{"role": "user", "content": text}]},
                    "if_not_exists": "create",
                }
            )
            created = await runtime.create_run(body, thread_id=thread_id)
            status, output = await runtime.wait(created.run_id)
            assert status == "success"
            outputs.append(json.loads(output))
    finally:
        await runtime.stop()
    # The second run continued from the first one's checkpoint, read when it was claimed.
    assert [m["content"] for m in outputs[1]["messages"]][:2] == [
        m["content"] for m in outputs[0]["messages"]
    ][:2]
    assert len(outputs[1]["messages"]) > len(outputs[0]["messages"])
    assert reads == []


async def test_a_run_claimed_after_waiting_for_its_thread_starts_from_what_was_committed_meanwhile(
    persistence: Persistence,
) -> None:
    """The creation waits for the thread's lock while the thread's previous run ends (its last
    checkpoint and its end in one transaction): the run claimed then starts from that last
    checkpoint, not from the one there was when the creating statement began."""
    await AssistantsRepo(persistence.pool).sync_defaults([(ASSISTANT, "simple")])
    runs = RunsRepo(persistence.pool)
    thread_id = str(uuid.uuid4())
    previous = await _create(runs, thread_id, owner="w1")
    assert previous.run is not None and previous.run["status"] == "running"
    await _graph(persistence.checkpointer).ainvoke({"n": 0}, _config(thread_id))
    before = await _latest_row(persistence, thread_id)
    last = str(uuid6())
    async with persistence.pool.connection() as ending:
        await ending.execute("BEGIN")
        await ending.execute("SELECT 1 FROM threads WHERE thread_id = %s FOR UPDATE", (thread_id,))
        await ending.execute(
            "INSERT INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, "
            "parent_checkpoint_id, type, checkpoint, metadata) "
            "SELECT thread_id, checkpoint_ns, %(last)s, checkpoint_id, type, "
            "jsonb_set(checkpoint, '{id}', to_jsonb(%(last)s::text)), metadata "
            "FROM checkpoints WHERE thread_id = %(t)s AND checkpoint_id = %(before)s",
            {"last": last, "t": thread_id, "before": before["checkpoint_id"]},
        )
        await ending.execute(
            "SELECT * FROM staffgraph_finish_run(%s, %s, %s, 'success', 'idle', NULL, NULL, "
            "NULL, false, NULL, 30)",
            (previous.run["run_id"], thread_id, previous.run["fencing_token"]),
        )
        creating = asyncio.create_task(_create(runs, thread_id, owner="w1"))
        async with asyncio.timeout(10):
            while not await _waits_for_a_lock(persistence):
                await asyncio.sleep(0.02)  # Postgres tells no one that a lock is awaited
        await ending.execute("COMMIT")
    created = await asyncio.wait_for(creating, timeout=10)
    assert created.run is not None and created.run["status"] == "running"
    assert created.checkpoint is not None
    answered, row = created.checkpoint.take(_config(thread_id))
    assert answered and row is not None
    assert row["checkpoint_id"] == last != before["checkpoint_id"]


async def _waits_for_a_lock(persistence: Persistence) -> bool:
    """Whether a creation (``staffgraph_create_run``) waits for a lock."""
    async with persistence.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND query LIKE '%staffgraph_create_run%'"
        )
        row = await cur.fetchone()
    return row is not None and int(row["n"]) > 0


async def test_setup_makes_the_claimed_read_anew_only_when_its_body_changed(
    persistence: Persistence,
) -> None:
    """A database whose function an earlier version made (here: other columns, no row) gets
    this version's at the next start; a start with the same body leaves it as it is."""
    await AssistantsRepo(persistence.pool).sync_defaults([(ASSISTANT, "simple")])
    runs = RunsRepo(persistence.pool)
    thread_id = str(uuid.uuid4())
    await _graph(persistence.checkpointer).ainvoke({"n": 0}, _config(thread_id))
    async with persistence.pool.connection() as conn:
        await conn.execute(f"DROP FUNCTION {CLAIMED_CHECKPOINT}(jsonb)")
        await conn.execute(
            f"CREATE FUNCTION {CLAIMED_CHECKPOINT}(p_run jsonb) RETURNS TABLE ("
            + ", ".join(f"{column} text" for column in ("thread_id", "checkpoint_id"))
            + ") LANGUAGE sql AS 'SELECT NULL::text, NULL::text WHERE false'"
        )
    await persistence.checkpointer.setup()
    made = await _function_row(persistence)
    assert made[1] == "plpgsql"
    await persistence.checkpointer.setup()
    assert await _function_row(persistence) == made  # not made again: the same row version
    created = await _create(runs, thread_id, owner="w1")
    assert created.checkpoint is not None
    answered, row = created.checkpoint.take(_config(thread_id))
    assert answered and row is not None
    assert await persistence.checkpointer._load_checkpoint_tuple(
        row
    ) == await persistence.checkpointer.aget_tuple(_config(thread_id))


async def _function_row(persistence: Persistence) -> tuple[str, str]:
    """The claimed read's row version in ``pg_proc`` (``xmin``, changed by every replace) and
    its language."""
    async with persistence.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT p.xmin::text AS version, l.lanname FROM pg_proc p "
            "JOIN pg_language l ON l.oid = p.prolang WHERE p.oid = to_regprocedure(%s)",
            (f"{CLAIMED_CHECKPOINT}(jsonb)",),
        )
        found = await cur.fetchone()
    assert found is not None
    return str(found["version"]), str(found["lanname"])
