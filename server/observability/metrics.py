"""Prometheus metrics of runs, streams, tokens and HTTP requests, in their own registry.

Each :class:`Metrics` owns a ``CollectorRegistry`` instead of using prometheus-client's global
one, so several apps in one process (tests, embedded use) never clash over metric names, and
``/metrics`` shows exactly this app's numbers.

Label values come from graph ids, role names and route templates, never from raw paths or
ids; each label also keeps at most ``max_label_values`` distinct values (later ones are
counted as ``other``) so a misbehaving client cannot blow up the series count.

Metrics live per process: with ``staffgraph worker`` processes, each worker's run metrics stay
in that worker (scrape them there or run workers in the API process).
"""

from __future__ import annotations

import gc
import math
import threading
import time
from collections.abc import Iterable
from typing import Any, Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, GCCollector, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from state.usage import PriceTable, RunUsage

__all__ = [
    "DEFAULT_NAMESPACE",
    "HTTP_BUCKETS",
    "Metrics",
    "MetricsMiddleware",
    "QUEUE_WAIT_BUCKETS",
    "RUN_DURATION_BUCKETS",
    "RUN_STATUSES",
]

DEFAULT_NAMESPACE = "staffgraph"

RUN_STATUSES = frozenset({"success", "error", "interrupted", "timeout", "cancelled", "rollback"})
"""Run outcomes counted under their own name; anything else counts as ``other``."""

RUN_DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
QUEUE_WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

_OTHER = "other"
_UNMATCHED = "unmatched"
_MAX_LABEL = 100


class _LabelBound:
    """Keeps one label's distinct values under a bound; later newcomers become ``other``."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: object) -> str:
        text = str(value)[:_MAX_LABEL] if value is not None else _OTHER
        if text in self._seen:
            return text
        with self._lock:
            if len(self._seen) >= self._limit:
                return _OTHER
            self._seen.add(text)
        return text


def _seconds(value: float | None) -> float | None:
    if value is None or not math.isfinite(value) or value < 0:
        return None
    return value


class Metrics:
    """The app's metrics; the run executor, stream broker and HTTP middleware feed it."""

    def __init__(
        self,
        *,
        registry: CollectorRegistry | None = None,
        namespace: str = DEFAULT_NAMESPACE,
        pricing: PriceTable | None = None,
        max_label_values: int = 200,
    ) -> None:
        """Create the metrics in ``registry`` (a fresh one when omitted).

        Args:
            registry: where to register; never the process-global default by accident.
            namespace: metric name prefix.
            pricing: prices for :meth:`record_usage` when it is given none.
            max_label_values: distinct values kept per label before ``other``.
        """
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.pricing = pricing if pricing is not None else PriceTable()
        self._graph = _LabelBound(max_label_values)
        self._role = _LabelBound(max_label_values)
        self._route = _LabelBound(max_label_values)
        # prometheus-client's labels() checks, converts and locks at every call; its answer
        # for the same values is always the same child (nothing here removes one), kept here
        # for the calls every run and request makes. Bounded as the label values are.
        self._children: dict[tuple[Any, ...], Any] = {}
        reg, ns = self.registry, namespace
        self.runs = Counter(
            "runs",
            "Runs finished, by graph and final status.",
            ["graph", "status"],
            namespace=ns,
            registry=reg,
        )
        self.run_duration = Histogram(
            "run_duration_seconds",
            "Seconds from a run's start to its end, by graph.",
            ["graph"],
            namespace=ns,
            registry=reg,
            buckets=RUN_DURATION_BUCKETS,
        )
        self.queue_wait = Histogram(
            "run_queue_wait_seconds",
            "Seconds a run waited in the queue before a worker took it.",
            ["graph"],
            namespace=ns,
            registry=reg,
            buckets=QUEUE_WAIT_BUCKETS,
        )
        self.active_runs = Gauge(
            "active_runs",
            "Runs executing now, by graph.",
            ["graph"],
            namespace=ns,
            registry=reg,
        )
        self.stream_subscribers = Gauge(
            "stream_subscribers",
            "Clients subscribed to run event streams now.",
            namespace=ns,
            registry=reg,
        )
        self.tokens = Counter(
            "llm_tokens",
            "Model tokens by role, direction (input/output) and whether estimated.",
            ["role", "direction", "estimated"],
            namespace=ns,
            registry=reg,
        )
        self.llm_calls = Counter(
            "llm_calls",
            "Model calls by role.",
            ["role"],
            namespace=ns,
            registry=reg,
        )
        self.cost = Counter(
            "llm_cost_usd",
            "Model cost in US dollars by role (from the price table).",
            ["role"],
            namespace=ns,
            registry=reg,
        )
        # The cycle collector: passes, objects collected and uncollectable, by generation
        # (python_gc_*), and the objects frozen at start-up (server.heap).
        GCCollector(registry=reg)
        Gauge(
            "gc_frozen_objects",
            "Objects frozen out of garbage collection since start-up (see server.heap).",
            namespace=ns,
            registry=reg,
        ).set_function(gc.get_freeze_count)
        self.http_duration = Histogram(
            "http_request_duration_seconds",
            "Seconds from request to response headers, by method, route template and status "
            "(streams count until their headers, not their whole life).",
            ["method", "route", "status"],
            namespace=ns,
            registry=reg,
            buckets=HTTP_BUCKETS,
        )

    # -- runs ------------------------------------------------------------------------------

    def _child(self, metric: Any, *values: str) -> Any:
        """``metric.labels(*values)``, looked up once per metric and values."""
        key = (id(metric), *values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def run_started(self, graph: str) -> None:
        """A worker began executing a run of ``graph``."""
        self._child(self.active_runs, self._graph(graph)).inc()

    def run_finished(
        self, graph: str, status: str, duration: float, *, queue_wait: float | None = None
    ) -> None:
        """A run of ``graph`` ended; call once per :meth:`run_started`.

        Args:
            graph: graph id.
            status: ``success``, ``error``, ``interrupted``, ``timeout``, ...
            duration: seconds from start to end.
            queue_wait: seconds between creation and a worker taking it, if known.
        """
        label = self._graph(graph)
        self._child(self.active_runs, label).dec()
        self._child(self.runs, label, status if status in RUN_STATUSES else _OTHER).inc()
        if (seconds := _seconds(duration)) is not None:
            self._child(self.run_duration, label).observe(seconds)
        if (wait := _seconds(queue_wait)) is not None:
            self._child(self.queue_wait, label).observe(wait)

    def run_stopped(self, graph: str) -> None:
        """A run of ``graph`` left this worker without an outcome (shutdown, lost lease).

        It is no longer active here; whichever worker finishes it counts its outcome.
        """
        self._child(self.active_runs, self._graph(graph)).dec()

    # -- streams ---------------------------------------------------------------------------

    def subscriber_added(self) -> None:
        """A client subscribed to a run's event stream."""
        self.stream_subscribers.inc()

    def subscriber_removed(self) -> None:
        """A client's stream subscription ended (finished, disconnected or failed)."""
        self.stream_subscribers.dec()

    # -- tokens ----------------------------------------------------------------------------

    def record_usage(self, usage: RunUsage, pricing: PriceTable | None = None) -> None:
        """Add a finished run's tokens, calls and cost per role.

        Args:
            usage: the run's usage.
            pricing: prices; :attr:`pricing` when omitted.
        """
        prices = pricing if pricing is not None else self.pricing
        for role, count in usage.by_role().items():
            label = self._role(role)
            estimated = "true" if count.estimated else "false"
            if count.input_tokens:
                self.tokens.labels(label, "input", estimated).inc(count.input_tokens)
            if count.output_tokens:
                self.tokens.labels(label, "output", estimated).inc(count.output_tokens)
            if count.calls:
                self.llm_calls.labels(label).inc(count.calls)
        for role, cost in prices.costs_by(usage, "role").items():
            # Create the series even at 0 so a role's cost shows up once it has run.
            self.cost.labels(self._role(role)).inc(float(cost.usd))

    # -- HTTP ------------------------------------------------------------------------------

    def observe_http(self, method: str, route: str, status: int, seconds: float) -> None:
        """Record one HTTP request (the middleware calls this)."""
        self._child(self.http_duration, method, self._route(route), str(status)).observe(
            max(0.0, seconds)
        )

    # -- exposition ------------------------------------------------------------------------

    def render(self, *, fmt: Literal["text", "json"] = "text") -> tuple[bytes, str]:
        """The registry as Prometheus text (or JSON), with its content type."""
        if fmt == "json":
            import orjson

            return orjson.dumps(self.to_json()), "application/json"
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def to_json(self) -> dict[str, Any]:
        """Every sample: ``{metric: {"type", "help", "samples": [{name, labels, value}]}}``."""
        data: dict[str, Any] = {}
        for family in self.registry.collect():
            data[family.name] = {
                "type": family.type,
                "help": family.documentation,
                "samples": [
                    {"name": s.name, "labels": dict(s.labels), "value": _json_number(s.value)}
                    for s in family.samples
                ],
            }
        return data


def _json_number(value: float) -> float | str:
    # JSON has no infinity; the +Inf bucket bound is written as Prometheus writes it.
    return value if math.isfinite(value) else ("+Inf" if value > 0 else "-Inf")


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return template if isinstance(template, str) and template else _UNMATCHED


class MetricsMiddleware:
    """ASGI middleware timing every HTTP request by method, route template and status.

    The route label is the matched route's path template (``/threads/{thread_id}``), read
    after routing, so raw ids never become label values; unmatched paths share one label.
    """

    def __init__(self, app: ASGIApp, *, metrics: Metrics, skip: Iterable[str] = ()) -> None:
        """Wrap ``app``.

        Args:
            app: the ASGI app.
            metrics: where to record.
            skip: route templates not to time (e.g. ``/metrics`` itself).
        """
        self.app = app
        self.metrics = metrics
        self.skip = frozenset(skip)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status: int | None = None
        elapsed = 0.0

        async def timed_send(message: Message) -> None:
            nonlocal status, elapsed
            if message["type"] == "http.response.start":
                status = int(message["status"])
                elapsed = time.perf_counter() - start
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        except Exception:
            # The server turns an exception before the headers into a 500; count it as one.
            # A cancelled request (client gone) is not an outcome and is not counted.
            if status is None:
                status, elapsed = 500, time.perf_counter() - start
            raise
        finally:
            route = _route_template(scope)
            if status is not None and route not in self.skip:
                self.metrics.observe_http(scope.get("method", "GET"), route, status, elapsed)
