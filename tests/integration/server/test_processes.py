"""``staffgraph serve --processes 2``: one port, two processes, any of them serves any run.

The kernel spreads connections over the processes (``SO_REUSEPORT``). Each fresh connection
lands on either; runs are claimed by the process that created them, so the runs table's lease
owners show that both served. Every run is then joined, streamed or cancelled on other fresh
connections, whichever process they reach: with Redis, and without it (Postgres broker).
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable

import httpx
import psutil
import psycopg
import pytest
from langgraph_sdk import get_client

from tests.support.server import LiveServer

CONNECTIONS = 16
MAX_CONNECTIONS = 64


def children(server: LiveServer) -> list[psutil.Process]:
    return psutil.Process(server.process.pid).children()


async def lease_owner(url: str, run_id: str) -> str | None:
    """The pid of the process that holds the run's lease (None once it has ended)."""
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute(
            "SELECT split_part(lease_owner, ':', 2) FROM runs WHERE run_id = %s", (run_id,)
        )
        row = await cur.fetchone()
        return row[0] if row and row[0] else None


@pytest.mark.parametrize("with_redis", [False, True], ids=["postgres-broker", "redis"])
async def test_two_processes_serve_join_and_cancel_each_others_runs(
    server_factory: Callable[..., LiveServer], redis_url: str, with_redis: bool
) -> None:
    env = {"STAFFGRAPH_PROCESSES": "2", **({"REDIS_URL": redis_url} if with_redis else {})}
    server = server_factory(env=env)
    pids = {child.pid for child in children(server)}
    assert len(pids) == 2
    async with httpx.AsyncClient(base_url=server.url) as http:
        info = (await http.get("/info")).json()
    assert info["broker"]["kind"] == ("redis" if with_redis else "postgres")

    # One client per connection: each run is created through one process and joined through
    # whichever process the next connection reaches. The kernel picks the process for each
    # connection, and on a loaded machine one may take a long series of them: go on (up to
    # MAX_CONNECTIONS) until both processes have created runs. Each run is running in (leased
    # by) the process that created it, read as soon as it is created (it lasts 5 s).
    runs = []
    owners: set[str | None] = set()
    while len(runs) < CONNECTIONS or (
        owners != {str(p) for p in pids} and len(runs) < MAX_CONNECTIONS
    ):
        client = get_client(url=server.url, headers={"Connection": "close"})
        tid = (await client.threads.create())["thread_id"]
        run = await client.runs.create(tid, "slow", input={"seconds": 5})
        runs.append((tid, run))
        owners.add(await lease_owner(server.env["DATABASE_URL"], run["run_id"]))
    assert owners == {str(pid) for pid in pids}  # both processes created (and run) runs

    async def join(tid: str, run_id: str) -> None:
        client = get_client(url=server.url, headers={"Connection": "close"})
        assert (await client.runs.join(tid, run_id))["log"] == ["slept 5", "done"]

    await asyncio.gather(*(join(tid, run["run_id"]) for tid, run in runs))

    # Streamed and cancelled through fresh connections too.
    for _ in range(4):
        client = get_client(url=server.url, headers={"Connection": "close"})
        tid = (await client.threads.create())["thread_id"]
        parts = [
            p
            async for p in client.runs.stream(
                tid, "slow", input={"seconds": 0}, stream_mode="values"
            )
        ]
        assert parts[-1].data["log"] == ["slept 0", "done"]
        run = await client.runs.create(tid, "slow", input={"seconds": 30})
        other = get_client(url=server.url, headers={"Connection": "close"})
        await other.runs.cancel(tid, run["run_id"], wait=True)
        assert (await other.runs.get(tid, run["run_id"]))["status"] == "interrupted"

    assert server.stop() == 0
    assert not any(psutil.pid_exists(pid) for pid in pids)


async def test_a_child_that_dies_stops_the_server(
    server_factory: Callable[..., LiveServer],
) -> None:
    server = server_factory(env={"STAFFGRAPH_PROCESSES": "2"})
    first, second = children(server)
    os.kill(first.pid, signal.SIGKILL)
    assert server.process.wait(timeout=60) == 2
    assert not psutil.pid_exists(second.pid) or second.status() == psutil.STATUS_ZOMBIE


async def test_the_children_end_when_the_parent_is_killed(
    server_factory: Callable[..., LiveServer],
) -> None:
    server = server_factory(env={"STAFFGRAPH_PROCESSES": "2"})
    kids = children(server)
    assert len(kids) == 2
    server.process.kill()
    server.process.wait()
    gone, alive = psutil.wait_procs(kids, timeout=60)
    assert not alive
