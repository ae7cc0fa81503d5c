"""``POST /threads/{id}/stream/events``: a thread's protocol v2 events as one filtered SSE stream.

The connection is the subscription: it replays the thread's latest run from its start (and any
run still in flight), then follows every run that starts on the thread until the client leaves,
with ``: heartbeat`` comments while idle. Each frame is
``event: <method>`` / ``data: {"type": "event", "event_id", "seq", "method", "params"}`` /
``id: <seq>``; ``seq`` numbers every event of the connection, filtered out or not, so a client
that reconnects with ``since`` skips exactly what it saw.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson

from server.runtime import Runtime
from server.runtime.broker import DONE_EVENT
from server.runtime.outcome import decode_done
from server.runtime.protocol import PROTOCOL_MODE, synth_id
from server.runtime.sse import HEARTBEAT, frame
from server.runtime.thread_runs import UnannouncedRuns
from server.serde import dumps

__all__ = ["CHANNELS", "EventFilter", "protocol_stream"]

CHANNELS = (
    "values",
    "updates",
    "messages",
    "tools",
    "custom",
    "lifecycle",
    "input",
    "tasks",
    "checkpoints",
)
"""Channels a stream may ask for (plus ``custom:<name>``)."""

_TERMINAL = {"success": "completed", "error": "failed", "interrupted": "interrupted"}


@dataclass(frozen=True)
class EventFilter:
    """Which events a connection wants: channels, namespace prefixes, depth below them."""

    channels: frozenset[str]
    namespaces: tuple[tuple[str, ...], ...] | None = None
    depth: int | None = None

    def _channel_matches(self, event: dict[str, Any]) -> bool:
        method = str(event.get("method", ""))
        channel = "input" if method == "input.requested" else method
        if channel in self.channels:
            return True
        if channel == "custom":
            data = event.get("params", {}).get("data")
            name = data.get("name") if isinstance(data, dict) else None
            return isinstance(name, str) and f"custom:{name}" in self.channels
        return False

    def _namespace_matches(self, namespace: list[str]) -> bool:
        if self.namespaces is None:
            return self.depth is None or len(namespace) <= self.depth
        for prefix in self.namespaces:
            if tuple(namespace[: len(prefix)]) != prefix:
                continue
            if self.depth is None or len(namespace) - len(prefix) <= self.depth:
                return True
        return False

    def matches(self, event: dict[str, Any]) -> bool:
        """Whether ``event`` goes to this connection."""
        namespace = event.get("params", {}).get("namespace") or []
        return self._channel_matches(event) and self._namespace_matches(list(namespace))


@dataclass
class _Cursor:
    seq: int = 0
    since: int | None = None


def _wire(cursor: _Cursor, event: dict[str, Any], event_id: str, want: EventFilter) -> bytes:
    cursor.seq += 1
    if not want.matches(event) or (cursor.since is not None and cursor.seq <= cursor.since):
        return b""
    body = {
        "type": "event",
        "event_id": event.get("event_id", event_id),
        "seq": cursor.seq,
        "method": event["method"],
        "params": event["params"],
    }
    return frame(str(event["method"]), dumps(body), str(cursor.seq))


def _terminal(run_id: str, graph_id: str, status: str, output: bytes) -> dict[str, Any]:
    # A run that ended without saying so (cancelled, or failed before its graph started).
    state = _TERMINAL.get(status, "failed")
    data: dict[str, Any] = {"event": state, "graph_name": graph_id}
    if state == "failed":
        error = orjson.loads(output).get("__error__") if output else None
        if isinstance(error, dict):
            data["error"] = str(error.get("message") or error.get("error"))
    return {
        "event_id": synth_id(run_id, "lc", "", state),
        "method": "lifecycle",
        "params": {"namespace": [], "timestamp": time.time_ns() // 1_000_000, "data": data},
    }


def _graph_id(row: dict[str, Any] | None) -> str:
    configurable = ((row or {}).get("kwargs") or {}).get("config", {}).get("configurable", {})
    return str(((row or {}).get("metadata") or {}).get("graph_id") or configurable.get("graph_id"))


async def _run_frames(
    runtime: Runtime, run_id: str, cursor: _Cursor, want: EventFilter, *, live: bool
) -> AsyncIterator[bytes]:
    """One run's frames until its done marker."""
    ended_itself = seen = False
    async for item in runtime.follow(run_id):
        if item is None:
            yield HEARTBEAT
            continue
        if item.event == DONE_EVENT:
            if not ended_itself and (seen or live):
                graph_id = _graph_id(await runtime.runs.get_any(run_id))
                status, output = decode_done(item.data)
                yield _wire(cursor, _terminal(run_id, graph_id, status, output), "", want)
            return
        if item.event != PROTOCOL_MODE:
            continue  # the run's metadata and legacy error events are for the v1 endpoints
        seen = True
        event = orjson.loads(item.data)
        if event["method"] == "lifecycle" and not event["params"]["namespace"]:
            ended_itself = event["params"]["data"].get("event") != "running"
        yield _wire(cursor, event, item.id, want)


async def _runs_to_replay(runtime: Runtime, thread_id: str) -> list[str]:
    """The runs still in flight, oldest first; else the latest run (the client may have missed
    its end)."""
    recent = await runtime.runs.for_thread(thread_id, limit=20, offset=0, status=None)
    busy = [str(r["run_id"]) for r in reversed(recent) if r["status"] in ("pending", "running")]
    if busy:
        return busy
    return [str(recent[0]["run_id"])] if recent else []


async def protocol_stream(
    runtime: Runtime, thread_id: str, want: EventFilter, *, since: int | None
) -> AsyncIterator[bytes]:
    """Frames of the thread's latest run and every later one, until the client leaves."""
    cursor = _Cursor(since=since)
    # The clock before watching, watching before reading the runs to replay: a run that starts
    # while they are read is in one or both, and one the watcher is not told of is found later.
    unannounced = await UnannouncedRuns.begin(runtime.runs.pool, thread_id)
    watcher = await runtime.broker.watch_thread(thread_id)
    try:
        queue = await _runs_to_replay(runtime, thread_id)
        followed: set[str] = set()
        live: set[str] = set()
        if not queue:
            yield HEARTBEAT  # headers and a first byte now: the client knows it is subscribed
        while True:
            while queue:
                run_id = queue.pop(0)
                if run_id in followed:
                    continue
                followed.add(run_id)
                async for chunk in _run_frames(runtime, run_id, cursor, want, live=run_id in live):
                    if chunk:
                        yield chunk
                # Postgres knows a run another process started before the watcher's want
                # reached it (the watcher holds every other run announced meanwhile).
                queue += await unannounced.check(followed)
            announced = await anext(watcher)
            if announced is None:
                yield HEARTBEAT
                # Not announced: the broker had not learnt of this watcher (see thread_runs).
                queue += await unannounced.check(followed)
            else:
                live.add(announced)
                queue.append(announced)
    finally:
        await watcher.aclose()
