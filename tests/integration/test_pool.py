"""The pool checks a connection on checkout only when it sat idle or its session ended.

A check is a round trip (an empty query); checking every checkout cost ten of a run's
statements. ``pg_stat_activity`` shows whether a check reached the server. Killing the
backend of the pool's only connection from another session is what a restart of Postgres does
to the connections waiting in a pool.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
import pytest

from state.db import open_pool
from state.pool import OutageAwarePool


@asynccontextmanager
async def one_connection_pool(
    url: str, *, check_idle_after: float
) -> AsyncIterator[OutageAwarePool]:
    pool = OutageAwarePool(
        url,
        unreachable_after=5.0,
        check_idle_after=check_idle_after,
        min_size=1,
        max_size=1,
        open=False,
        kwargs={"autocommit": True},
    )
    await pool.open(wait=True, timeout=10)
    try:
        yield pool
    finally:
        await pool.close()


async def used_then_killed(pool: OutageAwarePool, url: str) -> int:
    """Use the pool's connection, return it, then terminate its backend; its pid."""
    async with pool.connection() as conn:
        pid = conn.info.backend_pid
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as admin:
        # Waits (up to 10 s) until the backend has exited, as a restart does.
        await admin.execute("SELECT pg_terminate_backend(%s, 10000)", (pid,))
    return pid


async def last_query(url: str, pid: int) -> str:
    """What the backend ``pid`` ran last, as Postgres reports it."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as admin:
        cur = await admin.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", (pid,))
        row = await cur.fetchone()
    assert row is not None
    return str(row[0])


async def test_a_connection_back_from_use_a_moment_ago_costs_no_round_trip(
    database_url: str,
) -> None:
    async with one_connection_pool(database_url, check_idle_after=60.0) as pool:
        async with pool.connection() as conn:
            await conn.execute("SELECT 'marker'")
            pid = conn.info.backend_pid
        async with pool.connection() as conn:
            assert conn.info.backend_pid == pid
            # No check query reached the server between the two uses.
            assert await last_query(database_url, pid) == "SELECT 'marker'"


async def test_an_idle_connection_is_checked_with_a_query(database_url: str) -> None:
    async with one_connection_pool(database_url, check_idle_after=0.0) as pool:
        async with pool.connection() as conn:
            await conn.execute("SELECT 'marker'")
            pid = conn.info.backend_pid
        async with pool.connection() as conn:
            assert conn.info.backend_pid == pid
            assert await last_query(database_url, pid) == ""  # psycopg_pool's check


@pytest.mark.parametrize("check_idle_after", [0.0, 60.0])
async def test_a_connection_whose_backend_ended_is_replaced_on_checkout(
    database_url: str, check_idle_after: float
) -> None:
    # Recently used or not: the ended session shows on its socket, so it is checked.
    async with one_connection_pool(database_url, check_idle_after=check_idle_after) as pool:
        pid = await used_then_killed(pool, database_url)
        async with pool.connection() as conn:
            assert (await (await conn.execute("SELECT 1")).fetchone()) == (1,)
            assert conn.info.backend_pid != pid


async def test_a_transaction_left_open_in_the_block_is_committed(database_url: str) -> None:
    async with one_connection_pool(database_url, check_idle_after=60.0) as pool:
        async with pool.connection() as conn:
            await conn.execute("BEGIN")
            await conn.execute("CREATE TEMP TABLE probe_committed (x int)")
            await conn.execute("INSERT INTO probe_committed VALUES (1)")
        # The same session (a pool of one): had the block's transaction been rolled back when
        # the connection came back, its temporary table would not exist.
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT count(*) FROM probe_committed")
            assert await cur.fetchone() == (1,)


async def test_a_transaction_open_when_the_block_fails_is_rolled_back(database_url: str) -> None:
    async with one_connection_pool(database_url, check_idle_after=60.0) as pool:
        with pytest.raises(RuntimeError, match="the block failed"):
            async with pool.connection() as conn:
                await conn.execute("BEGIN")
                await conn.execute("CREATE TEMP TABLE probe_rolled_back (x int)")
                raise RuntimeError("the block failed")
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT to_regclass('pg_temp.probe_rolled_back') IS NULL")
            assert await cur.fetchone() == (True,)
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


async def _new_tasks(name: str, before: set[asyncio.Task[Any]]) -> set[asyncio.Task[Any]]:
    """The tasks named ``name-…`` that were not running ``before``, once there are any
    (psycopg_pool names a pool's workers and scheduler after it)."""
    async with asyncio.timeout(10):
        while True:
            tasks = {
                task
                for task in asyncio.all_tasks() - before
                if task.get_name().startswith(name + "-")
            }
            if tasks:
                return tasks
            await asyncio.sleep(0)


async def test_a_pool_whose_open_is_cancelled_is_closed(database_url: str) -> None:
    # A shutdown while the server is still starting cancels the open: the pool must not keep
    # its workers and connections (a process left with them did not exit).
    before = asyncio.all_tasks()
    opening = asyncio.create_task(
        open_pool(database_url, min_size=4, max_size=4, timeout=10, unreachable_after=5.0)
    )
    workers = await _new_tasks("staffgraph", before | {opening})
    assert not opening.done()  # still waiting for its connections
    opening.cancel()
    with pytest.raises(asyncio.CancelledError):
        await opening
    done, running = await asyncio.wait(workers, timeout=10)
    assert running == set(), [task.get_name() for task in running]
    assert all(task.cancelled() or task.exception() is None for task in done)
