"""GET /threads/{id}/stream: a client that reconnects with Last-Event-ID resumes where it left off.

The thread stream stays open for future runs, so these tests read frame by frame until the
run's ``run_done`` marker instead of waiting for the body to end.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx

from tests.support.server import LiveServer
from tests.support.sse import TWO_STEPS_VALUES_UPDATES, Frame, parse_frames


async def _frames(
    http: httpx.AsyncClient, thread_id: str, *, last_event_id: str | None = None
) -> AsyncIterator[Frame]:
    headers = {"Last-Event-ID": last_event_id} if last_event_id else None
    async with http.stream("GET", f"/threads/{thread_id}/stream", headers=headers) as response:
        assert response.status_code == 200
        buffer = b""
        async for chunk in response.aiter_bytes():
            buffer += chunk
            complete, _, buffer = buffer.rpartition(b"\r\n\r\n")
            if complete:
                for frame in parse_frames(complete + b"\r\n\r\n"):
                    yield frame


def _is_run_done(frame: Frame) -> bool:
    return frame.event == "metadata" and frame.data.get("status") == "run_done"


async def test_reconnect_with_last_event_id_gets_only_the_rest(live_server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as http:
        thread_id = (await http.post("/threads", json={})).json()["thread_id"]
        run = await http.post(
            f"/threads/{thread_id}/runs",
            json={
                "assistant_id": "slow",
                "input": {"seconds": 1.0},
                "stream_mode": ["values", "updates"],
            },
        )
        assert run.status_code == 200, run.text

        seen: list[Frame] = []
        async for frame in _frames(http, thread_id):
            seen.append(frame)
            if len(seen) == 2:  # metadata and the first values, then the client drops
                break
        assert [f.event for f in seen] == ["metadata", "values"]
        assert seen[-1].id is not None

        rest: list[Frame] = []
        async for frame in _frames(http, thread_id, last_event_id=seen[-1].id):
            if _is_run_done(frame):
                assert frame.data["run_id"] == run.json()["run_id"]
                break
            rest.append(frame)

    assert [f.event for f in seen + rest] == TWO_STEPS_VALUES_UPDATES
    assert all(f.id is not None and f.id not in {s.id for s in seen} for f in rest)
    assert rest[-1].data["log"] == ["slept 1.0", "done"]


async def test_without_last_event_id_the_in_flight_run_is_sent_from_its_start(
    live_server: LiveServer,
) -> None:
    async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as http:
        thread_id = (await http.post("/threads", json={})).json()["thread_id"]
        await http.post(
            f"/threads/{thread_id}/runs",
            json={"assistant_id": "slow", "input": {"seconds": 0.5}, "stream_mode": ["values"]},
        )
        events = []
        async for frame in _frames(http, thread_id):
            if _is_run_done(frame):
                break
            events.append(frame.event)
    assert events == ["metadata", "values", "values", "values"]
