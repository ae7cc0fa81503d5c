"""kill -9 of a worker process mid-run: its runs are taken over and complete, tool effects
made through the ledger are not repeated, and the takeover comes within lease + 10 s."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import httpx
import pytest
from langgraph_sdk import get_client

from tests.faults.conftest import (
    FAST_LEASES,
    FAULT_CONFIG,
    Effects,
    busy_threads,
    run_rows,
    unknown_effects,
)
from tests.support.server import LiveServer

pytestmark = pytest.mark.slow

RUNS = 10
LEASE = float(FAST_LEASES["STAFFGRAPH_LEASE_SECONDS"])


async def _progress(effects: Effects, count: int) -> None:
    # The effect file is written by other processes: no event reaches this one.
    async with asyncio.timeout(120):
        while len(effects.lines("plain.log")) < count:
            await asyncio.sleep(0.1)


async def test_kill_9_a_worker_mid_run(
    redis_url: str,
    effects: Effects,
    server_factory,  # type: ignore[no-untyped-def]
) -> None:
    env = {"REDIS_URL": redis_url, "FAULT_EFFECTS_DIR": str(effects.path), **FAST_LEASES}
    api: LiveServer = server_factory(env=env, config=FAULT_CONFIG, args=("--no-workers",))
    database_url = api.env["DATABASE_URL"]
    shared = {**env, "DATABASE_URL": database_url}
    workers: list[LiveServer] = [
        server_factory(env=shared, config=FAULT_CONFIG, fresh_db=False, command="worker")
        for _ in range(2)
    ]
    client = get_client(url=api.url, timeout=180)
    runs = []
    for _ in range(RUNS):
        tid = (await client.threads.create())["thread_id"]
        runs.append(await client.runs.create(tid, "faulty", input={"step_seconds": 0.8}))
    await _progress(effects, RUNS)
    owners = [str(r["lease_owner"]) for r in run_rows(database_url) if r["status"] == "running"]
    victim = max(workers, key=lambda w: sum(f":{w.process.pid}:" in o for o in owners))
    assert any(f":{victim.process.pid}:" in o for o in owners)
    os.kill(victim.process.pid, signal.SIGKILL)
    killed_at = time.monotonic()

    results = await asyncio.gather(*(client.runs.join(r["thread_id"], r["run_id"]) for r in runs))
    recovered = time.monotonic() - killed_at
    assert [sorted(r["done"]) for r in results] == [["s1", "s2", "s3", "s4", "s5"]] * RUNS
    rows = run_rows(database_url)
    assert {r["status"] for r in rows} == {"success"}
    assert max(int(r["attempt"]) for r in rows) >= 2  # some runs were taken over
    assert recovered <= LEASE + 10
    expected = effects.expected([r["thread_id"] for r in runs])
    # A kill that lands between the ledger's attempt and the tool's write leaves that effect
    # unknown: the ledger does not call a non-idempotent tool again (and says so).
    unknown = unknown_effects(database_url)
    assert len(unknown) <= 2
    assert set(effects.lines("ledgered.log")) | unknown == expected
    assert effects.duplicates("ledgered.log") == 0  # exactly once through the ledger
    assert set(effects.lines("plain.log")) == expected  # nothing lost
    assert busy_threads(database_url) == 0
    async with httpx.AsyncClient(base_url=api.url) as http:
        assert (await http.get("/ok")).status_code == 200
