"""Route handlers that skip FastAPI's generic dependency solver where a route's shape allows.

For every request FastAPI's handler reads the body, then solves the route's dependency tree
with a general solver (a cache keyed per dependency and security scopes, exit stacks for
generator dependencies, thread-pool hops for plain functions, a sub-response collecting
headers, background tasks), validates the parameters and the body, calls the endpoint, and
wraps each step in telemetry hooks. Most of this API's routes use none of that generality:
their dependencies are ``async`` callables taking only the request (the runtime, the auth
decision of :mod:`server.auth.guard`) and the endpoint returns a ``Response``. For such a
route :func:`direct_handler` does the same steps in the same order, with FastAPI's own
functions for validation, so answers and errors are the same: the body read and parsed
(invalid JSON is FastAPI's 422 ``json_invalid``, raised before any dependency runs), each
dependency called in declaration order, then path, query, header and cookie parameters and
the body validated (``request_params_to_args`` and ``request_body_to_args``), every error in
one ``RequestValidationError``, then the endpoint.

A run through the bench's ``runs/wait`` makes 6% fewer function calls this way
(``bench/calls_bench.py``: 5,073 against 5,418). Routes of other shapes, requests that
FastAPI's own telemetry observes, apps with dependency overrides and routes with FastAPI's
own body limit or lax content types get FastAPI's handler.
``tests/unit/test_direct_routes.py`` answers the same requests both ways and compares.
"""

from __future__ import annotations

import email.message
import inspect
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import params, routing
from fastapi.datastructures import DefaultPlaceholder
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import (
    get_typed_return_annotation,
    request_body_to_args,
    request_params_to_args,
)
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic_core import PydanticUndefined
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

__all__ = ["Handler", "direct_handler"]

Handler = Callable[[Request], Awaitable[Response]]
"""A route's request handler (what ``APIRoute.get_route_handler`` returns)."""

_TELEMETRY_KEY = "fastapi.telemetry"
"""The scope key FastAPI's native telemetry sets on a request it observes."""


@dataclass(frozen=True)
class _Dependency:
    """A dependency called with the request alone: its value's name (``None`` for a route's
    ``dependencies=[...]``), the callable, and the name of its request parameter."""

    name: str | None
    call: Callable[..., Awaitable[Any]]
    request_param: str | None


@dataclass(frozen=True)
class _Plan:
    """What a direct handler does for one route."""

    dependant: Dependant
    dependencies: tuple[_Dependency, ...]
    parameters: tuple[tuple[list[Any], str], ...]
    """The route's parameters of each kind it has, with the request attribute holding them
    (only those are read: the request builds its query, headers and cookies on first use)."""
    has_body: bool


def _awaitable_call(call: Any) -> bool:
    """Whether calling ``call`` returns a coroutine (a coroutine function, or an object whose
    ``__call__`` is one), the only dependencies awaited here; not a wrapper of a generator,
    which FastAPI enters as one."""
    if inspect.isroutine(call):
        unwrapped = inspect.unwrap(call)
        generator = inspect.isgeneratorfunction(unwrapped) or inspect.isasyncgenfunction(unwrapped)
        return inspect.iscoroutinefunction(call) and not generator
    if inspect.isclass(call):
        return False
    return callable(call) and inspect.iscoroutinefunction(type(call).__call__)


def _returns_response(call: Any) -> bool:
    """Whether ``call`` is declared to return a ``Response`` (which FastAPI sends as it is)."""
    try:
        returned = get_typed_return_annotation(call)
    except Exception:  # an annotation that does not resolve: FastAPI's handler decides
        return False
    return inspect.isclass(returned) and issubclass(returned, Response)


def _special_parameters(dependant: Dependant) -> bool:
    """Whether ``dependant`` takes a parameter FastAPI fills from the request's machinery
    (a websocket, a connection, the sub-response, background tasks, security scopes)."""
    return any(
        name is not None
        for name in (
            dependant.websocket_param_name,
            dependant.http_connection_param_name,
            dependant.response_param_name,
            dependant.background_tasks_param_name,
            dependant.security_scopes_param_name,
        )
    )


def _request_only(dependant: Dependant) -> _Dependency | None:
    """A dependency that takes nothing but the request, or ``None``."""
    call = dependant.call
    if (
        call is None
        or dependant.dependencies
        or dependant.path_params
        or dependant.query_params
        or dependant.header_params
        or dependant.cookie_params
        or dependant.body_params
        or _special_parameters(dependant)
        or dependant.own_oauth_scopes
        or dependant.concurrency is not None
        or not _awaitable_call(call)
    ):
        return None
    return _Dependency(dependant.name, call, dependant.request_param_name)


def _effective(route: APIRoute) -> Any:
    """What FastAPI builds ``route``'s handler from: the route, or, while ``include_router``
    builds it for one inclusion, that inclusion's view of it (with the dependencies and the
    dependency-overrides provider of the router and the app it was included in)."""
    context_var = getattr(routing, "_effective_route_context_var", None)
    context = context_var.get() if context_var is not None else None
    if context is not None and getattr(context, "original_route", None) is route:
        return context
    return route


def _default_of(value: Any) -> Any:
    """A route setting's value, whether given or left to its default."""
    return value.value if isinstance(value, DefaultPlaceholder) else value


def _plan(route: Any) -> _Plan | None:
    """The direct plan of ``route`` (or of its inclusion's view), or ``None`` when it needs
    FastAPI's solver."""
    dependant = route.dependant
    if (
        _default_of(getattr(route, "strict_content_type", True)) is not True
        or getattr(route, "max_body_size", None) is not None  # FastAPI's own body limit
        or route.response_field is not None  # the endpoint's value is serialised by a model
        or not _awaitable_call(dependant.call)
        or not _returns_response(dependant.call)
        or _special_parameters(dependant)
        or len(dependant.body_params) > 1
    ):
        return None
    for field in dependant.body_params:
        info = field.field_info
        if isinstance(info, params.Form) or getattr(info, "embed", False):
            return None
    dependencies = []
    for sub in dependant.dependencies:
        dependency = _request_only(sub)
        if dependency is None:
            return None
        dependencies.append(dependency)
    if len({id(d.call) for d in dependencies}) < len(dependencies):
        return None  # FastAPI would call a repeated dependency once and share its value
    kinds = (
        (dependant.path_params, "path_params"),
        (dependant.query_params, "query_params"),
        (dependant.header_params, "headers"),
        (dependant.cookie_params, "cookies"),
    )
    parameters = tuple((fields, where) for fields, where in kinds if fields)
    return _Plan(dependant, tuple(dependencies), parameters, bool(dependant.body_params))


def _is_json(content_type: str | None) -> bool:
    """Whether FastAPI reads a body of this ``Content-Type`` as JSON: by the email package's
    reading of the header, as FastAPI reads it (``application/a/b+json`` is not JSON to it),
    with the header the request gate writes answered first."""
    if not content_type:
        return False
    if content_type == "application/json":
        return True
    message = email.message.Message()
    message["content-type"] = content_type
    if message.get_content_maintype() != "application":
        return False
    subtype = message.get_content_subtype()
    return subtype == "json" or subtype.endswith("+json")


async def _read_body(request: Request) -> Any:
    """The body as FastAPI's handler reads it: JSON when its ``Content-Type`` says so, its
    bytes otherwise, ``PydanticUndefined`` when empty."""
    try:
        body_bytes = await request.body()
        if not body_bytes:
            return PydanticUndefined
        if _is_json(request.headers.get("content-type")):
            return await request.json()
        return body_bytes
    except json.JSONDecodeError as exc:
        raise RequestValidationError(
            [
                {
                    "type": "json_invalid",
                    "loc": ("body", exc.pos),
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": exc.msg},
                }
            ],
            body=exc.doc,
        ) from exc
    except HTTPException:
        raise
    except Exception as exc:
        raise HTTPException(400, detail="There was an error parsing the body") from exc


def direct_handler(route: APIRoute, fallback: Handler) -> Handler | None:
    """A handler for ``route`` that calls its dependencies and endpoint directly, or ``None``
    when the route's shape needs FastAPI's solver (see the module).

    Args:
        route: the route (its dependant and response field already built); while
            ``include_router`` builds it, the inclusion's view of it is planned.
        fallback: FastAPI's handler for the route, for the requests FastAPI's telemetry
            observes (it records each step) and for an app with dependency overrides.
    """
    effective = _effective(route)
    plan = _plan(effective)
    if plan is None:
        return None
    dependant = plan.dependant
    endpoint = dependant.call
    assert endpoint is not None
    overrides = effective.dependency_overrides_provider

    async def handle(request: Request) -> Response:
        if request.scope.get(_TELEMETRY_KEY) is not None or (
            overrides is not None and getattr(overrides, "dependency_overrides", None)
        ):
            return await fallback(request)
        body = await _read_body(request) if plan.has_body else PydanticUndefined
        values: dict[str, Any] = {}
        for dependency in plan.dependencies:
            if dependency.request_param is None:
                solved = await dependency.call()
            else:
                solved = await dependency.call(**{dependency.request_param: request})
            if dependency.name is not None:
                values[dependency.name] = solved
        errors: list[Any] = []
        for fields, where in plan.parameters:
            found, wrong = request_params_to_args(fields, getattr(request, where))
            values.update(found)
            errors += wrong
        if plan.has_body:
            found, wrong = await request_body_to_args(
                body_fields=dependant.body_params, received_body=body, embed_body_fields=False
            )
            values.update(found)
            errors += wrong
        if errors:
            raise RequestValidationError(errors, body=None if body is PydanticUndefined else body)
        if dependant.request_param_name is not None:
            values[dependant.request_param_name] = request
        response: Response = await endpoint(**values)
        return response

    return handle
