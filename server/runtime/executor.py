"""Executing one claimed run: stream the graph, publish its events, record how it ended.

The order at the end matters: the run row and the thread are updated in Postgres *before* the
done marker goes to the broker, so a client that sees its stream end and then reads the run
(the SDK does exactly that) finds the final status.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Any

from langgraph.pregel import Pregel
from langgraph.types import Command, Send

from server.repos import FinishResult, RunsRepo, storable
from server.runtime.broker import Broker
from server.runtime.events import StreamConverter, graph_stream_modes
from server.runtime.graph_cache import GraphCache, UnknownGraph
from server.serde import dumps, interrupt_to_dict

__all__ = [
    "ActiveRun",
    "Executor",
    "command_from",
    "decode_done",
    "encode_done",
    "error_body",
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
    ) -> None:
        """Create the executor.

        Args:
            graphs: graphs with persistence attached.
            runs: the run queue.
            broker: where events go.
            api_url: this server's base URL (put in run metadata, as the reference does).
            lease_seconds: lease given to a follow-up run claimed when this one finishes.
        """
        self._graphs = graphs
        self._runs = runs
        self._broker = broker
        self._api_url = api_url
        self._lease_seconds = lease_seconds

    async def execute(
        self, row: Mapping[str, Any], active: ActiveRun, *, owner: str | None
    ) -> FinishResult | None:
        """Run the graph for ``row`` and record the result. Returns the finish result.

        ``owner`` is passed on so the thread's next queued run comes back already claimed.
        Returns ``None`` when the lease was lost (nothing recorded).
        """
        kwargs: dict[str, Any] = row["kwargs"]
        run_id = str(row["run_id"])
        thread_id = str(row["thread_id"])
        requested: list[str] = list(kwargs.get("stream_mode") or ["values"])
        scratch = bool(row.get("temporary")) and row.get("on_completion") != "keep"
        converter = StreamConverter(requested, emit_checkpoints=not scratch)
        resumable = bool(kwargs.get("resumable"))
        graph: Pregel | None = None
        config = self._config(row, kwargs)
        try:
            await self._broker.publish(
                run_id, "metadata", dumps({"run_id": run_id, "attempt": row["attempt"]})
            )
            await self._broker.announce(thread_id, run_id)
            graph_id = config["configurable"]["graph_id"]
            graph = await self._graphs.get(graph_id, config, scratch=scratch)
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
        if scratch:
            await self._graphs.scratch.adelete_thread(thread_id)
        if not storable([outcome.values, outcome.interrupts, outcome.error]):
            # Postgres cannot store a NUL in jsonb. The thread row is only a copy of the
            # checkpointed state, so it keeps its previous values rather than failing the run.
            outcome.values, outcome.interrupts = None, {}
            if outcome.error is not None and not storable(outcome.error):
                outcome.error = {"error": outcome.error["error"], "message": "(unprintable)"}
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
        )
        if result.outcome == "stale":
            return None
        await self._broker.finish(
            run_id, encode_done(outcome.status, outcome.output), resumable=resumable
        )
        return result

    def _config(self, row: Mapping[str, Any], kwargs: Mapping[str, Any]) -> Any:
        run_id = str(row["run_id"])
        thread_id = str(row["thread_id"])
        stored: dict[str, Any] = dict(kwargs.get("config") or {})
        configurable = {
            **(stored.get("configurable") or {}),
            "run_id": run_id,
            "thread_id": thread_id,
            "user_id": "",
        }
        metadata = {
            **(stored.get("metadata") or {}),
            "user_id": "",
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
        context = _context_for(graph, kwargs.get("context"))
        if context is not None:
            options["context"] = context
        subgraphs = options["subgraphs"]
        if "events" in converter.requested:
            root = str(config["run_id"])
            options["subgraphs"] = True
            async for event in graph.astream_events(graph_input, config, version="v2", **options):
                if event["event"] == "on_chain_stream" and event["run_id"] == root:
                    namespace, mode, payload = event["data"]["chunk"]
                    if namespace and not subgraphs:
                        continue
                    for converted in converter.convert(namespace, mode, payload):
                        yield converted
                else:
                    yield "events", dumps(event)
            return
        async for chunk in graph.astream(graph_input, config, **options):
            if subgraphs:
                namespace, mode, payload = chunk
            else:
                namespace, (mode, payload) = (), chunk
            for converted in converter.convert(namespace, mode, payload):
                yield converted

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


def _context_for(graph: Pregel, context: Any) -> Any:
    """The run context, keeping only keys the graph's context schema declares.

    Studio sends context keys of its own; a dataclass schema would reject them.
    """
    if not context:
        return None
    schema = getattr(graph, "context_schema", None)
    if schema is None:
        return context
    fields: set[str] | None = None
    if hasattr(schema, "__dataclass_fields__"):
        fields = set(schema.__dataclass_fields__)
    elif hasattr(schema, "model_fields"):
        fields = set(schema.model_fields)
    elif hasattr(schema, "__annotations__"):
        fields = set(getattr(schema, "__annotations__", {}))
    if fields is None:
        return context
    return {k: v for k, v in context.items() if k in fields}
