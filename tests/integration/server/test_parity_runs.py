"""Run behaviour checked against ``langgraph dev``: cancel with wait, deleting an assistant with
runs in flight, keep-alive newlines of ``runs/wait`` and ``join``, ``messages`` event names under
``stream_subgraphs``, and ``graph?xray=``.

Every expectation was observed on ``langgraph dev`` (langgraph-cli 0.4.40, langgraph-api 0.16.7,
in-memory runtime 0.36.7) serving ``tests/support/langgraph_parity.json`` with the same requests.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client

from server.graphs import assistant_id_for
from tests.support.parity import ParityServer, parity_server
from tests.support.sse import parse_frames

__all__ = ["parity_server"]

HI = {"messages": [{"role": "user", "content": "hi"}]}


@contextlib.asynccontextmanager
async def started(
    url: str, thread_id: str, assistant: str, graph_input: dict[str, Any]
) -> AsyncIterator[str]:
    """Create a run by streaming it, yield its id once its graph is inside the first node (the
    first ``values`` event), and read its stream to the end on the way out."""
    async with (
        httpx.AsyncClient(base_url=url, timeout=60) as http,
        http.stream(
            "POST",
            f"/threads/{thread_id}/runs/stream",
            json={"assistant_id": assistant, "input": graph_input, "stream_mode": ["values"]},
        ) as response,
    ):
        run_id = response.headers["content-location"].rsplit("/", 1)[-1]
        lines = response.aiter_lines()
        async for line in lines:
            if line == "event: values":
                break
        yield run_id
        async for _ in lines:
            pass


async def test_cancel_wait_leaves_thread_as_the_reference(parity_server: ParityServer) -> None:
    client = get_client(url=parity_server.url)
    # A run cancelled inside its first node: reference answers {} and the thread is
    # interrupted with the node still to run (next == ["nap"]).
    thread = (await client.threads.create())["thread_id"]
    async with started(parity_server.url, thread, "slow", {"seconds": 30}) as run_id:
        assert await client.runs.cancel(thread, run_id, wait=True) == {}
        assert (await client.threads.get(thread))["status"] == "interrupted"
        assert (await client.threads.get_state(thread))["next"] == ["nap"]
        assert (await client.runs.get(thread, run_id))["status"] == "interrupted"
    # rollback: the run is gone and the thread idle with nothing to run.
    thread = (await client.threads.create())["thread_id"]
    async with started(parity_server.url, thread, "slow", {"seconds": 30}) as run_id:
        assert await client.runs.cancel(thread, run_id, wait=True, action="rollback") == {}
        assert (await client.threads.get(thread))["status"] == "idle"
        assert (await client.threads.get_state(thread))["next"] == []
    # A run cancelled before it started (due later): idle, as the reference leaves it. The
    # reference's "idle after create-then-cancel" is this case: its queue had not started
    # the run yet, where ours starts it at once.
    for previous in (False, True):
        thread = (await client.threads.create())["thread_id"]
        if previous:
            await client.runs.wait(thread, "slow", input={"seconds": 0})
        run = await client.runs.create(thread, "slow", input={"seconds": 0}, after_seconds=30)
        await client.runs.cancel(thread, run["run_id"], wait=True)
        assert (await client.threads.get(thread))["status"] == "idle"
        assert (await client.runs.get(thread, run["run_id"]))["status"] == "interrupted"


async def test_cancel_wait_and_no_wait_bodies(parity_server: ParityServer) -> None:
    client = get_client(url=parity_server.url)
    async with httpx.AsyncClient(base_url=parity_server.url) as http:
        for wait, status, body in (("true", 200, b"{}"), ("false", 202, b"")):
            thread = (await client.threads.create())["thread_id"]
            async with started(parity_server.url, thread, "slow", {"seconds": 30}) as run_id:
                answer = await http.post(
                    f"/threads/{thread}/runs/{run_id}/cancel", params={"wait": wait}
                )
                assert (answer.status_code, answer.content) == (status, body)


async def test_deleting_an_assistant_cancels_its_runs(parity_server: ParityServer) -> None:
    client = get_client(url=parity_server.url)
    assistant = await client.assistants.create("slow", name="doomed")
    aid = assistant["assistant_id"]
    thread = (await client.threads.create())["thread_id"]
    other = (await client.threads.create())["thread_id"]
    async with started(parity_server.url, thread, aid, {"seconds": 30}) as first:
        queued = (await client.runs.create(thread, aid, input={"seconds": 1}))["run_id"]
        later = await client.runs.create(other, aid, input={"seconds": 0}, after_seconds=60)
        async with httpx.AsyncClient(base_url=parity_server.url) as http:
            deleted = await http.delete(f"/assistants/{aid}")
            assert (deleted.status_code, deleted.content) == (204, b"")
            # Right after the delete: every run interrupted, both threads idle, runs kept.
            for tid, run_id in ((thread, first), (thread, queued), (other, later["run_id"])):
                assert (await client.runs.get(tid, run_id))["status"] == "interrupted"
            assert (await client.threads.get(thread))["status"] == "idle"
            assert (await client.threads.get(other))["status"] == "idle"
            assert [r["status"] for r in await client.runs.list(thread)] == ["interrupted"] * 2
            again = await http.post(
                f"/threads/{thread}/runs", json={"assistant_id": aid, "input": {"seconds": 0}}
            )
            assert again.status_code == 404
            assert again.json() == {"detail": "Thread or assistant not found."}


async def _timed_body(http: httpx.AsyncClient, method: str, path: str, **kwargs: object) -> tuple:
    started = time.monotonic()
    chunks: list[tuple[float, bytes]] = []
    async with http.stream(method, path, **kwargs) as response:  # type: ignore[arg-type]
        async for chunk in response.aiter_raw():
            chunks.append((time.monotonic() - started, chunk))
    return response, chunks


@pytest.mark.slow
async def test_wait_and_join_write_keepalive_newlines(parity_server: ParityServer) -> None:
    # Reference: chunked application/json; b"\n" at ~5 s and ~10 s of an 11 s run, then the
    # values; Content-Location and Location (…/join) on both wait and join.
    async with httpx.AsyncClient(base_url=parity_server.url, timeout=60) as http:
        thread = (await http.post("/threads", json={})).json()["thread_id"]
        response, chunks = await _timed_body(
            http,
            "POST",
            f"/threads/{thread}/runs/wait",
            json={"assistant_id": "slow", "input": {"seconds": 6}},
        )
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        assert response.headers["transfer-encoding"] == "chunked"
        base = response.headers["content-location"]
        assert response.headers["location"] == f"{base}/join"
        # One newline per 5 s of quiet (at least one during a 6 s nap, more if the machine is
        # slow), never before 5 s, then the values as one JSON document.
        *keepalives, (_, last) = chunks
        assert keepalives and all(chunk == b"\n" for _, chunk in keepalives)
        assert keepalives[0][0] >= 4.5
        assert json.loads(last) == {"seconds": 6, "log": ["slept 6", "done"]}

        run = (
            await http.post(
                f"/threads/{thread}/runs", json={"assistant_id": "slow", "input": {"seconds": 6}}
            )
        ).json()
        path = f"/threads/{thread}/runs/{run['run_id']}"
        response, chunks = await _timed_body(http, "GET", f"{path}/join")
        assert response.headers["content-location"] == path
        assert response.headers["location"] == f"{path}/join"
        *keepalives, (_, last) = chunks
        assert keepalives and all(chunk == b"\n" for _, chunk in keepalives)
        assert json.loads(last)["log"] == ["slept 6", "done", "slept 6", "done"]
        # A finished run's join answers at once, without a newline.
        response, chunks = await _timed_body(http, "GET", f"{path}/join")
        assert [json.loads(chunk)["seconds"] for _, chunk in chunks] == [6]


async def test_a_wait_that_ends_before_a_keepalive_is_one_piece(
    parity_server: ParityServer,
) -> None:
    # Before the first keep-alive is due there is nothing to stream: the document goes out
    # whole, with its length (the reference streams it chunked; clients read either).
    async with httpx.AsyncClient(base_url=parity_server.url, timeout=60) as http:
        thread = (await http.post("/threads", json={})).json()["thread_id"]
        response = await http.post(
            f"/threads/{thread}/runs/wait", json={"assistant_id": "slow", "input": {"seconds": 0}}
        )
        assert response.status_code == 200
        assert "transfer-encoding" not in response.headers
        assert int(response.headers["content-length"]) == len(response.content)
        assert response.json() == {"seconds": 0, "log": ["slept 0", "done"]}
        base = response.headers["content-location"]
        assert response.headers["location"] == f"{base}/join"


async def test_wait_headers_and_errors(parity_server: ParityServer) -> None:
    async with httpx.AsyncClient(base_url=parity_server.url, timeout=60) as http:
        # A stateless wait names its temporary thread in Location, as the reference does.
        answer = await http.post("/runs/wait", json={"assistant_id": "slow", "input": {}})
        assert answer.status_code == 200
        assert answer.headers["location"].startswith("/threads/")
        assert answer.headers["location"] == answer.headers["content-location"] + "/join"
        # A failing run: 200 with __error__ (no keep-alive for a run that fails at once).
        answer = await http.post(
            "/runs/wait", json={"assistant_id": "slow", "input": {"seconds": "x"}}
        )
        assert answer.status_code == 200
        assert answer.json() == {
            "__error__": {
                "error": "ValueError",
                "message": "could not convert string to float: 'x'",
            }
        }


@pytest.mark.parametrize("subgraphs", [True, False])
async def test_messages_events_carry_no_namespace(
    parity_server: ParityServer, subgraphs: bool
) -> None:
    # Reference, "nested" (the template agent as a subgraph node): messages/* names never
    # carry "|agent:<task>", while updates and messages-tuple events from the subgraph do.
    async with httpx.AsyncClient(base_url=parity_server.url, timeout=60) as http:
        thread = (await http.post("/threads", json={})).json()["thread_id"]
        events: dict[str, list[str]] = {}
        for modes in (["messages", "updates"], ["messages-tuple"]):
            response = await http.post(
                f"/threads/{thread}/runs/stream",
                json={
                    "assistant_id": "nested",
                    "input": HI,
                    "stream_mode": modes,
                    "stream_subgraphs": subgraphs,
                },
            )
            events["+".join(modes)] = [frame.event for frame in parse_frames(response.content)]
    legacy = events["messages+updates"]
    assert legacy[:3] == ["metadata", "messages/metadata", "messages/complete"]
    if subgraphs:
        assert legacy[3].startswith("updates|agent:") and legacy[4:] == ["updates"]
        (tuple_event,) = events["messages-tuple"][1:]
        assert tuple_event.startswith("messages|agent:")
    else:
        assert legacy[3:] == ["updates"]


async def test_xray_values(parity_server: ParityServer) -> None:
    aid = assistant_id_for("parent")
    accepted = ["1", "true", "True", "false", "False", "2", "", "101", "1000"]
    refused = ["0", "-1", "abc", "FALSE"]
    async with httpx.AsyncClient(base_url=parity_server.url) as http:
        for value in accepted:
            answer = await http.get(f"/assistants/{aid}/graph", params={"xray": value})
            assert answer.status_code == 200, value
        for value in refused:
            answer = await http.get(f"/assistants/{aid}/graph", params={"xray": value})
            assert answer.status_code == 422, value
            assert answer.json() == {"detail": "Invalid xray value"}
