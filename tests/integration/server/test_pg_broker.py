"""Several server processes without Redis: run events go through Postgres (``PostgresBroker``).

Two ``staffgraph serve`` processes on one database with ``STAFFGRAPH_BROKER=postgres``: a run
started through one is streamed, joined, replayed and cancelled through the other.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import psycopg
import pytest
from langgraph_sdk import get_client

from tests.support.server import LiveServer, fresh_database, start_server
from tests.support.sse import get_stream, parse_frames

Pair = tuple[LiveServer, LiveServer]


@pytest.fixture(scope="module")
def pg_pair(database_url: str) -> Iterator[Pair]:
    """Two server processes on the same fresh database, run events in Postgres."""
    env = {"DATABASE_URL": fresh_database(database_url), "STAFFGRAPH_BROKER": "postgres"}
    first = start_server(env=env)
    try:
        second = start_server(env=env)
    except BaseException:
        first.stop()
        raise
    try:
        yield first, second
    finally:
        second.stop()
        first.stop()


async def test_info_names_the_postgres_broker(pg_pair: Pair) -> None:
    async with httpx.AsyncClient(base_url=pg_pair[0].url) as http:
        info = (await http.get("/info")).json()
    assert info["broker"] == {"kind": "postgres"}


async def test_wait_and_join_across_processes(pg_pair: Pair) -> None:
    first, second = pg_pair
    one, two = get_client(url=first.url), get_client(url=second.url)
    tid = (await one.threads.create())["thread_id"]
    run = await one.runs.create(tid, "slow", input={"seconds": 0.3})
    joined = await two.runs.join(tid, run["run_id"])
    assert joined["log"] == ["slept 0.3", "done"]
    out = await two.runs.wait(tid, "slow", input={"seconds": 0})
    assert out["log"][-2:] == ["slept 0", "done"]


async def test_cancel_reaches_a_run_on_another_process(pg_pair: Pair) -> None:
    first, second = pg_pair
    one, two = get_client(url=first.url), get_client(url=second.url)
    tid = (await one.threads.create())["thread_id"]
    run = await one.runs.create(tid, "slow", input={"seconds": 30})
    assert run["status"] == "running"  # claimed by the process that created it
    started = time.monotonic()
    await two.runs.cancel(tid, run["run_id"], wait=True)
    assert time.monotonic() - started < 10
    assert (await two.runs.get(tid, run["run_id"]))["status"] == "interrupted"


async def test_a_stream_is_joined_live_and_replayed_through_the_other_process(
    pg_pair: Pair, database_url: str
) -> None:
    first, second = pg_pair
    tid = str(uuid.uuid4())
    async with (
        httpx.AsyncClient(base_url=first.url, timeout=60) as one,
        httpx.AsyncClient(base_url=second.url, timeout=60) as two,
    ):
        await one.post("/threads", json={"thread_id": tid})
        run = (
            await one.post(
                f"/threads/{tid}/runs",
                json={
                    "assistant_id": "slow",
                    "input": {"seconds": 0.5},
                    "stream_mode": ["values"],
                    "stream_resumable": True,
                },
            )
        ).json()
        # Joined through the other process while the run is under way.
        _, live = await get_stream(two, f"/threads/{tid}/runs/{run['run_id']}/stream")
        assert live[-1].event == "values"
        assert live[-1].data["log"] == ["slept 0.5", "done"]
        # Replayed from the start through the other process, ids and all.
        _, replay = await get_stream(
            two, f"/threads/{tid}/runs/{run['run_id']}/stream", headers={"Last-Event-ID": "-1"}
        )
        _, again = await get_stream(
            one, f"/threads/{tid}/runs/{run['run_id']}/stream", headers={"Last-Event-ID": "-1"}
        )
    assert [f.raw for f in replay] == [f.raw for f in again]
    assert [f.id for f in live] == [f.id for f in replay][-len(live) :]
    # The log is in Postgres, ending with the done marker.
    url = first.env["DATABASE_URL"]
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute(
            "SELECT ms || '-' || seq, event FROM run_events WHERE stream = %s ORDER BY ms, seq",
            (f"run:{run['run_id']}",),
        )
        rows = await cur.fetchall()
    assert [r[0] for r in rows[:-1]] == [f.id for f in replay]
    assert rows[-1][1] == "__done__"


async def test_a_thread_stream_follows_a_run_started_through_the_other_process(
    pg_pair: Pair,
) -> None:
    first, second = pg_pair
    async with (
        httpx.AsyncClient(base_url=first.url, timeout=60) as one,
        httpx.AsyncClient(base_url=second.url, timeout=60) as two,
    ):
        tid = (await one.post("/threads", json={})).json()["thread_id"]
        run = await one.post(
            f"/threads/{tid}/runs",
            json={"assistant_id": "slow", "input": {"seconds": 0.5}, "stream_mode": ["values"]},
        )
        assert run.status_code == 200, run.text
        frames = []
        async with two.stream("GET", f"/threads/{tid}/stream") as response:
            assert response.status_code == 200
            buffer = b""
            async for chunk in response.aiter_bytes():
                buffer += chunk
                complete, _, buffer = buffer.rpartition(b"\r\n\r\n")
                frames += parse_frames(complete + b"\r\n\r\n") if complete else []
                if any(
                    f.event == "metadata" and f.data.get("status") == "run_done" for f in frames
                ):
                    break
    values = [f for f in frames if f.event == "values"]
    assert values[-1].data["log"] == ["slept 0.5", "done"]
    assert frames[-1].data["run_id"] == run.json()["run_id"]
