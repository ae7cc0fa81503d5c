"""Error bodies: always JSON ``{"detail": ...}``, never a traceback or an internal message.

An unreachable Postgres or Redis is not a server error: the request is answered ``503`` with
``Retry-After``, quickly (the pool gives up on a connection after ``DATABASE_POOL_TIMEOUT``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from state.retry import TRANSIENT_ERRORS, is_transient, redis_transient_errors

__all__ = ["RETRY_AFTER_SECONDS", "install_error_handlers", "validation_detail"]

RETRY_AFTER_SECONDS = 2
"""What ``Retry-After`` says while a backing service is unreachable."""

log = logging.getLogger(__name__)


def _where(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        head, rest = parts[0], parts[1:]
        return f"{head}.{'.'.join(rest)}" if rest else head
    return ".".join(parts)


def validation_detail(errors: Sequence[Any]) -> str:
    """One readable line per problem: ``body.stream_mode: Input should be ...``."""
    return "; ".join(f"{_where(err.get('loc', ()))}: {err.get('msg', 'invalid')}" for err in errors)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": list(err.get("loc", ())), "msg": err.get("msg"), "type": err.get("type")}
        for err in exc.errors()
    ]
    return JSONResponse(
        status_code=422, content={"detail": validation_detail(exc.errors()), "errors": errors}
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    content: dict[str, Any] = {"detail": exc.detail}
    extra = getattr(exc, "extra", None)
    if isinstance(extra, dict):  # e.g. a 422's "errors", a 429's "limit" and "retry_after"
        content.update(extra)
    return JSONResponse(
        status_code=exc.status_code,
        content=content,
        headers=getattr(exc, "headers", None),
    )


def _unavailable() -> JSONResponse:
    return JSONResponse(
        status_code=503,
        content={"detail": "A backing service (Postgres or Redis) is unreachable; retry shortly."},
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


async def _unreachable(request: Request, exc: Exception) -> JSONResponse:
    if not is_transient(exc):  # e.g. a query timeout: an OperationalError, but not an outage
        return await _unexpected(request, exc)
    log.warning(
        "%s %s: backing service unreachable (%s: %s)",
        request.method,
        request.url.path,
        type(exc).__name__,
        exc,
    )
    return _unavailable()


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # Logged with the traceback for operators; the client gets a stable body with no internals.
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse(status_code=500, content={"detail": "Internal server error"})


def install_error_handlers(app: FastAPI, *, redis: bool = False) -> None:
    """Register the JSON error handlers on ``app``.

    Args:
        app: the application.
        redis: the server uses Redis (``REDIS_URL``): its connection errors answer ``503`` too.
    """
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    # Registered per class, not caught in the catch-all: Starlette re-raises what reaches the
    # ``Exception`` handler after answering, which drops the client's keep-alive connection.
    for transient in TRANSIENT_ERRORS + (redis_transient_errors() if redis else ()):
        app.add_exception_handler(transient, _unreachable)
    app.add_exception_handler(Exception, _unexpected)
