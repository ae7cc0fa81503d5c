"""``runs/wait`` and ``join`` of a run that is deleted, or whose thread is, checked against
``langgraph dev``.

Observed on ``langgraph dev`` (langgraph-cli 0.4.40, langgraph-api 0.16.7, in-memory runtime
0.36.7) serving ``tests/support/langgraph_parity.json``: a wait or join in flight when the run or
its thread is deleted answers 200 with ``{"__error__": {"error": "HTTPException", "message":
"404: Run not found"}}``, and so does a join of a run that does not exist (on an existing or a
missing thread, or deleted after it ended). Its stream, the creator's or a join, ends with
``event: error`` carrying ``{"error": "HTTPException", "message": "404: Run not found"}``, and a
join of a missing run's stream is that one event. A run cancelled with ``interrupt`` or
``rollback`` still answers the thread's values.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import psycopg
import pytest
from langgraph_sdk import get_client

from server.runtime.broker import HEARTBEAT_SECONDS
from tests.support.parity import ParityServer, parity_server
from tests.support.sse import parse_frames

__all__ = ["parity_server"]

NOT_FOUND = {"error": "HTTPException", "message": "404: Run not found"}
RUN_NOT_FOUND = {"__error__": NOT_FOUND}
NAP = {"assistant_id": "slow", "input": {"seconds": 30}}


async def _run_of(http: httpx.AsyncClient, thread_id: str, *, count: int = 1) -> list[str]:
    """The ids of the thread's runs once it has ``count`` of them, newest first: a wait creates
    its run before it answers anything, so the test asks until the run is there."""
    for _ in range(500):
        runs = (await http.get(f"/threads/{thread_id}/runs")).json()
        if len(runs) >= count:
            return [run["run_id"] for run in runs]
        await asyncio.sleep(0.01)  # the server gives no event for a run it has just created
    raise AssertionError(f"thread {thread_id} never had {count} runs")


async def _delete(http: httpx.AsyncClient, what: str, thread_id: str, run_id: str) -> None:
    path = f"/threads/{thread_id}" if what == "thread" else f"/threads/{thread_id}/runs/{run_id}"
    response = await http.delete(path)
    assert response.status_code == 204, response.text


@pytest.mark.parametrize("what", ["thread", "run"])
async def test_a_wait_whose_run_is_deleted_answers_run_not_found(
    parity_server: ParityServer, what: str
) -> None:
    async with httpx.AsyncClient(base_url=parity_server.url, timeout=60) as http:
        thread = (await http.post("/threads", json={})).json()["thread_id"]
        wait = asyncio.create_task(http.post(f"/threads/{thread}/runs/wait", json=NAP))
        (run_id,) = await _run_of(http, thread)
        await _delete(http, what, thread, run_id)
        answer = await wait
        assert answer.status_code == 200
        assert answer.json() == RUN_NOT_FOUND
        assert answer.headers["content-location"] == f"/threads/{thread}/runs/{run_id}"


@pytest.mark.parametrize("what", ["thread", "run"])
async def test_a_wait_whose_queued_run_is_deleted_answers_run_not_found(
    parity_server: ParityServer, what: str
) -> None:
    async with httpx.AsyncClient(base_url=parity_server.url, timeout=60) as http:
        thread = (await http.post("/threads", json={})).json()["thread_id"]
        first = await http.post(f"/threads/{thread}/runs", json=NAP)
        assert first.status_code == 200
        queued = {**NAP, "multitask_strategy": "enqueue"}
        wait = asyncio.create_task(http.post(f"/threads/{thread}/runs/wait", json=queued))
        newest, _ = await _run_of(http, thread, count=2)
        await _delete(http, what, thread, newest)
        answer = await wait
        assert answer.status_code == 200
        assert answer.json() == RUN_NOT_FOUND


@pytest.mark.parametrize("what", ["thread", "run"])
async def test_a_join_whose_run_is_deleted_answers_run_not_found(
    parity_server: ParityServer, what: str
) -> None:
    # Before the fix the join's second look at the run raised: a 500 whose connection the
    # server then dropped, so the next request on it failed too.
    async with httpx.AsyncClient(base_url=parity_server.url, timeout=60) as http:
        thread = (await http.post("/threads", json={})).json()["thread_id"]
        run_id = (await http.post(f"/threads/{thread}/runs", json=NAP)).json()["run_id"]
        join = asyncio.create_task(http.get(f"/threads/{thread}/runs/{run_id}/join"))
        await _delete(http, what, thread, run_id)
        answer = await join
        assert (answer.status_code, answer.json()) == (200, RUN_NOT_FOUND)
        assert (await http.get("/ok")).status_code == 200


async def test_a_join_of_a_missing_run_answers_run_not_found(parity_server: ParityServer) -> None:
    client = get_client(url=parity_server.url)
    async with httpx.AsyncClient(base_url=parity_server.url, timeout=60) as http:
        thread = (await http.post("/threads", json={})).json()["thread_id"]
        done = await http.post(
            f"/threads/{thread}/runs", json={"assistant_id": "slow", "input": {"seconds": 0}}
        )
        run_id = done.json()["run_id"]
        assert await client.runs.join(thread, run_id) == {"seconds": 0, "log": ["slept 0", "done"]}
        await _delete(http, "run", thread, run_id)
        for path in (
            f"/threads/{thread}/runs/{run_id}/join",  # deleted after it ended
            f"/threads/{thread}/runs/{uuid.uuid4()}/join",  # never existed
            f"/threads/{uuid.uuid4()}/runs/{uuid.uuid4()}/join",  # nor did its thread
        ):
            answer = await http.get(path)
            assert (answer.status_code, answer.json()) == (200, RUN_NOT_FOUND), path
            assert answer.headers["content-type"] == "application/json"
        # Reading the run itself stays a 404.
        assert (await http.get(f"/threads/{thread}/runs/{run_id}")).status_code == 404


@pytest.mark.parametrize("action", ["interrupt", "rollback"])
async def test_a_wait_whose_run_is_cancelled_still_answers_the_values(
    parity_server: ParityServer, action: str
) -> None:
    # A rollback deletes the run as it ends: that is not a deletion while it ran.
    async with httpx.AsyncClient(base_url=parity_server.url, timeout=60) as http:
        thread = (await http.post("/threads", json={})).json()["thread_id"]
        wait = asyncio.create_task(http.post(f"/threads/{thread}/runs/wait", json=NAP))
        (run_id,) = await _run_of(http, thread)
        cancel = await http.post(
            f"/threads/{thread}/runs/{run_id}/cancel", params={"action": action}
        )
        assert cancel.status_code == 202
        answer = await wait
        values = (await http.get(f"/threads/{thread}")).json()["values"] or {}
        assert (answer.status_code, answer.json()) == (200, values)
        assert (action == "rollback") == (values == {})  # rollback takes the input back


@pytest.mark.parametrize("what", ["thread", "run"])
async def test_streams_of_a_deleted_run_end_with_a_run_not_found_error(
    parity_server: ParityServer, what: str
) -> None:
    async with httpx.AsyncClient(base_url=parity_server.url, timeout=60) as http:
        # The creator's stream: its frames so far, then the error.
        thread = (await http.post("/threads", json={})).json()["thread_id"]
        body = b""
        async with http.stream(
            "POST", f"/threads/{thread}/runs/stream", json={**NAP, "stream_mode": ["values"]}
        ) as response:
            run_id = response.headers["content-location"].rsplit("/", 1)[-1]
            chunks = response.aiter_bytes()
            while b"event: values" not in body:  # the graph is inside its first node
                body += await anext(chunks)
            await _delete(http, what, thread, run_id)
            async for chunk in chunks:
                body += chunk
        frames = parse_frames(body)
        assert [f.event for f in frames] == ["metadata", "values", "error"]
        assert frames[-1].data == NOT_FOUND
        # A join of the stream, in flight when the run goes or arriving after: the error alone.
        thread = (await http.post("/threads", json={})).json()["thread_id"]
        run_id = (await http.post(f"/threads/{thread}/runs", json=NAP)).json()["run_id"]
        join = asyncio.create_task(http.get(f"/threads/{thread}/runs/{run_id}/stream"))
        await _delete(http, what, thread, run_id)
        for answer in (await join, await http.get(f"/threads/{thread}/runs/{run_id}/stream")):
            assert answer.status_code == 200
            assert answer.headers["content-type"].startswith("text/event-stream")
            assert [(f.event, f.data) for f in parse_frames(answer.content)] == [
                ("error", NOT_FOUND)
            ]


async def test_a_cancelled_stateless_run_is_not_reported_as_deleted(
    parity_server: ParityServer,
) -> None:
    # Its end deletes its temporary thread, and the run with it: not a deletion while it ran.
    async with httpx.AsyncClient(base_url=parity_server.url, timeout=60) as http:
        body = b""
        async with http.stream(
            "POST", "/runs/stream", json={**NAP, "stream_mode": ["values"]}
        ) as response:
            run_id = response.headers["content-location"].rsplit("/", 1)[-1]
            chunks = response.aiter_bytes()
            while b"event: values" not in body:
                body += await anext(chunks)
            cancel = await http.post("/runs/cancel", json={"run_ids": [run_id]})
            assert cancel.status_code < 300, cancel.text
            async for chunk in chunks:
                body += chunk
        assert "error" not in [f.event for f in parse_frames(body)]


@pytest.mark.parametrize(
    "stop", [{}, {"interrupt_before": ["after_nap"]}], ids=["a node after", "the last node"]
)
async def test_a_run_whose_row_vanishes_unannounced_is_closed_out_by_its_lease_fence(
    parity_server: ParityServer, stop: dict[str, list[str]]
) -> None:
    # The window a delete leaves: the row is gone before the run's worker is told to stop. Its
    # next checkpoint write fails the lease fence (as the next node starts, or, after the last
    # node, with the run's finish); the worker then ends its stream and settles its thread,
    # rather than leaving waiters to Postgres and the thread busy.
    async with httpx.AsyncClient(base_url=parity_server.url, timeout=60) as http:
        thread = (await http.post("/threads", json={})).json()["thread_id"]
        nap = {"assistant_id": "slow", "input": {"seconds": 1}, **stop}
        asked = time.monotonic()
        wait = asyncio.create_task(http.post(f"/threads/{thread}/runs/wait", json=nap))
        (run_id,) = await _run_of(http, thread)
        database = parity_server.server.env["DATABASE_URL"]
        async with await psycopg.AsyncConnection.connect(database, autocommit=True) as conn:
            await conn.execute("DELETE FROM runs WHERE run_id = %s", (run_id,))
        answer = await wait
        assert (answer.status_code, answer.json()) == (200, RUN_NOT_FOUND)
        # Told by the worker as the run ends (the nap's second), not by the waiter's own check
        # of Postgres once its stream has been quiet for a heartbeat.
        assert time.monotonic() - asked < HEARTBEAT_SECONDS
        assert (await http.get(f"/threads/{thread}")).json()["status"] == "idle"
