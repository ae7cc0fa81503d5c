"""The FastAPI application: lifespan (persistence opened once, closed in reverse) and routers.

Observability is wired here: one :class:`~server.observability.Metrics` per app (``/metrics``,
HTTP timings, the run executor's numbers), request ids on every request and its logs, and
LangSmith tracing of runs when ``LANGSMITH_TRACING=true``, flushed (within
``STAFFGRAPH_TRACE_FLUSH_TIMEOUT``) after the workers stop.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import APIRouter, FastAPI
from fastapi.routing import iter_route_contexts

from nodes.models import describe_chat_model, get_chat_model
from server.auditing import DeniedRequestAudit
from server.auth import KeyPolicy, KeysRepo
from server.auth.setup import approval_policy, build_policy
from server.config import LangGraphConfig
from server.console import router as console_router
from server.context import AppContext, DatabaseTarget
from server.errors import install_error_handlers
from server.graphs import GraphRegistry
from server.heap import settle_heap
from server.json_body import BodyBudget
from server.limits import rate_limiter
from server.middleware import install_middleware
from server.observability import (
    LangSmithTracing,
    Metrics,
    PriceTable,
    RequestIdMiddleware,
    aclose_traces,
)
from server.repos.thread_ttl import ThreadTTLRepo
from server.routes import (
    assistants,
    audit,
    crons,
    health,
    mcp,
    memory,
    meta,
    protocol_v2,
    runs,
    store,
    threads,
    webhooks,
)
from server.runtime import Runtime
from server.runtime.scheduling import start_schedulers
from server.startup import (
    finish_embeddings_load,
    resolve_store_index,
    resolve_store_ttl,
    start_embeddings_load,
)
from server.ttl_sweeper import ThreadTTLSweeper
from server.versions import STAFFGRAPH_VERSION
from state.db import describe_database, open_persistence
from state.settings import Settings, redact_url

__all__ = ["create_app"]

log = logging.getLogger(__name__)


def _describe_broker(settings: Settings, kind: str) -> dict[str, str]:
    if settings.redis.url is None:
        return {"kind": kind}
    return {"kind": "redis", "url": redact_url(settings.redis.url.get_secret_value())}


def _settle_after_graphs(_error: Exception | None) -> None:
    settle_heap()  # the compiled graphs live as long as the process, too


def create_app(
    settings: Settings,
    config: LangGraphConfig,
    graphs: GraphRegistry,
    database: DatabaseTarget,
    *,
    pricing: PriceTable | None = None,
    api: bool = True,
) -> FastAPI:
    """Build the app. The database must already be reachable (see ``server.startup``).

    Args:
        settings: validated settings.
        config: the parsed langgraph.json.
        graphs: the graphs it names, imported.
        database: where Postgres is.
        pricing: model prices for run costs; loaded from ``STAFFGRAPH_PRICE_TABLE`` (or the
            built-in table) when omitted.
        api: include the LangGraph Server API routes; ``False`` for a worker process.

    Raises:
        PriceTableError: ``STAFFGRAPH_PRICE_TABLE`` names a file that cannot be used.
        CustomAuthError: ``auth.path`` names something that is not a usable ``Auth``.
    """
    policy = build_policy(settings, config)
    metrics = Metrics(
        pricing=pricing if pricing is not None else PriceTable.from_settings(settings)
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            tracing = LangSmithTracing.from_settings(settings)
            if tracing is not None:
                # Registered first so it runs last: after the workers stopped making spans.
                stack.push_async_callback(
                    aclose_traces, settings.observability.trace_flush_timeout, tracing=tracing
                )
            index, embeddings, embeddings_info = resolve_store_index(settings, config)
            persistence = await stack.enter_async_context(
                open_persistence(
                    database.url,
                    min_size=settings.database.pool_min_size,
                    max_size=settings.database.pool_max_size,
                    timeout=settings.database.connect_timeout,
                    unreachable_after=settings.database.pool_timeout,
                    index=index,
                    ttl=resolve_store_ttl(config),
                )
            )
            model = get_chat_model(settings=settings.model)
            runtime = Runtime(
                settings=settings,
                graphs=graphs,
                persistence=persistence,
                database_url=database.url,
                lease_seconds=settings.server.lease_seconds,
                heartbeat_seconds=settings.server.heartbeat_seconds,
                metrics=metrics,
                tracing=tracing,
            )
            if isinstance(policy, KeyPolicy):
                await policy.start(KeysRepo(persistence.pool), database.url)
                stack.push_async_callback(policy.stop)
            await runtime.start()
            stack.push_async_callback(runtime.stop)
            if limiter is not None:
                stack.push_async_callback(limiter.aclose)
            ttl = config.checkpointer.ttl if config.checkpointer else None
            sweeper = ThreadTTLSweeper(ThreadTTLRepo(persistence.pool), ttl)
            sweeper.start()
            stack.push_async_callback(sweeper.stop)
            scheduler, deliverer = start_schedulers(
                settings, runtime, persistence, database.url, policy=policy
            )
            # Registered after the runtime so they stop before it: no run is created or
            # webhook claimed while workers shut down.
            stack.push_async_callback(deliverer.stop)
            if scheduler is not None:
                stack.push_async_callback(scheduler.stop)
            app.state.ctx = AppContext(
                settings=settings,
                config=config,
                graphs=graphs,
                database=database,
                persistence=persistence,
                embeddings=embeddings,
                info={
                    "model": describe_chat_model(model),
                    "embeddings": embeddings_info,
                    "database": describe_database(database.url, embedded=database.embedded),
                    "broker": _describe_broker(settings, runtime.broker.kind),
                },
                runtime=runtime,
                metrics=metrics,
                tracing=tracing,
                crons=scheduler,
            )
            # The graphs' and the model's imports start last: they are seconds of CPU, and a
            # thread importing them beside start-up held the GIL half the time, slowing start-up
            # itself (bench/startup_bench.py on a 2-core machine, when `/ok` still waited for
            # the app: 4.47 s on an existing home against 6.10 s with the graphs imported from
            # the first moment, `/ready` no later). The model's shutdown callback runs first and
            # waits for a load still under way.
            graphs.load_in_background()
            embeddings_load = start_embeddings_load(embeddings)
            if embeddings_load is not None:
                stack.push_async_callback(finish_embeddings_load, embeddings_load)
            frozen = settle_heap()
            graphs.add_done_callback(_settle_after_graphs)
            log.info(
                "staffgraph ready: %d graphs, database %s, %d start-up objects frozen",
                len(graphs.ids()),
                "embedded" if database.embedded else "external",
                frozen,
            )
            yield

    app = FastAPI(
        title="staffgraph",
        version=STAFFGRAPH_VERSION,
        description="LangGraph Server API for staffgraph's AI staff graphs.",
        lifespan=lifespan,
        # Served by server.routes.meta, behind their own auth decision (STAFFGRAPH_DOCS_PUBLIC).
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.auth_policy = policy
    app.state.settings = settings
    redis_url = settings.redis.url.get_secret_value() if settings.redis.url else None
    limiter = rate_limiter(settings.limits, redis_url) if api else None
    app.state.rate_limiter = limiter
    app.state.body_budget = BodyBudget(
        max_values=settings.limits.max_body_values, max_depth=settings.limits.max_body_depth
    )
    app.state.approvals = approval_policy()
    install_error_handlers(app, redis=redis_url is not None)
    # Innermost: it sees every route's 401 and 403 (with the route matched) and records them.
    app.add_middleware(DeniedRequestAudit)
    install_middleware(app, settings, config, auth_enabled=policy.enabled)
    # Added last, so outermost: every response (CORS preflights and 413s included) is timed
    # and carries X-Request-Id, and every log line of the request carries its id.
    health.install_metrics(app, metrics)
    app.add_middleware(RequestIdMiddleware)
    # A worker process (`staffgraph worker`) executes runs and answers only health and metrics.
    # Requests are matched against the routes in this order, one pattern after another: the
    # run routes (every run's request) come first. No two routers serve the same method and
    # path, so the order changes nothing but how soon a request finds its route.
    routers = (runs, threads, assistants, crons, webhooks, store, memory, mcp, protocol_v2, audit)
    resources = routers if api else ()
    for module in (meta, health, *resources):
        add_routes(app, module.router)
    if api:
        add_routes(app, console_router)
    return app


def add_routes(app: FastAPI, router: APIRouter) -> None:
    """Put ``router``'s routes (and those of the routers it includes, in order) in ``app``'s own
    route table.

    ``app.include_router`` adds a router as one entry that FastAPI searches on each request,
    then searches again once it matched, with bookkeeping for every route it tries: a run
    through ``POST /threads/{id}/runs/wait`` made about 6,200 function calls that way and makes
    about 5,900 now (``bench/calls_bench.py --baseline 722648d``: 0.94× and 0.95× in two
    runs). In the app's own table a request tries each route's pattern in turn. The routers
    here have no prefix or settings of their own, so a route is the same in either table; a
    router included with a prefix, whose routes' paths would differ, is refused.

    Raises:
        ValueError: a route's path inside ``router`` differs from its own.
    """
    for context in iter_route_contexts(router.routes):
        route = context.original_route
        if context.path != getattr(route, "path", None):
            raise ValueError(f"{context.path!r}: routers are added without a prefix")
        app.router.routes.append(route)
