"""A ``runs/wait`` or ``join`` body that fails answers an error document, not a dropped
connection."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.routes._waiting import KEEPALIVE, JsonWaitResponse

FAILED = {"__error__": {"error": "InternalServerError", "message": "the wait for the run failed"}}


async def _fails_at_once() -> AsyncGenerator[bytes, None]:
    raise ConnectionError("postgres went away")
    yield b""  # pragma: no cover - makes this a generator


async def _fails_after_a_keepalive() -> AsyncGenerator[bytes, None]:
    yield KEEPALIVE
    raise ConnectionError("postgres went away")


def _app() -> Starlette:
    async def at_once(request: Request) -> Response:
        return JsonWaitResponse(_fails_at_once(), headers={})

    async def later(request: Request) -> Response:
        return JsonWaitResponse(_fails_after_a_keepalive(), headers={})

    return Starlette(routes=[Route("/at-once", at_once), Route("/later", later)])


async def test_a_body_that_fails_before_answering_answers_an_error_document() -> None:
    transport = httpx.ASGITransport(app=_app(), raise_app_exceptions=True)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        answer = await client.get("/at-once")
        assert (answer.status_code, answer.json()) == (200, FAILED)
        assert answer.headers["content-length"] == str(len(answer.content))


async def test_a_body_that_fails_after_a_keepalive_ends_with_an_error_document() -> None:
    transport = httpx.ASGITransport(app=_app(), raise_app_exceptions=True)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        answer = await client.get("/later")
        assert answer.status_code == 200
        assert answer.content.startswith(KEEPALIVE)
        assert answer.json() == FAILED  # JSON parsers skip the leading newline
