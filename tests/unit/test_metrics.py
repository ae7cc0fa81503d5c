"""Prometheus metrics after simulated runs, the HTTP middleware and /metrics.

``/ready`` needs Postgres, so its tests are in ``tests/integration/server/test_health.py``.
"""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from server.observability.metrics import Metrics
from server.routes import health
from state.usage import ModelPrice, PriceTable, RunUsage


def samples(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Parse the text exposition, as a scraper would: (name, labels) -> value."""
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    parsed: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            parsed[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return parsed


def value(
    parsed: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return parsed[(name, frozenset(labels.items()))]


def test_runs_durations_queue_wait_and_active_runs() -> None:
    metrics = Metrics()
    for graph, status, duration, wait in [
        ("supervisor", "success", 0.3, 0.002),
        ("supervisor", "success", 4.0, 0.2),
        ("supervisor", "error", 1.0, None),
        ("pipeline", "interrupted", 0.07, 0.01),
    ]:
        metrics.run_started(graph)
        metrics.run_finished(graph, status, duration, queue_wait=wait)
    metrics.run_started("pipeline")  # still running

    parsed = samples(metrics)
    assert value(parsed, "staffgraph_runs_total", graph="supervisor", status="success") == 2
    assert value(parsed, "staffgraph_runs_total", graph="supervisor", status="error") == 1
    assert value(parsed, "staffgraph_runs_total", graph="pipeline", status="interrupted") == 1
    assert value(parsed, "staffgraph_run_duration_seconds_count", graph="supervisor") == 3
    assert value(parsed, "staffgraph_run_duration_seconds_sum", graph="supervisor") == 5.3
    assert (
        value(parsed, "staffgraph_run_duration_seconds_bucket", graph="supervisor", le="1.0") == 2
    )
    # The error run had no known queue wait: only two observations for supervisor.
    assert value(parsed, "staffgraph_run_queue_wait_seconds_count", graph="supervisor") == 2
    assert (
        value(parsed, "staffgraph_run_queue_wait_seconds_bucket", graph="pipeline", le="0.01") == 1
    )
    assert value(parsed, "staffgraph_active_runs", graph="supervisor") == 0
    assert value(parsed, "staffgraph_active_runs", graph="pipeline") == 1


def test_unknown_status_and_too_many_graphs_are_bounded() -> None:
    metrics = Metrics(max_label_values=2)
    for graph in ("a", "b", "c", "d"):
        metrics.run_started(graph)
        metrics.run_finished(graph, "exploded", 1.0)
    parsed = samples(metrics)
    assert value(parsed, "staffgraph_runs_total", graph="a", status="other") == 1
    assert value(parsed, "staffgraph_runs_total", graph="other", status="other") == 2
    assert value(parsed, "staffgraph_active_runs", graph="other") == 0


def test_stream_subscribers_gauge() -> None:
    metrics = Metrics()
    for _ in range(3):
        metrics.subscriber_added()
    metrics.subscriber_removed()
    assert value(samples(metrics), "staffgraph_stream_subscribers") == 2


def test_tokens_and_cost_by_role() -> None:
    prices = PriceTable({"house-model": ModelPrice.of(2, 4)})
    metrics = Metrics(pricing=prices)
    run = RunUsage()
    run.add_call(
        input_tokens=1_000_000, output_tokens=500_000, role="researcher", model="house-model"
    )
    run.add_call(
        input_tokens=10, output_tokens=5, role="writer", model="staffgraph-offline", estimated=True
    )
    metrics.record_usage(run)
    metrics.record_usage(run)

    parsed = samples(metrics)
    tokens = "staffgraph_llm_tokens_total"
    assert value(parsed, tokens, role="researcher", direction="input", estimated="false") == 2e6
    assert value(parsed, tokens, role="researcher", direction="output", estimated="false") == 1e6
    assert value(parsed, tokens, role="writer", direction="input", estimated="true") == 20
    assert value(parsed, "staffgraph_llm_calls_total", role="writer") == 2
    assert value(parsed, "staffgraph_llm_cost_usd_total", role="researcher") == 8.0
    assert value(parsed, "staffgraph_llm_cost_usd_total", role="writer") == 0.0


def test_registries_are_separate() -> None:
    first, second = Metrics(), Metrics()  # same names, no "Duplicated timeseries" error
    first.run_started("g")
    first.run_finished("g", "success", 1.0)
    assert ("staffgraph_runs_total", frozenset({("graph", "g"), ("status", "success")})) in samples(
        first
    )
    assert not any(name == "staffgraph_runs_total" for name, _ in samples(second))


# -- HTTP --------------------------------------------------------------------------------


def app_with_metrics(metrics: Metrics) -> FastAPI:
    app = FastAPI()
    health.install_metrics(app, metrics)
    app.include_router(health.router)

    @app.get("/threads/{thread_id}")
    async def get_thread(thread_id: str) -> dict[str, str]:
        return {"thread_id": thread_id}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("unexpected")

    return app


async def test_http_latency_uses_route_templates_and_status() -> None:
    metrics = Metrics()
    app = app_with_metrics(metrics)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        for thread in ("t1", "t2", "t3"):
            assert (await client.get(f"/threads/{thread}")).status_code == 200
        assert (await client.get("/no/such/path")).status_code == 404
        assert (await client.get("/boom")).status_code == 500
        text = await client.get("/metrics")

    assert text.headers["content-type"].startswith("text/plain")
    parsed = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text.text)
        for s in family.samples
    }
    count = "staffgraph_http_request_duration_seconds_count"
    assert value(parsed, count, method="GET", route="/threads/{thread_id}", status="200") == 3
    assert value(parsed, count, method="GET", route="unmatched", status="404") == 1
    assert value(parsed, count, method="GET", route="/boom", status="500") == 1
    routes = {dict(labels).get("route") for name, labels in parsed if name == count}
    assert not any(route and "t1" in route for route in routes)  # raw ids never become labels


async def test_metrics_json_format() -> None:
    metrics = Metrics()
    metrics.run_started("g")
    transport = httpx.ASGITransport(app=app_with_metrics(metrics))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/metrics", params={"format": "json"})
    assert response.status_code == 200
    active = response.json()["staffgraph_active_runs"]
    assert active["type"] == "gauge"
    assert active["samples"] == [
        {"name": "staffgraph_active_runs", "labels": {"graph": "g"}, "value": 1.0}
    ]


async def test_metrics_endpoint_without_metrics_is_404() -> None:
    app = FastAPI()
    app.include_router(health.router)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/metrics")
    assert response.status_code == 404
    assert response.json() == {"detail": "Metrics are not enabled on this server"}


def test_run_stopped_without_outcome_is_no_longer_active() -> None:
    metrics = Metrics()
    metrics.run_started("g")
    metrics.run_stopped("g")  # released at shutdown: another worker will count its outcome
    parsed = samples(metrics)
    assert value(parsed, "staffgraph_active_runs", graph="g") == 0
    assert not any(name == "staffgraph_runs_total" for name, _ in parsed)
