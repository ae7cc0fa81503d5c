"""A run's checkpoint writes held back (``state.held_writes``): when they land, on Postgres."""

from __future__ import annotations

import asyncio
import json
import operator
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import pytest
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.graph import END, START, StateGraph
from langsmith import Client
from typing_extensions import TypedDict

from bench.langsmith_collector import LangSmithCollector
from server.config import load_config
from server.graphs import GraphRegistry
from server.observability.tracing import LangSmithTracing
from server.repos import AssistantsRepo, RunsRepo
from server.runtime import Runtime
from server.runtime.events import StreamConverter
from server.runtime.outcome import cancelled
from server.runtime.protocol import PROTOCOL_MODE
from server.schemas.runs import RunCreate
from state import held_writes
from state.checkpoint_writes import MAX_BATCH
from state.db import Persistence
from state.fencing import RUN_FENCE, LeaseLost, RunFence, lease_lost_as
from state.held_writes import HELD_WRITES, HOLD_SECONDS, FlushBeforeNodes, HeldWrites
from state.settings import Settings
from tests.support.runs import create_run
from tests.support.server import TEST_CONFIG


class Log(TypedDict, total=False):
    seen: Annotated[list[str], operator.add]


async def _claimed_run(persistence: Persistence) -> tuple[str, str, int]:
    """A run created on a new thread and claimed: (thread_id, run_id, lease token)."""
    assistant = str(uuid.uuid4())
    await AssistantsRepo(persistence.pool).sync_defaults([(assistant, "simple")])
    thread_id = str(uuid.uuid4())
    created = await create_run(
        RunsRepo(persistence.pool), thread_id, assistant_id=assistant, owner="w1"
    )
    assert created.run is not None and created.run["status"] == "running"
    return thread_id, str(created.run["run_id"]), int(created.run["fencing_token"])


@asynccontextmanager
async def _holding(persistence: Persistence, run_id: str, token: int) -> AsyncIterator[HeldWrites]:
    """Inside the run ``run_id`` (its fence set), its writes held as the executor holds them."""
    fence = RunFence(run_id, token)
    held = HeldWrites(persistence.pool, fence)
    tokens = (RUN_FENCE.set(fence), HELD_WRITES.set(held))
    try:
        yield held
    finally:
        HELD_WRITES.reset(tokens[1])
        RUN_FENCE.reset(tokens[0])
        held.close()


def _in_line(persistence: Persistence, *nodes: Any) -> Any:
    """The ``nodes`` one after the other (each named after its function), on Postgres."""
    builder = StateGraph(Log)
    names = [getattr(node, "__name__", "node") for node in nodes]
    for name, node in zip(names, nodes, strict=True):
        builder.add_node(name, node)
    for before, after in zip([START, *names], [*names, END], strict=True):
        builder.add_edge(before, after)
    return builder.compile(checkpointer=persistence.checkpointer)


async def _count(persistence: Persistence, table: str, thread_id: str) -> int:
    async with persistence.pool.connection() as conn:
        cur = await conn.execute(
            f"SELECT count(*) AS n FROM {table} WHERE thread_id = %s", (thread_id,)
        )
        row = await cur.fetchone()
    assert row is not None
    return int(row["n"])


async def _quick_wrote(persistence: Persistence, thread_id: str) -> bool:
    async with persistence.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) AS n FROM checkpoint_writes WHERE thread_id = %s AND task_path LIKE "
            "%s",
            (thread_id, "%quick%"),
        )
        row = await cur.fetchone()
    return row is not None and int(row["n"]) > 0


@pytest.fixture
def no_timer(monkeypatch: pytest.MonkeyPatch) -> None:
    """Writes are held until something sends them: none goes by the timer during the test (a
    slow machine could otherwise send them before the test looks)."""
    monkeypatch.setattr(held_writes, "HOLD_SECONDS", 3600.0)


@pytest.mark.usefixtures("no_timer")
async def test_a_node_starts_only_once_the_steps_before_it_landed(persistence: Persistence) -> None:
    """``durability="sync"``'s promise holds with writes held: a node after another starts from
    the durable checkpoint that node's step made (sent as the node starts, not a moment later).
    The first node does not wait for the checkpoints the run's input made (the input one and
    the one after ``__start__``): no node has run yet, and the run's input makes them again."""
    thread_id, run_id, token = await _claimed_run(persistence)
    seen: list[int] = []

    async def first(state: Log) -> dict[str, Any]:
        seen.append(await _count(persistence, "checkpoints", thread_id))
        return {"seen": ["first"]}

    async def second(state: Log) -> dict[str, Any]:
        seen.append(await _count(persistence, "checkpoints", thread_id))
        return {"seen": ["second"]}

    graph = _in_line(persistence, first, second)
    async with _holding(persistence, run_id, token) as held:
        config = {
            "configurable": {"thread_id": thread_id},
            "callbacks": [FlushBeforeNodes(held, wait=True)],
        }
        await graph.ainvoke({"seen": []}, config, durability="sync")
        # None before ``first`` (its input's two are held); all three before ``second``.
        assert seen == [0, 3]
        assert await _count(persistence, "checkpoints", thread_id) == 3  # the last one is held
        await held.flush()
    assert await _count(persistence, "checkpoints", thread_id) == 4


async def test_the_writes_of_a_finished_branch_land_while_another_still_runs(
    persistence: Persistence,
) -> None:
    """Nothing starts or ends while the slow branch runs: the timer sends the quick branch's
    writes, so they survive a crash of the slow one's process."""
    thread_id, run_id, token = await _claimed_run(persistence)
    landed: list[bool] = []

    async def quick(state: Log) -> dict[str, Any]:
        return {"seen": ["quick"]}

    async def slow(state: Log) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + 5
        while asyncio.get_running_loop().time() < deadline:  # no event to await: Postgres's rows
            if await _quick_wrote(persistence, thread_id):
                landed.append(True)
                break
            await asyncio.sleep(HOLD_SECONDS / 5)
        return {"seen": ["slow"]}

    builder = StateGraph(Log)
    builder.add_node("quick", quick)
    builder.add_node("slow", slow)
    builder.add_edge(START, "quick")
    builder.add_edge(START, "slow")
    builder.add_edge(["quick", "slow"], END)
    graph = builder.compile(checkpointer=persistence.checkpointer)
    async with _holding(persistence, run_id, token) as held:
        config = {
            "configurable": {"thread_id": thread_id},
            "callbacks": [FlushBeforeNodes(held, wait=True)],
        }
        await graph.ainvoke({"seen": []}, config, durability="sync")
    assert landed == [True]


async def _hold_a_checkpoint(
    persistence: Persistence, thread_id: str, run_id: str
) -> dict[str, Any]:
    """Save (held) a checkpoint of run ``run_id``; its config."""
    config = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
    checkpoint = empty_checkpoint()
    metadata: Any = {"step": -1, "source": "input", "run_id": run_id}
    await persistence.checkpointer.aput(config, checkpoint, metadata, {})
    return config


@pytest.mark.parametrize("lease", ["held", "lost"])
@pytest.mark.usefixtures("no_timer")
async def test_the_last_writes_commit_with_the_runs_end_or_not_at_all(
    persistence: Persistence, lease: str
) -> None:
    thread_id, run_id, token = await _claimed_run(persistence)
    runs = RunsRepo(persistence.pool)
    async with _holding(persistence, run_id, token) as held:
        await _hold_a_checkpoint(persistence, thread_id, run_id)
        assert await _count(persistence, "checkpoints", thread_id) == 0
        last = await held.take()
    if lease == "lost":
        async with persistence.pool.connection() as conn:
            await conn.execute(
                "UPDATE runs SET fencing_token = fencing_token + 1 WHERE run_id = %s", (run_id,)
            )
    end = _end_of(thread_id, run_id, token)
    fence = RunFence(run_id, token)
    if lease == "lost":
        with pytest.raises(LeaseLost), lease_lost_as(fence):
            await runs.finish(**end, before=last)
        assert await _count(persistence, "checkpoints", thread_id) == 0
        run = await runs.get(thread_id, run_id)
        assert run is not None and run["status"] == "running"
        return
    with lease_lost_as(fence):
        result = await runs.finish(**end, before=last)
    assert result.outcome == "finished"
    async with persistence.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT (SELECT xmin::text FROM checkpoints WHERE thread_id = %(t)s) AS checkpoint, "
            "(SELECT xmin::text FROM runs WHERE run_id = %(r)s) AS run",
            {"t": thread_id, "r": run_id},
        )
        row = await cur.fetchone()
    assert row is not None and row["checkpoint"] == row["run"]  # one transaction


def _end_of(thread_id: str, run_id: str, token: int) -> dict[str, Any]:
    """``RunsRepo.finish``'s arguments for a run that succeeded."""
    return {
        "run_id": run_id,
        "thread_id": thread_id,
        "token": token,
        "status": "success",
        "thread_status": "idle",
        "values": {},
        "interrupts": {},
        "error": None,
        "delete_run": False,
        "owner": "w1",
        "lease_seconds": 30,
    }


@pytest.mark.parametrize("checkpoints", [2, MAX_BATCH + 1], ids=["one statement", "several"])
@pytest.mark.usefixtures("no_timer")
async def test_a_finish_with_last_writes_locks_the_thread_before_the_run(
    persistence: Persistence, checkpoints: int
) -> None:
    """The order in which the finish function and a cancel lock them, so that none of them
    waits for another holding what it needs. Whether the last writes fit in one statement (the
    writes and the finish function are that statement, the thread locked by its fence) or not
    (the thread locked by a statement of its own, first)."""
    thread_id, run_id, token = await _claimed_run(persistence)
    runs = RunsRepo(persistence.pool)
    async with _holding(persistence, run_id, token) as held:
        for _ in range(checkpoints):
            await _hold_a_checkpoint(persistence, thread_id, run_id)
        last = await held.take()
    async with persistence.pool.connection() as blocker:
        await blocker.execute("BEGIN")
        await blocker.execute("SELECT 1 FROM threads WHERE thread_id = %s FOR UPDATE", (thread_id,))
        finishing = asyncio.create_task(
            runs.finish(**_end_of(thread_id, run_id, token), before=last)
        )
        async with asyncio.timeout(10):
            while not await _waits_for_a_lock(persistence, "%"):  # the finish's statement
                await asyncio.sleep(0.02)  # Postgres tells no one that a lock is awaited
        # The statement waiting: the writes' when they fit in one, else the lock's own.
        one = checkpoints <= MAX_BATCH
        assert await _waits_for_a_lock(persistence, "WITH fence AS MATERIALIZED%") is one
        assert await _waits_for_a_lock(persistence, "SELECT 1 FROM (SELECT count(*)%") is not one
        # Waiting for the thread, the finish holds nothing of the run yet.
        async with persistence.pool.connection() as other:
            await other.execute("BEGIN")
            await other.execute("SELECT 1 FROM runs WHERE run_id = %s FOR UPDATE NOWAIT", (run_id,))
            await other.execute("ROLLBACK")
        await blocker.execute("COMMIT")
    result = await asyncio.wait_for(finishing, timeout=10)
    assert result.outcome == "finished"
    assert await _count(persistence, "checkpoints", thread_id) == checkpoints


@pytest.mark.usefixtures("no_timer")
async def test_a_rollback_drops_what_the_run_still_held(persistence: Persistence) -> None:
    """Nothing of a rolled-back run lands after its checkpoints were deleted (reading the
    state afterwards would otherwise send what was held)."""
    thread_id, run_id, token = await _claimed_run(persistence)
    graph = _in_line(persistence, lambda state: {})
    row = {"thread_id": thread_id, "run_id": run_id}
    async with _holding(persistence, run_id, token):
        await _hold_a_checkpoint(persistence, thread_id, run_id)
        outcome = await cancelled(
            RunsRepo(persistence.pool), graph, row, StreamConverter(["values"]), "rollback"
        )
    assert outcome.delete_run and outcome.values is None
    assert await _count(persistence, "checkpoints", thread_id) == 0


@asynccontextmanager
async def _runtime(
    persistence: Persistence,
    database_url: str,
    tracing: LangSmithTracing | None = None,
    config: Path = TEST_CONFIG,
) -> AsyncIterator[Runtime]:
    """A started :class:`Runtime` with the graphs of ``config`` (the test graphs), stopped
    after the block."""
    runtime = Runtime(
        settings=Settings(),
        graphs=GraphRegistry.from_config(load_config(config)),
        persistence=persistence,
        database_url=database_url,
        tracing=tracing,
    )
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


def _slow_run(seconds: float, durability: str, **fields: Any) -> RunCreate:
    """A run of the two-node ``slow`` graph (``nap`` for ``seconds``, then ``after_nap``)."""
    return RunCreate.model_validate(
        {
            "assistant_id": "slow",
            "input": {"seconds": seconds},
            "durability": durability,
            "if_not_exists": "create",
            **fields,
        }
    )


async def _run_slow_through_runtime(
    persistence: Persistence, database_url: str, stream_modes: list[str] | None
) -> dict[str, str]:
    """Run the two-node ``slow`` graph (``durability="sync"``) through a real :class:`Runtime`;
    the transaction (``xmin``) of each of its checkpoints by step, of each task's writes, and of
    its run row (``"run"``)."""
    thread_id = str(uuid.uuid4())
    async with _runtime(persistence, database_url) as runtime:
        created = await runtime.create_run(
            _slow_run(0, "sync"), thread_id=thread_id, stream_modes=stream_modes
        )
        status, _ = await asyncio.wait_for(runtime.wait(created.run_id), timeout=20)
    assert status == "success"
    async with persistence.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT metadata ->> 'step' AS step, xmin::text AS tx FROM checkpoints "
            "WHERE thread_id = %(t)s UNION ALL "
            "SELECT 'writes of ' || checkpoint_id, xmin::text FROM checkpoint_writes "
            "WHERE thread_id = %(t)s UNION ALL "
            "SELECT 'run', xmin::text FROM runs WHERE run_id = %(r)s",
            {"t": thread_id, "r": created.run_id},
        )
        rows = await cur.fetchall()
    return {str(r["step"]): str(r["tx"]) for r in rows}


@pytest.mark.usefixtures("no_timer")
async def test_a_run_through_the_server_commits_its_final_state_with_its_end(
    persistence: Persistence, database_url: str
) -> None:
    """Two nodes, ``durability="sync"``: what came before the second node lands as it starts,
    and the last node's writes with the final checkpoint land in the transaction that ends the
    run."""
    tx = await _run_slow_through_runtime(persistence, database_url, None)
    assert tx["2"] == tx["run"]  # the final checkpoint: committed by the finish
    # Sent as ``after_nap`` started (the input's two checkpoints with ``nap``'s), and with the
    # end: two transactions.
    assert tx["-1"] == tx["0"] == tx["1"] != tx["run"], tx
    assert len(set(tx.values())) == 2, tx


@pytest.mark.usefixtures("no_timer")
@pytest.mark.parametrize("mode", ["checkpoints", "debug", PROTOCOL_MODE])
async def test_a_run_whose_stream_hands_out_state_writes_each_checkpoint_at_once(
    persistence: Persistence, database_url: str, mode: str
) -> None:
    """``checkpoints`` and ``debug`` events name checkpoints a client may read at once, and
    protocol v2's ``completed`` event (on which the SDK reads the thread's state) goes out
    before the run's finish: such a run's checkpoints land as they are made, none with the
    run's end."""
    tx = await _run_slow_through_runtime(persistence, database_url, [mode])
    steps = [tx[step] for step in ("-1", "0", "1", "2")]
    assert tx["run"] not in steps, tx
    assert len(set(steps)) == 4, tx  # one transaction each


async def _a_fenced_write_waits(persistence: Persistence) -> bool:
    """Whether a fenced checkpoint write waits for a lock (the run's row, held by the test)."""
    return await _waits_for_a_lock(persistence, "%staffgraph_check_fence%")


async def _waits_for_a_lock(persistence: Persistence, query: str) -> bool:
    """Whether a statement like ``query`` (a LIKE pattern) waits for a lock."""
    async with persistence.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND query LIKE %s",
            (query,),
        )
        row = await cur.fetchone()
    return row is not None and int(row["n"]) > 0


@pytest.mark.parametrize("durability", ["sync", "async"])
async def test_the_executor_holds_a_node_back_for_the_step_before_only_under_sync(
    persistence: Persistence, database_url: str, durability: str
) -> None:
    """Through a real :class:`Runtime`: under ``durability="sync"`` the second node starts only
    once the first node's checkpoint landed; under ``"async"`` it runs while that checkpoint
    cannot land yet (the test holds the run's row, which the writes' lease fence needs)."""
    thread_id = str(uuid.uuid4())
    async with _runtime(persistence, database_url) as runtime:
        # ``nap`` long enough for the test to take the run's row first
        body = _slow_run(0.3, durability, stream_mode="updates")
        created = await runtime.create_run(body, thread_id=thread_id)
        second_ran = asyncio.Event()

        async def watch() -> None:
            async for event in runtime.follow(created.run_id):
                if event is not None and b"after_nap" in event.data:
                    second_ran.set()

        watcher = asyncio.create_task(watch())
        async with persistence.pool.connection() as blocker:
            await blocker.execute("BEGIN")
            await blocker.execute(
                "SELECT 1 FROM runs WHERE run_id = %s FOR UPDATE", (created.run_id,)
            )
            if durability == "async":
                await asyncio.wait_for(second_ran.wait(), timeout=10)
                assert await _count(persistence, "checkpoints", thread_id) == 0
            else:
                while not await _a_fenced_write_waits(persistence):  # the send at its start
                    await asyncio.sleep(0.02)  # Postgres tells no one that a lock is awaited
                # A node that must not run gives no event to await: let it have half a second
                # (it runs within milliseconds of the send's start if it does not wait for it).
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(second_ran.wait(), timeout=0.5)
                assert await _count(persistence, "checkpoints", thread_id) == 0
            await blocker.execute("COMMIT")
        await asyncio.wait_for(second_ran.wait(), timeout=10)
        status, _ = await asyncio.wait_for(runtime.wait(created.run_id), timeout=20)
        await asyncio.wait_for(watcher, timeout=10)
    assert status == "success"
    assert await _count(persistence, "checkpoints", thread_id) == 4


_START = "~__pregel_pull, __start__"
_INPUT = ("checkpoint", {"ns": "", "checkpoint_id": "in", "parent_id": "before"}, "input")


def _writes_on(checkpoint_id: str, task_path: str, ns: str = "") -> tuple[str, dict[str, Any]]:
    return ("writes, kept", {"ns": ns, "checkpoint_id": checkpoint_id, "task_path": task_path})


def _loop_after(parent_id: str, ns: str = "") -> tuple[str, dict[str, Any], str]:
    return ("checkpoint", {"ns": ns, "checkpoint_id": "next", "parent_id": parent_id}, "loop")


@pytest.mark.parametrize(
    ("writes", "waited_for"),
    [
        pytest.param([_INPUT], False, id="the input checkpoint alone"),
        pytest.param(
            [_INPUT, _writes_on("in", _START), _loop_after("in")], False, id="after __start__"
        ),
        pytest.param(
            [_INPUT, _writes_on("in", _START), _loop_after("in"), _writes_on("next", "~x, a")],
            False,
            id="after __start__, with a branch's writes",
        ),
        pytest.param(
            [_INPUT, _writes_on("in", "~__pregel_pull, a"), _loop_after("in")],
            True,
            id="after a node",
        ),
        pytest.param(
            [_INPUT, _writes_on("in", _START), _writes_on("in", "~x, a"), _loop_after("in")],
            True,
            id="after __start__ and a node",
        ),
        pytest.param([_INPUT, _loop_after("in")], True, id="after a step whose writes are unseen"),
        pytest.param(
            [_writes_on("in", _START), _loop_after("in")], True, id="after an input already sent"
        ),
        pytest.param(
            [_INPUT, _writes_on("in", _START, "sub"), _loop_after("in", "sub")],
            True,
            id="after __start__ of another namespace",
        ),
    ],
)
async def test_a_node_waits_for_the_checkpoints_nodes_made_not_the_inputs(
    persistence: Persistence, writes: list[tuple[Any, ...]], waited_for: bool
) -> None:
    """What a node starting under ``durability="sync"`` waits for: a checkpoint that nodes'
    writes made, not the run's input checkpoint nor the one ``__start__`` made from it (they
    come from the run's input alone; no node has run before them).
    A checkpoint whose step's writes were not all seen before it is waited for."""
    thread_id, run_id, token = await _claimed_run(persistence)
    async with _holding(persistence, run_id, token) as held:
        for kind, params, *source in writes:
            held.add(kind, params, source=source[0] if source else None)
        assert held.holds_step() is waited_for
        held.close()


@pytest.mark.timeout(20)
async def test_a_flush_meeting_a_send_that_just_ended_returns(persistence: Persistence) -> None:
    """A send's task can be finished while its done callbacks have not run yet (they run a loop
    turn later); a flush or a take in that moment must not wait for it to be cleared: awaiting a
    finished task does not yield, so it would spin and freeze the event loop."""
    thread_id, run_id, token = await _claimed_run(persistence)
    async with _holding(persistence, run_id, token) as held:
        ended = asyncio.get_running_loop().create_task(asyncio.sleep(0))
        await ended
        held._sending = ended  # as in that moment
        await _hold_a_checkpoint(persistence, thread_id, run_id)
        await held.flush()
        assert await _count(persistence, "checkpoints", thread_id) == 1
        held._sending = ended
        assert not await held.take()


async def test_with_async_durability_a_node_starts_while_the_writes_before_it_are_sent(
    persistence: Persistence,
) -> None:
    """``durability="async"``: the step's writes go out as the next node starts, without holding
    it up (here they cannot land until the test lets go of the run's row, which their lease
    fence needs)."""
    thread_id, run_id, token = await _claimed_run(persistence)
    second_started = asyncio.Event()

    async def first(state: Log) -> dict[str, Any]:
        return {"seen": ["first"]}

    async def second(state: Log) -> dict[str, Any]:
        second_started.set()
        return {"seen": ["second"]}

    graph = _in_line(persistence, first, second)
    async with persistence.pool.connection() as blocker:
        await blocker.execute("BEGIN")
        await blocker.execute("SELECT 1 FROM runs WHERE run_id = %s FOR UPDATE", (run_id,))
        async with _holding(persistence, run_id, token) as held:
            config = {
                "configurable": {"thread_id": thread_id},
                "callbacks": [FlushBeforeNodes(held, wait=False)],
            }
            run = asyncio.create_task(graph.ainvoke({"seen": []}, config, durability="async"))
            await asyncio.wait_for(second_started.wait(), timeout=10)
            await blocker.execute("COMMIT")  # the writes may land now
            assert await asyncio.wait_for(run, timeout=10) == {"seen": ["first", "second"]}
            await held.flush()
    assert await _count(persistence, "checkpoints", thread_id) == 4


async def test_with_async_durability_no_node_starts_once_a_send_found_the_lease_lost(
    persistence: Persistence,
) -> None:
    thread_id, run_id, token = await _claimed_run(persistence)
    ran: list[str] = []

    async def first(state: Log) -> dict[str, Any]:
        ran.append("first")
        async with persistence.pool.connection() as conn:  # another worker takes the run over
            await conn.execute(
                "UPDATE runs SET fencing_token = fencing_token + 1 WHERE run_id = %s", (run_id,)
            )
        return {"seen": ["first"]}

    async def second(state: Log) -> dict[str, Any]:
        ran.append("second")
        held = HELD_WRITES.get()
        assert held is not None
        deadline = asyncio.get_running_loop().time() + 5
        while not held.lost and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(HOLD_SECONDS / 5)  # the send this node's start set off
        return {"seen": ["second"]}

    async def third(state: Log) -> dict[str, Any]:
        ran.append("third")
        return {"seen": ["third"]}

    graph = _in_line(persistence, first, second, third)
    async with _holding(persistence, run_id, token) as held:
        config = {
            "configurable": {"thread_id": thread_id},
            "callbacks": [FlushBeforeNodes(held, wait=False)],
        }
        with pytest.raises(LeaseLost):
            await graph.ainvoke({"seen": []}, config, durability="async")
    assert ran == ["first", "second"]


async def test_a_node_refused_at_its_start_leaves_no_span_open(
    persistence: Persistence, database_url: str
) -> None:
    """The lease is lost while ``nap`` sleeps: the send before ``after_nap`` is refused, and
    the node never runs. The refusal comes from a callback at the node's start; were the tracer
    called before it, it would open a span for the node that nothing ever closes (in LangSmith,
    a node running for ever under an attempt that ended)."""
    thread_id = str(uuid.uuid4())
    with LangSmithCollector() as collector:
        tracing = LangSmithTracing(
            Client(api_url=collector.url, api_key="test"), project="staffgraph-tests"
        )
        async with _runtime(persistence, database_url, tracing=tracing) as runtime:
            created = await runtime.create_run(_slow_run(0.3, "sync"), thread_id=thread_id)
            async with persistence.pool.connection() as conn:  # another worker takes it over
                await conn.execute(
                    "UPDATE runs SET fencing_token = fencing_token + 1 WHERE run_id = %s",
                    (created.run_id,),
                )

            def attempt_ended(c: LangSmithCollector) -> bool:
                return any(
                    root.metadata.get("run_id") == created.run_id and root.run.get("end_time")
                    for root in c.tree()
                )

            assert await asyncio.to_thread(collector.wait_for, attempt_ended, timeout=20)
            assert await tracing.aflush(10)
        (root,) = [r for r in collector.tree() if r.metadata.get("run_id") == created.run_id]
        spans = list(root.walk())
    assert root.error and "LeaseLost" in root.error
    assert "nap" in [span.name for span in spans]
    assert [span.name for span in spans if not span.run.get("end_time")] == []


# A state key Postgres cannot store as text: its name holds a NUL character (chr(0)).
_NUL_KEY_GRAPH = """
from typing_extensions import TypedDict

from langgraph.graph import END, START, StateGraph

State = TypedDict("State", {"n": int, "odd" + chr(0) + "key": int}, total=False)


def count(state: State) -> dict:
    return {"n": state.get("n", 0) + 1}


def mark(state: State) -> dict:
    return {"odd" + chr(0) + "key": 1}


builder = StateGraph(State)
builder.add_sequence([count, mark])
builder.add_edge(START, "count")
builder.add_edge("mark", END)
graph = builder.compile()
"""


@pytest.mark.usefixtures("no_timer")
async def test_last_writes_postgres_refuses_end_the_run_in_error_and_keep_the_thread_usable(
    persistence: Persistence, database_url: str, tmp_path: Path
) -> None:
    """The last node's writes are held until the finish; when Postgres refuses them (a channel
    name with a NUL in it cannot be stored as text), the run ends in error with that error, as
    it would have had the write been sent at once, and the thread keeps what landed before."""
    (tmp_path / "nul_graph.py").write_text(_NUL_KEY_GRAPH)
    config = tmp_path / "langgraph.json"
    config.write_text('{"dependencies": ["."], "graphs": {"nul": "./nul_graph.py:graph"}}')
    thread_id = str(uuid.uuid4())
    run = RunCreate.model_validate(
        {"assistant_id": "nul", "input": {"n": 0}, "durability": "sync", "if_not_exists": "create"}
    )
    async with _runtime(persistence, database_url, config=config) as runtime:
        created = await runtime.create_run(run, thread_id=thread_id)
        status, output = await asyncio.wait_for(runtime.wait(created.run_id), timeout=20)
        assert status == "error", output
        error = json.loads(output)["__error__"]
        # Postgres's primary message, without its CONTEXT (which parameter of our statement).
        assert error == {
            "error": "CharacterNotInRepertoire",
            "message": 'invalid byte sequence for encoding "UTF8": 0x00',
        }, output
        row = await runtime.runs.get(thread_id, created.run_id)
        assert row is not None and row["status"] == "error"
        thread = await runtime.threads.get(thread_id)
        assert thread is not None and thread["status"] == "error"
        # What landed before the last step is the thread's state: ``count`` ran, ``mark`` did not.
        latest = {"configurable": {"thread_id": thread_id}}
        state = await persistence.checkpointer.aget_tuple(latest)
        assert state is not None and state.checkpoint["channel_values"].get("n") == 1
        # The thread is not left busy: a run resuming it runs ``mark`` again, which fails alike.
        again = await runtime.create_run(
            RunCreate.model_validate({"assistant_id": "nul", "input": None, "durability": "sync"}),
            thread_id=thread_id,
        )
        status, output = await asyncio.wait_for(runtime.wait(again.run_id), timeout=20)
        assert status == "error", output
        assert json.loads(output)["__error__"]["error"] == "CharacterNotInRepertoire", output
