"""Observability: token usage and cost, Prometheus metrics, structured logs, LangSmith traces.

Each module stands alone; the app and the run executor wire them:

* :mod:`state.usage` (re-exported here; it lives at the bottom layer so nodes count tokens
  the same way): :class:`UsageCallbackHandler` in a run's callbacks adds up token usage per
  node, role and model; :func:`usage_from_messages` computes the same from state;
  :class:`PriceTable` and :func:`cost_of` turn tokens into USD.
* :mod:`.metrics`: :class:`Metrics` (own registry) and :class:`MetricsMiddleware`.
* :mod:`.logging`: :func:`configure_logging`, :func:`log_context`,
  :class:`RequestIdMiddleware`, :class:`RedactionFilter`.
* :mod:`.tracing`: :class:`LangSmithTracing`, :func:`run_tracing_config`,
  :func:`flush_traces`.

Wiring:

* CLI, before uvicorn starts: ``log_config = configure_logging(settings)`` and
  ``uvicorn.run(..., log_config=log_config)``.
* ``create_app``: ``metrics = Metrics(pricing=PriceTable.from_settings(settings))``;
  ``server.routes.health.install_metrics(app, metrics)``;
  ``app.add_middleware(RequestIdMiddleware)``; ``app.include_router(health.router)``.
* lifespan: ``tracing = LangSmithTracing.from_settings(settings)`` (None when off), kept
  with the app's context; on the way out, after the workers stopped,
  ``await aclose_traces(settings.observability.trace_flush_timeout, tracing=tracing)``
  (a bounded flush, then what is left is dropped so the process can exit).
* executor, per run: ``usage = UsageCallbackHandler()``;
  ``config = merge_configs(run_config, run_tracing_config(tracing, graph_id=...,
  run_id=..., thread_id=..., assistant_id=..., assistant_name=..., user_id=...,
  config=run_config), {"callbacks": [usage]})``; ``metrics.run_started(graph_id)``; run the
  graph inside ``with log_context(run_id=..., thread_id=...)``; at the end store
  ``usage.usage.to_dict(pricing=metrics.pricing)`` in ``runs.usage``, then
  ``metrics.record_usage(usage.usage)`` and
  ``metrics.run_finished(graph_id, status, duration, queue_wait=...)``.
* stream broker: ``metrics.subscriber_added()`` / ``subscriber_removed()`` per subscriber.
* role agents: ``metadata={ROLE_METADATA_KEY: role.name}`` on their node or runnable.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from server.observability.logging import (
        JsonFormatter,
        RedactionFilter,
        Redactor,
        RequestIdMiddleware,
        TextFormatter,
        configure_logging,
        current_log_context,
        log_context,
        secret_values,
    )
    from server.observability.metrics import Metrics, MetricsMiddleware
    from server.observability.tracing import (
        PROJECT_KEY,
        LangSmithTracing,
        aclose_traces,
        aflush_traces,
        flush_traces,
        resolve_project,
        run_tracing_config,
        tracing_enabled,
    )
    from state.usage import (
        DEFAULT_PRICES,
        ROLE_METADATA_KEY,
        UNATTRIBUTED,
        Cost,
        ModelPrice,
        PriceTable,
        PriceTableError,
        RunUsage,
        TokenCount,
        UsageCallbackHandler,
        UsageKey,
        cost_of,
        usage_from_messages,
    )

__all__ = [
    "DEFAULT_PRICES",
    "PROJECT_KEY",
    "ROLE_METADATA_KEY",
    "UNATTRIBUTED",
    "Cost",
    "JsonFormatter",
    "LangSmithTracing",
    "Metrics",
    "MetricsMiddleware",
    "ModelPrice",
    "PriceTable",
    "PriceTableError",
    "RedactionFilter",
    "Redactor",
    "RequestIdMiddleware",
    "RunUsage",
    "TextFormatter",
    "TokenCount",
    "UsageCallbackHandler",
    "UsageKey",
    "aclose_traces",
    "aflush_traces",
    "configure_logging",
    "cost_of",
    "current_log_context",
    "flush_traces",
    "log_context",
    "resolve_project",
    "run_tracing_config",
    "secret_values",
    "tracing_enabled",
    "usage_from_messages",
]

# Loaded on first use (PEP 562): the CLI configures logging before the port opens and must not
# pay for prometheus, LangSmith and langchain-core there. The lightest module is tried first.
_PARTS = (
    "server.observability.logging",
    "server.observability.metrics",
    "server.observability.tracing",
    "state.usage",
)


def __getattr__(name: str) -> Any:
    if name in __all__:
        for part in _PARTS:
            module = importlib.import_module(part)
            if name in module.__all__:
                value = getattr(module, name)
                globals()[name] = value
                return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
