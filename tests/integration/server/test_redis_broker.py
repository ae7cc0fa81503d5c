"""Several server processes sharing Postgres and Redis: streams, waits and cancels cross over."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
import redis.asyncio as redis
from langgraph_sdk import get_client

from tests.support.fixtures import redis_pair  # noqa: F401  (fixture)
from tests.support.server import LiveServer
from tests.support.sse import TWO_STEPS_VALUES_UPDATES, get_stream, post_stream

Pair = tuple[LiveServer, LiveServer]


async def test_cancel_reaches_a_run_on_another_process(redis_pair: Pair) -> None:  # noqa: F811
    first, second = redis_pair
    one, two = get_client(url=first.url), get_client(url=second.url)
    tid = (await one.threads.create())["thread_id"]
    run = await one.runs.create(tid, "slow", input={"seconds": 30})
    assert run["status"] == "running"  # claimed by the process that created it
    started = time.monotonic()
    await two.runs.cancel(tid, run["run_id"], wait=True)
    assert time.monotonic() - started < 10
    assert (await two.runs.get(tid, run["run_id"]))["status"] == "interrupted"
    assert (await one.threads.get(tid))["status"] == "interrupted"


async def test_wait_and_join_across_processes(redis_pair: Pair) -> None:  # noqa: F811
    first, second = redis_pair
    one, two = get_client(url=first.url), get_client(url=second.url)
    tid = (await one.threads.create())["thread_id"]
    run = await one.runs.create(tid, "slow", input={"seconds": 0.3})
    joined = await two.runs.join(tid, run["run_id"])
    assert joined["log"] == ["slept 0.3", "done"]
    out = await two.runs.wait(tid, "slow", input={"seconds": 0})
    assert out["log"][-2:] == ["slept 0", "done"]


async def test_api_only_process_hands_runs_to_workers(
    redis_pair: Pair,  # noqa: F811
    server_factory,  # type: ignore[no-untyped-def]
) -> None:
    first, _ = redis_pair
    api_only = server_factory(env=first.env, args=("--no-workers",))
    async with httpx.AsyncClient(base_url=api_only.url, timeout=30) as http:
        tid = (await http.post("/threads", json={})).json()["thread_id"]
        response, frames = await post_stream(
            http,
            f"/threads/{tid}/runs/stream",
            {
                "assistant_id": "simple",
                "input": {"messages": [{"role": "user", "content": "hi"}]},
                "stream_mode": ["values", "updates"],
            },
        )
        assert response.status_code == 200
        assert [f.event for f in frames] == TWO_STEPS_VALUES_UPDATES
        waited = await http.post(
            "/runs/wait", json={"assistant_id": "simple", "input": {"messages": []}}
        )
        assert waited.json()["__error__"]["error"] == "IndexError"


async def test_worker_process_executes_runs_for_an_api_only_process(
    redis_url: str,
    server_factory,  # type: ignore[no-untyped-def]
) -> None:
    api_only = server_factory(env={"REDIS_URL": redis_url}, args=("--no-workers",))
    worker = server_factory(
        env={"REDIS_URL": redis_url, "DATABASE_URL": api_only.env["DATABASE_URL"]},
        fresh_db=False,
        command="worker",
    )
    client = get_client(url=api_only.url)
    tid = (await client.threads.create())["thread_id"]
    out = await client.runs.wait(
        tid, "simple", input={"messages": [{"role": "user", "content": "hi"}]}
    )
    assert out["messages"][-1]["content"] == "echo: hi"
    assert out["count"] == 1
    async with httpx.AsyncClient(base_url=worker.url, timeout=10) as http:
        # The worker serves health and metrics, not the API.
        assert (await http.get("/ok")).json() == {"ok": True}
        assert (await http.post("/threads", json={})).status_code == 404
        metrics = (await http.get("/metrics")).text
    assert 'graph="simple"' in metrics and 'status="success"' in metrics


async def test_worker_refuses_to_start_without_workers(
    server_factory,  # type: ignore[no-untyped-def]
) -> None:
    with pytest.raises(RuntimeError, match="STAFFGRAPH_WORKERS of at least 1"):
        server_factory(env={"STAFFGRAPH_WORKERS": "0"}, command="worker")


async def test_streams_and_thread_announcements_live_in_redis_with_a_replay_ttl(
    redis_pair: Pair,  # noqa: F811
    redis_url: str,
) -> None:
    first, second = redis_pair
    tid = str(uuid.uuid4())
    async with httpx.AsyncClient(base_url=first.url, timeout=30) as http:
        await http.post("/threads", json={"thread_id": tid})
        response, frames = await post_stream(
            http,
            f"/threads/{tid}/runs/stream",
            {"assistant_id": "simple", "input": {"messages": []}, "stream_resumable": True},
        )
    run_id = response.headers["content-location"].rsplit("/", 1)[1]
    client = redis.from_url(redis_url)
    try:
        key = f"staffgraph:run:{run_id}"
        entries = await client.xrange(key)
        ids = [entry_id.decode() for entry_id, _ in entries]
        assert ids[: len(frames)] == [f.id for f in frames]
        assert entries[-1][1][b"e"] == b"__done__"  # the done marker closes the log
        ttl = await client.ttl(key)
        assert 0 < ttl <= 600
        # The thread's announcement of the run goes with the same TTL. It was a day: one
        # stream kept in Redis for every thread that ever ran (each stateless run's is new).
        thread_ttl = await client.ttl(f"staffgraph:thread:{tid}")
        assert 0 < thread_ttl <= 600
    finally:
        await client.aclose()
    async with httpx.AsyncClient(base_url=second.url, timeout=30) as http:
        _, replay = await get_stream(
            http, f"/threads/{tid}/runs/{run_id}/stream", headers={"Last-Event-ID": "-1"}
        )
    assert [f.raw for f in replay] == [f.raw for f in frames]
    assert replay[-1].event == "error"
