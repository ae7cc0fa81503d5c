"""Every stream mode, frame by frame against the reference transcript, on both brokers.

Shapes compared: event names and their order, key sets of each payload, and the fixed values
(ids and timestamps aside). Each test runs on the in-process broker (the session server) and
on the Redis broker (a server with ``REDIS_URL``).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from langgraph_sdk import get_client

from server.graphs import assistant_id_for
from tests.support.fixtures import redis_pair  # noqa: F401  (fixture)
from tests.support.server import LiveServer
from tests.support.sse import (
    TWO_STEPS_VALUES_UPDATES,
    Frame,
    get_stream,
    parse_frames,
    post_raw,
    post_stream,
)

HUMAN = {"messages": [{"role": "user", "content": "hi"}]}
CHUNK_KEYS = {
    "content",
    "additional_kwargs",
    "response_metadata",
    "type",
    "name",
    "id",
    "tool_calls",
    "invalid_tool_calls",
    "usage_metadata",
    "tool_call_chunks",
    "chunk_position",
}
AI_KEYS = CHUNK_KEYS - {"tool_call_chunks", "chunk_position"}
RUN_METADATA_KEYS = {
    "graph_id",
    "assistant_id",
    "run_attempt",
    "langgraph_version",
    "langgraph_host",
    "langgraph_api_url",
    "run_id",
    "thread_id",
}
TASK_START_KEYS = {"id", "name", "input", "triggers", "metadata"}
TASK_RESULT_KEYS = {"id", "name", "error", "result", "interrupts"}
CHECKPOINT_KEYS = {"config", "parent_config", "values", "metadata", "next", "tasks"}
EVENT_ID = re.compile(r"^\d{13}-\d+$")


@pytest.fixture(params=["in-process", "redis"])
def server(request: pytest.FixtureRequest, live_server: LiveServer) -> LiveServer:
    """The server under test, once per broker kind."""
    if request.param == "in-process":
        return live_server
    first, _ = request.getfixturevalue("redis_pair")
    return first


@pytest.fixture
async def http(server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    """Raw HTTP client for the server under test."""
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        yield client


async def new_thread(http: httpx.AsyncClient) -> str:
    """A fresh thread id."""
    return str((await http.post("/threads", json={})).json()["thread_id"])


async def stream_on_new_thread(
    http: httpx.AsyncClient, body: dict[str, object]
) -> tuple[str, httpx.Response, list[Frame]]:
    """Stream a run on a fresh thread: the thread id, the response and its frames."""
    tid = await new_thread(http)
    response, frames = await post_stream(http, f"/threads/{tid}/runs/stream", body)
    return tid, response, frames


def names(frames: list[Frame]) -> list[str]:
    """Event names, with runs of ``messages*`` collapsed to one (chunk counts vary)."""
    out: list[str] = []
    for frame in frames:
        if frame.event.startswith("messages") and out and out[-1] == frame.event:
            continue
        out.append(frame.event)
    return out


def assert_metadata_first(frames: list[Frame], run_id: str | None = None) -> None:
    """The reference always opens with ``metadata {"run_id", "attempt": 1}``."""
    assert frames[0].event == "metadata"
    assert set(frames[0].data) == {"run_id", "attempt"} and frames[0].data["attempt"] == 1
    if run_id is not None:
        assert frames[0].data["run_id"] == run_id


async def test_headers_and_wire_format(http: httpx.AsyncClient) -> None:
    tid = await new_thread(http)
    response, raw = await post_raw(
        http, f"/threads/{tid}/runs/stream", {"assistant_id": "simple", "input": HUMAN}
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-accel-buffering"] == "no"
    location = response.headers["content-location"]
    run_id = location.rsplit("/", 1)[1]
    assert location == f"/threads/{tid}/runs/{run_id}"
    assert response.headers["location"] == f"{location}/stream"
    assert raw.startswith(b'event: metadata\r\ndata: {"run_id":"' + run_id.encode())
    frames = parse_frames(raw)
    assert [f.event for f in frames] == ["metadata", "values", "values", "values"]
    assert all(f.id is None for f in frames)  # ids only for resumable streams
    assert not any(f.event == "end" for f in frames)


async def test_chat_values_updates_messages_tuple_custom(http: httpx.AsyncClient) -> None:
    tid, response, frames = await stream_on_new_thread(
        http,
        {
            "assistant_id": "chat",
            "input": HUMAN,
            "stream_mode": ["values", "updates", "messages-tuple", "custom"],
            "metadata": {"purpose": "transcript"},
        },
    )
    assert names(frames) == [
        "metadata",
        "values",
        "custom",
        "messages",
        "updates",
        "values",
        "updates",
        "values",
    ]
    run_id = response.headers["content-location"].rsplit("/", 1)[1]
    assert_metadata_first(frames, run_id)
    assert frames[2].data == {"progress": "calling model"}
    chunks = [f.data for f in frames if f.event == "messages"]
    assert len(chunks) > 1
    for chunk, metadata in chunks:
        assert set(chunk) == CHUNK_KEYS and chunk["type"] == "AIMessageChunk"
        assert RUN_METADATA_KEYS <= set(metadata)
        assert metadata["purpose"] == "transcript" and metadata["langgraph_node"] == "chat"
        assert metadata["run_id"] == run_id and metadata["thread_id"] == tid
        assert metadata["assistant_id"] == assistant_id_for("chat")
    assert len({chunk["id"] for chunk, _ in chunks}) == 1
    updates = [f.data for f in frames if f.event == "updates"]
    assert list(updates[0]) == ["chat"] and set(updates[0]["chat"]["messages"][0]) == AI_KEYS
    assert updates[1] == {"count": {"turns": 1}}
    final = frames[-1].data
    assert final["turns"] == 1 and [m["type"] for m in final["messages"]] == ["human", "ai"]
    streamed = "".join(chunk["content"] for chunk, _ in chunks)
    assert streamed == final["messages"][1]["content"]


async def test_chat_legacy_messages_mode(http: httpx.AsyncClient) -> None:
    tid, _, frames = await stream_on_new_thread(
        http,
        {"assistant_id": "chat", "input": HUMAN, "stream_mode": ["messages", "values"]},
    )
    assert names(frames) == [
        "metadata",
        "values",
        "messages/metadata",
        "messages/partial",
        "values",
        "values",
    ]
    meta = next(f.data for f in frames if f.event == "messages/metadata")
    (msg_id,) = meta
    assert (
        set(meta[msg_id]) == {"metadata"} and meta[msg_id]["metadata"]["langgraph_node"] == "chat"
    )
    partials = [f.data for f in frames if f.event == "messages/partial"]
    contents = [p[0]["content"] for p in partials]
    assert all(set(p[0]) == AI_KEYS and p[0]["type"] == "ai" for p in partials)
    assert all(b.startswith(a) for a, b in zip(contents, contents[1:], strict=False))  # accumulates
    assert all(p[0]["id"] == msg_id for p in partials)
    assert contents[-1] == frames[-1].data["messages"][1]["content"]


async def test_non_streamed_message_is_complete(http: httpx.AsyncClient) -> None:
    _, frames = await post_stream(
        http, "/runs/stream", {"assistant_id": "simple", "input": HUMAN, "stream_mode": "messages"}
    )
    assert [f.event for f in frames] == ["metadata", "messages/metadata", "messages/complete"]
    (complete,) = frames[2].data
    assert set(complete) == AI_KEYS and complete["content"] == "echo: hi"
    assert list(frames[1].data) == [complete["id"]]


async def test_debug_tasks_checkpoints_stateless(http: httpx.AsyncClient) -> None:
    _, debug = await post_stream(
        http, "/runs/stream", {"assistant_id": "simple", "input": HUMAN, "stream_mode": ["debug"]}
    )
    assert [(f.event, f.data["type"], f.data["step"]) for f in debug[1:]] == [
        ("debug", "task", 1),
        ("debug", "task_result", 1),
        ("debug", "task", 2),
        ("debug", "task_result", 2),
    ]
    assert set(debug[1].data) == {"step", "timestamp", "type", "payload"}
    assert set(debug[1].data["payload"]) == TASK_START_KEYS
    assert set(debug[2].data["payload"]) == TASK_RESULT_KEYS
    assert debug[4].data["payload"]["result"] == {"count": 1}

    _, tasks = await post_stream(
        http, "/runs/stream", {"assistant_id": "simple", "input": HUMAN, "stream_mode": "tasks"}
    )
    assert [set(f.data) for f in tasks[1:]] == [
        TASK_START_KEYS,
        TASK_RESULT_KEYS,
        TASK_START_KEYS,
        TASK_RESULT_KEYS,
    ]
    assert [f.data["name"] for f in tasks[1:]] == ["a", "a", "b", "b"]
    assert tasks[1].data["triggers"] == ["branch:to:a"]
    assert tasks[1].data["metadata"]["graph_id"] == "simple"

    _, checkpoints = await post_stream(
        http,
        "/runs/stream",
        {"assistant_id": "simple", "input": HUMAN, "stream_mode": "checkpoints"},
    )
    assert [f.event for f in checkpoints] == ["metadata"]  # stateless: no checkpoint events


async def test_debug_and_checkpoints_on_a_thread(http: httpx.AsyncClient) -> None:
    tid, _, frames = await stream_on_new_thread(
        http,
        {
            "assistant_id": "simple",
            "input": HUMAN,
            "stream_mode": ["debug", "checkpoints", "tasks"],
        },
    )
    checkpoints = [f.data for f in frames if f.event == "checkpoints"]
    assert len(checkpoints) == 4 and all(set(c) == CHECKPOINT_KEYS for c in checkpoints)
    assert [c["metadata"]["step"] for c in checkpoints] == [-1, 0, 1, 2]
    debug_checkpoints = [
        f.data["payload"] for f in frames if f.event == "debug" and f.data["type"] == "checkpoint"
    ]
    assert len(debug_checkpoints) == 4
    for payload in debug_checkpoints:
        assert {"checkpoint", "parent_checkpoint"} <= set(payload)
        assert set(payload["checkpoint"]) == {"checkpoint_id", "thread_id", "checkpoint_ns"}
        assert payload["checkpoint"]["thread_id"] == tid
    assert debug_checkpoints[0]["parent_checkpoint"] is None
    assert debug_checkpoints[1]["parent_checkpoint"] == debug_checkpoints[0]["checkpoint"]
    state = (await http.get(f"/threads/{tid}/state")).json()
    assert debug_checkpoints[-1]["checkpoint"] == state["checkpoint"]
    assert [f.event for f in frames if f.event == "tasks"] == ["tasks"] * 4


async def test_events_mode(http: httpx.AsyncClient) -> None:
    response, frames = await post_stream(
        http, "/runs/stream", {"assistant_id": "simple", "input": HUMAN, "stream_mode": ["events"]}
    )
    run_id = response.headers["content-location"].rsplit("/", 1)[1]
    events = [(f.data["event"], f.data["name"]) for f in frames[1:]]
    assert events == [
        ("on_chain_start", "simple"),
        ("on_chain_start", "a"),
        ("on_chain_stream", "a"),
        ("on_chain_end", "a"),
        ("on_chain_start", "b"),
        ("on_chain_stream", "b"),
        ("on_chain_end", "b"),
        ("on_chain_end", "simple"),
    ]
    root = frames[1].data
    assert root["run_id"] == run_id and root["data"] == {"input": HUMAN}
    assert {"event", "data", "name", "tags", "run_id", "metadata"} <= set(root)
    assert frames[-1].data["data"]["output"]["count"] == 1


async def test_subgraph_namespaces(http: httpx.AsyncClient) -> None:
    tid, _, frames = await stream_on_new_thread(
        http,
        {
            "assistant_id": "parent",
            "input": {"log": []},
            "stream_mode": ["updates", "values", "custom"],
            "stream_subgraphs": True,
        },
    )
    sub = [f.event for f in frames if "|" in f.event]
    namespace = sub[0].split("|", 1)[1]
    assert re.fullmatch(r"child:[0-9a-f-]{36}", namespace)
    assert [f.event.replace(namespace, "NS") for f in frames] == [
        "metadata",
        "values",
        "updates",
        "values",
        "values|NS",
        "custom|NS",
        "updates|NS",
        "values|NS",
        "updates",
        "values",
    ]
    assert frames[5].data == {"sub": "hello from subgraph"}
    assert frames[6].data == {"sub_step": {"log": ["sub ran"]}}
    _, flat = await post_stream(
        http,
        f"/threads/{tid}/runs/stream",
        {"assistant_id": "parent", "input": {"log": []}, "stream_mode": ["updates", "custom"]},
    )
    assert [f.event for f in flat] == ["metadata", "updates", "updates"]  # no subgraph output


async def test_error_event(http: httpx.AsyncClient) -> None:
    tid, _, frames = await stream_on_new_thread(
        http, {"assistant_id": "failing", "input": {"x": 1}}
    )
    assert [(f.event, f.data) for f in frames[1:]] == [
        ("values", {"x": 1}),
        ("error", {"error": "ValueError", "message": "intentional failure for testing"}),
    ]
    thread = (await http.get(f"/threads/{tid}")).json()
    assert thread["status"] == "error"


async def test_interrupt_frames(http: httpx.AsyncClient) -> None:
    tid, _, frames = await stream_on_new_thread(
        http,
        {"assistant_id": "hitl", "input": {"proposal": "p"}, "stream_mode": ["values", "updates"]},
    )
    assert [f.event for f in frames] == TWO_STEPS_VALUES_UPDATES
    (interrupt,) = frames[4].data["__interrupt__"]
    assert list(interrupt) == ["value", "id", "response_schema"]
    assert re.fullmatch(r"[0-9a-f]{32}", interrupt["id"]) and interrupt["response_schema"] is None
    assert frames[5].data["__interrupt__"] == [interrupt]

    tid, _, static = await stream_on_new_thread(
        http,
        {
            "assistant_id": "simple",
            "input": HUMAN,
            "stream_mode": ["values", "updates"],
            "interrupt_before": ["b"],
        },
    )
    assert [f.event for f in static] == ["metadata", "values", "updates", "values", "updates"]
    assert static[-1].data == {"__interrupt__": []}


async def test_resumable_stream_and_last_event_id(http: httpx.AsyncClient) -> None:
    tid, response, frames = await stream_on_new_thread(
        http,
        {
            "assistant_id": "simple",
            "input": HUMAN,
            "stream_mode": ["values", "updates"],
            "stream_resumable": True,
        },
    )
    assert all(f.id is not None and EVENT_ID.match(f.id) for f in frames)
    ids = [tuple(map(int, f.id.split("-"))) for f in frames if f.id]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    join = response.headers["location"]
    _, after_first = await get_stream(http, join, headers={"Last-Event-ID": frames[0].id or ""})
    assert [f.raw for f in after_first] == [f.raw for f in frames[1:]]
    _, everything = await get_stream(http, join, headers={"Last-Event-ID": "-1"})
    assert [f.raw for f in everything] == [f.raw for f in frames]
    _, only_updates = await get_stream(
        http, join, headers={"Last-Event-ID": "-1"}, stream_mode="updates"
    )
    assert [f.event for f in only_updates] == ["metadata", "updates", "updates"]
    # Without Last-Event-ID a finished run has nothing more to send.
    _, nothing = await get_stream(http, join)
    assert nothing == []


async def test_replay_after_a_dropped_connection(http: httpx.AsyncClient) -> None:
    tid = await new_thread(http)
    body = {
        "assistant_id": "slow",
        "input": {"seconds": 0.5},
        "stream_mode": ["values", "updates"],
        "stream_resumable": True,
    }
    received = b""
    async with http.stream("POST", f"/threads/{tid}/runs/stream", json=body) as response:
        location = response.headers["location"]
        async for chunk in response.aiter_raw():
            received += chunk
            if received.count(b"\r\n\r\n") >= 2:
                break  # the client drops the connection mid-run
    seen = parse_frames(received[: received.rindex(b"\r\n\r\n") + 4])
    assert [f.event for f in seen[:2]] == ["metadata", "values"]
    _, rest = await get_stream(http, location, headers={"Last-Event-ID": seen[-1].id or ""})
    _, full = await get_stream(http, location, headers={"Last-Event-ID": "-1"})
    assert [f.raw for f in seen + rest] == [f.raw for f in full]
    assert [f.event for f in full] == TWO_STEPS_VALUES_UPDATES


async def test_join_live_run_with_sdk_and_thread_stream(server: LiveServer) -> None:
    client = get_client(url=server.url)
    tid = (await client.threads.create())["thread_id"]
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        async with http.stream("GET", f"/threads/{tid}/stream") as thread_stream:
            assert thread_stream.status_code == 200
            run = await client.runs.create(
                tid, "slow", input={"seconds": 0.3}, stream_mode=["values", "updates"]
            )
            parts = [
                part
                async for part in client.runs.join_stream(tid, run["run_id"], stream_mode="updates")
            ]
            # Joined while the node works: what follows, filtered to updates.
            assert [p.event for p in parts if p.event != "metadata"] == ["updates", "updates"]
            raw = b""
            async for chunk in thread_stream.aiter_raw():
                raw += chunk
                if b'"status":"run_done"' in raw:
                    break
    frames = parse_frames(raw[: raw.rindex(b"\r\n\r\n") + 4])
    assert frames[0].event == "metadata" and frames[0].data["run_id"] == run["run_id"]
    assert frames[-1].event == "metadata"
    assert frames[-1].data == {"status": "run_done", "run_id": run["run_id"]}
    assert all(f.id is not None for f in frames)
    assert [f.event for f in frames[1:-1]] == ["values", "updates", "values", "updates", "values"]


async def test_sdk_thread_join_stream(server: LiveServer) -> None:
    client = get_client(url=server.url)
    tid = (await client.threads.create())["thread_id"]
    # Long enough that the join below starts while it still runs. Its row may be rewritten
    # (claimed, heartbeated) after the queued run's is inserted: the join must still follow it
    # first (it once followed the table's order, and missed the running run's end).
    busy = await client.runs.create(tid, "slow", input={"seconds": 1.0})
    seen: list[tuple[str, object]] = []

    async def follow() -> None:
        async for part in await client.threads.join_stream(tid, stream_mode="run_modes"):
            seen.append((part.event, part.data))
            if part.event == "metadata" and part.data.get("status") == "run_done":  # type: ignore[union-attr]
                if part.data["run_id"] == queued["run_id"]:  # type: ignore[index]
                    return

    queued = await client.runs.create(tid, "slow", input={"seconds": 0})
    await follow()
    done = [data["run_id"] for event, data in seen if event == "metadata" and "status" in data]  # type: ignore[operator, index]
    assert done == [busy["run_id"], queued["run_id"]]  # the running run, then the queued one


async def test_sdk_stream_parts(server: LiveServer) -> None:
    client = get_client(url=server.url)
    tid = (await client.threads.create())["thread_id"]
    created: list[str] = []
    parts = [
        part
        async for part in client.runs.stream(
            tid,
            "simple",
            input=HUMAN,
            stream_mode=["values", "updates"],
            on_run_created=lambda meta: created.append(meta["run_id"]),
        )
    ]
    assert [p.event for p in parts] == TWO_STEPS_VALUES_UPDATES
    assert created == [parts[0].data["run_id"]]
    stateless = [p.event async for p in client.runs.stream(None, "simple", input=HUMAN)]
    assert stateless == ["metadata", "values", "values", "values"]


async def test_metadata_is_sent_before_the_graph_is_built(live_server: LiveServer) -> None:
    # The run's first event goes out as the run starts, not once the worker first waits on I/O:
    # here its graph factory blocks the event loop for 2 s before the graph exists.
    body = {
        "assistant_id": "slow_to_build",
        "input": HUMAN,
        "config": {"configurable": {"build_seconds": 2}},
    }
    async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as http:
        tid = await new_thread(http)
        start = time.perf_counter()
        first_after = None
        events: list[str] = []
        async with http.stream("POST", f"/threads/{tid}/runs/stream", json=body) as response:
            async for line in response.aiter_lines():
                if line.startswith("event:"):
                    first_after = first_after or time.perf_counter() - start
                    events.append(line.removeprefix("event:").strip())
        total = time.perf_counter() - start
    assert events == ["metadata", "values", "values", "values"]
    assert total >= 2.0
    assert first_after is not None and first_after < 1.0, (first_after, total)


async def test_heartbeat_while_idle(live_server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as http:
        _, frames_raw = await post_raw(
            http, "/runs/stream", {"assistant_id": "slow", "input": {"seconds": 5.6}}
        )
    assert b": heartbeat\r\n\r\n" in frames_raw
    assert [f.event for f in parse_frames(frames_raw)] == ["metadata", "values", "values", "values"]


async def test_stream_joined_and_replayed_from_another_process(
    redis_pair: tuple[LiveServer, LiveServer],  # noqa: F811
) -> None:
    first, second = redis_pair
    tid = str(uuid.uuid4())
    async with (
        httpx.AsyncClient(base_url=first.url, timeout=30) as one,
        httpx.AsyncClient(base_url=second.url, timeout=30) as two,
    ):
        await one.post("/threads", json={"thread_id": tid})
        run = (
            await one.post(
                f"/threads/{tid}/runs",
                json={
                    "assistant_id": "slow",
                    "input": {"seconds": 0.5},
                    "stream_mode": ["values", "updates"],
                    "stream_resumable": True,
                },
            )
        ).json()
        join = f"/threads/{tid}/runs/{run['run_id']}/stream"
        # Joined on the OTHER process while it runs, from the very first event.
        _, live = await get_stream(two, join, headers={"Last-Event-ID": "-1"})
        assert [f.event for f in live] == TWO_STEPS_VALUES_UPDATES
        # Replayed on both processes after it ended: identical frames and ids.
        _, replay_one = await get_stream(one, join, headers={"Last-Event-ID": "-1"})
        _, replay_two = await get_stream(two, join, headers={"Last-Event-ID": live[1].id or ""})
        assert [f.raw for f in replay_one] == [f.raw for f in live]
        assert [f.raw for f in replay_two] == [f.raw for f in live[2:]]
        joined = await two.get(f"/threads/{tid}/runs/{run['run_id']}/join")
        assert joined.json()["log"] == ["slept 0.5", "done"]
