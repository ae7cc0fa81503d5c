"""Thread TTLs (``ttl`` on create and update, langgraph.json ``checkpointer.ttl``) and storage.

Request validation and response bodies were observed on ``langgraph dev`` (langgraph-api
0.16.7): ``ttl`` is an object ``{"strategy": "delete" | "keep_latest" (default "delete"),
"ttl": minutes}``, a bad strategy or a non-object is a 422, 0 and negative minutes are
accepted, and thread bodies do not show the TTL. The dev server's in-memory runtime never sweeps
(its sweep is "not implemented for inmem"), so what a sweep does follows the reference's
documented strategies: ``delete`` removes the thread with its runs and checkpoints,
``keep_latest`` keeps the thread and its latest checkpoint only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from langgraph_sdk import get_client

from tests.support.server import LiveServer, fresh_database, start_server

TTL_CONFIG = Path(__file__).resolve().parents[2] / "support" / "langgraph_ttl.json"


@pytest.fixture(scope="module")
def ttl_server(database_url: str) -> Iterator[LiveServer]:
    """A server sweeping every 0.3 s, 2 threads a pass, default TTL 10000 minutes."""
    server = start_server(env={"DATABASE_URL": fresh_database(database_url)}, config=TTL_CONFIG)
    try:
        yield server
    finally:
        server.stop()


async def _eventually(check: Callable[[], Awaitable[bool]], *, within: float = 30.0) -> None:
    # A sweep announces nothing: its effect is read until it shows (sweeps run every 0.3 s).
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "the sweeper did not get there in time"
        await asyncio.sleep(0.1)


async def _gone(http: httpx.AsyncClient, thread_id: str) -> bool:
    return (await http.get(f"/threads/{thread_id}")).status_code == 404


async def test_ttl_validation_as_the_reference(ttl_server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=ttl_server.url) as http:
        for body in ({"ttl": {"strategy": "bogus", "ttl": 1}}, {"ttl": 5}, {"ttl": {"ttl": "x"}}):
            assert (await http.post("/threads", json=body)).status_code == 422, body
        for body in (
            {"ttl": {"ttl": 1}},
            {"ttl": {"strategy": "keep_latest", "ttl": 0.05}},
            {"ttl": {"strategy": "delete"}},
            {"ttl": {"ttl": 600}},
        ):
            created = await http.post("/threads", json=body)
            assert created.status_code == 200, body
            assert "ttl" not in created.json()
        thread = created.json()["thread_id"]
        bad = {"ttl": {"ttl": 2, "strategy": "bad"}}
        patched = await http.patch(f"/threads/{thread}", json=bad)
        assert patched.status_code == 422
        patched = await http.patch(f"/threads/{thread}", json={"ttl": {"ttl": 700}})
        assert patched.status_code == 200 and "ttl" not in patched.json()


async def test_delete_strategy_removes_thread_runs_and_checkpoints(ttl_server: LiveServer) -> None:
    client = get_client(url=ttl_server.url)
    thread = await client.threads.create(ttl={"strategy": "delete", "ttl": 0.01})
    tid = thread["thread_id"]
    await client.runs.wait(tid, "slow", input={"seconds": 0})
    async with httpx.AsyncClient(base_url=ttl_server.url) as http:
        await _eventually(lambda: _gone(http, tid))
        assert (await http.get(f"/threads/{tid}/runs")).status_code == 404
        assert (await http.get(f"/threads/{tid}/storage")).status_code == 404
    with psycopg.connect(ttl_server.env["DATABASE_URL"]) as conn:
        left = conn.execute("SELECT count(*) FROM checkpoints WHERE thread_id = %s", (tid,))
        assert left.fetchone() == (0,)


async def test_keep_latest_prunes_to_the_latest_checkpoint(ttl_server: LiveServer) -> None:
    client = get_client(url=ttl_server.url)
    tid = (await client.threads.create(ttl={"strategy": "keep_latest", "ttl": 0.02}))["thread_id"]
    for _ in range(2):
        await client.runs.wait(tid, "slow", input={"seconds": 0})
    values = (await client.threads.get_state(tid))["values"]

    async def pruned() -> bool:
        return len(await client.threads.get_history(tid, limit=100)) == 1

    await _eventually(pruned)
    assert (await client.threads.get(tid))["status"] == "idle"
    assert (await client.threads.get_state(tid))["values"] == values
    # Still runnable after pruning.
    out = await client.runs.wait(tid, "slow", input={"seconds": 0})
    assert out["log"][-2:] == ["slept 0", "done"]


async def test_busy_threads_wait_and_patch_sets_a_ttl(ttl_server: LiveServer) -> None:
    client = get_client(url=ttl_server.url)
    busy = (await client.threads.create())["thread_id"]
    run = await client.runs.create(busy, "slow", input={"seconds": 30})
    async with httpx.AsyncClient(base_url=ttl_server.url) as http:
        # PATCH arms an expired TTL on the busy thread and on a witness thread.
        witness = (await client.threads.create())["thread_id"]
        for tid in (busy, witness):
            answer = await http.patch(f"/threads/{tid}", json={"ttl": {"ttl": 0}})
            assert answer.status_code == 200
        await _eventually(lambda: _gone(http, witness))
        # Swept past the busy thread: its run is never cut short by a TTL.
        assert (await http.get(f"/threads/{busy}")).status_code == 200
        await client.runs.cancel(busy, run["run_id"], wait=True)
        await _eventually(lambda: _gone(http, busy))


async def test_default_ttl_from_langgraph_json(ttl_server: LiveServer) -> None:
    client = get_client(url=ttl_server.url)
    plain = (await client.threads.create())["thread_id"]
    own = (await client.threads.create(ttl={"strategy": "keep_latest", "ttl": 60}))["thread_id"]
    with psycopg.connect(ttl_server.env["DATABASE_URL"]) as conn:
        rows = dict(
            (str(row[0]), row[1:])
            for row in conn.execute(
                "SELECT thread_id, ttl_strategy, ttl_minutes, "
                "extract(epoch FROM expires_at - created_at) FROM threads "
                "WHERE thread_id = ANY(%s::uuid[])",
                ([plain, own],),
            )
        )
    strategy, minutes, seconds = rows[plain]
    assert (strategy, minutes) == ("delete", 10000) and abs(float(seconds) - 600_000) < 60
    strategy, minutes, seconds = rows[own]
    assert (strategy, minutes) == ("keep_latest", 60) and abs(float(seconds) - 3600) < 60


async def test_storage_answers_as_the_reference(ttl_server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=ttl_server.url) as http:
        tid = (await http.post("/threads", json={})).json()["thread_id"]
        empty = await http.get(f"/threads/{tid}/storage")
        assert empty.json() == {
            "thread_id": tid,
            "total_bytes": 0,
            "checkpoints": {"count": 0, "bytes": 0},
            "channel_values": {"count": 0, "bytes": 0, "by_channel": {}},
            "pending_writes": {"count": 0, "bytes": 0},
        }
        missing = await http.get("/threads/00000000-0000-0000-0000-000000000000/storage")
        assert missing.status_code == 404
        assert missing.json() == {
            "detail": "Thread with ID 00000000-0000-0000-0000-000000000000 not found"
        }
        bad = await http.get("/threads/nope/storage")
        assert bad.status_code == 422
        assert bad.json() == {"detail": "Invalid thread ID: must be a UUID"}
