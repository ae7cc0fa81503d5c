"""SIGTERM with runs in flight: they all finish before the process exits; none runs twice."""

from __future__ import annotations

import asyncio

import pytest
from langgraph_sdk import get_client

from tests.faults.conftest import FAULT_CONFIG, Effects, busy_threads, run_rows
from tests.support.server import LiveServer

pytestmark = pytest.mark.slow

RUNS = 5


async def test_sigterm_lets_runs_in_flight_finish(
    effects: Effects,
    server_factory,  # type: ignore[no-untyped-def]
) -> None:
    env = {"FAULT_EFFECTS_DIR": str(effects.path), "STAFFGRAPH_SHUTDOWN_GRACE_SECONDS": "30"}
    server: LiveServer = server_factory(env=env, config=FAULT_CONFIG)
    database_url = server.env["DATABASE_URL"]
    client = get_client(url=server.url)
    runs = []
    for _ in range(RUNS):
        tid = (await client.threads.create())["thread_id"]
        runs.append(await client.runs.create(tid, "faulty", input={"step_seconds": 0.5}))
    async with asyncio.timeout(60):  # every run past its first step (written by the server)
        while len({line.split()[0] for line in effects.lines("plain.log")}) < RUNS:
            await asyncio.sleep(0.05)
    assert {r["status"] for r in run_rows(database_url)} == {"running"}

    server.process.terminate()
    exit_code = await asyncio.to_thread(server.process.wait, 60)

    assert exit_code == 0, server.log()
    rows = run_rows(database_url)
    assert [(r["status"], r["attempt"]) for r in rows] == [("success", 1)] * RUNS
    expected = effects.expected([r["thread_id"] for r in runs])
    assert set(effects.lines("plain.log")) == expected
    assert effects.duplicates("plain.log") == 0  # no step executed again
    assert busy_threads(database_url) == 0
    assert "requeueing" not in server.log()
