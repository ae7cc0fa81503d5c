"""Executing one claimed run: stream the graph, publish its events, record how it ended.

The order at the end matters: the run row (with its token usage) and the thread are updated in
Postgres, and the run's metrics recorded, *before* anything about the end goes to the broker
(the error event, the done marker). So a client that sees its stream end and then reads the run
(the SDK does exactly that) or scrapes ``/metrics`` finds the final status and numbers, and a
broker outage never leaves a run unrecorded: readers fall back to Postgres.

Failures of the infrastructure are not failures of the run. A connection-level error that the
retries of the checkpointer and the queue could not get past gives the run back to the queue
(another attempt continues from its last checkpoint); only the graph's own errors end it in
``error``, logged at error level with the run and thread ids.

Every run is observed: a :class:`~server.observability.UsageCallbackHandler` in its callbacks
counts tokens per node, role and model; with LangSmith on, a tracer makes it one trace named
after the assistant; everything logged while it executes carries ``run_id`` and ``thread_id``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import psycopg
from langchain_core.runnables.config import merge_configs
from langgraph.pregel import Pregel

from server.observability import (
    LangSmithTracing,
    Metrics,
    UsageCallbackHandler,
    log_context,
    run_tracing_config,
)
from server.repos import AssistantsRepo, FinishResult, RunsRepo, storable, storable_json
from server.runtime.active import ActiveRun, RunPublisher
from server.runtime.broker import Broker
from server.runtime.events import StreamConverter
from server.runtime.graph_cache import GraphCache, UnknownGraph
from server.runtime.graph_stream import graph_events
from server.runtime.outcome import (
    RUN_NOT_FOUND,
    THREAD_STATUS,
    Outcome,
    announce_if_deleted,
    cancelled,
    deleted_while_running,
    encode_done,
    error_body,
    succeeded,
)
from server.runtime.protocol import PROTOCOL_MODE
from server.runtime.run_config import command_from, queue_wait, run_config
from server.serde import dumps
from state.checkpoints import PREFETCHED_CHECKPOINT
from state.effects import CURRENT_LEDGER, EffectLedger
from state.fencing import RUN_FENCE, LeaseLost, RunFence, lease_lost_as
from state.held_writes import HELD_WRITES, FlushBeforeNodes, HeldWrites
from state.retry import is_transient, retrying

__all__ = ["Executor"]

log = logging.getLogger(__name__)

MAX_INFRA_ATTEMPTS = 5
"""Attempts after which a run that keeps meeting infrastructure failures ends in ``error``."""


_SENDS_AT_ONCE = frozenset({"checkpoints", "debug", PROTOCOL_MODE})
"""Stream modes whose runs write each checkpoint at once rather than hold them: their events
let a client read state before the run's finish (checkpoint ids; protocol v2's ``completed``
lifecycle event, on which the SDK's ``thread.output`` reads the thread's state)."""


class _Requeue(Exception):
    """The run met an infrastructure failure: give it back to the queue."""


@dataclass
class _Watch:
    """What the metrics need about one execution."""

    graph_id: str
    started: float
    recorded: bool = False
    graph: Pregel | None = None
    """The run's graph once built (a cancel flagged late is recorded through it)."""


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
        ledger: EffectLedger | None = None,
    ) -> None:
        """Create the executor.

        Args:
            graphs: graphs with persistence attached.
            runs: the run queue.
            broker: where events go.
            api_url: this server's base URL (put in run metadata, as the reference does).
            lease_seconds: lease given to a follow-up run claimed when this one finishes.
            metrics: the app's metrics (a private set when omitted), pricing each run's usage.
            tracing: LangSmith tracing, or None when off.
            assistants: where a traced run's assistant name is looked up.
            ledger: the effect ledger the runs' side-effecting tool calls go through.
        """
        self._graphs = graphs
        self._runs = runs
        self._broker = broker
        self._api_url = api_url
        self._lease_seconds = lease_seconds
        self._metrics = metrics if metrics is not None else Metrics()
        self._tracing = tracing
        self._assistants = assistants
        self._ledger = ledger

    async def execute(
        self, row: Mapping[str, Any], active: ActiveRun, *, owner: str | None
    ) -> FinishResult | None:
        """Run the graph for ``row`` and record the result. Returns the finish result.

        ``owner`` is passed on so the thread's next queued run comes back already claimed.
        Returns ``None`` when the lease was lost (nothing recorded).
        """
        kwargs: dict[str, Any] = row["kwargs"]
        config = run_config(row, kwargs, api_url=self._api_url)
        watch = _Watch(graph_id=str(config["configurable"].get("graph_id")), started=0.0)
        # The run's own task runs this, in its own context: what is set here is the run's only.
        RUN_FENCE.set(RunFence(str(row["run_id"]), active.token))
        PREFETCHED_CHECKPOINT.set(active.checkpoint)
        CURRENT_LEDGER.set(self._ledger)
        with log_context(run_id=str(row["run_id"]), thread_id=str(row["thread_id"])):
            self._metrics.run_started(watch.graph_id)
            watch.started = time.perf_counter()
            try:
                return await self._execute(row, active, kwargs, config, watch, owner=owner)
            finally:
                if not watch.recorded:  # shutdown, lost lease, or recording failed
                    self._metrics.run_stopped(watch.graph_id)
                if (held := HELD_WRITES.get()) is not None:
                    held.close()  # what was not sent by now is not this worker's to send

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
        hold = not scratch and not _SENDS_AT_ONCE & set(requested)
        fence = RUN_FENCE.get()
        HELD_WRITES.set(HeldWrites(self._runs.pool, fence) if hold and fence else None)
        usage = UsageCallbackHandler()
        try:
            outcome = await self._outcome(row, active, kwargs, config, watch, converter, usage)
        except _Requeue as exc:
            await self._requeue(row, active, exc)
            return None
        except LeaseLost as exc:
            log.warning("run %s stopped: %s", run_id, exc)
            active.lost = True
            resumable = bool(kwargs.get("resumable"))
            await announce_if_deleted(self._runs, self._broker, row, resumable=resumable)
            return None
        if active.lost:
            return None
        if scratch:
            await self._graphs.scratch.adelete_thread(thread_id)
        result = await self._finish(row, active, outcome, usage, owner=owner)
        # A cancel accepted while the run was running but never seen here (it raced the claim
        # or the graph's end): Postgres refused the outcome; record the cancel instead. Twice at
        # most: only a later, stronger cancel (interrupt, then rollback) refuses the second.
        for _ in range(2):
            if result is None or result.outcome != "cancelled":
                break
            action = str(result.cancel_action)
            log.info("run %s was cancelled (%s) as it ended; recording the cancel", run_id, action)
            try:
                outcome = await self._cancelled(watch.graph, row, converter, action)
            except _Requeue as exc:  # the flag stays: the next claim records the cancel
                await self._requeue(row, active, exc)
                return None
            result = await self._finish(row, active, outcome, usage, owner=owner)
        if result is None or result.outcome == "cancelled":
            return None
        if await deleted_while_running(self._runs, row, outcome, result):
            outcome.output = RUN_NOT_FOUND
        self._record(row, watch, "rollback" if outcome.delete_run else outcome.status, usage)
        await self._announce_end(run_id, outcome, resumable=bool(kwargs.get("resumable")))
        return result

    async def _outcome(
        self,
        row: Mapping[str, Any],
        active: ActiveRun,
        kwargs: dict[str, Any],
        config: Any,
        watch: _Watch,
        converter: StreamConverter,
        usage: UsageCallbackHandler,
    ) -> Outcome:
        """Execute the graph; how it ended (a cancel, an error of the graph, or success).

        Raises:
            _Requeue: an infrastructure failure outlasted the retries.
            asyncio.CancelledError: shutdown, or the lease was lost.
        """
        run_id = str(row["run_id"])
        graph: Pregel | None = None
        publisher = RunPublisher(self._broker, run_id)
        exits = AsyncExitStack()  # a context-manager graph factory stays entered until here
        try:
            await publisher.publish(
                "metadata", dumps({"run_id": run_id, "attempt": row["attempt"]})
            )
            # Let the run's stream send it now: up to the graph's first real wait (its first
            # checkpoint write, or a slow factory) nothing else yields to the event loop.
            await asyncio.sleep(0)
            await publisher.announce(str(row["thread_id"]))
            handlers: list[Any] = [usage]
            if (held := HELD_WRITES.get()) is not None:
                handlers.append(FlushBeforeNodes(held, wait=kwargs.get("durability") == "sync"))
            config = await self._observed(config, kwargs, handlers)
            graph = await self._graphs.get(
                watch.graph_id,
                config,
                scratch=not converter.emit_checkpoints,
                access="threads.create_run",
                context=kwargs.get("context") or {},
                exits=exits,
            )
            watch.graph = graph
            active.streaming = True
            if active.cancel_action is not None:
                raise asyncio.CancelledError  # cancelled before the graph could start
            async for event, data in self._stream(graph, row, kwargs, config, converter):
                await publisher.publish(event, data)
            active.streaming = False
            return await succeeded(graph, str(row["thread_id"]), converter)
        except asyncio.CancelledError:
            active.streaming = False
            task = asyncio.current_task()
            if active.cancel_action is None or active.lost:
                raise  # shutdown or lost lease: the worker requeues / lets go of the run
            if task is not None:
                task.uncancel()
            return await self._cancelled(graph, row, converter, active.cancel_action)
        except LeaseLost:
            active.streaming = False
            raise
        except UnknownGraph as exc:
            body = {"error": "GraphNotFound", "message": f"graph {exc.args[0]!r} is not served"}
            log.error("run %s failed: %s: %s", run_id, body["error"], body["message"], exc_info=exc)
            return Outcome("error", None, {}, body, dumps({"__error__": body}))
        except Exception as exc:
            active.streaming = False
            if is_transient(exc) and row["attempt"] < MAX_INFRA_ATTEMPTS:
                raise _Requeue(f"{type(exc).__name__}: {exc}") from exc
            body = error_body(exc)
            # The thread id is in the log context (every line of the run carries it).
            log.error("run %s failed: %s: %s", run_id, body["error"], body["message"], exc_info=exc)
            return Outcome("error", converter.final_values(), {}, body, dumps({"__error__": body}))
        finally:
            await exits.aclose()

    async def _requeue(self, row: Mapping[str, Any], active: ActiveRun, exc: _Requeue) -> None:
        """Give the run back to the queue; if even that fails, let its lease lapse."""
        run_id = str(row["run_id"])
        log.warning("run %s met an infrastructure failure (%s); requeueing it", run_id, exc)
        try:
            await retrying(
                lambda: self._runs.release(run_id, active.token), what=f"requeueing run {run_id}"
            )
        except Exception:
            log.warning("could not requeue run %s; its lease will lapse", run_id, exc_info=True)
        active.lost = True  # either way, it is no longer ours to record

    async def _finish(
        self,
        row: Mapping[str, Any],
        active: ActiveRun,
        outcome: Outcome,
        usage: UsageCallbackHandler,
        *,
        owner: str | None,
    ) -> FinishResult | None:
        """Record the outcome in Postgres (retried: it is fenced, so a repeat is harmless)."""
        run_id = str(row["run_id"])
        values_json = outcome.values_json
        if values_json is None and outcome.values is not None:
            values_json = dumps(outcome.values)
        if not (
            (values_json is None or storable_json(values_json))
            and storable([outcome.interrupts, outcome.error])
        ):
            # Postgres cannot store a NUL in jsonb. The thread row is only a copy of the
            # checkpointed state, so it keeps its previous values rather than failing the run.
            outcome.values, values_json, outcome.interrupts = None, None, {}
            if outcome.error is not None and not storable(outcome.error):
                outcome.error = {"error": outcome.error["error"], "message": "(unprintable)"}
        usage_json = usage.usage.to_dict(pricing=self._metrics.pricing)
        held = HELD_WRITES.get()
        last_writes = await held.take() if held is not None else None  # commit with the end
        active.ending_at = time.monotonic()  # before the finish can commit: see ActiveRun
        try:
            with lease_lost_as(RunFence(run_id, active.token)):
                result = await retrying(
                    lambda: self._runs.finish(
                        run_id=run_id,
                        thread_id=str(row["thread_id"]),
                        token=active.token,
                        status=outcome.status,
                        thread_status=outcome.thread_status or THREAD_STATUS[outcome.status],
                        values=outcome.values,
                        interrupts=outcome.interrupts,
                        error=outcome.error,
                        delete_run=outcome.delete_run,
                        owner=owner,
                        lease_seconds=self._lease_seconds,
                        usage=usage_json,
                        cancel_action=outcome.cancel,
                        values_json=values_json,
                        before=last_writes,
                    ),
                    what=f"recording the end of run {run_id}",
                )
        except LeaseLost as exc:  # the last writes' fence refused them: nothing landed
            log.warning("run %s stopped: %s", run_id, exc)
            active.lost = True
            resumable = bool(row["kwargs"].get("resumable"))
            await announce_if_deleted(self._runs, self._broker, row, resumable=resumable)
            return None
        except psycopg.errors.DataError as exc:
            if not last_writes:
                raise
            # Postgres refused the last writes' data (what a graph's own write would have
            # failed with at once): the run ends in error, as it would have then. Postgres's
            # primary message only: its CONTEXT names a parameter of our statement, not the run's.
            log.error("run %s: its last checkpoint writes failed", run_id, exc_info=exc)
            body = {"error": type(exc).__name__, "message": exc.diag.message_primary or str(exc)}
            outcome.status, outcome.error, outcome.interrupts = "error", body, {}
            outcome.thread_status, outcome.output = None, dumps({"__error__": body})
            return await self._finish(row, active, outcome, usage, owner=owner)
        return None if result.outcome == "stale" else result

    async def _announce_end(self, run_id: str, outcome: Outcome, *, resumable: bool) -> None:
        """Tell the broker (after Postgres knows): the error event, then the done marker.

        A broker that stays unreachable past its retries loses nothing: followers read the end
        from Postgres when their stream goes quiet.
        """
        try:
            if outcome.status == "error" and outcome.error is not None:
                await self._broker.publish(run_id, "error", dumps(outcome.error))
            await self._broker.finish(
                run_id, encode_done(outcome.status, outcome.output), resumable=resumable
            )
        except Exception:
            log.warning("could not end the stream of run %s in the broker", run_id, exc_info=True)

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

    async def _observed(self, config: Any, kwargs: Mapping[str, Any], handlers: list[Any]) -> Any:
        """The run's config with its ``handlers`` (usage counting...) and, when tracing is on,
        its tracer after them: a handler that refuses a node's start (a lost lease) runs
        before the tracer opens the node's span, which would otherwise never be closed."""
        if self._tracing is None:
            # Stored configs are JSON and hold no callbacks: nothing to merge with.
            config["callbacks"] = handlers
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
        return merge_configs(config, {"callbacks": handlers}, pieces)

    async def _assistant_name(self, assistant_id: Any) -> str | None:
        if self._assistants is None or not assistant_id:
            return None
        try:
            assistant = await self._assistants.get(str(assistant_id))
        except Exception:  # a trace named after the graph beats a failed run
            log.warning("could not read assistant %s to name the trace", assistant_id)
            return None
        return str(assistant["name"]) if assistant and assistant.get("name") else None

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
        async for converted in graph_events(graph, graph_input, config, kwargs, converter):
            yield converted

    async def _resumable_from_checkpoint(self, row: Mapping[str, Any]) -> bool:
        latest = await self._runs.latest_checkpoint_run(str(row["thread_id"]))
        return latest == str(row["run_id"])

    async def _cancelled(
        self,
        graph: Pregel | None,
        row: Mapping[str, Any],
        converter: StreamConverter,
        action: str,
    ) -> Outcome:
        """The outcome of a cancelled run (its checkpoints rolled back for ``rollback``).

        Raises:
            _Requeue: Postgres failed past the retries; the run's cancel flag stays, so the
                attempt that claims it next records the cancel without running the graph.
        """
        try:
            return await cancelled(self._runs, graph, row, converter, action)
        except Exception as exc:
            if is_transient(exc) and row["attempt"] < MAX_INFRA_ATTEMPTS:
                raise _Requeue(f"{type(exc).__name__}: {exc}") from exc
            raise
