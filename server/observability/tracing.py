"""LangSmith tracing of runs: one root trace per run, metadata to find it, bounded cost.

With ``LANGSMITH_TRACING=true`` the lifespan builds one :class:`LangSmithTracing` (its own
``langsmith.Client``); for each run :func:`run_tracing_config` returns the config pieces that
make the run one trace named after the assistant, carrying ``thread_id``, ``run_id``,
``assistant_id``, ``graph_id`` and ``user_id`` on every span, sent to the project chosen for
that assistant or request. LangGraph then records nodes, model calls and tools as children,
and an exception as the failing span's (and the root's) error.

Why tracing cannot hurt a run, as the installed ``langsmith`` client (0.14) works:

* spans are serialised and put on an in-memory queue (``put_nowait``; when the queue is full
  spans are dropped, never waited for); a background thread sends them: ``GET /info`` once,
  then ``POST /runs/multipart`` (zstd-compressed when ``/info`` announces
  ``instance_flags.zstd_compression_enabled``), or ``POST /runs/batch`` when ``/info`` says
  ``batch_ingest_config.use_multipart_endpoint: false`` or the multipart endpoint is 404;
* our client's HTTP session caps every request's connect and read timeouts, and retries at
  most once, so a dead or hanging collector ties up only that background thread, briefly;
* :func:`flush_traces` waits for pending spans in a daemon thread and gives up after its
  timeout; at shutdown :func:`aclose_traces` then drops what is still pending and stops the
  client's threads, so the process exits at most one capped request after the timeout
  instead of sending every queued batch to a LangSmith that does not answer.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import requests
from langchain_core.runnables import RunnableConfig
from langchain_core.tracers.langchain import LangChainTracer
from langsmith import Client
from langsmith import run_trees as ls_run_trees
from urllib3.util.retry import Retry

from state.settings import Settings, TracingSettings

__all__ = [
    "PROJECT_KEY",
    "LangSmithTracing",
    "aclose_traces",
    "aflush_traces",
    "flush_traces",
    "resolve_project",
    "run_tracing_config",
    "tracing_enabled",
]

PROJECT_KEY = "langsmith_project"
"""Key naming the LangSmith project of a run, in ``config["configurable"]`` (per assistant
or per request) or in ``metadata``; overrides ``LANGSMITH_PROJECT``."""

_MAX_NAME = 128
_MAX_TAGS = 32

log = logging.getLogger(__name__)


def tracing_enabled(settings: Settings | TracingSettings) -> bool:
    """Whether runs are traced (``LANGSMITH_TRACING=true``)."""
    group = settings.tracing if isinstance(settings, Settings) else settings
    return bool(group.tracing)


class _BoundedSession(requests.Session):
    """A session whose requests never wait longer than the caps, whatever the caller asks.

    The langsmith client passes its own fixed (3 s, 10 s) timeout for background sends; this
    is where we lower it. Once :meth:`refuse` is called (shutdown, after the bounded flush)
    every new request fails at once: the client retries a failed send up to three times on
    its own, which against a hanging LangSmith would hold the exit that much longer.
    """

    def __init__(self, *, connect: float, read: float) -> None:
        super().__init__()
        self._caps = (connect, read)
        self._refusing = False

    def refuse(self) -> None:
        """Fail every request from now on without touching the network."""
        self._refusing = True

    def request(self, method: str, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        if self._refusing:
            raise requests.ConnectionError("the LangSmith client is shut down")
        kwargs["timeout"] = _cap(kwargs.get("timeout"), self._caps)
        return super().request(method, url, *args, **kwargs)


def _cap(timeout: Any, caps: tuple[float, float]) -> tuple[float, float]:
    connect, read = caps
    if isinstance(timeout, int | float):
        return min(float(timeout), connect), min(float(timeout), read)
    if isinstance(timeout, tuple) and len(timeout) == 2:
        c, r = timeout
        return (
            min(float(c), connect) if c is not None else connect,
            min(float(r), read) if r is not None else read,
        )
    return connect, read


def _retry() -> Retry:
    # One retry with a short backoff, and never a server-chosen Retry-After sleep. A read
    # timeout is not retried: the body was sent (LangSmith may well have it), and a retry
    # would double the time a hanging LangSmith holds a send, and so a shutdown.
    return Retry(
        total=1,
        read=0,
        backoff_factor=0.2,
        status_forcelist=(429, 500, 502, 503, 504),
        allowed_methods=None,
        raise_on_status=False,
        raise_on_redirect=False,
        respect_retry_after_header=False,
    )


def _clean_name(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    text = "".join(ch for ch in value.strip() if ch.isprintable())[:_MAX_NAME]
    return text or None


class LangSmithTracing:
    """The process's LangSmith client, default project, and flushing. One per app."""

    def __init__(self, client: Client, *, project: str | None = None) -> None:
        """Wrap an existing client (see :meth:`from_settings` for the usual way).

        Args:
            client: the langsmith client spans go to.
            project: project for runs that name none; the client's default when None.
        """
        self.client = client
        self.project = _clean_name(project)

    @classmethod
    def from_settings(
        cls,
        settings: Settings | TracingSettings,
        *,
        connect_timeout: float = 2.0,
        read_timeout: float = 5.0,
    ) -> LangSmithTracing | None:
        """Build the client from ``LANGSMITH_*`` settings; None when tracing is off.

        Args:
            settings: all settings or the tracing group.
            connect_timeout: most seconds any request to LangSmith waits to connect.
            read_timeout: most seconds any request waits for the answer.
        """
        group = settings.tracing if isinstance(settings, Settings) else settings
        if not group.tracing:
            return None
        client = Client(
            api_url=group.endpoint,
            api_key=group.api_key.get_secret_value() if group.api_key is not None else None,
            timeout_ms=(int(connect_timeout * 1000), int(read_timeout * 1000)),
            session=_BoundedSession(connect=connect_timeout, read=read_timeout),
            retry_config=_retry(),
            auto_batch_tracing=True,
        )
        return cls(client, project=group.project)

    def tracer(self, *, project: str | None = None) -> LangChainTracer:
        """A LangChain callback sending one run's spans to ``project`` (or the default)."""
        return LangChainTracer(client=self.client, project_name=project or self.project)

    def flush(self, timeout: float) -> bool:
        """Send pending spans; True when all went out within ``timeout`` seconds."""
        return flush_traces(timeout, tracing=self)

    async def aflush(self, timeout: float) -> bool:
        """:meth:`flush` without blocking the event loop."""
        return await aflush_traces(timeout, tracing=self)

    async def aclose(self, timeout: float) -> bool:
        """At shutdown: :func:`aclose_traces` for this client."""
        return await aclose_traces(timeout, tracing=self)


def resolve_project(
    tracing: LangSmithTracing | None,
    *,
    project: str | None = None,
    config: Mapping[str, Any] | None = None,
) -> str | None:
    """The project a run's spans go to.

    First of: ``project``; ``config["configurable"]["langsmith_project"]`` (an assistant's
    config or the request's); ``config["metadata"]["langsmith_project"]``; the default
    (``LANGSMITH_PROJECT``); None, which means the client's own default.
    """
    candidates: list[object] = [project]
    if config:
        configurable = config.get("configurable")
        metadata = config.get("metadata")
        if isinstance(configurable, Mapping):
            candidates.append(configurable.get(PROJECT_KEY))
        if isinstance(metadata, Mapping):
            candidates.append(metadata.get(PROJECT_KEY))
    if tracing is not None:
        candidates.append(tracing.project)
    for candidate in candidates:
        name = _clean_name(candidate)
        if name:
            return name
    return None


def run_tracing_config(
    tracing: LangSmithTracing | None,
    *,
    graph_id: str,
    run_id: str,
    thread_id: str | None = None,
    assistant_id: str | None = None,
    assistant_name: str | None = None,
    user_id: str | None = None,
    project: str | None = None,
    config: Mapping[str, Any] | None = None,
    tags: Sequence[str] = (),
) -> RunnableConfig:
    """Config pieces for one run; merge them into the run's config before ``astream``.

    Always returns ``run_name`` (the assistant's name, else the graph id: the root span's
    name), ``metadata`` (the ids below, which LangChain copies onto every child span) and
    ``tags``; adds a tracer in ``callbacks`` only when tracing is on. Merge with
    ``langchain_core.runnables.config.merge_configs(run_config, pieces)``: metadata and
    callbacks are combined, not replaced.

    Args:
        tracing: the app's tracing, or None when off.
        graph_id: graph id.
        run_id: run id.
        thread_id: thread id (None for stateless runs).
        assistant_id: assistant id.
        assistant_name: assistant name; names the root span.
        user_id: authenticated user's identity.
        project: explicit project (wins over everything).
        config: the run's merged config (assistant + request), read for a
            ``langsmith_project`` override.
        tags: extra tags for the root span.
    """
    run_name = _clean_name(assistant_name) or _clean_name(graph_id) or "run"
    metadata: dict[str, Any] = {"graph_id": graph_id, "run_id": str(run_id)}
    for key, value in (
        ("thread_id", thread_id),
        ("assistant_id", assistant_id),
        ("user_id", user_id),
    ):
        if value is not None:
            metadata[key] = str(value)
    pieces: RunnableConfig = {
        "run_name": run_name,
        "metadata": metadata,
        "tags": [t[:_MAX_NAME] for t in tags if isinstance(t, str)][:_MAX_TAGS],
    }
    if tracing is not None:
        chosen = resolve_project(tracing, project=project, config=config)
        pieces["callbacks"] = [tracing.tracer(project=chosen)]
    return pieces


def _flush_clients(tracing: LangSmithTracing | None) -> list[Client]:
    clients: list[Client] = []
    if tracing is not None:
        clients.append(tracing.client)
    # Graphs may also trace through langsmith's process-wide client (@traceable, env-enabled
    # tracing without our tracer); flush it too when it exists, but never create it.
    shared = ls_run_trees._CLIENT
    if isinstance(shared, Client) and all(shared is not c for c in clients):
        clients.append(shared)
    return clients


def _start_flush(tracing: LangSmithTracing | None) -> threading.Event:
    done = threading.Event()
    clients = _flush_clients(tracing)

    def work() -> None:
        # No timeout here: the client's own flush returns quietly at its timeout, which
        # would make "done" mean nothing. The caller bounds the wait on ``done`` instead.
        try:
            for client in clients:
                client.flush()
        except Exception as exc:  # a failed flush loses traces; it must not fail shutdown
            log.warning("flushing LangSmith traces failed: %s", type(exc).__name__)
        finally:
            done.set()

    # A daemon thread: if LangSmith hangs past the timeout, it must not keep the process up;
    # our capped request timeouts end it soon after anyway.
    threading.Thread(target=work, name="staffgraph-trace-flush", daemon=True).start()
    return done


def flush_traces(timeout: float, *, tracing: LangSmithTracing | None = None) -> bool:
    """Wait up to ``timeout`` seconds for pending spans to be sent; never longer.

    Args:
        timeout: most seconds to wait.
        tracing: the app's tracing; langsmith's shared client is flushed too if it exists.

    Returns:
        True when everything was sent in time (or there was nothing to send).
    """
    return _start_flush(tracing).wait(max(0.0, timeout))


async def aflush_traces(timeout: float, *, tracing: LangSmithTracing | None = None) -> bool:
    """:func:`flush_traces` for async code: the event loop keeps running while it waits."""
    done = _start_flush(tracing)
    return await asyncio.to_thread(done.wait, max(0.0, timeout))


def _drop_pending(client: Client) -> int:
    """Forget the spans ``client`` has not sent and cancel sends not yet started.

    Uses the installed client's internals (its queue, compressed buffer and tracked sends)
    with care: each is looked up, never assumed, so a different client version loses the
    drop, not the shutdown.
    """
    dropped = 0
    queue = getattr(client, "tracing_queue", None)
    if queue is not None:
        while True:
            try:
                queue.get_nowait()
            except Exception:  # queue.Empty: nothing left
                break
            queue.task_done()
            dropped += 1
    compressed = getattr(client, "compressed_traces", None)
    lock = getattr(compressed, "lock", None)
    if compressed is not None and lock is not None:
        with lock:
            dropped += int(getattr(compressed, "trace_count", 0) or 0)
            compressed.reset()
    futures_lock = getattr(client, "_futures_lock", None)
    if futures_lock is not None:
        with futures_lock:
            pending = list(getattr(client, "_futures", ()))
        for future in pending:
            future.cancel()  # only sends still waiting for a thread; running ones finish
    return dropped


def _close_clients(clients: Sequence[Client]) -> None:
    for client in clients:
        session = getattr(client, "session", None)
        if isinstance(session, _BoundedSession):
            session.refuse()  # a send in flight ends at its read cap; no new ones start
        try:
            dropped = _drop_pending(client)
            # Stops the client's background threads; timeout=0: no second wait for a flush.
            client.cleanup(timeout=0)
        except Exception as exc:  # losing traces must not fail shutdown
            log.warning("stopping the LangSmith client failed: %s", type(exc).__name__)
            continue
        if dropped:
            log.warning("dropped %d LangSmith spans that could not be sent in time", dropped)


async def aclose_traces(timeout: float, *, tracing: LangSmithTracing | None = None) -> bool:
    """At shutdown: send pending spans for at most ``timeout`` seconds, then let go.

    After the bounded flush, spans still pending are dropped, our client refuses new
    requests and the clients' background threads are stopped: otherwise the interpreter
    would wait at exit for them to send every queued batch, three attempts each, to a
    LangSmith that may hang. A send already in flight still ends within the read cap, so the
    exit comes at most ``timeout`` plus one read cap (5 s) after this is called.

    Returns:
        True when everything was sent in time.
    """
    clients = _flush_clients(tracing)
    done = await aflush_traces(timeout, tracing=tracing)
    await asyncio.to_thread(_close_clients, clients)
    return done
