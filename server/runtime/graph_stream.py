"""A run's graph streamed as the API's events: LangGraph's options from the run's kwargs, and the
stream the requested modes need (plain ``astream``, ``astream_events`` for the ``events`` mode,
or the protocol v2 stream)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from langgraph.pregel import Pregel

from server.runtime.events import Converted, StreamConverter, graph_stream_modes
from server.runtime.protocol import PROTOCOL_MODE, protocol_events
from server.runtime.run_context import run_context
from server.serde import dumps

__all__ = ["graph_events"]


async def graph_events(
    graph: Pregel,
    graph_input: Any,
    config: Any,
    kwargs: Mapping[str, Any],
    converter: StreamConverter,
) -> AsyncIterator[Converted]:
    """Stream ``graph`` on ``graph_input`` with the run's ``kwargs``, converted to SSE events."""
    options: dict[str, Any] = {
        "stream_mode": graph_stream_modes(converter.requested),
        "subgraphs": bool(kwargs.get("subgraphs")),
        "durability": kwargs.get("durability") or "async",
    }
    for key in ("interrupt_before", "interrupt_after"):
        if kwargs.get(key):
            options[key] = kwargs[key]
    options["context"] = run_context(graph, kwargs)
    if PROTOCOL_MODE in converter.requested:  # see server.runtime.protocol
        events = protocol_events(graph, graph_input, config, options, converter)
    elif "events" in converter.requested:
        events = _stream_events(graph, graph_input, config, options, converter)
    else:
        events = _stream(graph, graph_input, config, options, converter)
    async for converted in events:
        yield converted


async def _stream(
    graph: Pregel,
    graph_input: Any,
    config: Any,
    options: dict[str, Any],
    converter: StreamConverter,
) -> AsyncIterator[Converted]:
    """Plain ``astream``: the requested modes' chunks."""
    subgraphs = options["subgraphs"]
    async for chunk in graph.astream(graph_input, config, **options):
        if subgraphs:
            namespace, mode, payload = chunk
        else:
            namespace, (mode, payload) = (), chunk
        for converted in converter.convert(namespace, mode, payload):
            yield converted


async def _stream_events(
    graph: Pregel,
    graph_input: Any,
    config: Any,
    options: dict[str, Any],
    converter: StreamConverter,
) -> AsyncIterator[Converted]:
    """The ``events`` mode: every callback event, and the other modes from the root's."""
    root = str(config["run_id"])
    subgraphs = options["subgraphs"]
    options = {**options, "subgraphs": True}
    async for event in graph.astream_events(graph_input, config, version="v2", **options):
        if event["event"] == "on_chain_stream" and event["run_id"] == root:
            namespace, mode, payload = event["data"]["chunk"]
            if namespace and not subgraphs:
                continue
            for converted in converter.convert(namespace, mode, payload):
                yield converted
        else:
            yield "events", dumps(event)
