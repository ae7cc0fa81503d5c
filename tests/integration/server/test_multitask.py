"""Multitask strategies, cancellation and disconnects, with concurrent clients."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.errors import ConflictError, NotFoundError

from tests.support.server import LiveServer

LONG = {"seconds": 30}


async def _thread(http: httpx.AsyncClient) -> str:
    return str((await http.post("/threads", json={})).json()["thread_id"])


async def _run(http: httpx.AsyncClient, tid: str, **body: object) -> httpx.Response:
    return await http.post(f"/threads/{tid}/runs", json={"assistant_id": "slow", **body})


async def test_reject_while_busy_and_under_concurrency(live_server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as http:
        tid = await _thread(http)
        first = (await _run(http, tid, input=LONG)).json()
        rejected = await _run(http, tid, input=LONG, multitask_strategy="reject")
        assert rejected.status_code == 409
        assert rejected.json() == {
            "detail": "Thread is already running a task. Wait for it to finish or choose a "
            "different multitask strategy."
        }
        assert [r["run_id"] for r in (await http.get(f"/threads/{tid}/runs")).json()] == [
            first["run_id"]
        ]
        await http.post(f"/threads/{tid}/runs/{first['run_id']}/cancel", params={"wait": 1})

        # Many clients at once on an idle thread: the row lock lets exactly one in. The winner
        # runs long so that a loaded machine cannot finish it before the others arrive.
        idle = await _thread(http)
        answers = await asyncio.gather(
            *(_run(http, idle, input=LONG, multitask_strategy="reject") for _ in range(6))
        )
        assert sorted(a.status_code for a in answers) == [200] + [409] * 5
        client = get_client(url=live_server.url)
        with pytest.raises(ConflictError):
            await client.runs.create(idle, "slow", input=LONG, multitask_strategy="reject")
        winner = next(a.json()["run_id"] for a in answers if a.status_code == 200)
        await http.post(f"/threads/{idle}/runs/{winner}/cancel", params={"wait": 1})


async def test_enqueue_runs_in_order(live_server: LiveServer) -> None:
    client = get_client(url=live_server.url)
    tid = (await client.threads.create())["thread_id"]
    first = await client.runs.create(tid, "slow", input={"seconds": 0.3})
    queued = await asyncio.gather(
        *(client.runs.create(tid, "slow", input={"seconds": i / 10}) for i in range(3))
    )
    assert all(r["status"] == "pending" for r in queued)
    assert (await client.threads.get(tid))["status"] == "busy"
    for run in queued:
        await client.runs.join(tid, run["run_id"])
    runs = await client.runs.list(tid)
    assert {r["status"] for r in runs} == {"success"}
    assert {r["multitask_strategy"] for r in runs} == {"enqueue"}
    log = (await client.threads.get_state(tid))["values"]["log"]
    assert log[:2] == ["slept 0.3", "done"]  # the first run ran first; each run ran whole
    assert len(log) == 8 and log[1::2] == ["done"] * 4
    assert (await client.threads.get(tid))["status"] == "idle"
    assert first["run_id"] in {r["run_id"] for r in runs}


async def test_interrupt_strategy(live_server: LiveServer) -> None:
    client = get_client(url=live_server.url)
    tid = (await client.threads.create())["thread_id"]
    first = await client.runs.create(tid, "slow", input=LONG)
    second = await client.runs.create(
        tid, "slow", input={"seconds": 0}, multitask_strategy="interrupt"
    )
    out = await client.runs.join(tid, second["run_id"])
    assert out["log"][-2:] == ["slept 0", "done"]
    assert "slept 30" not in out["log"]
    assert (await client.runs.get(tid, first["run_id"]))["status"] == "interrupted"
    assert (await client.runs.get(tid, second["run_id"]))["status"] == "success"
    assert (await client.threads.get(tid))["status"] == "idle"


async def test_rollback_strategy(live_server: LiveServer) -> None:
    client = get_client(url=live_server.url)
    tid = (await client.threads.create())["thread_id"]
    await client.runs.wait(tid, "slow", input={"seconds": 0})
    kept = len(await client.threads.get_history(tid, limit=100))
    first = await client.runs.create(tid, "slow", input=LONG)
    second = await client.runs.wait(
        tid, "slow", input={"seconds": 0}, multitask_strategy="rollback"
    )
    assert second["log"] == ["slept 0", "done", "slept 0", "done"]
    with pytest.raises(NotFoundError):
        await client.runs.get(tid, first["run_id"])
    history = await client.threads.get_history(tid, limit=100)
    assert first["run_id"] not in {h["metadata"].get("run_id") for h in history}
    assert len(history) == kept + 4  # only the second run's checkpoints were added


async def test_cancel_interrupt_rollback_and_missing(live_server: LiveServer) -> None:
    client = get_client(url=live_server.url)
    tid = (await client.threads.create())["thread_id"]
    run = await client.runs.create(tid, "slow", input=LONG)
    started = time.monotonic()
    await client.runs.cancel(tid, run["run_id"], wait=True)
    assert time.monotonic() - started < 10  # the 30 s node was stopped, not waited for
    assert (await client.runs.get(tid, run["run_id"]))["status"] == "interrupted"
    assert (await client.threads.get(tid))["status"] == "interrupted"
    assert (await client.threads.get_history(tid, limit=10)) != []  # interrupt keeps them

    async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as http:
        again = await http.post(f"/threads/{tid}/runs/{run['run_id']}/cancel")
        assert again.status_code == 404
        assert again.json()["detail"].startswith("No matching runs to cancel.")
        later = (await _run(http, tid, input=LONG)).json()
        accepted = await http.post(f"/threads/{tid}/runs/{later['run_id']}/cancel")
        assert accepted.status_code == 202 and accepted.content == b""  # not waited for
        await client.runs.join(tid, later["run_id"])
        assert (await client.runs.get(tid, later["run_id"]))["status"] == "interrupted"

        other = await _thread(http)
        doomed = (await _run(http, other, input=LONG)).json()
        rolled_back = await http.post(
            f"/threads/{other}/runs/{doomed['run_id']}/cancel",
            params={"action": "rollback", "wait": 1},
        )
        assert rolled_back.status_code == 200
        assert (await http.get(f"/threads/{other}/runs/{doomed['run_id']}")).status_code == 404
        assert await client.threads.get_history(other, limit=10) == []
        bad = await http.post(
            f"/threads/{other}/runs/{doomed['run_id']}/cancel", params={"action": "explode"}
        )
        assert bad.status_code == 422


async def test_bulk_cancel_and_queued_runs(live_server: LiveServer) -> None:
    client = get_client(url=live_server.url)
    tid = (await client.threads.create())["thread_id"]
    running = await client.runs.create(tid, "slow", input=LONG)
    queued = await client.runs.create(tid, "slow", input=LONG)
    assert queued["status"] == "pending"
    await client.runs.cancel_many(thread_id=tid, run_ids=[queued["run_id"]])
    assert (await client.runs.get(tid, queued["run_id"]))["status"] == "interrupted"
    assert (await client.runs.get(tid, running["run_id"]))["status"] == "running"
    await client.runs.cancel_many(thread_id=tid, run_ids=[running["run_id"]])
    await client.runs.join(tid, running["run_id"])
    assert (await client.runs.get(tid, running["run_id"]))["status"] == "interrupted"
    async with httpx.AsyncClient(base_url=live_server.url) as http:
        none_left = await http.post(
            "/runs/cancel", json={"thread_id": tid, "run_ids": [running["run_id"]]}
        )
        assert none_left.status_code == 404
        empty = await http.post("/runs/cancel", json={})
        assert empty.status_code == 422


async def test_delete_running_run_and_thread(live_server: LiveServer) -> None:
    client = get_client(url=live_server.url)
    tid = (await client.threads.create())["thread_id"]
    run = await client.runs.create(tid, "slow", input=LONG)
    await client.runs.delete(tid, run["run_id"])
    with pytest.raises(NotFoundError):
        await client.runs.get(tid, run["run_id"])
    other = (await client.threads.create())["thread_id"]
    busy = await client.runs.create(other, "slow", input=LONG)
    await client.threads.delete(other)
    with pytest.raises(NotFoundError):
        await client.threads.get(other)
    # The next run on a fresh thread is not held up by the deleted ones.
    tid2 = (await client.threads.create())["thread_id"]
    assert (await client.runs.wait(tid2, "slow", input={"seconds": 0}))["log"][-1] == "done"
    assert busy["run_id"] != run["run_id"]


async def test_on_disconnect_cancel(live_server: LiveServer) -> None:
    client = get_client(url=live_server.url)
    tid = (await client.threads.create())["thread_id"]
    async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as http:
        body = {"assistant_id": "slow", "input": LONG, "on_disconnect": "cancel"}
        async with http.stream("POST", f"/threads/{tid}/runs/stream", json=body) as response:
            run_id = response.headers["content-location"].rsplit("/", 1)[1]
            async for chunk in response.aiter_raw():
                if b"event: values" in chunk:
                    break  # the client goes away mid-run
    await client.runs.join(tid, run_id)
    assert (await client.runs.get(tid, run_id))["status"] == "interrupted"

    # runs/wait too: a client that gives up waiting takes its run down with it.
    async with httpx.AsyncClient(base_url=live_server.url, timeout=0.5) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.post(
                f"/threads/{tid}/runs/wait",
                json={"assistant_id": "slow", "input": LONG, "on_disconnect": "cancel"},
            )
    waited = (await client.runs.list(tid, limit=1))[0]
    await client.runs.join(tid, waited["run_id"])
    assert (await client.runs.get(tid, waited["run_id"]))["status"] == "interrupted"

    kept = await client.runs.create(tid, "slow", input={"seconds": 0.3})
    async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as http:
        async with http.stream("GET", f"/threads/{tid}/runs/{kept['run_id']}/stream") as response:
            async for _ in response.aiter_raw():
                break  # leaving a join (without cancel_on_disconnect) leaves the run alone
    await client.runs.join(tid, kept["run_id"])
    assert (await client.runs.get(tid, kept["run_id"]))["status"] == "success"


async def test_after_seconds_delays_the_start(live_server: LiveServer) -> None:
    client = get_client(url=live_server.url)
    tid = (await client.threads.create())["thread_id"]
    started = time.monotonic()
    run = await client.runs.create(tid, "slow", input={"seconds": 0}, after_seconds=1)
    assert run["status"] == "pending"
    await client.runs.join(tid, run["run_id"])
    assert time.monotonic() - started >= 1.0
    assert (await client.runs.get(tid, run["run_id"]))["status"] == "success"
