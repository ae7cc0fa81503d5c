"""Reading raw SSE bodies the way the reference transcript shows them, frame by frame."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx

__all__ = [
    "TWO_STEPS_VALUES_UPDATES",
    "Frame",
    "get_stream",
    "parse_frames",
    "post_raw",
    "post_stream",
]

TWO_STEPS_VALUES_UPDATES = ["metadata", "values", "updates", "values", "updates", "values"]
"""Events of a two-step run (``simple``, ``slow``, ``hitl`` up to its interrupt) streamed with
``["values", "updates"]``."""


@dataclass(frozen=True)
class Frame:
    """One ``event:`` / ``data:`` / optional ``id:`` frame."""

    event: str
    data: Any
    id: str | None
    raw: bytes


def parse_frames(body: bytes) -> list[Frame]:
    """Split an SSE body into frames, asserting the exact wire format of the reference.

    Frames are ``event: X\\r\\ndata: <json>\\r\\n[id: Y\\r\\n]\\r\\n``; ``: heartbeat`` comments
    are skipped.
    """
    frames: list[Frame] = []
    assert body == b"" or body.endswith(b"\r\n\r\n"), body[-40:]
    for chunk in body.split(b"\r\n\r\n"):
        if not chunk:
            continue
        lines = chunk.split(b"\r\n")
        if lines == [b": heartbeat"]:
            continue
        assert lines[0].startswith(b"event: "), chunk
        assert lines[1].startswith(b"data: "), chunk
        assert b"\n" not in lines[1], "data must be one line of compact JSON"
        event_id = None
        if len(lines) == 3:
            assert lines[2].startswith(b"id: "), chunk
            event_id = lines[2][4:].decode()
        else:
            assert len(lines) == 2, chunk
        data = lines[1][6:]
        frames.append(Frame(lines[0][7:].decode(), json.loads(data), event_id, chunk))
    return frames


async def post_raw(
    client: httpx.AsyncClient, path: str, body: dict[str, Any]
) -> tuple[httpx.Response, bytes]:
    """POST ``body`` to a streaming endpoint and read the whole body, unparsed."""
    async with client.stream("POST", path, json=body) as response:
        return response, await response.aread()


async def post_stream(
    client: httpx.AsyncClient, path: str, body: dict[str, Any]
) -> tuple[httpx.Response, list[Frame]]:
    """POST ``body`` to a streaming endpoint and read the whole SSE body."""
    response, raw = await post_raw(client, path, body)
    return response, parse_frames(raw) if response.status_code == 200 else []


async def get_stream(
    client: httpx.AsyncClient, path: str, *, headers: dict[str, str] | None = None, **params: Any
) -> tuple[httpx.Response, list[Frame]]:
    """GET a streaming endpoint and read the whole SSE body."""
    async with client.stream("GET", path, headers=headers, params=params or None) as response:
        raw = await response.aread()
    return response, parse_frames(raw) if response.status_code == 200 else []
