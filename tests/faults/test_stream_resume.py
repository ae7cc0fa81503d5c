"""A resumable stream dropped mid-run and resumed with Last-Event-ID (over Redis): the frames
before and after the drop are exactly the run's frames, in order, none missing or repeated."""

from __future__ import annotations

import httpx
import pytest

from tests.faults.conftest import FAULT_CONFIG, Effects
from tests.support.server import LiveServer
from tests.support.sse import Frame, parse_frames

pytestmark = pytest.mark.slow


async def _first_frames(response: httpx.Response, count: int) -> list[Frame]:
    """The first ``count`` frames of a stream, read off the wire; the rest is left unread."""
    raw = b""
    async for chunk in response.aiter_raw():
        raw += chunk
        if raw.count(b"\r\n\r\n") >= count:
            break
    cut = 0
    for _ in range(count):
        cut = raw.index(b"\r\n\r\n", cut) + 4
    return parse_frames(raw[:cut])


async def test_stream_drop_and_last_event_id_resume(
    redis_url: str,
    effects: Effects,
    server_factory,  # type: ignore[no-untyped-def]
) -> None:
    env = {"REDIS_URL": redis_url, "FAULT_EFFECTS_DIR": str(effects.path)}
    server: LiveServer = server_factory(env=env, config=FAULT_CONFIG)
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
        tid = (await http.post("/threads", json={})).json()["thread_id"]
        body = {
            "assistant_id": "faulty",
            "input": {"step_seconds": 0.4},
            "stream_mode": ["values", "updates"],
            "stream_resumable": True,
        }
        async with http.stream("POST", f"/threads/{tid}/runs/stream", json=body) as first:
            run_path = first.headers["Content-Location"]
            before = await _first_frames(first, 3)  # then the connection drops
        last_id = str(before[-1].id)
        resumed = await http.get(f"{run_path}/stream", headers={"Last-Event-ID": last_id})
        after = parse_frames(resumed.content)
        replay = await http.get(f"{run_path}/stream", headers={"Last-Event-ID": "-1"})
        everything = parse_frames(replay.content)

    seen = [(f.id, f.event, f.data) for f in before + after]
    assert seen == [(f.id, f.event, f.data) for f in everything]
    ids = [tuple(int(p) for p in str(f.id).split("-")) for f in everything]
    assert ids == sorted(set(ids))  # strictly increasing: no repeat
    values = [f.data for f in everything if f.event == "values"]
    assert sorted(values[-1]["done"]) == ["s1", "s2", "s3", "s4", "s5"]
