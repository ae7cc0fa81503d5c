"""JSON schemas of a graph as ``GET /assistants/{id}/schemas`` serves them.

Input and output schemas are LangGraph's own; a schema pydantic cannot express (a
``typing.TypedDict`` on Python 3.11, say) is ``null``, as in the reference. The state schema is
built channel by channel so one inexpressible channel does not hide the others: each channel is
typed by what it accepts as an update, or left untyped ("any") when pydantic cannot describe it,
and every channel is optional (default ``null``). The config schema is the context schema
without the keys the server fills in itself; ``{}`` for a graph without one.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from langgraph.pregel import Pregel
from pydantic import TypeAdapter, create_model

__all__ = ["graph_schemas", "state_jsonschema"]

log = logging.getLogger(__name__)

# Configurable keys the server sets; a client never fills them in.
_SERVER_KEYS = (
    "__pregel_checkpointer",
    "__pregel_store",
    "checkpoint_id",
    "checkpoint_ns",
    "thread_id",
)


def _expressible(kind: Any) -> bool:
    try:
        TypeAdapter(kind).json_schema()
    except Exception:
        return False
    return True


def state_jsonschema(graph: Pregel) -> dict[str, Any]:
    """Every streamed channel as an optional property, untyped where pydantic cannot type it."""
    fields: dict[str, Any] = {}
    for key in graph.stream_channels_list:
        kind = getattr(graph.channels[key], "UpdateType", Any)
        fields[key] = (kind if _expressible(kind) else Any, None)
    return create_model(graph.get_name("State"), **fields).model_json_schema()


def _config_jsonschema(graph: Pregel, context: dict[str, Any] | None) -> dict[str, Any] | None:
    if getattr(graph, "context_schema", None) is None:
        return {}
    if context is None:
        return None
    schema = {**context, "properties": dict(context.get("properties") or {})}
    for key in _SERVER_KEYS:
        schema["properties"].pop(key, None)
    return schema


def _attempt(what: str, graph: Pregel, build: Any) -> Any:
    try:
        return build()
    except Exception as exc:  # a schema pydantic cannot express is null, not a 500
        log.debug("no %s schema for graph %s: %s: %s", what, graph.name, type(exc).__name__, exc)
        return None


@functools.lru_cache(maxsize=256)
def graph_schemas(graph: Pregel) -> dict[str, Any]:
    """``input_schema``, ``output_schema``, ``state_schema``, ``config_schema``, ``context_schema``.

    Cached per graph object: compiled graphs are immutable and hash by identity.
    """
    context = _attempt("context", graph, graph.get_context_jsonschema)
    return {
        "input_schema": _attempt("input", graph, graph.get_input_jsonschema),
        "output_schema": _attempt("output", graph, graph.get_output_jsonschema),
        "state_schema": _attempt("state", graph, lambda: state_jsonschema(graph)),
        "config_schema": _config_jsonschema(graph, context),
        "context_schema": context,
    }
