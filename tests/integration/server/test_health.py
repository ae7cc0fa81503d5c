"""Readiness (``/ready``: Postgres and Redis answer), and health routes on a live server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from server.config import LangGraphConfig
from server.context import AppContext, DatabaseTarget
from server.graphs import GraphRegistry, assistant_id_for
from server.routes import health
from state.db import Persistence
from state.settings import RedisSettings, Settings
from tests.support.server import LiveServer


def ready_app(persistence: Persistence, database_url: str, redis_url: str | None) -> FastAPI:
    app = FastAPI()
    app.include_router(health.router)
    app.state.ctx = AppContext(
        settings=Settings(redis=RedisSettings(url=redis_url)),
        config=LangGraphConfig(graphs={}),
        graphs=GraphRegistry({}),
        database=DatabaseTarget(url=database_url, embedded=False),
        persistence=persistence,
        embeddings=None,
    )
    return app


@pytest.fixture
async def ready_client(
    persistence: Persistence, database_url: str, redis_url: str
) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=ready_app(persistence, database_url, redis_url))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


async def test_ready_when_postgres_and_redis_answer(ready_client: httpx.AsyncClient) -> None:
    response = await ready_client.get("/ready")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert set(body["checks"]) == {"postgres", "redis", "graphs"}
    assert all(check["ok"] for check in body["checks"].values())


async def test_not_ready_when_redis_is_down(
    persistence: Persistence, database_url: str, tmp_path: Path
) -> None:
    dead = f"unix://{tmp_path / 'nobody-listens.sock'}"
    transport = httpx.ASGITransport(app=ready_app(persistence, database_url, dead))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/ready")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["postgres"]["ok"] is True
    assert body["checks"]["redis"] == {"ok": False, "error": "unavailable"}
    assert "nobody-listens" not in response.text  # no internals in an unauthenticated body


async def test_ready_without_redis_checks_only_postgres(
    persistence: Persistence, database_url: str
) -> None:
    transport = httpx.ASGITransport(app=ready_app(persistence, database_url, None))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/ready")
    assert response.status_code == 200
    assert list(response.json()["checks"]) == ["postgres", "graphs"]


async def test_live_server_serves_ready_metrics_and_request_ids(live_server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=live_server.url) as http:
        # Drawing a graph waits for the graphs' background import: /ready is then complete.
        drawn = await http.get(f"/assistants/{assistant_id_for('simple')}/graph")
        assert drawn.status_code == 200, drawn.text
        ready = await http.get("/ready")
        ok = await http.get("/ok", headers={"X-Request-Id": "probe-42"})
        # Studio posts JSON as text/plain: the request gate marks it JSON on the way in.
        posted = await http.post("/threads", content=b"{}", headers={"content-type": "text/plain"})
        metrics = await http.get("/metrics")

    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert list(ready.json()["checks"]) == ["postgres", "graphs"]  # no Redis configured
    assert ok.headers["x-request-id"] == "probe-42"  # a well-formed incoming id is kept
    assert len(ready.headers["x-request-id"]) == 32  # else a fresh one
    assert metrics.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(metrics.text)}
    timings = families["staffgraph_http_request_duration_seconds"].samples
    assert any(
        s.name.endswith("_count")
        and s.labels == {"method": "GET", "route": "/ready", "status": "200"}
        for s in timings
    )
    # Timed under its route, not as unmatched, although the gate rewrote its headers.
    assert posted.status_code == 200, posted.text
    assert any(
        s.name.endswith("_count")
        and s.labels == {"method": "POST", "route": "/threads", "status": "200"}
        for s in timings
    ), [s.labels for s in timings if s.labels.get("method") == "POST"]
    assert "staffgraph_runs" in families and "staffgraph_stream_subscribers" in families
    # Start-up's objects (imports, compiled graphs) are frozen out of garbage collection.
    frozen = families["staffgraph_gc_frozen_objects"].samples[0].value
    assert frozen > 100_000, frozen
    passes = {s.labels["generation"] for s in families["python_gc_collections"].samples}
    assert passes == {"0", "1", "2"}
