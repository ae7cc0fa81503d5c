"""The run queue's SQL (create, claim, heartbeat, finish, sweep) on a real Postgres."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from psycopg.conninfo import make_conninfo

from server.config import load_config
from server.graphs import GraphRegistry, assistant_id_for
from server.ids import new_id
from server.repos import AssistantsRepo, CreateResult, RunsRepo, ThreadsRepo, UnstorableJson
from server.repos.run_ends import database_now, inflight_or_ended
from server.runtime import Runtime
from server.runtime.active import ActiveRun
from server.runtime.broker import InProcessBroker
from server.runtime.worker import WorkerPool
from server.schemas.runs import RunCreate
from state.db import Persistence, open_pool
from state.settings import Settings
from tests.support.runs import create_run
from tests.support.server import TEST_CONFIG

ASSISTANT = str(uuid.uuid4())


async def _setup(persistence: Persistence) -> tuple[RunsRepo, ThreadsRepo]:
    await AssistantsRepo(persistence.pool).sync_defaults([(ASSISTANT, "simple")])
    return RunsRepo(persistence.pool), ThreadsRepo(persistence.pool)


async def _created(runs: RunsRepo, thread_id: str, **how: Any) -> CreateResult:
    """A run created on ``thread_id`` (see :func:`tests.support.runs.create_run`)."""
    return await create_run(runs, thread_id, **{"assistant_id": ASSISTANT, **how})


async def _create(
    runs: RunsRepo,
    thread_id: str,
    *,
    strategy: str = "enqueue",
    owner: str | None = None,
    conn: Any = None,
) -> tuple[str, str | None]:
    result = await _created(runs, thread_id, strategy=strategy, owner=owner, conn=conn)
    return result.outcome, (str(result.run["run_id"]) if result.run else None)


def _runtime(persistence: Persistence, database_url: str, **timing: float) -> Runtime:
    """A runtime serving the test graphs (``timing``: its lease and heartbeat seconds)."""
    return Runtime(
        settings=Settings(),
        graphs=GraphRegistry.from_config(load_config(TEST_CONFIG)),
        persistence=persistence,
        database_url=database_url,
        **timing,  # type: ignore[arg-type]
    )


async def _finish(runs: RunsRepo, row: dict, *, owner: str | None = None, **end: Any):  # type: ignore[no-untyped-def, type-arg]
    return await runs.finish(
        **{
            "run_id": str(row["run_id"]),
            "thread_id": str(row["thread_id"]),
            "token": int(row["fencing_token"]),
            "status": "success",
            "thread_status": "idle",
            "values": {"done": True},
            "interrupts": {},
            "error": None,
            "delete_run": False,
            "owner": owner,
            "lease_seconds": 30,
            **end,
        }
    )


async def test_claim_is_fifo_with_one_running_run_per_thread(persistence: Persistence) -> None:
    runs, threads = await _setup(persistence)
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    first = (await _create(runs, a))[1]
    second = (await _create(runs, a))[1]
    other = (await _create(runs, b))[1]
    claimed = await runs.claim("w1", lease_seconds=30, limit=10)
    assert [str(r["run_id"]) for r in claimed] == [first, other]
    assert await runs.claim("w2", lease_seconds=30, limit=10) == []  # a's next waits for first
    row = next(r for r in claimed if str(r["run_id"]) == first)
    assert row["attempt"] == 1 and row["fencing_token"] == 1 and row["lease_owner"] == "w1"
    result = await _finish(runs, row, owner="w1")
    assert result.outcome == "finished"
    assert result.next_run is not None and result.next_run["run_id"] == second  # chained
    assert (await threads.get(a))["status"] == "busy"  # type: ignore[index]


class _NotToBeSerialised:
    """A value whose serialisation fails the test: the end must send the JSON it was given."""

    def to_json(self) -> Any:
        raise AssertionError("the values were serialised again")


async def test_finish_stores_the_values_json_it_is_given(persistence: Persistence) -> None:
    runs, threads = await _setup(persistence)
    tid = str(uuid.uuid4())
    await _create(runs, tid)
    (row,) = await runs.claim("w1", lease_seconds=30, limit=1)
    result = await _finish(
        runs, row, values={"state": _NotToBeSerialised()}, values_json=b'{"state": "as streamed"}'
    )
    assert result.outcome == "finished"
    assert (await threads.get(tid))["values"] == {"state": "as streamed"}  # type: ignore[index]


async def test_finish_refuses_values_json_holding_a_nul(persistence: Persistence) -> None:
    runs, threads = await _setup(persistence)
    tid = str(uuid.uuid4())
    await _create(runs, tid)
    (row,) = await runs.claim("w1", lease_seconds=30, limit=1)
    with pytest.raises(UnstorableJson):
        await _finish(runs, row, values=None, values_json=b'{"note": "a\\u0000b"}')
    thread = await threads.get(tid)
    assert thread is not None and thread["status"] == "busy" and thread["values"] is None


async def test_fencing_token_rejects_a_stale_worker(persistence: Persistence) -> None:
    runs, threads = await _setup(persistence)
    tid = str(uuid.uuid4())
    await _create(runs, tid)
    (row,) = await runs.claim("w1", lease_seconds=30, limit=1)
    async with persistence.pool.connection() as conn:
        await conn.execute(
            "UPDATE runs SET lease_expires_at = now() - interval '1 second' WHERE run_id = %s",
            (row["run_id"],),
        )
    swept = await runs.sweep(max_attempts=3)
    assert [(s["run_id"], s["outcome"]) for s in swept] == [(str(row["run_id"]), "requeued")]
    (again,) = await runs.claim("w2", lease_seconds=30, limit=1)
    assert again["attempt"] == 2 and again["fencing_token"] == 2
    assert (await _finish(runs, row)).outcome == "stale"  # w1 comes back too late
    assert (await threads.get(tid))["status"] == "busy"  # type: ignore[index]
    assert (await _finish(runs, again)).outcome == "finished"
    assert (await threads.get(tid))["values"] == {"done": True}  # type: ignore[index]


async def test_an_end_that_ignores_a_flagged_cancel_is_refused(persistence: Persistence) -> None:
    """A cancel flagged while the run was running, whose signal the worker never saw: the end
    it records must carry the cancel out (a rollback satisfies an interrupt, not the reverse)."""
    runs, _ = await _setup(persistence)
    tid = str(uuid.uuid4())
    await _create(runs, tid)
    (row,) = await runs.claim("w1", lease_seconds=30, limit=1)
    flagged = await runs.cancel(action="interrupt", thread_id=tid, run_ids=[str(row["run_id"])])
    assert flagged.running == [(tid, str(row["run_id"]))]
    refused = await _finish(runs, row)
    assert (refused.outcome, refused.cancel_action) == ("cancelled", "interrupt")
    assert (await runs.get(tid, str(row["run_id"])))["status"] == "running"  # type: ignore[index]
    await runs.cancel(action="rollback", thread_id=tid, run_ids=[str(row["run_id"])])
    interrupted = {"status": "interrupted", "delete_run": False, "cancel_action": "interrupt"}
    refused = await runs.finish(**_end(row), **interrupted)  # type: ignore[arg-type]
    assert (refused.outcome, refused.cancel_action) == ("cancelled", "rollback")
    rolled = {"status": "interrupted", "delete_run": True, "cancel_action": "rollback"}
    done = await runs.finish(**_end(row), **rolled)  # type: ignore[arg-type]
    assert done.outcome == "finished"
    assert await runs.get(tid, str(row["run_id"])) is None


def _end(row: dict) -> dict:  # type: ignore[type-arg]
    return {
        "run_id": str(row["run_id"]),
        "thread_id": str(row["thread_id"]),
        "token": int(row["fencing_token"]),
        "thread_status": "interrupted",
        "values": None,
        "interrupts": {},
        "error": None,
        "owner": None,
        "lease_seconds": 30,
    }


async def test_sweep_fails_a_run_after_max_attempts(persistence: Persistence) -> None:
    runs, threads = await _setup(persistence)
    tid = str(uuid.uuid4())
    await _create(runs, tid)
    for attempt in (1, 2):
        (row,) = await runs.claim("w", lease_seconds=30, limit=1)
        assert row["attempt"] == attempt
        async with persistence.pool.connection() as conn:
            await conn.execute(
                "UPDATE runs SET lease_expires_at = now() - interval '1 second' WHERE run_id = %s",
                (row["run_id"],),
            )
        outcome = (await runs.sweep(max_attempts=2))[0]["outcome"]
        assert outcome == ("requeued" if attempt == 1 else "failed")
    run = await runs.get(tid, str(row["run_id"]))
    assert run is not None and run["status"] == "error"
    assert run["error"]["error"] == "WorkerLost"
    assert (await threads.get(tid))["status"] == "error"  # type: ignore[index]


async def test_sweep_requeues_a_rollback_and_settles_an_interrupt(
    persistence: Persistence,
) -> None:
    """A cancelled run whose worker stopped: an interrupt is settled at once; a rollback goes
    back to the queue with its flag, so the next worker deletes it and its checkpoints."""
    runs, _ = await _setup(persistence)
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    await _create(runs, a)
    await _create(runs, b)
    claimed = {str(r["thread_id"]): r for r in await runs.claim("w", lease_seconds=30, limit=2)}
    await runs.cancel(action="rollback", thread_id=a, run_ids=[str(claimed[a]["run_id"])])
    await runs.cancel(action="interrupt", thread_id=b, run_ids=[str(claimed[b]["run_id"])])
    async with persistence.pool.connection() as conn:
        await conn.execute("UPDATE runs SET lease_expires_at = now() - interval '1 second'")
    swept = {s["thread_id"]: s["outcome"] for s in await runs.sweep(max_attempts=3)}
    assert swept == {a: "requeued", b: "interrupted"}
    assert (await runs.get(b, str(claimed[b]["run_id"])))["status"] == "interrupted"  # type: ignore[index]
    (again,) = await runs.claim("w2", lease_seconds=30, limit=1)
    assert (str(again["run_id"]), again["cancel_action"]) == (
        str(claimed[a]["run_id"]),
        "rollback",
    )


async def test_heartbeat_reports_cancels_and_lost_leases(persistence: Persistence) -> None:
    runs, _ = await _setup(persistence)
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    _, run_a = await _create(runs, a, owner="w1")
    _, run_b = await _create(runs, b, owner="w1")
    assert run_a and run_b
    assert await runs.heartbeat("w1", [run_a, run_b], lease_seconds=30) == {
        run_a: None,
        run_b: None,
    }
    await runs.cancel(action="rollback", thread_id=a, run_ids=[run_a])
    assert (await runs.heartbeat("w1", [run_a, run_b], lease_seconds=30))[run_a] == "rollback"
    assert await runs.heartbeat("w2", [run_a], lease_seconds=30) == {}  # not w2's lease


async def test_concurrent_reject_creates_admit_one(persistence: Persistence) -> None:
    runs, _ = await _setup(persistence)
    tid = str(uuid.uuid4())
    outcomes = await asyncio.gather(*(_create(runs, tid, strategy="reject") for _ in range(8)))
    assert sorted(o for o, _ in outcomes) == ["conflict"] * 7 + ["created"]


async def test_interrupt_strategy_flags_running_and_settles_queued(
    persistence: Persistence,
) -> None:
    runs, _ = await _setup(persistence)
    tid = str(uuid.uuid4())
    _, running = await _create(runs, tid, owner="w1")
    _, queued = await _create(runs, tid)
    result = await runs.create(
        run_id=new_id(),
        thread_id=tid,
        assistant_id=ASSISTANT,
        metadata={},
        kwargs={},
        config={},
        context={},
        strategy="interrupt",
        if_not_exists="reject",
        temporary=False,
        on_completion=None,
        after_seconds=0,
        owner="w1",
        lease_seconds=30,
    )
    assert result.outcome == "created" and result.run is not None
    assert result.run["status"] == "pending"  # waits for the interrupted run to stop
    assert result.cancel_ids == [running] and result.settled_ids == [queued]
    assert (await runs.get(tid, str(queued)))["status"] == "interrupted"  # type: ignore[index]
    assert (await runs.get(tid, str(running)))["cancel_action"] == "interrupt"  # type: ignore[index]


async def test_a_run_whose_worker_died_is_taken_over(
    persistence: Persistence, database_url: str
) -> None:
    """A run claimed by a worker that stopped heart-beating is requeued and finished by another."""
    runtime = _runtime(persistence, database_url, lease_seconds=1.0, heartbeat_seconds=0.3)
    tid = str(uuid.uuid4())
    await runtime.start()  # syncs the default assistants too
    try:
        # A worker "dead-worker" claimed the run (created with an owner = claimed at once)
        # and then vanished without ever renewing its lease.
        result = await _created(
            runtime.runs,
            tid,
            assistant_id=assistant_id_for("simple"),
            kwargs={"input": {"messages": [{"role": "user", "content": "hi"}]}, "stream_mode": []},
            owner="dead-worker",
            lease_seconds=1.0,
        )
        assert result.run is not None and result.run["status"] == "running"
        run_id = str(result.run["run_id"])
        status, output = await asyncio.wait_for(runtime.wait(run_id), timeout=20)
        assert status == "success" and b'"count":1' in output
        row = await runtime.runs.get(tid, run_id)
        assert row is not None and row["attempt"] == 2 and row["lease_owner"] is None
    finally:
        await runtime.stop()


async def test_a_heartbeat_meeting_a_run_whose_finish_committed_lets_it_end(
    persistence: Persistence, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A heartbeat that no longer finds a run running stops it as a lost lease, unless the
    run's own finish is being recorded: that finish, committing between the heartbeat's look
    at the runs executing here and its UPDATE, is why the run is no longer running.

    Under 32 clients this happened about once a minute: the run was cancelled after its finish
    committed, so its done marker was never published (its followers waited for their idle
    check of Postgres) and the thread's next run, claimed for this process by the finish,
    never started (it waited for its lease to lapse). Two runs, both finished in Postgres,
    both executing here as far as the worker pool knows; the same heartbeat judges both.
    """
    runtime = _runtime(persistence, database_url, lease_seconds=30.0, heartbeat_seconds=0.1)
    await runtime.start()
    assert runtime.workers is not None
    workers = runtime.workers
    forever = asyncio.Event()
    actives: list[ActiveRun] = []
    try:
        for ending in (True, False):
            result = await _created(
                runtime.runs,
                str(uuid.uuid4()),
                assistant_id=assistant_id_for("simple"),
                owner=workers.owner,
            )
            assert result.run is not None and result.run["status"] == "running"
            finished = await _finish(runtime.runs, result.run)
            assert finished.outcome == "finished"
            active = ActiveRun(
                run_id=str(result.run["run_id"]),
                thread_id=str(result.run["thread_id"]),
                token=int(result.run["fencing_token"]),
                ending_at=time.monotonic() if ending else None,
            )
            active.task = asyncio.create_task(forever.wait())
            actives.append(active)
        ended, stopped = actives
        with caplog.at_level(logging.WARNING, logger="server.runtime.worker"):
            for active in actives:
                workers.active[active.run_id] = active
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(stopped.task, timeout=10)  # type: ignore[arg-type]
        # Judged by the same heartbeat, in one pass: the ending run was left to end.
        assert stopped.lost
        assert not ended.lost and ended.task is not None and not ended.task.done()
        lost = [r.getMessage() for r in caplog.records if "lost the lease" in r.getMessage()]
        assert lost == [f"lost the lease of run {stopped.run_id}; stopping it here"]
    finally:
        for active in actives:
            workers.active.pop(active.run_id, None)
            if active.task is not None:
                active.task.cancel()
        await runtime.stop()


async def test_a_run_is_marked_ending_before_its_finish_is_sent(
    persistence: Persistence, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the test above relies on: the executor marks the run ending before its finish
    can commit, so no heartbeat can find it finished and still judge its lease."""
    runtime = _runtime(persistence, database_url)
    seen: list[bool] = []
    record_finish = RunsRepo.finish

    async def watched(self: RunsRepo, **end: Any) -> Any:
        assert runtime.workers is not None
        seen.append(runtime.workers.active[end["run_id"]].ending_at is not None)
        return await record_finish(self, **end)

    monkeypatch.setattr(RunsRepo, "finish", watched)
    await runtime.start()
    try:
        body = RunCreate.model_validate(
            {
                "assistant_id": "simple",
                "input": {"messages": [{"role": "user", "content": "hi"}]},
                "if_not_exists": "create",
            }
        )
        created = await runtime.create_run(body, thread_id=str(uuid.uuid4()))
        status, _ = await asyncio.wait_for(runtime.wait(created.run_id), timeout=20)
    finally:
        await runtime.stop()
    assert status == "success"
    assert seen == [True]


class _EndedEarlier:
    """Executes the first run by handing back ``result``, its finish sent ``ago`` seconds ago
    (an end slow to announce); any other run it is given, it only notes."""

    def __init__(self, first: str, result: Any, ago: float) -> None:
        self.first, self.result, self.ago = first, result, ago
        self.executed: list[str] = []
        self.another = asyncio.Event()

    async def execute(self, row: Any, active: ActiveRun, *, owner: str | None) -> Any:
        self.executed.append(str(row["run_id"]))
        if str(row["run_id"]) != self.first:
            self.another.set()
            return None
        active.ending_at = time.monotonic() - self.ago
        return self.result


@pytest.mark.parametrize("ago", [0.0, 5.0])
async def test_the_next_run_a_finish_claimed_starts_only_while_its_lease_holds(
    persistence: Persistence, ago: float
) -> None:
    """The finish of a run claims the thread's next queued run for the same worker, with a
    lease from that moment. Started long after (its end announced through a broker outage),
    that lease may have lapsed and another worker may own the run: it is given back instead."""
    runs, _ = await _setup(persistence)
    tid, owner = str(uuid.uuid4()), "worker-next"
    first = (await _created(runs, tid, owner=owner, lease_seconds=1.0)).run
    _, second = await _create(runs, tid)
    assert first is not None and second is not None
    result = await _finish(runs, first, owner=owner, lease_seconds=1.0)
    assert result.next_run is not None and str(result.next_run["run_id"]) == second
    executor = _EndedEarlier(str(first["run_id"]), result, ago)
    workers = WorkerPool(
        runs=runs,
        executor=executor,  # type: ignore[arg-type]
        broker=InProcessBroker(),
        owner=owner,
        capacity=4,
        lease_seconds=1.0,
        heartbeat_seconds=0.3,
    )
    ended = workers.start_claimed(first)
    assert ended.task is not None
    await asyncio.wait_for(ended.task, timeout=10)
    row = await runs.get(tid, second)
    assert row is not None
    if ago:  # past the lease less a heartbeat: given back, not started
        assert executor.executed == [str(first["run_id"])]
        assert second not in workers.active
        assert (row["status"], row["lease_owner"]) == ("pending", None)
    else:
        await asyncio.wait_for(executor.another.wait(), timeout=10)
        assert executor.executed == [str(first["run_id"]), second]
        assert (row["status"], row["lease_owner"]) == ("running", owner)


@asynccontextmanager
async def _scanning(database_url: str) -> AsyncIterator[RunsRepo]:
    """Runs repo on a session that reads tables by sequential scan only: rows come back in
    the table's order, the plan Postgres picks for a small table."""
    url = make_conninfo(database_url, options="-c enable_indexscan=off -c enable_bitmapscan=off")
    pool = await open_pool(url, min_size=1, max_size=1, timeout=10)
    try:
        yield RunsRepo(pool)
    finally:
        await pool.close()


async def test_inflight_lists_a_threads_runs_in_the_order_they_will_run(
    persistence: Persistence, database_url: str
) -> None:
    """A thread's join follows its runs in this order: the running one, then the queue.

    A heartbeat rewrites the running run's row after the queued ones were inserted, so its new
    version lies after theirs in the table. Read by a sequential scan (the plan Postgres picks
    for a small table), the order must still be the queue's, not the table's.
    """
    runs, _ = await _setup(persistence)
    tid = str(uuid.uuid4())
    running = (await _create(runs, tid, owner="w1"))[1]
    queued = [(await _create(runs, tid))[1] for _ in range(2)]
    assert running is not None
    async with persistence.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT created_at, updated_at, started_at FROM runs WHERE run_id = %s", (running,)
        )
        stamps = await cur.fetchone()
    # Claimed as it was created: not started before it existed.
    assert stamps is not None
    assert stamps["created_at"] == stamps["updated_at"] == stamps["started_at"]
    assert await runs.heartbeat("w1", [running], lease_seconds=30) == {running: None}
    async with _scanning(database_url) as scanned:
        assert await scanned.inflight(tid) == [running, *queued]


async def test_runs_queued_in_one_transaction_run_in_the_order_they_were_created(
    persistence: Persistence, database_url: str
) -> None:
    """Two crons on one thread fire in one transaction: their runs run in creation order.

    The first run's row is rewritten afterwards, so it lies after the second's in the table,
    and a sequential scan reads the second first: the queue's order must not be the table's.
    """
    runs, _ = await _setup(persistence)
    tid = str(uuid.uuid4())
    async with persistence.pool.connection() as conn, conn.transaction():
        queued = [(await _create(runs, tid, conn=conn))[1] for _ in range(2)]
    async with persistence.pool.connection() as conn:
        await conn.execute("UPDATE runs SET metadata = metadata WHERE run_id = %s", (queued[0],))
    async with _scanning(database_url) as scanned:
        assert await scanned.inflight(tid) == queued
        (first,) = await scanned.claim("w1", lease_seconds=30, limit=1)
        assert str(first["run_id"]) == queued[0]
        result = await _finish(scanned, first, owner="w1")
        assert result.next_run is not None and str(result.next_run["run_id"]) == queued[1]


async def test_inflight_or_ended_adds_the_runs_that_ended_since_the_last_call(
    persistence: Persistence,
) -> None:
    """A thread stream asks this after each run and each idle tick, passing on the clock it got.

    Each call holds every run in flight, and every run that ended after the clock passed in,
    ended ones first; a run that ended before it is left out. So a run that ends between two
    calls is in the second, whether or not the stream was told of it.
    """
    runs, _ = await _setup(persistence)
    tid = str(uuid.uuid4())
    before = (await _created(runs, tid, owner="w1")).run
    assert before is not None
    await _finish(runs, before, owner="w1")
    since = await database_now(persistence.pool)
    running = (await _created(runs, tid, owner="w1")).run
    queued = (await _create(runs, tid))[1]
    assert running is not None
    first, clock = await inflight_or_ended(persistence.pool, tid, since)
    assert first == [str(running["run_id"]), queued]
    assert clock >= since
    await _finish(runs, running, owner="w1")
    second, later = await inflight_or_ended(persistence.pool, tid, clock)
    assert second == [str(running["run_id"]), queued]  # ended first, then the one in flight
    third, _ = await inflight_or_ended(persistence.pool, tid, later)
    assert third == [queued]
