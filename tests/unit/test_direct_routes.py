"""Routes answered without FastAPI's dependency solver answer exactly as FastAPI would.

The same routes are served twice, by :class:`JsonRoute` (the direct handler) and by a route
class that keeps FastAPI's handler, and every request below must get the same status and body
from both: valid requests, every kind of bad body and parameter, a dependency that refuses,
and each of those together (which error wins depends on the order of the steps).
"""

from __future__ import annotations

from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Query, Request
from pydantic import BaseModel, Field
from starlette.responses import JSONResponse, Response

from server.errors import install_error_handlers
from server.json_body import BodyBudget, JsonRoute
from server.routes.runs import router as runs_router

SOLVER = "solver"
DIRECT = "direct"


class SolverRoute(JsonRoute):
    """The same route class, with FastAPI's handler only."""

    allow_direct = False


class Item(BaseModel):
    name: str = Field(max_length=10)
    count: int = Field(ge=0)
    tags: list[str] = []


async def who(request: Request) -> str:
    """A dependency of the request alone (as the runtime is)."""
    return request.headers.get("x-user", "nobody")


class Gate:
    """A dependency object (as the auth guard is): refuses when asked to."""

    async def __call__(self, request: Request) -> str:
        if "x-deny" in request.headers:
            raise HTTPException(403, detail="denied")
        return "allowed"


calls: list[str] = []


async def counted(request: Request) -> None:
    """A route-level dependency (no value, run for its effect)."""
    calls.append(request.url.path)


GATE = Gate()


def _router(route_class: type[JsonRoute]) -> APIRouter:
    # Annotations name module-level objects only: they are read as strings in module scope.
    router = APIRouter(route_class=route_class)

    @router.post("/items/{item_id}", dependencies=[Depends(counted)])
    async def put_item(
        item_id: str,
        body: Item,
        user: Annotated[str, Depends(who)],
        access: Annotated[str, Depends(GATE)],
    ) -> Response:
        return JSONResponse({"id": item_id, "body": body.model_dump(), "user": user, "a": access})

    @router.get("/things/{thing_id}")
    async def get_thing(
        thing_id: int,
        access: Annotated[str, Depends(GATE)],
        limit: int = Query(default=10, ge=1, le=100),
        select: Annotated[list[str] | None, Query(max_length=3)] = None,
        x_trace: Annotated[str | None, Header()] = None,
    ) -> Response:
        return JSONResponse({"id": thing_id, "limit": limit, "select": select, "trace": x_trace})

    @router.post("/notes")
    async def post_note(request: Request, body: Item | None = None) -> Response:
        return JSONResponse({"path": request.url.path, "body": body and body.model_dump()})

    return router


async def app_wide(request: Request) -> None:
    """An app-wide dependency (``FastAPI(dependencies=...)``)."""
    calls.append("app")


async def key_required(request: Request) -> None:
    """A dependency the router is included with: refuses a request without a key."""
    if "x-key" not in request.headers:
        raise HTTPException(401, detail="no key")


def _app(route_class: type[JsonRoute], *, included_with: bool = False) -> tuple[FastAPI, set[bool]]:
    """The app, and whether its routes are direct. ``included_with``: the app and the
    inclusion add dependencies of their own (which FastAPI adds to each route's view)."""
    app = FastAPI(dependencies=[Depends(app_wide)] if included_with else None)
    app.state.body_budget = BodyBudget(max_values=50, max_depth=4)
    install_error_handlers(app, redis=False)
    router = _router(route_class)
    app.include_router(router, dependencies=[Depends(key_required)] if included_with else None)
    return app, {route.direct for route in router.routes if isinstance(route, JsonRoute)}


JSON = {"content-type": "application/json"}
REQUESTS: list[tuple[str, str, dict[str, Any]]] = [
    ("valid", "POST /items/a1", {"json": {"name": "x", "count": 2}, "headers": {"x-user": "u"}}),
    ("extra fields kept out", "POST /items/a1", {"json": {"name": "x", "count": 0, "z": 1}}),
    ("wrong types", "POST /items/a1", {"json": {"name": 5, "count": -1, "tags": "t"}}),
    ("missing field", "POST /items/a1", {"json": {"name": "x"}}),
    ("not an object", "POST /items/a1", {"json": [1, 2]}),
    ("null body", "POST /items/a1", {"content": b"null", "headers": JSON}),
    ("no body", "POST /items/a1", {}),
    ("empty JSON body", "POST /items/a1", {"content": b"", "headers": JSON}),
    ("invalid JSON", "POST /items/a1", {"content": b'{"name": ', "headers": JSON}),
    (
        "text/plain body",
        "POST /items/a1",
        {"content": b"{}", "headers": {"content-type": "text/plain"}},
    ),
    ("form body", "POST /items/a1", {"data": {"name": "x", "count": "1"}}),
    (
        "json with charset",
        "POST /items/a1",
        {
            "content": b'{"name":"x","count":1}',
            "headers": {"content-type": "Application/JSON; charset=utf-8"},
        },
    ),
    (
        "vendor +json",
        "POST /items/a1",
        {
            "content": b'{"name":"x","count":1}',
            "headers": {"content-type": "application/vnd.x+json"},
        },
    ),
    *(
        (
            f"content type {kind!r}",
            "POST /items/a1",
            {"content": b'{"name":"x","count":1}', "headers": {"content-type": kind}},
        )
        for kind in ("application/a/b+json", "application/json/x", "")
    ),
    (
        "NUL in a value",
        "POST /items/a1",
        {"content": b'{"name":"a\\u0000","count":1}', "headers": JSON},
    ),
    ("too deep", "POST /items/a1", {"json": {"name": "x", "count": 1, "tags": [[[[["x"]]]]]}}),
    ("too many values", "POST /items/a1", {"json": {"name": "x", "count": 1, "tags": ["t"] * 80}}),
    (
        "huge integer",
        "POST /items/a1",
        {"content": b'{"name":"x","count":1' + b"0" * 30 + b"}", "headers": JSON},
    ),
    ("refused", "POST /items/a1", {"json": {"name": "x", "count": 1}, "headers": {"x-deny": "1"}}),
    (
        "refused, invalid JSON",
        "POST /items/a1",
        {"content": b"{", "headers": {**JSON, "x-deny": "1"}},
    ),
    (
        "refused, wrong types",
        "POST /items/a1",
        {"json": {"count": "many"}, "headers": {"x-deny": "1"}},
    ),
    (
        "refused, too deep",
        "POST /items/a1",
        {"json": {"tags": [[[[[[1]]]]]]}, "headers": {"x-deny": "1"}},
    ),
    (
        "query and header",
        "GET /things/7",
        {"params": {"limit": 5, "select": ["a", "b"]}, "headers": {"x-trace": "t1"}},
    ),
    ("defaults", "GET /things/7", {}),
    ("bad path and query", "GET /things/seven", {"params": {"limit": 0, "select": ["a"] * 4}}),
    ("bad query, refused", "GET /things/7", {"params": {"limit": "x"}, "headers": {"x-deny": "1"}}),
    ("optional body absent", "POST /notes", {}),
    ("optional body given", "POST /notes", {"json": {"name": "n", "count": 3}}),
    ("optional body wrong", "POST /notes", {"json": {"name": "n"}}),
]


async def _answers(
    app: FastAPI, headers: dict[str, str] | None = None
) -> list[tuple[int, Any, list[tuple[str, str]], list[str]]]:
    """Each request's status, body, response headers and the dependencies' calls."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    out = []
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        for _, line, kwargs in REQUESTS:
            method, path = line.split(" ", 1)
            calls.clear()
            sent = {**kwargs, "headers": {**(headers or {}), **kwargs.get("headers", {})}}
            response = await client.request(method, path, **sent)
            out.append(
                (response.status_code, response.json(), response.headers.multi_items(), list(calls))
            )
    return out


async def test_direct_routes_answer_as_fastapis_handler_does() -> None:
    (solver, solver_kinds), (direct, direct_kinds) = _app(SolverRoute), _app(JsonRoute)
    assert solver_kinds == {False}
    assert direct_kinds == {True}
    expected, got = await _answers(solver), await _answers(direct)
    for (name, line, _), want, have in zip(REQUESTS, expected, got, strict=True):
        assert have == want, f"{name} ({line})"
    # The cases cover each outcome: answered, refused by a dependency, invalid before or
    # after the dependencies ran.
    assert {answer[0] for answer in expected} == {200, 403, 413, 422}


@pytest.mark.parametrize("key", [True, False])
async def test_dependencies_of_the_app_and_the_inclusion_run_as_fastapi_runs_them(
    key: bool,
) -> None:
    (solver, _), (direct, direct_kinds) = (
        _app(SolverRoute, included_with=True),
        _app(JsonRoute, included_with=True),
    )
    assert direct_kinds == {True}
    headers = {"x-key": "k"} if key else {}
    expected, got = await _answers(solver, headers), await _answers(direct, headers)
    for (name, line, _), want, have in zip(REQUESTS, expected, got, strict=True):
        assert have == want, f"{name} ({line})"
    statuses = {answer[0] for answer in expected}
    assert (401 in statuses) is not key
    assert any("app" in answer[3] for answer in expected)


async def paged(request: Request, page: int = Query(1)) -> int:
    """A dependency with a parameter of its own."""
    return page


async def held(request: Request) -> Any:
    """A generator dependency (its exit runs after the response)."""
    yield "held"


other_shapes = APIRouter(route_class=JsonRoute)


@other_shapes.get("/a")
async def returns_a_model() -> dict[str, int]:  # serialised by a response model
    return {"a": 1}


@other_shapes.get("/b")
async def dependency_with_a_parameter(page: Annotated[int, Depends(paged)]) -> Response:
    return Response()


@other_shapes.get("/c")
async def generator_dependency(value: Annotated[Any, Depends(held)]) -> Response:
    return Response()


@other_shapes.get("/d")
def plain_function() -> Response:
    return Response()


def test_routes_of_other_shapes_keep_fastapis_handler() -> None:
    kinds = {r.path: r.direct for r in other_shapes.routes if isinstance(r, JsonRoute)}
    assert kinds == {"/a": False, "/b": False, "/c": False, "/d": False}


def test_the_run_routes_are_direct() -> None:
    direct = {
        (method, route.path)
        for route in runs_router.routes
        if isinstance(route, JsonRoute) and route.direct
        for method in route.methods
    }
    for path in ("/threads/{thread_id}/runs/wait", "/threads/{thread_id}/runs/stream"):
        assert ("POST", path) in direct
