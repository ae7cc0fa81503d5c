"""No request waits on a thread-pool hop that FastAPI adds on its own.

FastAPI runs a plain ``def`` endpoint or dependency in its thread pool: each call hands the
work to a worker thread and waits for it to come back, which costs a request more than the
small lookups our dependencies do (on a loaded 2-core machine, tenths of a millisecond and
CPU on both threads). Every endpoint and every dependency of every route must therefore be a
coroutine function, or an object whose ``__call__`` is one; so must every exception
handler (Starlette runs a plain ``def`` handler in the pool too).
"""

from __future__ import annotations

import inspect
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.routing import APIRoute, iter_route_contexts

from tests.support.auth.matrix import HERE, build_app


def _runs_in_thread_pool(call: Any) -> bool:
    # A coroutine or async generator function, or an object whose __call__ is one (Guard).
    method = getattr(call, "__call__", None)  # noqa: B004
    asynchronous = (inspect.iscoroutinefunction, inspect.isasyncgenfunction)
    return not any(test(f) for test in asynchronous for f in (call, method))


def hopping_calls(app: FastAPI) -> list[str]:
    """Each endpoint, dependency (``"METHODS path: name"``) or exception handler that FastAPI
    would run in a thread."""
    found: list[str] = []
    for context in iter_route_contexts(app.routes):
        if not isinstance(context.original_route, APIRoute):
            continue
        where = f"{sorted(context.methods or ())} {context.path}"
        pending = [context.dependant]
        while pending:
            dependant = pending.pop()
            call = dependant.call
            if call is not None and _runs_in_thread_pool(call):
                found.append(f"{where}: {getattr(call, '__qualname__', repr(call))}")
            pending.extend(dependant.dependencies)
    for exc, handler in app.exception_handlers.items():
        if _runs_in_thread_pool(handler):
            found.append(
                f"exception handler of {getattr(exc, '__name__', exc)}: {handler.__name__}"
            )
    return found


def test_no_route_runs_an_endpoint_or_dependency_in_the_thread_pool() -> None:
    app = build_app(HERE / "langgraph.json")
    assert sum(isinstance(c.original_route, APIRoute) for c in iter_route_contexts(app.routes)) > 40
    assert hopping_calls(app) == []


def test_a_plain_def_dependency_is_reported() -> None:
    app = build_app(HERE / "langgraph.json")

    def sync_lookup(request: Request) -> str:
        return str(request.url)

    @app.get("/hop")
    async def hop(value: str = Depends(sync_lookup)) -> str:
        return value

    assert hopping_calls(app) == [
        "['GET'] /hop: test_a_plain_def_dependency_is_reported.<locals>.sync_lookup"
    ]


def test_a_plain_def_exception_handler_is_reported() -> None:
    app = build_app(HERE / "langgraph.json")

    def teapot(request: Request, exc: Exception) -> None:
        return None

    app.add_exception_handler(LookupError, teapot)
    assert hopping_calls(app) == ["exception handler of LookupError: teapot"]
