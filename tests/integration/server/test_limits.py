"""Per-caller limits: request rate (in process and shared through Redis), runs at once, models.

Servers run with built-in API keys made by ``staffgraph keys create``, as an operator would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.auth.matrix import create_key
from tests.support.server import LiveServer, fresh_database, start_server

BURST = 30
SLOW = {"assistant_id": "slow", "input": {"seconds": 30}}


@pytest.fixture(scope="module")
def limited(database_url: str) -> Iterator[tuple[LiveServer, dict[str, str]]]:
    """A keyed server: 6 requests a minute (so a slow machine refills next to nothing during a
    test) in bursts of 30, two runs at once, default models."""
    url = fresh_database(database_url)
    server = start_server(
        env={
            "DATABASE_URL": url,
            "STAFFGRAPH_AUTH": "keys",
            "STAFFGRAPH_RATE_LIMIT_PER_MINUTE": "6",
            "STAFFGRAPH_RATE_LIMIT_BURST": str(BURST),
            "STAFFGRAPH_MAX_CONCURRENT_RUNS": "2",
            "STAFFGRAPH_ALLOWED_MODELS": "",  # unset: the configured MODEL and offline
            "MODEL": "offline",
        }
    )
    try:
        users = ["noisy", "quiet", "busy", "other", "racer", "modeller", "m0", "m1", "m2"]
        yield server, {user: create_key(url, user) for user in users}
    finally:
        server.stop()


def _client(server: LiveServer, key: str | None = None) -> httpx.AsyncClient:
    headers = {"x-api-key": key} if key else {}
    limits = httpx.Limits(max_connections=50)
    return httpx.AsyncClient(base_url=server.url, headers=headers, timeout=60, limits=limits)


async def _burst(client: httpx.AsyncClient, n: int) -> list[httpx.Response]:
    return await asyncio.gather(*(client.post("/threads/search", json={}) for _ in range(n)))


def _assert_429(response: httpx.Response, limit: str) -> None:
    assert response.status_code == 429, response.text
    assert int(response.headers["retry-after"]) >= 1
    body = response.json()
    assert body["limit"] == limit
    assert body["retry_after"] == int(response.headers["retry-after"])
    assert body["detail"]


async def test_a_burst_from_one_key_gets_429s_while_another_key_is_unaffected(
    limited: tuple[LiveServer, dict[str, str]],
) -> None:
    server, keys = limited
    noisy, quiet = keys["noisy"], keys["quiet"]
    async with _client(server, noisy) as a, _client(server, quiet) as b, _client(server) as anon:
        answers = await _burst(a, 200)
        codes = [r.status_code for r in answers]
        assert set(codes) == {200, 429}
        # the burst, plus at most a few refilled during it (one every 10 s)
        assert BURST <= codes.count(200) <= BURST + 3
        _assert_429(next(r for r in answers if r.status_code == 429), "requests_per_minute")
        assert all(r.status_code == 200 for r in await _burst(b, 20))
        # health is never limited, even for the caller who is
        assert (await a.get("/ok")).status_code == 200
        assert (await a.get("/ready")).status_code == 200
        assert (await anon.get("/metrics")).status_code == 200
        assert (await a.post("/threads/search", json={})).status_code == 429


async def test_unauthenticated_callers_are_limited_by_address(database_url: str) -> None:
    server = start_server(
        env={
            "DATABASE_URL": fresh_database(database_url),
            "STAFFGRAPH_RATE_LIMIT_PER_MINUTE": "6",
            "STAFFGRAPH_RATE_LIMIT_BURST": "10",
        }
    )
    try:
        async with _client(server) as client:
            codes = [r.status_code for r in await _burst(client, 40)]
            assert 10 <= codes.count(200) <= 13 and codes.count(429) >= 27
            _assert_429(await client.get("/info"), "requests_per_minute")
            assert (await client.get("/ok")).status_code == 200
    finally:
        server.stop()


def test_the_rate_holds_across_two_servers_sharing_redis(database_url: str, redis_url: str) -> None:
    url = fresh_database(database_url)
    env = {
        "DATABASE_URL": url,
        "REDIS_URL": redis_url,
        "STAFFGRAPH_AUTH": "keys",
        "STAFFGRAPH_RATE_LIMIT_PER_MINUTE": "6",
        "STAFFGRAPH_RATE_LIMIT_BURST": "20",
        "STAFFGRAPH_WORKERS": "0",
    }
    first = start_server(env=env)
    second = start_server(env=env)
    try:
        key = create_key(url, "shared")
        headers = {"x-api-key": key}
        allowed = 0
        with httpx.Client(headers=headers, timeout=30) as client:
            for server in (first, second):
                for _ in range(20):
                    response = client.post(f"{server.url}/threads/search", json={})
                    assert response.status_code in (200, 429), response.text
                    allowed += response.status_code == 200
            # one budget for both: the second server refuses what the first used up
            assert 20 <= allowed <= 23
            assert client.post(f"{second.url}/threads/search", json={}).status_code == 429
            assert client.post(f"{first.url}/threads/search", json={}).status_code == 429
    finally:
        first.stop()
        second.stop()


async def test_runs_at_once_are_limited_per_caller(
    limited: tuple[LiveServer, dict[str, str]],
) -> None:
    server, keys = limited
    busy, other = keys["busy"], keys["other"]
    async with _client(server, busy) as a, _client(server, other) as b:
        started = [(await a.post("/runs", json=SLOW)) for _ in range(2)]
        assert [r.status_code for r in started] == [200, 200]
        refused = await a.post("/runs", json=SLOW)
        _assert_429(refused, "concurrent_runs")
        assert "2" in refused.json()["detail"]
        # another caller's runs are their own
        theirs = await b.post("/runs", json=SLOW)
        assert theirs.status_code == 200, theirs.text
        # a run that ends frees its slot
        first = started[0].json()
        cancel = await a.post(
            f"/threads/{first['thread_id']}/runs/{first['run_id']}/cancel",
            params={"wait": "true"},
        )
        assert cancel.status_code in (200, 202, 204), cancel.text
        again = await a.post("/runs", json=SLOW)
        assert again.status_code == 200, again.text
        for response in (started[1], theirs, again):
            run: dict[str, Any] = response.json()
            client = a if response is not theirs else b
            await client.post(
                f"/threads/{run['thread_id']}/runs/{run['run_id']}/cancel",
                params={"wait": "true"},
            )


async def test_concurrent_creations_cannot_share_the_last_slots(
    limited: tuple[LiveServer, dict[str, str]],
) -> None:
    # The count and the creation are one statement under the caller's lock: of eight runs
    # asked for at once, exactly the two allowed are created.
    server, keys = limited
    async with _client(server, keys["racer"]) as client:
        answers = await asyncio.gather(*(client.post("/runs", json=SLOW) for _ in range(8)))
        assert sorted(r.status_code for r in answers) == [200] * 2 + [429] * 6
        for refused in (r for r in answers if r.status_code == 429):
            _assert_429(refused, "concurrent_runs")
        for created in (r.json() for r in answers if r.status_code == 200):
            await client.post(
                f"/threads/{created['thread_id']}/runs/{created['run_id']}/cancel",
                params={"wait": "true"},
            )


@pytest.mark.parametrize(
    ("user", "body", "field"),
    [
        ("m0", {"context": {"model": "openai:gpt-4o"}}, "body.context.model"),
        (
            "m1",
            {"config": {"configurable": {"model": "anthropic:claude-x"}}},
            "body.config.configurable.model",
        ),
        ("m2", {"context": {"model": 7}}, "body.context.model"),
    ],
)
async def test_a_run_choosing_a_model_outside_the_allowlist_is_422(
    limited: tuple[LiveServer, dict[str, str]], user: str, body: dict[str, Any], field: str
) -> None:
    server, keys = limited
    async with _client(server, keys[user]) as client:
        response = await client.post(
            "/runs/wait", json={"assistant_id": "simple", "input": {"messages": []}, **body}
        )
        assert response.status_code == 422, response.text
        detail = response.json()["detail"]
        assert detail.startswith(f"{field}: ")
        assert "allowed: offline" in detail and "STAFFGRAPH_ALLOWED_MODELS" in detail
        created = await client.post(
            "/assistants", json={"graph_id": "simple", **body, "name": "bad model"}
        )
        assert created.status_code == 422, created.text
        assert created.json()["detail"].startswith(f"{field}: ")
        cron = await client.post(
            "/runs/crons", json={"assistant_id": "simple", "schedule": "0 * * * *", **body}
        )
        assert cron.status_code == 422, cron.text
        assert cron.json()["detail"].startswith(f"{field}: ")


async def test_allowed_models_run(limited: tuple[LiveServer, dict[str, str]]) -> None:
    server, keys = limited
    async with _client(server, keys["modeller"]) as client:
        for model in ("offline", "auto"):
            response = await client.post(
                "/runs/wait",
                json={
                    "assistant_id": "simple",
                    "input": {"messages": [{"role": "user", "content": "hi"}]},
                    "context": {"model": model},
                },
            )
            assert response.status_code == 200, response.text
