"""Protocol v2 runs: LangGraph's own v3 event stream, shaped as the reference puts it on the wire.

A run started by ``POST /threads/{id}/commands`` (``run.start`` / ``input.respond``) asks for the
internal stream mode :data:`PROTOCOL_MODE`. The executor then drives
``graph.astream_events(..., version="v3")`` (LangGraph's protocol events: ``values``,
``messages`` content-block events, subgraph ``lifecycle``, …) through :func:`protocol_events`,
which publishes each as one broker event named :data:`PROTOCOL_MODE` whose data is
``{"method", "params": {"namespace", "timestamp", "data"}}`` (plus ``event_id`` for events this
server synthesises). The route adds ``type``, ``event_id`` and the connection's ``seq``.

What is synthesised, as the reference does: a root ``lifecycle`` ``running`` first; for each
interrupt a value carries, an ``input.requested`` event and (at the root) a ``lifecycle``
``interrupted``; a root ``completed`` at the end or ``failed`` with the error's message; a
subgraph's end moved to the subgraph's namespace with the name it started with.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from langgraph.pregel import Pregel

from server.runtime.events import StreamConverter
from server.runtime.protocol_state import normalize_state
from server.serde import dumps, jsonable

__all__ = ["PROTOCOL_MODE", "ProtocolShaper", "protocol_events", "synth_id"]

PROTOCOL_MODE = "protocol"
"""Stream mode (and broker event name) of protocol v2 runs; never sent to LangGraph."""

# Options the executor builds for ``astream`` that the v3 stream owns itself.
_NOT_FOR_V3 = ("stream_mode", "subgraphs")


def synth_id(run_id: str, *parts: str) -> str:
    """Deterministic id of a synthesised event (replays of the same run give the same id)."""
    return f"synth:{run_id}:{'|'.join(parts)}"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _event(
    method: str,
    namespace: list[str],
    data: Any,
    *,
    timestamp: int | None = None,
    event_id: str | None = None,
) -> tuple[str, bytes]:
    body: dict[str, Any] = {}
    if event_id is not None:
        body["event_id"] = event_id
    body["method"] = method
    body["params"] = {
        "namespace": namespace,
        "timestamp": timestamp if timestamp is not None else _now_ms(),
        "data": data,
    }
    return PROTOCOL_MODE, dumps(body)


class ProtocolShaper:
    """Turns one run's LangGraph v3 events into the reference's wire events."""

    def __init__(self, *, run_id: str, graph_id: str, converter: StreamConverter) -> None:
        """Shape events of ``run_id`` (a ``graph_id`` run); ``converter`` keeps the outcome."""
        self.run_id = run_id
        self.graph_id = graph_id
        self.converter = converter
        self._asked: set[str] = set()
        self._names: dict[tuple[str, ...], str] = {}

    def lifecycle(
        self, event: str, namespace: list[str] | None = None, **extra: Any
    ) -> tuple[str, bytes]:
        """A synthesised ``lifecycle`` event (root unless ``namespace``)."""
        namespace = namespace or []
        name = self._names.get(tuple(namespace), self.graph_id) if namespace else self.graph_id
        data = {"event": event, "graph_name": name, **extra}
        key = synth_id(self.run_id, "lc", "|".join(namespace), event)
        return _event("lifecycle", namespace, data, event_id=key)

    def shape(self, raw: Mapping[str, Any]) -> list[tuple[str, bytes]]:
        """Wire events for one LangGraph protocol event (often one, sometimes none or more)."""
        method = str(raw.get("method", ""))
        params = raw.get("params") or {}
        namespace = [str(part) for part in params.get("namespace") or []]
        stamp = params.get("timestamp")
        data = params.get("data")
        if method == "values":
            return self._values(namespace, data, params.get("interrupts") or (), stamp)
        if method == "messages":
            # The v3 stream pairs each content-block event with its run metadata; the wire
            # carries the event alone.
            if isinstance(data, tuple | list) and len(data) == 2 and isinstance(data[0], dict):
                data = data[0]
            if not (isinstance(data, dict) and isinstance(data.get("event"), str)):
                return []
            return [_event("messages", namespace, jsonable(data), timestamp=stamp)]
        if method == "lifecycle" and isinstance(data, dict):
            return self._subgraph_lifecycle(data, stamp)
        return [_event(method, namespace, jsonable(data), timestamp=stamp)]

    def _values(
        self, namespace: list[str], data: Any, interrupts: Any, stamp: Any
    ) -> list[tuple[str, bytes]]:
        out: list[tuple[str, bytes]] = []
        if not namespace:
            self.converter.convert((), "values", data)
        pending = [jsonable(item) for item in interrupts]
        if pending and not namespace:
            self.converter.convert((), "updates", {"__interrupt__": list(interrupts)})
        for item in pending:
            interrupt_id = str(item.get("id", "")) if isinstance(item, dict) else ""
            if interrupt_id in self._asked:
                continue
            self._asked.add(interrupt_id)
            payload = item.get("value") if isinstance(item, dict) else item
            out.append(
                _event(
                    "input.requested",
                    namespace,
                    {"interrupt_id": interrupt_id, "payload": payload},
                    event_id=synth_id(self.run_id, "input", "|".join(namespace), interrupt_id),
                )
            )
        if pending and not namespace:
            out.append(self.lifecycle("interrupted"))
        out.append(_event("values", namespace, normalize_state(jsonable(data)), timestamp=stamp))
        return out

    def _subgraph_lifecycle(self, data: dict[str, Any], stamp: Any) -> list[tuple[str, bytes]]:
        namespace = [str(part) for part in data.get("namespace") or []]
        event = str(data.get("event", ""))
        if event == "started":
            if isinstance(data.get("graph_name"), str):
                self._names[tuple(namespace)] = data["graph_name"]
            return [_event("lifecycle", namespace, jsonable(data), timestamp=stamp)]
        extra = {"error": str(data["error"])} if data.get("error") is not None else {}
        return [self.lifecycle(event, namespace, **extra)]


async def protocol_events(
    graph: Pregel,
    graph_input: Any,
    config: Any,
    options: Mapping[str, Any],
    converter: StreamConverter,
) -> AsyncIterator[tuple[str, bytes]]:
    """The run's wire events, from ``running`` to ``completed`` / ``interrupted`` / ``failed``.

    Args:
        graph: the run's graph (with persistence attached).
        graph_input: its input or ``Command``.
        config: the run's config (``run_id``, ``configurable.graph_id``).
        options: what the executor would pass to ``astream`` (its stream options are dropped).
        converter: keeps the final values and interrupts, as for any other run.

    A failure is reported as a ``failed`` lifecycle event and then raised again, so the
    executor records the run's error as for any other run.
    """
    shaper = ProtocolShaper(
        run_id=str(config["run_id"]),
        graph_id=str(config["configurable"].get("graph_id")),
        converter=converter,
    )
    kwargs = {k: v for k, v in options.items() if k not in _NOT_FOR_V3}
    yield shaper.lifecycle("running")
    try:
        stream = await graph.astream_events(graph_input, config, version="v3", **kwargs)
        async with stream:
            async for raw in stream:
                for shaped in shaper.shape(raw):
                    yield shaped
    except Exception as exc:
        yield shaper.lifecycle("failed", error=str(exc))
        raise
    if not shaper.converter.interrupted:
        yield shaper.lifecycle("completed")
