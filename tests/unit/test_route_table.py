"""The app finds a request's route in one table, not through routers FastAPI searches twice."""

from __future__ import annotations

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import Mount, Route

from server.app import add_routes
from server.routes import runs
from tests.support.auth.matrix import HERE, build_app


def test_every_route_is_in_the_apps_own_table() -> None:
    app = build_app(HERE / "langgraph.json")
    entries = app.router.routes
    # An included router is one entry of another kind, searched route by route on each request.
    assert [r for r in entries if not isinstance(r, (APIRoute, Route, Mount))] == []
    wait = [r for r in entries if getattr(r, "path", "") == "/threads/{thread_id}/runs/wait"]
    assert len(wait) == 1 and isinstance(wait[0], APIRoute)
    # The routers' nested routers (stateless runs inside runs) came along, once each.
    paths = [(sorted(r.methods or ()), r.path) for r in entries if isinstance(r, APIRoute)]
    assert (["POST"], "/runs/wait") in paths
    assert len(paths) == len({(tuple(m), p) for m, p in paths})


def test_a_router_keeps_its_routes_order_and_nested_routers() -> None:
    app = FastAPI()
    add_routes(app, runs.router)
    expected = [c.path for c in iter_route_contexts(runs.router.routes)]
    assert [r.path for r in app.router.routes if isinstance(r, APIRoute)] == expected


def test_a_router_included_with_a_prefix_is_refused() -> None:
    inner = APIRouter()

    @inner.get("/items")
    async def items() -> list[str]:
        return []

    outer = APIRouter()
    outer.include_router(inner, prefix="/v2")
    with pytest.raises(ValueError, match="/v2/items"):
        add_routes(FastAPI(), outer)
