"""SIGTERM with runs in flight: they all finish before the process exits; none runs twice. A
run that ignores its cancellation cannot keep the process past the shutdown's deadline."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from langgraph_sdk import get_client

from tests.faults.conftest import FAULT_CONFIG, Effects, busy_threads, run_rows
from tests.support.server import LiveServer

pytestmark = pytest.mark.slow

RUNS = 5
STUBBORN_CONFIG = Path(__file__).with_name("stubborn_langgraph.json")


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


async def _stubborn_run_running(server: LiveServer) -> None:
    """Start a run whose node swallows a cancellation and naps 60 s more; wait until it runs."""
    client = get_client(url=server.url)
    tid = (await client.threads.create())["thread_id"]
    run = await client.runs.create(tid, "stubborn", input={"seconds": 60})
    async with asyncio.timeout(30):
        while (await client.runs.get(tid, run["run_id"]))["status"] != "running":
            await asyncio.sleep(0.05)


async def test_a_run_ignoring_its_cancellation_cannot_hold_the_shutdown_past_its_deadline(
    server_factory,  # type: ignore[no-untyped-def]
) -> None:
    # Grace 1 s, traces flushed within 1 s: the deadline is 2 x 1 + 1 + 15 = 18 s. The run's
    # node swallows the cancellation the shutdown sends after the grace and naps 60 s more.
    env = {"STAFFGRAPH_SHUTDOWN_GRACE_SECONDS": "1", "STAFFGRAPH_TRACE_FLUSH_TIMEOUT": "1"}
    server: LiveServer = server_factory(env=env, config=STUBBORN_CONFIG)
    await _stubborn_run_running(server)

    signalled = time.monotonic()
    server.process.terminate()
    exit_code = await asyncio.to_thread(server.process.wait, 50)
    took = time.monotonic() - signalled

    assert exit_code == 70, server.log()
    assert 18 <= took < 30, took
    assert "the shutdown did not finish within 18 s" in server.log()


async def test_with_several_processes_an_overrun_shutdown_is_the_parents_exit_code_too(
    server_factory,  # type: ignore[no-untyped-def]
) -> None:
    # The process running the stubborn run ends hard (70) after its deadline; its parent, which
    # forwarded the SIGTERM, reports that rather than a clean 0. The other process ends at once.
    env = {
        "STAFFGRAPH_PROCESSES": "2",
        "STAFFGRAPH_SHUTDOWN_GRACE_SECONDS": "1",
        "STAFFGRAPH_TRACE_FLUSH_TIMEOUT": "1",
    }
    server: LiveServer = server_factory(env=env, config=STUBBORN_CONFIG)
    await _stubborn_run_running(server)

    server.process.terminate()
    exit_code = await asyncio.to_thread(server.process.wait, 50)

    assert exit_code == 70, server.log()
    assert server.log().count("the shutdown did not finish within 18 s") == 1
