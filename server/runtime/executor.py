"""Executing one claimed run: stream the graph, publish its events, record how it ended.

The order at the end matters: the run row (with its token usage) and the thread are updated in
Postgres, and the run's metrics recorded, *before* the done marker goes to the broker, so a
client that sees its stream end and then reads the run (the SDK does exactly that) or scrapes
``/metrics`` finds the final status and numbers.

Every run is observed: a :class:`~server.observability.UsageCallbackHandler` in its callbacks
counts tokens per node, role and model; with LangSmith on, a tracer makes it one trace named
after the assistant; everything logged while it executes carries ``run_id`` and ``thread_id``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import datetime
from importlib.metadata import version
from typing import Any

from langchain_core.runnables.config import merge_configs
from langgraph.pregel import Pregel
from langgraph.types import Command, Send

from nodes.team import interrupts_configurable
from server.observability import (
    LangSmithTracing,
    Metrics,
    UsageCallbackHandler,
    log_context,
    run_tracing_config,
)
from server.repos import AssistantsRepo, FinishResult, RunsRepo, storable
from server.runtime.broker import Broker
from server.runtime.events import StreamConverter, graph_stream_modes
from server.runtime.graph_cache import GraphCache, UnknownGraph
from server.runtime.protocol import PROTOCOL_MODE, protocol_events
from server.runtime.run_context import run_context
from server.serde import dumps, interrupt_to_dict

__all__ = [
    "ActiveRun",
    "Executor",
    "command_from",
    "decode_done",
    "encode_done",
    "error_body",
    "queue_wait",
    "run_user",
]

log = logging.getLogger(__name__)

_THREAD_STATUS = {"success": "idle", "error": "error", "interrupted": "interrupted"}
_LANGGRAPH_VERSION = version("langgraph")
_API_VERSION = version("staffgraph")


def encode_done(status: str, output: bytes) -> bytes:
    """Data of a done marker: the final status and the run's output (JSON)."""
    return status.encode() + b"\n" + output


def decode_done(data: bytes) -> tuple[str, bytes]:
    """``(status, output JSON)`` from a done marker's data."""
    status, _, output = data.partition(b"\n")
    return status.decode(), output


def run_user(
    stored_config: Mapping[str, Any], context: Mapping[str, Any] | None = None
) -> str | None:
    """The user a run belongs to, for traces and usage totals; None when nobody is named.

    First non-empty string of: ``configurable.langgraph_auth_user_id`` (set by auth),
    ``context.user_id`` (what memory scopes by), ``configurable.user_id``,
    ``metadata.user_id``. ``server.repos.runs.USER_SQL`` is the same rule in SQL.
    """
    configurable = stored_config.get("configurable")
    metadata = stored_config.get("metadata")
    sources: tuple[tuple[Any, str], ...] = (
        (configurable, "langgraph_auth_user_id"),
        (context, "user_id"),
        (configurable, "user_id"),
        (metadata, "user_id"),
    )
    for source, key in sources:
        if isinstance(source, Mapping):
            value = source.get(key)
            if isinstance(value, str) and value:
                return value
    return None


def _moment(value: Any) -> datetime | None:
    # Rows come as psycopg rows (datetimes) or as to_jsonb output (ISO strings).
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


def queue_wait(row: Mapping[str, Any]) -> float | None:
    """Seconds a run waited between becoming due and a worker taking it (first attempt only).

    Due is the later of ``created_at`` and ``available_at`` (``after_seconds`` delays it).
    A retried run's ``started_at`` is its first start, so retries report None.
    """
    if row.get("attempt") != 1:
        return None
    started = _moment(row.get("started_at"))
    due = [m for m in (_moment(row.get("created_at")), _moment(row.get("available_at"))) if m]
    if started is None or not due:
        return None
    return max(0.0, (started - max(due)).total_seconds())


def error_body(exc: BaseException) -> dict[str, str]:
    """``{"error": <exception class>, "message": <str(exc)>}`` as the stream reports failures."""
    return {"error": type(exc).__name__, "message": str(exc)}


@dataclass
class ActiveRun:
    """A run executing in this process."""

    run_id: str
    thread_id: str
    token: int
    task: asyncio.Task[Any] | None = None
    cancel_action: str | None = None
    """Set before the task is cancelled on purpose (``interrupt`` / ``rollback``)."""
    lost: bool = False
    """The lease was lost: another worker may own the run; write nothing."""
    done: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class _Outcome:
    status: str
    values: Any
    interrupts: dict[str, Any]
    error: dict[str, Any] | None
    output: bytes
    delete_run: bool = False
    thread_status: str | None = None


@dataclass
class _Watch:
    """What the metrics need about one execution."""

    graph_id: str
    started: float
    recorded: bool = False


class Executor:
    """Runs graphs for claimed runs."""

    def __init__(
        self,
        *,
        graphs: GraphCache,
        runs: RunsRepo,
        broker: Broker,
        api_url: str,
        lease_seconds: float,
        metrics: Metrics | None = None,
        tracing: LangSmithTracing | None = None,
        assistants: AssistantsRepo | None = None,
    ) -> None:
        """Create the executor.

        Args:
            graphs: graphs with persistence attached.
            runs: the run queue.
            broker: where events go.
            api_url: this server's base URL (put in run metadata, as the reference does).
            lease_seconds: lease given to a follow-up run claimed when this one finishes.
            metrics: the app's metrics (a private set when omitted); its price table prices
                each run's usage.
            tracing: LangSmith tracing, or None when off.
            assistants: where a traced run's assistant name is looked up.
        """
        self._graphs = graphs
        self._runs = runs
        self._broker = broker
        self._api_url = api_url
        self._lease_seconds = lease_seconds
        self._metrics = metrics if metrics is not None else Metrics()
        self._tracing = tracing
        self._assistants = assistants

    async def execute(
        self, row: Mapping[str, Any], active: ActiveRun, *, owner: str | None
    ) -> FinishResult | None:
        """Run the graph for ``row`` and record the result. Returns the finish result.

        ``owner`` is passed on so the thread's next queued run comes back already claimed.
        Returns ``None`` when the lease was lost (nothing recorded).
        """
        kwargs: dict[str, Any] = row["kwargs"]
        config = self._config(row, kwargs)
        watch = _Watch(graph_id=str(config["configurable"].get("graph_id")), started=0.0)
        with log_context(run_id=str(row["run_id"]), thread_id=str(row["thread_id"])):
            self._metrics.run_started(watch.graph_id)
            watch.started = time.perf_counter()
            try:
                return await self._execute(row, active, kwargs, config, watch, owner=owner)
            finally:
                if not watch.recorded:  # shutdown, lost lease, or recording failed
                    self._metrics.run_stopped(watch.graph_id)

    async def _execute(
        self,
        row: Mapping[str, Any],
        active: ActiveRun,
        kwargs: dict[str, Any],
        config: Any,
        watch: _Watch,
        *,
        owner: str | None,
    ) -> FinishResult | None:
        run_id = str(row["run_id"])
        thread_id = str(row["thread_id"])
        requested: list[str] = list(kwargs.get("stream_mode") or ["values"])
        scratch = bool(row.get("temporary")) and row.get("on_completion") != "keep"
        converter = StreamConverter(requested, emit_checkpoints=not scratch)
        resumable = bool(kwargs.get("resumable"))
        graph: Pregel | None = None
        usage = UsageCallbackHandler()
        exits = AsyncExitStack()  # a context-manager graph factory stays entered until here
        try:
            await self._broker.publish(
                run_id, "metadata", dumps({"run_id": run_id, "attempt": row["attempt"]})
            )
            await self._broker.announce(thread_id, run_id)
            config = await self._observed(config, kwargs, usage)
            graph = await self._graphs.get(
                watch.graph_id,
                config,
                scratch=scratch,
                access="threads.create_run",
                context=kwargs.get("context") or {},
                exits=exits,
            )
            if active.cancel_action is not None:
                raise asyncio.CancelledError  # cancelled before it could start
            async for event, data in self._stream(graph, row, kwargs, config, converter):
                await self._broker.publish(run_id, event, data)
            outcome = await self._succeeded(graph, thread_id, converter)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if active.cancel_action is None or active.lost:
                raise  # shutdown or lost lease: the worker requeues / lets go of the run
            if task is not None:
                task.uncancel()
            outcome = await self._cancelled(graph, row, converter, active.cancel_action)
        except UnknownGraph as exc:
            body = {"error": "GraphNotFound", "message": f"graph {exc.args[0]!r} is not served"}
            await self._broker.publish(run_id, "error", dumps(body))
            outcome = _Outcome("error", None, {}, body, dumps({"__error__": body}))
        except Exception as exc:
            body = error_body(exc)
            log.info("run %s failed: %s: %s", run_id, body["error"], body["message"])
            await self._broker.publish(run_id, "error", dumps(body))
            outcome = _Outcome(
                "error", converter.final_values(), {}, body, dumps({"__error__": body})
            )
        finally:
            await exits.aclose()
        if scratch:
            await self._graphs.scratch.adelete_thread(thread_id)
        if not storable([outcome.values, outcome.interrupts, outcome.error]):
            # Postgres cannot store a NUL in jsonb. The thread row is only a copy of the
            # checkpointed state, so it keeps its previous values rather than failing the run.
            outcome.values, outcome.interrupts = None, {}
            if outcome.error is not None and not storable(outcome.error):
                outcome.error = {"error": outcome.error["error"], "message": "(unprintable)"}
        usage_json = usage.usage.to_dict(pricing=self._metrics.pricing)
        result = await self._runs.finish(
            run_id=run_id,
            thread_id=thread_id,
            token=active.token,
            status=outcome.status,
            thread_status=outcome.thread_status or _THREAD_STATUS[outcome.status],
            values=outcome.values,
            interrupts=outcome.interrupts,
            error=outcome.error,
            delete_run=outcome.delete_run,
            owner=owner,
            lease_seconds=self._lease_seconds,
            usage=usage_json,
        )
        if result.outcome == "stale":
            return None
        self._record(row, watch, "rollback" if outcome.delete_run else outcome.status, usage)
        await self._broker.finish(
            run_id, encode_done(outcome.status, outcome.output), resumable=resumable
        )
        return result

    def _record(
        self, row: Mapping[str, Any], watch: _Watch, status: str, usage: UsageCallbackHandler
    ) -> None:
        duration = time.perf_counter() - watch.started
        self._metrics.record_usage(usage.usage)
        self._metrics.run_finished(watch.graph_id, status, duration, queue_wait=queue_wait(row))
        watch.recorded = True
        if log.isEnabledFor(logging.INFO):
            total = usage.usage.total
            log.info(
                "run %s finished: %s in %.1f ms, %d tokens",
                row["run_id"],
                status,
                duration * 1000,
                total.total_tokens,
                extra={
                    "status": status,
                    "graph_id": watch.graph_id,
                    "duration_ms": round(duration * 1000, 2),
                    "total_tokens": total.total_tokens,
                    "llm_calls": total.calls,
                },
            )

    async def _observed(
        self, config: Any, kwargs: Mapping[str, Any], usage: UsageCallbackHandler
    ) -> Any:
        """The run's config with usage counting and, when tracing is on, its tracer."""
        if self._tracing is None:
            # Stored configs are JSON and hold no callbacks: nothing to merge with.
            config["callbacks"] = [usage]
            return config
        stored: Mapping[str, Any] = kwargs.get("config") or {}
        configurable = config["configurable"]
        assistant_id = configurable.get("assistant_id")
        pieces = run_tracing_config(
            self._tracing,
            graph_id=str(configurable.get("graph_id")),
            run_id=str(configurable["run_id"]),
            thread_id=str(configurable["thread_id"]),
            assistant_id=str(assistant_id) if assistant_id else None,
            assistant_name=await self._assistant_name(assistant_id),
            user_id=config["metadata"].get("user_id") or None,
            config=stored,
        )
        return merge_configs(config, pieces, {"callbacks": [usage]})

    async def _assistant_name(self, assistant_id: Any) -> str | None:
        if self._assistants is None or not assistant_id:
            return None
        try:
            assistant = await self._assistants.get(str(assistant_id))
        except Exception:  # a trace named after the graph beats a failed run
            log.warning("could not read assistant %s to name the trace", assistant_id)
            return None
        return str(assistant["name"]) if assistant and assistant.get("name") else None

    def _config(self, row: Mapping[str, Any], kwargs: Mapping[str, Any]) -> Any:
        run_id = str(row["run_id"])
        thread_id = str(row["thread_id"])
        stored: dict[str, Any] = dict(kwargs.get("config") or {})
        configurable = {
            **(stored.get("configurable") or {}),
            "run_id": run_id,
            "thread_id": thread_id,
            "user_id": "",
            # interrupt_before/after names inside members (`writer:model`) reach the members.
            **interrupts_configurable(
                kwargs.get("interrupt_before"), kwargs.get("interrupt_after")
            ),
        }
        metadata = {
            **(stored.get("metadata") or {}),
            # The reference writes the authenticated user here ("" without auth); a user the
            # client named is kept, so traces and usage can be attributed to them.
            "user_id": run_user(stored, kwargs.get("context")) or "",
            "run_attempt": row["attempt"],
            "langgraph_version": _LANGGRAPH_VERSION,
            "langgraph_api_version": _API_VERSION,
            "langgraph_host": "self-hosted",
            "langgraph_api_url": self._api_url,
            "run_id": run_id,
            "thread_id": thread_id,
        }
        config: dict[str, Any] = {
            **{k: v for k, v in stored.items() if k not in ("configurable", "metadata")},
            "configurable": configurable,
            "metadata": metadata,
            "run_id": uuid.UUID(run_id),
        }
        return config

    async def _stream(
        self,
        graph: Pregel,
        row: Mapping[str, Any],
        kwargs: Mapping[str, Any],
        config: Any,
        converter: StreamConverter,
    ) -> AsyncIterator[tuple[str, bytes]]:
        graph_input: Any = kwargs.get("input")
        if kwargs.get("command") is not None:
            graph_input = command_from(kwargs["command"])
        if row["attempt"] > 1 and await self._resumable_from_checkpoint(row):
            graph_input = None  # a retried run continues from its own last checkpoint
        options: dict[str, Any] = {
            "stream_mode": graph_stream_modes(converter.requested),
            "subgraphs": bool(kwargs.get("subgraphs")),
            "durability": kwargs.get("durability") or "async",
        }
        for key in ("interrupt_before", "interrupt_after"):
            if kwargs.get(key):
                options[key] = kwargs[key]
        options["context"] = run_context(graph, kwargs)
        special = self._special_stream(graph, graph_input, config, options, converter)
        if special is not None:
            async for converted in special:
                yield converted
            return
        subgraphs = options["subgraphs"]
        async for chunk in graph.astream(graph_input, config, **options):
            if subgraphs:
                namespace, mode, payload = chunk
            else:
                namespace, (mode, payload) = (), chunk
            for converted in converter.convert(namespace, mode, payload):
                yield converted

    def _special_stream(
        self,
        graph: Pregel,
        graph_input: Any,
        config: Any,
        options: dict[str, Any],
        converter: StreamConverter,
    ) -> AsyncIterator[tuple[str, bytes]] | None:
        """The ``events`` mode's or a protocol v2 run's stream; ``None`` for plain ``astream``."""
        if PROTOCOL_MODE in converter.requested:  # see server.runtime.protocol
            return protocol_events(graph, graph_input, config, options, converter)
        if "events" in converter.requested:
            return self._stream_events(graph, graph_input, config, options, converter)
        return None

    async def _stream_events(
        self,
        graph: Pregel,
        graph_input: Any,
        config: Any,
        options: dict[str, Any],
        converter: StreamConverter,
    ) -> AsyncIterator[tuple[str, bytes]]:
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

    async def _resumable_from_checkpoint(self, row: Mapping[str, Any]) -> bool:
        latest = await self._runs.latest_checkpoint_run(str(row["thread_id"]))
        return latest == str(row["run_id"])

    async def _succeeded(
        self, graph: Pregel, thread_id: str, converter: StreamConverter
    ) -> _Outcome:
        values = converter.final_values()
        output = dumps(converter.last_values if converter.last_values is not None else {})
        if not converter.interrupted:
            return _Outcome("success", values, {}, None, output)
        interrupts: dict[str, Any] = {}
        if converter.interrupts:  # dynamic interrupts: the thread shows them per task
            state = await graph.aget_state({"configurable": {"thread_id": thread_id}})
            interrupts = {
                task.id: [interrupt_to_dict(item) for item in task.interrupts]
                for task in state.tasks
                if task.interrupts
            }
        return _Outcome("interrupted", values, interrupts, None, output)

    async def _cancelled(
        self,
        graph: Pregel | None,
        row: Mapping[str, Any],
        converter: StreamConverter,
        action: str,
    ) -> _Outcome:
        thread_id = str(row["thread_id"])
        if action == "rollback":
            await self._runs.delete_checkpoints_of_run(thread_id, str(row["run_id"]))
        values: Any = converter.final_values()
        interrupts: dict[str, Any] = {}
        thread_status = "interrupted"
        if graph is not None:
            state = await graph.aget_state({"configurable": {"thread_id": thread_id}})
            values = state.values if state.created_at is not None else None
            interrupts = {
                task.id: [interrupt_to_dict(item) for item in task.interrupts]
                for task in state.tasks
                if task.interrupts
            }
            if action == "rollback":
                thread_status = "interrupted" if state.next else "idle"
        output = dumps(values if values is not None else {})
        return _Outcome(
            "interrupted",
            values,
            interrupts,
            None,
            output,
            delete_run=action == "rollback",
            thread_status=thread_status,
        )


def command_from(body: Mapping[str, Any]) -> Command[Any]:
    """A LangGraph ``Command`` from its API body (``goto`` may hold ``Send`` dicts)."""
    goto: Any = body.get("goto")
    if isinstance(goto, dict):
        goto = Send(goto["node"], goto.get("input"))
    elif isinstance(goto, list):
        goto = [Send(g["node"], g.get("input")) if isinstance(g, dict) else g for g in goto]
    return Command(
        update=body.get("update"),
        resume=body.get("resume"),
        goto=goto if goto is not None else (),
    )
