"""Postgres and Redis restarted under load: runs complete, nothing is lost or repeated, the API
answers 503 with Retry-After (fast) rather than 500 while Postgres is down, and streams end with
the final state."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from langgraph_sdk import get_client

from tests.faults.conftest import (
    FAST_LEASES,
    FAULT_CONFIG,
    ControlledPostgres,
    ControlledRedis,
    Effects,
    busy_threads,
    run_rows,
)
from tests.support.server import LiveServer

pytestmark = pytest.mark.slow

RUNS = 10
DONE = ["s1", "s2", "s3", "s4", "s5"]


async def _progress(effects: Effects, count: int) -> None:
    async with asyncio.timeout(120):  # written by the server process: nothing to await
        while len(effects.lines("plain.log")) < count:
            await asyncio.sleep(0.05)


async def _until_answered(http: httpx.AsyncClient, path: str) -> None:
    """What a client does after a 503: come back after Retry-After until it is answered."""
    async with asyncio.timeout(60):
        while (response := await http.get(path)).status_code == 503:
            await asyncio.sleep(float(response.headers["Retry-After"]))
    assert response.status_code == 200, response.text


async def _probe_while_down(http: httpx.AsyncClient, tid: str, seconds: float) -> list[float]:
    """Ask for the thread repeatedly; every answer must be a quick 503 with Retry-After."""
    took: list[float] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.monotonic()
        response = await http.get(f"/threads/{tid}")
        took.append(time.monotonic() - started)
        assert response.status_code == 503, response.text
        assert response.headers["Retry-After"] == "2"
        assert "detail" in response.json()
    return took


async def test_postgres_restart_under_load(
    own_postgres: ControlledPostgres,
    effects: Effects,
    server_factory,  # type: ignore[no-untyped-def]
) -> None:
    env = {
        "DATABASE_URL": own_postgres.url,
        "FAULT_EFFECTS_DIR": str(effects.path),
        **FAST_LEASES,
    }
    server: LiveServer = server_factory(env=env, config=FAULT_CONFIG, fresh_db=False)
    client = get_client(url=server.url, timeout=180)
    runs = []
    for _ in range(RUNS):
        tid = (await client.threads.create())["thread_id"]
        runs.append(await client.runs.create(tid, "faulty", input={"step_seconds": 0.6}))
    await _progress(effects, RUNS)

    await asyncio.to_thread(own_postgres.stop)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        took = await _probe_while_down(http, runs[0]["thread_id"], 4.0)
    await asyncio.to_thread(own_postgres.start)
    assert took and max(took) < 2.0
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        await _until_answered(http, f"/threads/{runs[0]['thread_id']}")

    results = await asyncio.gather(*(client.runs.join(r["thread_id"], r["run_id"]) for r in runs))
    assert [sorted(r["done"]) for r in results] == [DONE] * RUNS
    rows = run_rows(own_postgres.url)
    assert {r["status"] for r in rows} == {"success"}
    expected = effects.expected([r["thread_id"] for r in runs])
    assert set(effects.lines("plain.log")) == expected
    assert set(effects.lines("ledgered.log")) == expected
    assert effects.duplicates("ledgered.log") == 0
    assert busy_threads(own_postgres.url) == 0
    assert "Internal server error" not in server.log()

    # A quick pg_ctl restart as well: the pool's dead connections are replaced on checkout.
    await asyncio.to_thread(own_postgres.restart)
    waited = await client.runs.wait(None, "faulty", input={"step_seconds": 0})
    assert sorted(waited["done"]) == DONE


async def test_redis_restart_under_load(
    own_redis: ControlledRedis,
    effects: Effects,
    server_factory,  # type: ignore[no-untyped-def]
) -> None:
    env = {"REDIS_URL": own_redis.url, "FAULT_EFFECTS_DIR": str(effects.path), **FAST_LEASES}
    server: LiveServer = server_factory(env=env, config=FAULT_CONFIG)
    client = get_client(url=server.url, timeout=180)
    threads = [(await client.threads.create())["thread_id"] for _ in range(RUNS)]

    async def stream(tid: str) -> list[tuple[str, object]]:
        parts = client.runs.stream(tid, "faulty", input={"step_seconds": 0.6}, stream_mode="values")
        return [(part.event, part.data) async for part in parts]

    streams = [asyncio.create_task(stream(tid)) for tid in threads]
    await _progress(effects, RUNS)
    own_redis.kill()
    await asyncio.sleep(3)  # the outage itself: Redis stays down this long
    await asyncio.to_thread(own_redis.start)

    for parts in await asyncio.gather(*streams):
        values = [data for event, data in parts if event == "values"]
        assert values and sorted(values[-1]["done"]) == DONE  # type: ignore[index]
    rows = run_rows(server.env["DATABASE_URL"])
    assert {r["status"] for r in rows} == {"success"}
    assert len(rows) == RUNS
    assert set(effects.lines("plain.log")) == effects.expected(threads)
    assert busy_threads(server.env["DATABASE_URL"]) == 0
    assert "Internal server error" not in server.log()
