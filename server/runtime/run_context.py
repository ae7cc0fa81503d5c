"""The context a run's graph receives (``runtime.context``), as the reference builds it.

At create time a run's ``context`` and ``config.configurable`` mirror each other: a context
replaces the configurable (so graphs written before context existed read the same values), and
without a context the configurable is copied into it. Giving both is refused (400).

At execution the context is cut down to the keys the graph's context schema declares and is
always passed, so a dataclass or pydantic schema is built with its defaults: a graph reading
``runtime.context.model`` works whether the run named a model, set it in ``configurable``, or
said nothing at all. When the stored context is empty (neither the run nor its assistant gave
one), the run's merged configurable (the assistant's included), less the server's own keys,
stands in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from langgraph.pregel import Pregel

__all__ = ["BOTH_GIVEN", "ContextConflict", "request_context", "run_context"]

BOTH_GIVEN = (
    "Cannot specify both configurable and context. Prefer setting context alone. Context was "
    "introduced in LangGraph 0.6.0 and is the long term planned replacement for configurable."
)
"""The reference's 400 detail for a run given both."""

# Keys the server writes into configurable: never part of a user's context.
_SERVER_KEYS = frozenset(
    {"graph_id", "assistant_id", "run_id", "thread_id", "checkpoint_id", "checkpoint_ns"}
)


class ContextConflict(ValueError):
    """A run was given both ``context`` and ``config.configurable``."""


def request_context(
    configurable: Mapping[str, Any], context: Mapping[str, Any] | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(configurable, context)`` to store for a run request, each mirroring the other.

    Raises:
        ContextConflict: both were given (non-empty).
    """
    if context and configurable:
        raise ContextConflict(BOTH_GIVEN)
    if context:
        return dict(context), dict(context)
    return dict(configurable), dict(configurable)


def _schema_fields(schema: Any) -> set[str] | None:
    if hasattr(schema, "__dataclass_fields__"):
        return set(schema.__dataclass_fields__)
    if hasattr(schema, "model_fields"):
        return set(schema.model_fields)
    annotations = getattr(schema, "__annotations__", None)
    if isinstance(annotations, dict):
        return set(annotations)
    return None


def run_context(graph: Pregel, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The context to execute a run with, from its stored request ``kwargs``.

    Keys the graph's context schema does not declare are dropped (Studio sends context keys of
    its own, which a dataclass schema would reject).
    """
    context: Mapping[str, Any] = kwargs.get("context") or {}
    if not context:
        configurable = (kwargs.get("config") or {}).get("configurable") or {}
        context = {
            key: value
            for key, value in configurable.items()
            if key not in _SERVER_KEYS and not key.startswith(("__", "langgraph_"))
        }
    schema = getattr(graph, "context_schema", None)
    fields = _schema_fields(schema) if schema is not None else None
    if fields is None:
        return dict(context)
    return {key: value for key, value in context.items() if key in fields}
