"""Protocol v2: ``POST /threads/{id}/commands`` and ``POST /threads/{id}/stream/events``.

Driven through ``langgraph_sdk``'s thread streaming (``client.threads.stream``: ``run.start``,
``run.respond``, ``events``, ``messages``, ``values``, ``output``, ``interrupted``) and raw
httpx for the wire. Every expected sequence, payload and error below was recorded from
``langgraph dev`` (langgraph-api 0.16.7) serving ``tests/support/langgraph.json``.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client

from server.runtime.broker import parse_event_id
from tests.support.fixtures import redis_pair  # noqa: F401  (fixture)
from tests.support.server import LiveServer
from tests.support.sse import Frame, parse_frames

ALL_CHANNELS = [
    "values",
    "updates",
    "messages",
    "tools",
    "lifecycle",
    "input",
    "checkpoints",
    "tasks",
    "custom",
]

# `chat` asked "What is 2+2?": (method, data["event"] or the state's keys) per event, in order.
REFERENCE_CHAT_EVENTS = [
    ("lifecycle", "running"),
    ("values", ["messages"]),
    ("messages", "message-start"),
    ("messages", "content-block-start"),
    *[("messages", "content-block-delta")] * 10,
    ("messages", "content-block-finish"),
    ("messages", "message-finish"),
    ("values", ["messages"]),
    ("values", ["messages", "turns"]),
    ("lifecycle", "completed"),
]
REFERENCE_CHAT_DELTAS = [
    "You ",
    "asked: ",
    '"What ',
    "is ",
    '2+2?" ',
    "The ",
    "answer ",
    "turns ",
    "on ",
    "2.",
]
REFERENCE_CHAT_TEXT = 'You asked: "What is 2+2?" The answer turns on 2.'
Pair = tuple[LiveServer, LiveServer]

REFERENCE_USAGE = {"input_tokens": 3, "output_tokens": 12, "total_tokens": 15}
REFERENCE_HITL_OUTPUT = {
    "proposal": "send the report",
    "approved": True,
    "log": ["proposed", "reviewed", "acted"],
}


def _shape(event: dict[str, Any]) -> tuple[str, Any]:
    data = event["params"]["data"]
    if event["method"] in ("lifecycle", "messages"):
        return event["method"], data["event"]
    return event["method"], sorted(data) if isinstance(data, dict) else data


async def _collect(
    events: AsyncIterator[dict[str, Any]], until: Callable[[dict[str, Any]], bool]
) -> list[dict[str, Any]]:
    seen = []
    async for event in events:
        seen.append(event)
        if until(event):
            return seen
    raise AssertionError(f"stream ended before the expected event: {seen}")


def _root_lifecycle(*states: str) -> Callable[[dict[str, Any]], bool]:
    def done(event: dict[str, Any]) -> bool:
        return (
            event["method"] == "lifecycle"
            and event["params"]["namespace"] == []
            and event["params"]["data"]["event"] in states
        )

    return done


# --- through the SDK -----------------------------------------------------------------------


async def test_sdk_events_of_a_chat_run_are_the_references(live_server: LiveServer) -> None:
    client = get_client(url=live_server.url)
    async with client.threads.stream(assistant_id="chat") as thread:
        started = await thread.run.start(
            input={"messages": [{"role": "user", "content": "What is 2+2?"}]}
        )
        events = await _collect(thread.events, _root_lifecycle("completed"))
        output = await thread.output
    assert list(started) == ["run_id"]
    assert [_shape(e) for e in events] == REFERENCE_CHAT_EVENTS
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    deltas = [
        e["params"]["data"]["delta"]["text"]
        for e in events
        if _shape(e)[1] == "content-block-delta"
    ]
    assert deltas == REFERENCE_CHAT_DELTAS
    finish = events[-4]["params"]["data"]
    assert finish["usage"] == REFERENCE_USAGE
    human, ai = events[-2]["params"]["data"]["messages"]
    # Messages in values are the compact protocol form.
    assert list(human) == ["type", "content", "id"] and human["content"] == "What is 2+2?"
    assert ai["content"] == [{"type": "text", "text": REFERENCE_CHAT_TEXT, "index": 0}]
    assert events[-2]["params"]["data"]["turns"] == 1
    run_id = started["run_id"]
    assert events[0]["event_id"] == f"synth:{run_id}:lc||running"
    assert events[-1]["event_id"] == f"synth:{run_id}:lc||completed"
    assert events[0]["params"]["data"] == {"event": "running", "graph_name": "chat"}
    assert output["turns"] == 1 and output["messages"][-1]["type"] == "ai"


async def test_sdk_messages_stream_token_by_token(live_server: LiveServer) -> None:
    client = get_client(url=live_server.url)
    async with client.threads.stream(assistant_id="chat") as thread:
        first: asyncio.Future[tuple[str, Any]] = asyncio.get_running_loop().create_future()

        async def read(message: Any) -> None:
            text = "".join([delta async for delta in message.text])
            whole = await message
            first.set_result((text, whole))

        async def each_message() -> None:
            async for message in thread.messages:
                asyncio.ensure_future(read(message))

        follower = asyncio.ensure_future(each_message())
        await thread.run.start(input={"messages": [{"role": "user", "content": "What is 2+2?"}]})
        text, whole = await first
        follower.cancel()
    assert text == REFERENCE_CHAT_TEXT
    assert whole.text == REFERENCE_CHAT_TEXT and whole.usage_metadata == REFERENCE_USAGE


async def test_sdk_interrupt_respond_and_output(live_server: LiveServer) -> None:
    client = get_client(url=live_server.url)
    thread_id = (await client.threads.create())["thread_id"]
    async with client.threads.stream(thread_id, assistant_id="hitl") as thread:
        snapshots: list[Any] = []

        async def follow_values() -> None:
            # The SDK ends every projection when the run pauses on an interrupt.
            async for snapshot in thread.values:
                snapshots.append(snapshot)

        follower = asyncio.ensure_future(follow_values())
        await asyncio.sleep(0)  # one loop turn: the projection subscribes before the run starts
        await thread.run.start(input={})
        await follower
        assert thread.interrupted
        (pending,) = thread.interrupts
        assert pending["namespace"] == [] and len(pending["interrupt_id"]) == 32
        assert await thread.run.respond({"approve": True}) == {}
        output = await thread.output
    assert snapshots  # at least the thread's state when the projection began
    assert output == REFERENCE_HITL_OUTPUT
    assert not thread.interrupted


async def test_sdk_failed_run_raises_with_the_error(live_server: LiveServer) -> None:
    client = get_client(url=live_server.url)
    async with client.threads.stream(assistant_id="failing") as thread:
        await thread.run.start(input={"x": 1})
        with pytest.raises(RuntimeError) as caught:
            await thread.output
    assert str(caught.value) == "Run errored: intentional failure for testing"


async def test_sdk_subgraph_lifecycle_in_its_namespace(live_server: LiveServer) -> None:
    client = get_client(url=live_server.url)
    async with client.threads.stream(assistant_id="parent") as thread:
        started = await thread.run.start(input={})
        events = await _collect(thread.events, _root_lifecycle("completed"))
        output = await thread.output
    child = events[2]["params"]["namespace"]
    assert len(child) == 1 and child[0].startswith("child:")
    assert [(e["method"], e["params"]["namespace"]) for e in events] == [
        ("lifecycle", []),
        ("values", []),
        ("values", child),
        ("lifecycle", child),
        ("values", child),
        ("lifecycle", child),
        ("values", []),
        ("lifecycle", []),
    ]
    task_id = child[0].removeprefix("child:")
    assert events[3]["params"]["data"] == {
        "event": "started",
        "namespace": child,
        "graph_name": "child",
        "trigger_call_id": task_id,
    }
    assert events[5]["params"]["data"] == {"event": "completed", "graph_name": "child"}
    assert events[5]["event_id"] == f"synth:{started['run_id']}:lc|{child[0]}|completed"
    assert output == {"log": ["parent first", "parent first", "sub ran"]}


# --- the wire, with raw httpx --------------------------------------------------------------


async def _command(http: httpx.AsyncClient, thread_id: str, body: Any) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await http.post(
        f"/threads/{thread_id}/commands",
        content=content,
        headers={"content-type": "application/json"},
    )


async def _start(http: httpx.AsyncClient, thread_id: str, graph: str, graph_input: Any) -> str:
    answer = await _command(
        http,
        thread_id,
        {"id": 1, "method": "run.start", "params": {"assistant_id": graph, "input": graph_input}},
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body == {
        "type": "success",
        "id": 1,
        "result": {"run_id": body["result"]["run_id"]},
        "meta": {"applied_through_seq": 0},
    }
    return str(body["result"]["run_id"])


async def _frames(
    http: httpx.AsyncClient, thread_id: str, body: dict[str, Any], until: Callable[[Frame], bool]
) -> list[Frame]:
    """Frames of one stream connection until ``until`` holds (the stream itself stays open)."""
    frames: list[Frame] = []
    async with http.stream("POST", f"/threads/{thread_id}/stream/events", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        buffer = b""
        async for chunk in response.aiter_bytes():
            buffer += chunk
            complete, _, buffer = buffer.rpartition(b"\r\n\r\n")
            for frame in parse_frames(complete + b"\r\n\r\n") if complete else []:
                frames.append(frame)
                if until(frame):
                    return frames
    raise AssertionError(f"stream ended early: {frames}")


def _root_end(frame: Frame) -> bool:
    return frame.event == "lifecycle" and _root_lifecycle("completed", "failed")(frame.data)


def _without_ids(value: Any) -> Any:
    if isinstance(value, list):
        return [_without_ids(v) for v in value]
    if isinstance(value, dict):
        return {k: _without_ids(v) for k, v in value.items() if k != "id"}
    return value


# `simple` given {"messages": "hi"}: the data of its values events, message ids left out.
REFERENCE_SIMPLE_VALUES = [
    {"messages": [{"type": "human", "content": "hi"}]},
    {"messages": [{"type": "human", "content": "hi"}, {"type": "ai", "content": "echo: hi"}]},
    {
        "messages": [{"type": "human", "content": "hi"}, {"type": "ai", "content": "echo: hi"}],
        "count": 1,
    },
]


async def test_wire_frames_and_a_finished_run_replayed(live_server: LiveServer) -> None:
    client = get_client(url=live_server.url)
    async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as http:
        thread_id = str(uuid.uuid4())  # run.start creates the thread
        run_id = await _start(http, thread_id, "simple", {"messages": "hi"})
        await client.runs.join(thread_id, run_id)
        # The run is over: a new connection still gets it from its first event.
        frames = await _frames(http, thread_id, {"channels": ALL_CHANNELS}, _root_end)
        lifecycle_only = await _frames(http, thread_id, {"channels": ["lifecycle"]}, _root_end)
        after_two = await _frames(
            http, thread_id, {"channels": ["values", "lifecycle"], "since": 2}, _root_end
        )
    assert [f.event for f in frames] == ["lifecycle", "values", "values", "values", "lifecycle"]
    assert [f.id for f in frames] == ["1", "2", "3", "4", "5"]
    assert [f.data["seq"] for f in frames] == [1, 2, 3, 4, 5]
    assert all(list(f.data) == ["type", "event_id", "seq", "method", "params"] for f in frames)
    assert all(list(f.data["params"]) == ["namespace", "timestamp", "data"] for f in frames)
    assert frames[0].data["event_id"] == f"synth:{run_id}:lc||running"
    assert frames[0].data["params"]["data"] == {"event": "running", "graph_name": "simple"}
    assert [_without_ids(f.data["params"]["data"]) for f in frames[1:4]] == REFERENCE_SIMPLE_VALUES
    assert all(parse_event_id(f.data["event_id"]) is not None for f in frames[1:4])
    assert frames[4].data["params"]["data"] == {"event": "completed", "graph_name": "simple"}
    # Filters drop events but not their numbers: seq counts every event of the connection.
    assert [f.id for f in lifecycle_only] == ["1", "5"]
    assert [f.id for f in after_two] == ["3", "4", "5"]


async def test_wire_namespace_filter_keeps_the_root(live_server: LiveServer) -> None:
    client = get_client(url=live_server.url)
    async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as http:
        thread_id = str(uuid.uuid4())
        run_id = await _start(http, thread_id, "parent", {})
        await client.runs.join(thread_id, run_id)
        root = await _frames(
            http,
            thread_id,
            {"channels": ["values", "lifecycle"], "namespaces": [[]], "depth": 0},
            _root_end,
        )
        everything = await _frames(
            http, thread_id, {"channels": ["values", "lifecycle"]}, _root_end
        )
    assert [f.id for f in root] == ["1", "2", "7", "8"]
    assert [f.id for f in everything] == [str(n) for n in range(1, 9)]


async def test_wire_interrupt_then_input_respond(live_server: LiveServer) -> None:
    client = get_client(url=live_server.url)
    async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as http:
        thread_id = str(uuid.uuid4())
        run_id = await _start(http, thread_id, "hitl", {})
        paused = await _frames(
            http,
            thread_id,
            {"channels": ["values", "lifecycle", "input"]},
            lambda f: f.event == "values" and f.data["seq"] == 5,
        )
        assert [(f.event, f.data["method"]) for f in paused] == [
            ("lifecycle", "lifecycle"),
            ("values", "values"),
            ("input.requested", "input.requested"),
            ("lifecycle", "lifecycle"),
            ("values", "values"),
        ]
        asked = paused[2].data
        interrupt_id = asked["params"]["data"]["interrupt_id"]
        assert asked["event_id"] == f"synth:{run_id}:input||{interrupt_id}"
        assert asked["params"]["data"]["payload"] == {
            "question": "approve?",
            "proposal": "send the report",
        }
        assert paused[3].data["params"]["data"] == {"event": "interrupted", "graph_name": "hitl"}
        assert paused[4].data["params"]["data"] == {
            "proposal": "send the report",
            "log": ["proposed"],
        }

        respond = {
            "id": 2,
            "method": "input.respond",
            "params": {
                "interrupt_id": interrupt_id,
                "namespace": [],
                "response": {"approve": True},
            },
        }
        answer = await _command(http, thread_id, respond)
        assert answer.json() == {
            "type": "success",
            "id": 2,
            "result": {},
            "meta": {"applied_through_seq": 0},
        }
        resumed = (await client.runs.list(thread_id, limit=1))[0]
        await client.runs.join(thread_id, resumed["run_id"])
        again = await _command(http, thread_id, {**respond, "id": 3})
    assert resumed["run_id"] != run_id
    assert again.json() == {
        "type": "error",
        "id": 3,
        "error": "no_such_interrupt",
        "message": f"Unknown or already-consumed interrupt: {interrupt_id}",
    }
    state = await client.threads.get_state(thread_id)
    assert state["values"] == REFERENCE_HITL_OUTPUT


async def test_wire_run_start_with_input_answers_a_pending_interrupt(
    live_server: LiveServer,
) -> None:
    client = get_client(url=live_server.url)
    async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as http:
        thread_id = str(uuid.uuid4())
        await client.runs.join(thread_id, await _start(http, thread_id, "hitl", {}))
        await client.runs.join(thread_id, await _start(http, thread_id, "hitl", {"approve": True}))
    state = await client.threads.get_state(thread_id)
    assert state["values"] == REFERENCE_HITL_OUTPUT


# (request body, HTTP status, answer) as langgraph dev gives them on a thread with no run; this
# server adds `detail` (its error key everywhere) to the 400 answers.
REFERENCE_COMMAND_ERRORS: list[tuple[str, Any, int, Any]] = [
    ("invalid JSON", b"{x", 400, {"detail": "Invalid JSON body"}),
    (
        "not an object",
        [1],
        400,
        {
            "type": "error",
            "id": None,
            "error": "invalid_argument",
            "message": "Protocol commands must include an integer id and string method.",
        },
    ),
    (
        "no method",
        {"id": 1},
        400,
        {
            "type": "error",
            "id": 1,
            "error": "invalid_argument",
            "message": "Protocol commands must include an integer id and string method.",
        },
    ),
    (
        "string id",
        {"id": "a", "method": "agent.getTree"},
        400,
        {
            "type": "error",
            "id": "a",
            "error": "invalid_argument",
            "message": "Protocol commands must include an integer id and string method.",
        },
    ),
    (
        "unknown command",
        {"id": 1, "method": "state.get", "params": {}},
        200,
        {
            "type": "error",
            "id": 1,
            "error": "unknown_command",
            "message": "Unknown protocol command: state.get",
        },
    ),
    (
        "no assistant",
        {"id": 1, "method": "run.start", "params": {}},
        200,
        {
            "type": "error",
            "id": 1,
            "error": "invalid_argument",
            "message": "run.start requires an assistant_id.",
        },
    ),
    (
        "params not an object",
        {"id": 1, "method": "run.start", "params": 5},
        200,
        {
            "type": "error",
            "id": 1,
            "error": "invalid_argument",
            "message": "run.start requires an assistant_id.",
        },
    ),
    (
        "bad checkpoint id",
        {
            "id": 1,
            "method": "run.start",
            "params": {
                "assistant_id": "simple",
                "input": {},
                "config": {"configurable": {"checkpoint_id": 5}},
            },
        },
        200,
        {
            "type": "error",
            "id": 1,
            "error": "invalid_argument",
            "message": "config.configurable.checkpoint_id must be a non-empty string.",
        },
    ),
    (
        "respond without interrupt",
        {"id": 1, "method": "input.respond", "params": {}},
        200,
        {
            "type": "error",
            "id": 1,
            "error": "invalid_argument",
            "message": "input.respond requires an interrupt_id.",
        },
    ),
    (
        "respond with a bad namespace",
        {
            "id": 1,
            "method": "input.respond",
            "params": {"interrupt_id": "x", "namespace": "bad", "response": 1},
        },
        200,
        {
            "type": "error",
            "id": 1,
            "error": "invalid_argument",
            "message": "input.respond requires namespace to be a list of strings.",
        },
    ),
    (
        "respond on a thread with no run",
        {
            "id": 1,
            "method": "input.respond",
            "params": {"interrupt_id": "x", "namespace": [], "response": 1},
        },
        200,
        {
            "type": "error",
            "id": 1,
            "error": "no_such_run",
            "message": "No interrupted run is bound to this thread.",
        },
    ),
    (
        "agent.getTree",
        {"id": 1, "method": "agent.getTree", "params": {}},
        200,
        {
            "type": "error",
            "id": 1,
            "error": "no_such_run",
            "message": "No active run is bound to this thread.",
        },
    ),
    (
        "subscription.reconnect",
        {"id": 1, "method": "subscription.reconnect", "params": {"run_id": "zz"}},
        200,
        {
            "type": "error",
            "id": 1,
            "error": "no_such_run",
            "message": "No active run is bound to this thread.",
        },
    ),
    (
        "subscribe to an unknown channel",
        {"id": 1, "method": "subscription.subscribe", "params": {"channels": ["nope"]}},
        200,
        {
            "type": "error",
            "id": 1,
            "error": "invalid_argument",
            "message": "subscription.subscribe received an unsupported channel.",
        },
    ),
    (
        "unsubscribe",
        {"id": 1, "method": "subscription.unsubscribe", "params": {"subscription_id": "zz"}},
        200,
        {
            "type": "error",
            "id": 1,
            "error": "no_such_subscription",
            "message": "Unknown subscription: zz",
        },
    ),
]


@pytest.mark.parametrize(
    ("body", "status", "expected"),
    [case[1:] for case in REFERENCE_COMMAND_ERRORS],
    ids=[case[0] for case in REFERENCE_COMMAND_ERRORS],
)
async def test_command_errors_are_the_references(
    live_server: LiveServer, body: Any, status: int, expected: Any
) -> None:
    async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as http:
        answer = await _command(http, str(uuid.uuid4()), body)
    assert answer.status_code == status, answer.text
    if status == 400 and "message" in expected:
        expected = {**expected, "detail": expected["message"]}
    assert answer.json() == expected


async def test_subscribe_over_http_names_a_subscription(live_server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as http:
        answer = await _command(
            http,
            str(uuid.uuid4()),
            {"id": 4, "method": "subscription.subscribe", "params": {"channels": ["values"]}},
        )
    body = answer.json()
    assert body["type"] == "success" and body["result"]["replayed_events"] == 0
    assert uuid.UUID(body["result"]["subscription_id"])


async def test_run_start_failures_carry_the_http_status(live_server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as http:
        unknown = await _command(
            http,
            str(uuid.uuid4()),
            {"id": 1, "method": "run.start", "params": {"assistant_id": "nope", "input": {}}},
        )
        bad_thread = await _command(
            http,
            "not-a-uuid",
            {"id": 1, "method": "run.start", "params": {"assistant_id": "simple", "input": {}}},
        )
    assert unknown.json()["error"] == "unknown_error"
    assert unknown.json()["message"].startswith("422: Invalid assistant: 'nope'.")
    assert bad_thread.json()["error"] == "unknown_error"
    assert bad_thread.json()["message"].startswith("422: Invalid thread ID")


REFERENCE_STREAM_ERRORS: list[tuple[str, Any, str]] = [
    ("invalid JSON", b"{x", "Invalid JSON body"),
    ("no channels", {}, "channels is required and must be a non-empty array"),
    ("empty channels", {"channels": []}, "channels is required and must be a non-empty array"),
    (
        "unknown channel",
        {"channels": ["values", "nope"]},
        "channels contains unsupported entries: nope. Allowed: values, updates, messages, "
        "tools, custom, lifecycle, input, tasks, or any `custom:<name>`.",
    ),
]


@pytest.mark.parametrize(
    ("body", "detail"),
    [case[1:] for case in REFERENCE_STREAM_ERRORS],
    ids=[case[0] for case in REFERENCE_STREAM_ERRORS],
)
async def test_stream_errors_are_the_references(
    live_server: LiveServer, body: Any, detail: str
) -> None:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as http:
        answer = await http.post(f"/threads/{uuid.uuid4()}/stream/events", content=content)
    assert answer.status_code == 400
    assert answer.json() == {"detail": detail}


async def test_stream_of_a_malformed_thread_id_is_refused(live_server: LiveServer) -> None:
    # The reference holds the stream open with nothing in it; a 422 tells the client why.
    async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as http:
        answer = await http.post("/threads/not-a-uuid/stream/events", json={"channels": ["values"]})
    assert answer.status_code == 422
    assert answer.json() == {"detail": "Invalid thread ID: must be a UUID"}


async def test_stream_of_a_thread_without_runs_opens_and_heartbeats(
    live_server: LiveServer,
) -> None:
    async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as http:
        body = {"channels": ["values"]}
        async with http.stream("POST", f"/threads/{uuid.uuid4()}/stream/events", json=body) as r:
            assert r.status_code == 200
            first = await anext(r.aiter_bytes())
    assert first == b": heartbeat\r\n\r\n"


async def test_wire_cancelled_run_ends_with_interrupted_lifecycle(live_server: LiveServer) -> None:
    client = get_client(url=live_server.url)
    async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as http:
        thread_id = str(uuid.uuid4())
        run_id = await _start(http, thread_id, "slow", {"seconds": 30})
        seen: list[Frame] = []
        body = {"channels": ["lifecycle", "values"]}
        async with http.stream("POST", f"/threads/{thread_id}/stream/events", json=body) as r:
            buffer = b""
            async for chunk in r.aiter_bytes():
                buffer += chunk
                complete, _, buffer = buffer.rpartition(b"\r\n\r\n")
                for frame in parse_frames(complete + b"\r\n\r\n") if complete else []:
                    seen.append(frame)
                    if frame.event == "values":  # the run is working: cancel it
                        await client.runs.cancel(thread_id, run_id, wait=True)
                if seen and seen[-1].event == "lifecycle" and len(seen) > 1:
                    break
    # As langgraph dev: running, the first values, then interrupted with a synthesised id.
    assert [f.data["params"]["data"] for f in seen] == [
        {"event": "running", "graph_name": "slow"},
        {"seconds": 30, "log": []},
        {"event": "interrupted", "graph_name": "slow"},
    ]
    assert seen[-1].data["event_id"] == f"synth:{run_id}:lc||interrupted"


async def test_events_of_a_run_on_another_process(redis_pair: Pair) -> None:  # noqa: F811
    first, second = redis_pair
    async with (
        httpx.AsyncClient(base_url=first.url, timeout=30) as one,
        httpx.AsyncClient(base_url=second.url, timeout=30) as two,
    ):
        thread_id = str(uuid.uuid4())
        run_id = await _start(one, thread_id, "simple", {"messages": "hi"})  # runs on `first`
        frames = await _frames(two, thread_id, {"channels": ALL_CHANNELS}, _root_end)
    assert [f.event for f in frames] == ["lifecycle", "values", "values", "values", "lifecycle"]
    assert frames[0].data["event_id"] == f"synth:{run_id}:lc||running"
    assert [_without_ids(f.data["params"]["data"]) for f in frames[1:4]] == REFERENCE_SIMPLE_VALUES
