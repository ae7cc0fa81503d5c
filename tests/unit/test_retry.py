"""Bounded retries: only connection-level failures are retried, within the policy's bounds."""

from __future__ import annotations

import httpx
import psycopg
import pytest
import redis.exceptions
from fastapi import FastAPI
from psycopg_pool import PoolTimeout

from server.errors import install_error_handlers
from state.retry import RetryPolicy, is_transient, retrying
from tests.support.imports import modules_loaded_by


@pytest.mark.parametrize(
    "error",
    [
        psycopg.OperationalError("server closed the connection unexpectedly"),
        PoolTimeout("couldn't get a connection after 1.50 sec"),
        redis.exceptions.ConnectionError("Connection refused"),
        redis.exceptions.TimeoutError("Timeout reading from socket"),
        ConnectionResetError(),
    ],
)
def test_connection_failures_are_transient(error: Exception) -> None:
    assert is_transient(error)


@pytest.mark.parametrize(
    "error",
    [
        psycopg.errors.UniqueViolation("duplicate key"),
        psycopg.errors.QueryCanceled("canceling statement due to statement timeout"),
        ValueError("a bug"),
        KeyError("thread_id"),
    ],
)
def test_other_errors_are_not(error: Exception) -> None:
    assert not is_transient(error)


def test_policies_are_bounded() -> None:
    assert len(RetryPolicy(attempts=4).delays()) == 3
    deadline = RetryPolicy(first_delay=0.1, max_delay=2.0, deadline=10.0).delays()
    assert sum(deadline[:-1]) < 10.0 <= sum(deadline) < 10.0 + 2.0 * 1.2
    assert max(deadline) <= 2.0 * 1.2  # capped, with at most 20 % jitter


async def test_retrying_gets_past_a_restart_and_gives_up_on_anything_else() -> None:
    calls: list[int] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise psycopg.OperationalError("the database system is starting up")
        return "ok"

    fast = RetryPolicy(attempts=5, first_delay=0.001)
    assert await retrying(flaky, what="a flaky read", policy=fast) == "ok"
    assert len(calls) == 3

    async def broken() -> str:
        calls.append(1)
        raise ValueError("a bug")

    calls.clear()
    with pytest.raises(ValueError):
        await retrying(broken, what="a broken read", policy=fast)
    assert calls == [1]

    async def down() -> str:
        calls.append(1)
        raise PoolTimeout("no connection")

    calls.clear()
    with pytest.raises(PoolTimeout):
        await retrying(down, what="a read while down", policy=fast)
    assert len(calls) == 5


def test_starting_the_server_imports_no_redis() -> None:
    # A server without REDIS_URL never needs redis; importing it cost a fifth of the server's
    # own start-up imports (state.retry and server.errors imported it for its error classes).
    assert modules_loaded_by("import server.cli, server.app", ["redis"]) == []


@pytest.mark.parametrize(
    "error",
    [redis.exceptions.ConnectionError("Connection refused"), psycopg.OperationalError("gone")],
)
async def test_an_unreachable_backing_service_answers_503(error: Exception) -> None:
    app = FastAPI()
    install_error_handlers(app, redis=True)

    @app.get("/fails")
    async def fails() -> None:
        raise error

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/fails")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "2"
    assert "unreachable" in response.json()["detail"]
