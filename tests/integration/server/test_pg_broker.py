"""Several server processes without Redis: run events go through Postgres (``PostgresBroker``).

Two ``staffgraph serve`` processes on one database with ``STAFFGRAPH_BROKER=postgres``: a run
started through one is streamed, joined, replayed and cancelled through the other.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import psycopg
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient

from server.runtime.broker import parse_event_id
from tests.support.server import LiveServer, fresh_database, start_server
from tests.support.sse import Frame, get_stream, parse_frames

Pair = tuple[LiveServer, LiveServer]


@pytest.fixture(scope="module")
def pg_pair(database_url: str) -> Iterator[Pair]:
    """Two server processes on the same fresh database, run events in Postgres."""
    env = {"DATABASE_URL": fresh_database(database_url), "STAFFGRAPH_BROKER": "postgres"}
    # Each process's connections carry its name (libpq reads PGAPPNAME): see _deaf_to_wants.
    first = start_server(env={**env, "PGAPPNAME": "staffgraph-first"})
    try:
        second = start_server(env={**env, "PGAPPNAME": "staffgraph-second"})
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
        async with two.stream("GET", f"/threads/{tid}/stream") as response:
            assert response.status_code == 200
            frames = await _until_run_done(response.aiter_bytes())
    values = [f for f in frames if f.event == "values"]
    assert values[-1].data["log"] == ["slept 0.5", "done"]
    assert frames[-1].data["run_id"] == run.json()["run_id"]


async def _until(chunks: AsyncIterator[bytes], stop: Callable[[Frame], bool]) -> list[Frame]:
    """A stream's frames up to the first that ``stop`` holds for."""
    frames: list[Frame] = []
    buffer = b""
    async for chunk in chunks:
        buffer += chunk
        complete, _, buffer = buffer.rpartition(b"\r\n\r\n")
        frames += parse_frames(complete + b"\r\n\r\n") if complete else []
        if any(stop(f) for f in frames):
            break
    return frames


def _run_done(frame: Frame) -> bool:
    return frame.event == "metadata" and frame.data.get("status") == "run_done"


def _root_lifecycle_end(frame: Frame) -> bool:
    return (
        frame.event == "lifecycle"
        and frame.data["params"]["namespace"] == []
        and frame.data["params"]["data"]["event"] in ("completed", "failed", "interrupted")
    )


async def _until_run_done(chunks: AsyncIterator[bytes]) -> list[Frame]:
    """A thread stream's frames up to the first ``run_done``."""
    return await _until(chunks, _run_done)


async def _thread_through_first(pair: Pair) -> tuple[LiveServer, str, LangGraphClient, str]:
    """The second server, the database URL, a client of the first and a thread made there."""
    first, second = pair
    one = get_client(url=first.url)
    tid = (await one.threads.create())["thread_id"]
    return second, first.env["DATABASE_URL"], one, tid


async def _event_rows(url: str, stream: str) -> list[tuple[str, str]]:
    """``(id, event)`` of the stream's rows in ``run_events``, in order."""
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute(
            "SELECT ms || '-' || seq, event FROM run_events WHERE stream = %s ORDER BY ms, seq",
            (stream,),
        )
        return [(str(r[0]), str(r[1])) for r in await cur.fetchall()]


async def test_a_run_read_where_it_runs_writes_no_events_to_postgres(pg_pair: Pair) -> None:
    """The process that runs a run keeps its log in memory while nobody elsewhere reads it."""
    first, _ = pg_pair
    url = first.env["DATABASE_URL"]
    one = get_client(url=first.url)
    tid = (await one.threads.create())["thread_id"]
    streamed = [
        p async for p in one.runs.stream(tid, "slow", input={"seconds": 0}, stream_mode="values")
    ]
    assert streamed[-1].data["log"] == ["slept 0", "done"]
    run = await one.runs.create(tid, "slow", input={"seconds": 0.1})
    assert (await one.runs.join(tid, run["run_id"]))["log"][-2:] == ["slept 0.1", "done"]
    runs = await one.runs.list(tid)
    assert len(runs) == 2
    for each in runs:
        assert await _event_rows(url, f"run:{each['run_id']}") == []
    assert await _event_rows(url, f"thread:{tid}") == []


async def test_a_run_joined_through_the_other_process_has_its_log_written_for_it(
    pg_pair: Pair,
) -> None:
    """A reader elsewhere asks for the log; the process that runs the run writes all of it."""
    second, url, one, tid = await _thread_through_first(pg_pair)
    run = await one.runs.create(
        tid, "slow", input={"seconds": 0.5}, stream_mode=["values", "updates"]
    )
    async with httpx.AsyncClient(base_url=second.url, timeout=60) as two:
        _, frames = await get_stream(two, f"/threads/{tid}/runs/{run['run_id']}/stream")
    assert frames[-1].event == "values"
    assert frames[-1].data["log"] == ["slept 0.5", "done"]
    assert all(f.id is None for f in frames)  # not resumable: no ids, as in one process
    rows = await _event_rows(url, f"run:{run['run_id']}")
    # The whole log, from before the join too, in the order it was made, with the ids of the
    # process that ran it.
    assert [event for _, event in rows] == [
        "metadata",
        "values",
        "updates",
        "values",
        "updates",
        "values",
        "__done__",
    ]
    positions = [parse_event_id(i) or (0, 0) for i, _ in rows]
    assert positions == sorted(positions)


async def test_a_thread_stream_opened_first_hears_of_a_run_started_through_the_other_process(
    pg_pair: Pair,
) -> None:
    """A thread stream's want reaches every process: the one that starts the run announces it."""
    second, url, one, tid = await _thread_through_first(pg_pair)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as listener:
        await listener.execute("LISTEN staffgraph_event_wants")
        async with (
            httpx.AsyncClient(base_url=second.url, timeout=60) as two,
            two.stream("GET", f"/threads/{tid}/stream") as response,
        ):
            assert response.status_code == 200
            chunks = response.aiter_bytes()
            # The stream asks every process for the thread's announcements; the first process
            # heard it when this connection does (both listen on the channel).
            await _want_sent(listener, tid)
            run = await one.runs.create(tid, "slow", input={"seconds": 0}, stream_mode="values")
            # Unannounced, the run (done at once) would never be streamed: fail, not hang.
            async with asyncio.timeout(20):
                frames = await _until_run_done(chunks)
    assert frames[-1].data == {"status": "run_done", "run_id": run["run_id"]}
    assert [f.data["log"] for f in frames if f.event == "values"][-1] == ["slept 0", "done"]
    assert [event for _, event in await _event_rows(url, f"thread:{tid}")] == ["run"]


@asynccontextmanager
async def _deaf_to_wants(server: LiveServer) -> AsyncIterator[None]:
    """``server`` stopped (SIGSTOP) with its ``LISTEN`` connection ended, until the block ends.

    A want sent meanwhile never reaches it, as for a process that starts up or reconnects its
    listener while a stream's want goes out: it learns of the want at the stream's renewal
    (every heartbeat, 5 s), not before. Once continued it listens again within a moment.
    """
    url = server.env["DATABASE_URL"]
    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            cur = await conn.execute(
                # The broker's listener (its last statement); returns once the backend has
                # exited (the timeout is in milliseconds).
                "SELECT pg_terminate_backend(pid, 20000) FROM pg_stat_activity "
                "WHERE application_name = %s AND query = 'LISTEN staffgraph_event_wants'",
                (server.env["PGAPPNAME"],),
            )
            assert [row[0] for row in await cur.fetchall()] == [True]
        yield
    finally:
        os.kill(server.process.pid, signal.SIGCONT)


async def _want_sent(listener: psycopg.AsyncConnection[Any], tid: str) -> None:
    async for note in listener.notifies(timeout=30):
        if note.payload == f"thread:{tid}":
            return
    raise AssertionError(f"no want for thread:{tid}")


@asynccontextmanager
async def _opened_while_first_is_deaf(
    pair: Pair, client: httpx.AsyncClient, request: httpx.Request, tid: str
) -> AsyncIterator[httpx.Response]:
    """The stream ``request`` (to the second process) opened, its want sent, while the first
    process cannot hear it (:func:`_deaf_to_wants`); closed after the block."""
    first = pair[0]
    async with await psycopg.AsyncConnection.connect(
        first.env["DATABASE_URL"], autocommit=True
    ) as listener:
        await listener.execute("LISTEN staffgraph_event_wants")
        async with _deaf_to_wants(first):
            response = await client.send(request, stream=True)
            await _want_sent(listener, tid)
    try:
        assert response.status_code == 200
        yield response
    finally:
        await response.aclose()


async def test_a_thread_stream_finds_a_short_run_its_process_never_announced(
    pg_pair: Pair,
) -> None:
    """A run that starts and ends on a process that missed the stream's want is still streamed.

    The process announces it to nobody; the stream used to look for unannounced runs among
    those still running only, and missed a short one for good.
    """
    second, url, one, tid = await _thread_through_first(pg_pair)
    async with httpx.AsyncClient(base_url=second.url, timeout=60) as two:
        request = two.build_request("GET", f"/threads/{tid}/stream")
        async with _opened_while_first_is_deaf(pg_pair, two, request, tid) as response:
            run = await one.runs.create(tid, "slow", input={"seconds": 0}, stream_mode="values")
            assert (await one.runs.join(tid, run["run_id"]))["log"] == ["slept 0", "done"]
            # Never announced: found at the stream's next check (a heartbeat), though ended.
            async with asyncio.timeout(20):
                frames = await _until_run_done(response.aiter_bytes())
    assert frames[-1].data == {"status": "run_done", "run_id": run["run_id"]}
    assert [f.data["log"] for f in frames if f.event == "values"][-1] == ["slept 0", "done"]
    assert await _event_rows(url, f"thread:{tid}") == []  # nothing was announced


async def test_a_protocol_thread_stream_finds_a_short_run_its_process_never_announced(
    pg_pair: Pair,
) -> None:
    """The same for ``POST /threads/{id}/stream/events``: the run's events, to its end."""
    second, url, one, tid = await _thread_through_first(pg_pair)
    async with (
        httpx.AsyncClient(base_url=pg_pair[0].url, timeout=60) as first,
        httpx.AsyncClient(base_url=second.url, timeout=60) as two,
    ):
        body = {"channels": ["lifecycle"]}
        request = two.build_request("POST", f"/threads/{tid}/stream/events", json=body)
        async with _opened_while_first_is_deaf(pg_pair, two, request, tid) as response:
            start = {
                "id": 1,
                "method": "run.start",
                "params": {"assistant_id": "slow", "input": {"seconds": 0}},
            }
            answer = await first.post(f"/threads/{tid}/commands", content=json.dumps(start))
            assert answer.status_code == 200, answer.text
            run_id = answer.json()["result"]["run_id"]
            assert (await one.runs.join(tid, run_id))["log"] == ["slept 0", "done"]
            async with asyncio.timeout(20):
                frames = await _until(response.aiter_bytes(), _root_lifecycle_end)
    assert [f.data["params"]["data"]["event"] for f in frames] == ["running", "completed"]
    assert frames[-1].data["event_id"] == f"synth:{run_id}:lc||completed"
    assert await _event_rows(url, f"thread:{tid}") == []
