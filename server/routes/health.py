"""Readiness (``/ready``: Postgres and, when configured, Redis answer; the served graphs and a
local embedding model have loaded) and ``/metrics``.

Liveness stays ``/ok`` in :mod:`server.routes.meta`: it must not depend on the database, or
an orchestrator would restart a healthy process during a database blip. Readiness does.

``/metrics`` reads the :class:`~server.observability.metrics.Metrics` stored as
``app.state.metrics`` (see :func:`install_metrics`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from psycopg_pool import AsyncConnectionPool

from server.auth import public
from server.auth.guard import open_if
from server.deps import Ctx
from server.json_body import JsonRoute
from server.observability.metrics import Metrics, MetricsMiddleware
from server.startup import embeddings_readiness

__all__ = [
    "CHECK_TIMEOUT",
    "MetricsDep",
    "check_postgres",
    "check_redis",
    "get_metrics",
    "install_metrics",
    "router",
]

log = logging.getLogger(__name__)

router = APIRouter(tags=["System"], route_class=JsonRoute)

CHECK_TIMEOUT = 2.0
"""Seconds each readiness check may take before it counts as failed."""


async def get_metrics(request: Request) -> Metrics:
    """The app's :class:`Metrics` (``app.state.metrics``); ``async``: no thread-pool hop."""
    metrics = getattr(request.app.state, "metrics", None)
    if not isinstance(metrics, Metrics):
        raise HTTPException(status_code=404, detail="Metrics are not enabled on this server")
    return metrics


MetricsDep = Annotated[Metrics, Depends(get_metrics)]


def install_metrics(app: FastAPI, metrics: Metrics) -> None:
    """Store ``metrics`` on the app and time every request with :class:`MetricsMiddleware`.

    Call it in ``create_app`` (middleware cannot be added once the app has started).
    """
    app.state.metrics = metrics
    app.add_middleware(MetricsMiddleware, metrics=metrics, skip=("/metrics",))


async def check_postgres(pool: AsyncConnectionPool, *, timeout: float = CHECK_TIMEOUT) -> None:
    """Run ``SELECT 1`` on a pooled connection within ``timeout`` seconds.

    Raises:
        Exception: whatever made it fail (``TimeoutError`` when too slow).
    """

    async def probe() -> None:
        async with pool.connection(timeout=timeout) as conn:
            await conn.execute("SELECT 1")

    await asyncio.wait_for(probe(), timeout=timeout)


async def check_redis(url: str, *, timeout: float = CHECK_TIMEOUT, client: Any = None) -> None:
    """``PING`` Redis within ``timeout`` seconds, on ``client`` or a short-lived connection.

    Args:
        url: ``REDIS_URL``, used when no client is given.
        timeout: most seconds to wait.
        client: a ``redis.asyncio.Redis`` the app already holds.

    Raises:
        Exception: whatever made it fail (``TimeoutError`` when too slow).
    """
    if client is not None:
        await asyncio.wait_for(client.ping(), timeout=timeout)
        return
    from redis.asyncio import Redis

    own = Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        await asyncio.wait_for(own.ping(), timeout=timeout)
    finally:
        await own.aclose()


async def _timed(name: str, probe: Any) -> tuple[str, dict[str, Any]]:
    start = time.perf_counter()
    try:
        await probe
    except Exception as exc:
        # The reason goes to the log (redacted there); the body names only the failure kind,
        # as it is served without authentication.
        log.warning("readiness check %s failed: %s: %s", name, type(exc).__name__, exc)
        reason = "timeout" if isinstance(exc, TimeoutError) else "unavailable"
        return name, {"ok": False, "error": reason}
    return name, {"ok": True, "latency_ms": round((time.perf_counter() - start) * 1000, 2)}


@router.get("/ready", dependencies=[public(limited=False)])
async def ready(request: Request, ctx: Ctx) -> JSONResponse:
    """Readiness: 200 when Postgres (and Redis, when configured) answer and the graphs and a
    local embedding model have loaded, else 503."""
    probes = [_timed("postgres", check_postgres(ctx.persistence.pool))]
    if ctx.settings.redis.url is not None:
        client = getattr(request.app.state, "redis", None)
        probes.append(
            _timed("redis", check_redis(ctx.settings.redis.url.get_secret_value(), client=client))
        )
    checks = dict(await asyncio.gather(*probes))
    graphs = ctx.graphs.status
    checks["graphs"] = {"ok": True} if graphs == "ready" else {"ok": False, "error": graphs}
    embeddings = embeddings_readiness(ctx.embeddings)
    if embeddings is not None:
        checks["embeddings"] = embeddings
    ok = all(check["ok"] for check in checks.values())
    return JSONResponse(
        status_code=200 if ok else 503,
        content={"status": "ready" if ok else "unavailable", "checks": checks},
    )


@router.get("/metrics", dependencies=[open_if("metrics_public", limited=False)])
async def metrics(
    metrics: MetricsDep,
    format: Annotated[Literal["text", "json"], Query(description="`text` or `json`.")] = "text",
) -> Response:
    """Prometheus text exposition of this process's metrics (``?format=json`` for JSON)."""
    body, content_type = metrics.render(fmt=format)
    return Response(content=body, media_type=content_type)
