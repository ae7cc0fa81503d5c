"""The run runtime of one server process: broker, graphs, workers and the run operations.

Routes call :class:`Runtime` for everything that touches runs: creating them (with the
multitask strategy applied in Postgres), following their events, waiting for their output and
cancelling them wherever they execute.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import DictRow

from server.graphs import GraphRegistry, assistant_id_for
from server.ids import new_id
from server.limits import allowed_models, check_run_models
from server.observability import LangSmithTracing, Metrics
from server.repos import AssistantsRepo, CancelResult, RunsRepo, ThreadsRepo, run_to_api
from server.repos.run_limits import create_within_limit
from server.runtime.broker import DONE_EVENT, Broker, InProcessBroker, StreamEvent
from server.runtime.executor import Executor
from server.runtime.graph_cache import GraphCache
from server.runtime.outcome import RUN_NOT_FOUND, decode_done, encode_done
from server.runtime.pg_broker import PostgresBroker
from server.runtime.run_context import ContextConflict
from server.runtime.run_request import stored_config, stored_kwargs
from server.runtime.worker import PgNotifier, WorkerPool
from server.schemas import RunCreate
from server.serde import dumps
from state.db import Persistence
from state.effects import EffectLedger
from state.retry import is_transient
from state.settings import Settings

__all__ = ["CreatedRun", "Runtime", "RunError", "is_uuid"]

log = logging.getLogger(__name__)

_FINISHED = ("success", "error", "interrupted", "timeout")

LEASE_SECONDS = 30.0
"""Default lease of a claimed run: a worker silent for this long is presumed dead."""

HEARTBEAT_SECONDS = 10.0
"""Default interval between lease renewals."""


def is_uuid(value: str) -> bool:
    """Whether ``value`` parses as a UUID."""
    try:
        uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        return False
    return True


class RunError(Exception):
    """A run request that cannot be served; ``status`` and ``detail`` go to the client."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class CreatedRun:
    """A run just created."""

    run: dict[str, Any]
    """The API's Run object."""
    run_id: str
    thread_id: str
    resumable: bool


class Runtime:
    """Owns the broker, the graph cache and the in-process workers."""

    def __init__(
        self,
        *,
        settings: Settings,
        graphs: GraphRegistry,
        persistence: Persistence,
        database_url: str,
        broker: Broker | None = None,
        lease_seconds: float = LEASE_SECONDS,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
        metrics: Metrics | None = None,
        tracing: LangSmithTracing | None = None,
    ) -> None:
        """Wire the runtime (nothing starts until :meth:`start`).

        Args:
            settings: server settings (workers, Redis).
            graphs: the graphs served.
            persistence: pool, checkpointer, store.
            database_url: libpq URL for the ``LISTEN`` connection.
            broker: override the broker (default: Redis when configured, else in-process).
            lease_seconds: how long a claimed run stays ours without a heartbeat.
            heartbeat_seconds: how often leases are renewed (well under ``lease_seconds``).
            metrics: the app's metrics (runs, stream subscribers, tokens); a private set
                when omitted.
            tracing: LangSmith tracing of runs, or None when off.
        """
        if heartbeat_seconds * 2 >= lease_seconds:
            raise ValueError("the lease must last more than two heartbeats")
        self.settings = settings
        self.registry = graphs
        self.allowed_models = allowed_models(settings.limits, settings.model)
        self.pool = persistence.pool
        """The Postgres pool (for writes that share a transaction with a run's creation)."""
        self.assistants = AssistantsRepo(persistence.pool)
        self.threads = ThreadsRepo(persistence.pool)
        self.runs = RunsRepo(persistence.pool)
        self.graphs = GraphCache(graphs, persistence)
        self.broker = broker or _default_broker(settings, persistence, database_url)
        self.metrics = metrics if metrics is not None else Metrics()
        self.lease_seconds = lease_seconds
        host = (
            settings.server.host if settings.server.host not in ("0.0.0.0", "::") else "127.0.0.1"
        )
        self.executor = Executor(
            graphs=self.graphs,
            runs=self.runs,
            broker=self.broker,
            api_url=f"http://{host}:{settings.server.port}",
            lease_seconds=self.lease_seconds,
            metrics=self.metrics,
            tracing=tracing,
            assistants=self.assistants,
            ledger=EffectLedger(persistence.pool, url=database_url),
        )
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.workers: WorkerPool | None = None
        if settings.server.workers > 0:
            self.workers = WorkerPool(
                runs=self.runs,
                executor=self.executor,
                broker=self.broker,
                owner=self.owner,
                capacity=settings.server.workers * settings.server.runs_per_worker,
                lease_seconds=self.lease_seconds,
                heartbeat_seconds=heartbeat_seconds,
                shutdown_grace=settings.server.shutdown_grace_seconds,
            )
        self._database_url = database_url
        self._notifier: PgNotifier | None = None
        self._background: set[asyncio.Task[Any]] = set()

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Sync default assistants, connect the broker, start workers."""
        await self.assistants.sync_defaults(
            [(assistant_id_for(graph_id), graph_id) for graph_id in self.registry.ids()]
        )
        await self.broker.start(on_cancel=self._on_cancel_signal)
        if self.workers is not None:
            self._notifier = PgNotifier(
                self._database_url, on_wake=self.workers.wake, on_cancel=self._on_cancel_signal
            )
            self._notifier.start()
            self.workers.start()

    def stop_claiming(self) -> None:
        """Claim no more runs (the first step of a graceful shutdown; safe from a signal)."""
        if self.workers is not None:
            self.workers.stop_claiming()

    async def stop(self) -> None:
        """Stop workers (runs in flight get the shutdown grace), then the broker."""
        if self._notifier is not None:
            await self._notifier.stop()
        if self.workers is not None:
            await self.workers.stop()
        for task in list(self._background):
            task.cancel()
        await self.broker.close()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` in the background, keeping a reference until it ends."""
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- assistants -------------------------------------------------------------------------

    def resolve_assistant(self, value: str) -> str:
        """An assistant UUID from a UUID or a graph id (its default assistant).

        Raises:
            RunError: 422, neither a UUID nor a graph served here.
        """
        if is_uuid(value):
            return str(uuid.UUID(value))
        if value in self.registry:
            return assistant_id_for(value)
        graphs = ", ".join(self.registry.ids())
        raise RunError(
            422,
            f"Invalid assistant: '{value}'. Must be either:\n- A valid assistant UUID, or\n"
            f"- One of the registered graphs: {graphs}",
        )

    # -- creating runs ----------------------------------------------------------------------

    async def create_run(
        self,
        body: RunCreate,
        *,
        thread_id: str | None,
        claim: bool = True,
        stream_modes: list[str] | None = None,
        conn: AsyncConnection[DictRow] | None = None,
        identity: Mapping[str, Any] | None = None,
        thread_metadata: Mapping[str, Any] | None = None,
        thread_filter: Mapping[str, Any] | None = None,
    ) -> CreatedRun:
        """Create a run on ``thread_id`` (``None``: stateless, on a temporary thread).

        Args:
            body: the request.
            thread_id: the thread, or ``None`` for a stateless run.
            claim: let this process claim the run at once when a worker slot is free.
            stream_modes: internal stream modes instead of the body's (protocol v2 runs).
            conn: the caller's open transaction (a cron firing); workers claim the run later.
            identity: the caller's ``langgraph_auth_*`` keys (client-supplied ones are dropped).
            thread_metadata: metadata (the owner) of a thread the run creates.
            thread_filter: the caller's auth filter: a thread not matching it is missing (404).

        Raises:
            RunError: 404 (thread or assistant missing), 409 (``reject`` while busy), 422.
        """
        assistant_id = self.resolve_assistant(body.assistant_id)
        check_run_models(self.allowed_models, self.settings.model, body)
        stateless = thread_id is None
        if thread_id is None:
            thread_id = new_id()
        elif not is_uuid(thread_id):
            raise RunError(422, "Invalid thread ID: must be a UUID")
        config, context = _run_config(body, identity)
        kwargs = stored_kwargs(body, stateless=stateless)
        if stream_modes:
            kwargs["stream_mode"] = stream_modes
        await self._precreate_thread(
            thread_id, thread_metadata, creates=stateless or body.if_not_exists == "create"
        )
        reserved = claim and conn is None and self.workers is not None and self.workers.reserve()
        try:
            result = await create_within_limit(
                self.runs,
                user=str(config["configurable"].get("langgraph_auth_user_id") or ""),
                limits=self.settings.limits,
                run_id=new_id(),
                thread_id=thread_id,
                assistant_id=assistant_id,
                metadata=body.metadata or {},
                kwargs=kwargs,
                config=config,
                context=context,
                strategy=body.multitask_strategy or "enqueue",
                if_not_exists="create" if stateless else (body.if_not_exists or "reject"),
                temporary=stateless,
                on_completion=(body.on_completion or "delete") if stateless else None,
                after_seconds=body.after_seconds or 0.0,
                owner=self.owner if reserved else None,
                lease_seconds=self.lease_seconds,
                conn=conn,
                thread_filter=thread_filter,
            )
        except BaseException:
            if reserved and self.workers is not None:
                self.workers.release()
            raise
        row = result.run
        claimed = row is not None and row["status"] == "running"
        if reserved and self.workers is not None and not claimed:
            self.workers.release()
        _refuse_if_not_created(result.outcome)
        assert row is not None
        for run_id in result.cancel_ids:
            await self.signal_cancel(run_id, body.multitask_strategy or "interrupt")
        for run_id in result.settled_ids:
            await self.broker.finish(run_id, encode_done("interrupted", b"{}"), resumable=True)
        if claimed and self.workers is not None:
            self.workers.start_claimed(row, reserved=True, checkpoint=result.checkpoint)
        elif self.workers is not None:
            self.workers.wake()
            if body.after_seconds:
                # Due later: wake the claim loop then rather than waiting for its next poll.
                asyncio.get_running_loop().call_later(body.after_seconds, self.workers.wake)
        return CreatedRun(
            run=run_to_api(row),
            run_id=str(row["run_id"]),
            thread_id=thread_id,
            resumable=bool(kwargs["resumable"]),
        )

    async def _precreate_thread(
        self, thread_id: str, metadata: Mapping[str, Any] | None, *, creates: bool
    ) -> None:
        """Create the thread a run is about to create (``creates``), with its owner's metadata."""
        if creates and metadata is not None:
            await self.threads.create(thread_id, metadata=dict(metadata), if_exists="do_nothing")

    # -- following runs ---------------------------------------------------------------------

    async def follow(
        self, run_id: str, *, after: str | None = None, live: bool = False, end_only: bool = False
    ) -> AsyncIterator[StreamEvent | None]:
        """The run's events up to its done marker (yielded), ``None`` on idle ticks.

        ``end_only``: the marker alone (``runs/wait``, ``join``: the output, not the stream).
        On idle ticks the run row is checked too, so a run that ended without a marker (deleted
        while queued, its stream expired, the broker unreachable when it ended) still ends the
        iteration with a marker built from Postgres. Each follower (SSE stream, join,
        ``runs/wait``) counts in the stream subscribers gauge until it stops.
        """
        self.metrics.subscriber_added()
        subscribed = True

        def unsubscribe() -> None:
            nonlocal subscribed
            if subscribed:
                subscribed = False
                self.metrics.subscriber_removed()

        try:
            events = (
                self.broker.subscribe_end(run_id)
                if end_only
                else self.broker.subscribe(run_id, after=after, live=live)
            )
            async for event in events:
                if event is None:
                    event = await self._ended_in_postgres(run_id)
                if event is not None and event.event == DONE_EVENT:
                    # Callers stop at the marker without closing this generator, so the
                    # gauge drops before it is handed over rather than when it is collected.
                    unsubscribe()
                    yield event
                    return
                yield event
        finally:
            unsubscribe()

    async def _ended_in_postgres(self, run_id: str) -> StreamEvent | None:
        """A done marker built from Postgres when the run ended there; None while it runs.

        Also None while Postgres is unreachable: the follower keeps waiting (the broker's
        marker or the next idle tick ends it), it does not fail.
        """
        try:
            row = await self.runs.get_any(run_id)
            if row is None or row["status"] in _FINISHED:
                return StreamEvent("0-0", DONE_EVENT, await self._stored_output(row))
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning("cannot check run %s in Postgres (%s); still waiting", run_id, exc)
        return None

    async def _stored_output(self, row: dict[str, Any] | None) -> bytes:
        """Done-marker data built from Postgres, for a run whose own marker is gone."""
        if row is None:  # deleted while it ran, or its thread was
            return encode_done("interrupted", RUN_NOT_FOUND)
        if row["status"] == "error":
            return encode_done("error", dumps({"__error__": row["error"]}))
        thread = await self.threads.get(str(row["thread_id"]))
        values = thread["values"] if thread and thread["values"] is not None else {}
        return encode_done(row["status"], dumps(values))

    async def wait(self, run_id: str) -> tuple[str, bytes]:
        """Wait for the run to end; ``(status, output JSON)``."""
        async for event in self.follow(run_id, end_only=True):
            if event is not None and event.event == DONE_EVENT:
                return decode_done(event.data)
        return "interrupted", b"{}"  # unreachable: follow always ends with a marker

    async def join(self, thread_id: str, run_id: str) -> bytes:
        """Output of a run (waiting if it is still going): the thread's values, the run's
        error, or :data:`RUN_NOT_FOUND` when the run does not exist (any more)."""
        row = await self.runs.get(thread_id, run_id)
        if row is not None and row["status"] not in _FINISHED:
            status, output = await self.wait(run_id)
            if status == "error":
                return output
            row = await self.runs.get(thread_id, run_id)
        if row is None:
            return RUN_NOT_FOUND
        if row["status"] == "error":
            return dumps({"__error__": row["error"]})
        thread = await self.threads.get(thread_id)
        values = thread["values"] if thread and thread["values"] is not None else {}
        return dumps(values)

    # -- cancelling runs --------------------------------------------------------------------

    async def cancel(
        self,
        *,
        action: str,
        thread_id: str | None = None,
        run_ids: list[str] | None = None,
        status: str | None = None,
        wait: bool = False,
        assistant_id: str | None = None,
    ) -> CancelResult:
        """Cancel runs (see :meth:`RunsRepo.cancel`), signal the running ones, optionally wait."""
        result = await self.runs.cancel(
            action=action,
            thread_id=thread_id,
            run_ids=run_ids,
            status=status,
            assistant_id=assistant_id,
        )
        for run_id in result.settled:
            await self.broker.finish(run_id, encode_done("interrupted", b"{}"), resumable=True)
        for _, run_id in result.running:
            await self.signal_cancel(run_id, action)
        if wait:
            for _, run_id in result.running:
                await self.wait(run_id)
        return result

    async def signal_cancel(self, run_id: str, action: str) -> None:
        """Stop the run wherever it executes (the flag in Postgres is the fallback)."""
        if self.workers is not None and self.workers.cancel_local(run_id, action):
            return
        if self.broker.carries_cancel:
            await self.broker.send_cancel(run_id, action)
            return
        await self.runs.notify_cancel(run_id, action)

    def _on_cancel_signal(self, run_id: str, action: str) -> None:
        if self.workers is not None:
            self.workers.cancel_local(run_id, action)

    async def cancel_on_disconnect(self, thread_id: str, run_id: str) -> None:
        """Cancel a run whose streaming client went away (``on_disconnect="cancel"``)."""
        with contextlib.suppress(Exception):
            await self.cancel(action="interrupt", thread_id=thread_id, run_ids=[run_id])


def _refuse_if_not_created(outcome: str) -> None:
    """Raise the API error for a run the database did not create.

    Raises:
        RunError: 404 when the thread or assistant is missing, 409 on a busy thread whose
            multitask strategy is ``reject``.
    """
    if outcome in ("no_thread", "no_assistant"):
        raise RunError(404, "Thread or assistant not found.")
    if outcome == "conflict":
        raise RunError(
            409,
            "Thread is already running a task. Wait for it to finish or choose a "
            "different multitask strategy.",
        )


def _run_config(
    body: RunCreate, identity: Mapping[str, Any] | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """:func:`server.runtime.run_request.stored_config`, a conflict answered with a 400."""
    try:
        return stored_config(body, identity)
    except ContextConflict as exc:
        raise RunError(400, str(exc)) from None


def _default_broker(settings: Settings, persistence: Persistence, database_url: str) -> Broker:
    ttl = settings.redis.stream_ttl_seconds
    if settings.redis.url is None:
        server = settings.server
        if server.broker == "postgres" or (server.broker == "auto" and server.process_count > 1):
            return PostgresBroker(persistence.pool, database_url, replay_ttl=float(ttl))
        return InProcessBroker(replay_ttl=float(ttl))
    from server.runtime.redis_broker import RedisBroker

    return RedisBroker(
        settings.redis.url.get_secret_value(),
        replay_ttl=ttl,
        retry_seconds=settings.redis.retry_seconds,
    )
