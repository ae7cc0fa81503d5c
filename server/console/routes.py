"""``/ui``: the console's files, served with a strict Content-Security-Policy, and its reads.

The files are public (they hold no data; every piece of data comes from the API with the
caller's key). The reads under ``/ui/api`` each declare their own auth decision and return
only what the caller may see.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import FileResponse, Response

from server.auth import Access, protect, public
from server.auth.guard import policy_of
from server.console.inbox import inbox_items
from server.console.roles import instruction_history, role_history
from server.deps import Ctx
from server.routes._common import fail, json_response
from server.runtime import RuntimeDep

__all__ = ["CSP", "STATIC", "router"]

router = APIRouter(tags=["Console"], include_in_schema=False)

STATIC = Path(__file__).parent / "static"
"""The console's files (package data)."""

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
"""No inline script or style, nothing from another origin, never framed."""

_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}


@router.get("/ui", dependencies=[public()])
async def console_root() -> Response:
    """The console's page (also at ``/ui/``)."""
    return FileResponse(_asset("index.html"), media_type=_TYPES[".html"], headers=_HEADERS)


@router.get("/favicon.ico", dependencies=[public()])
async def favicon() -> Response:
    """The console's icon, also where browsers look for one by default."""
    return FileResponse(STATIC / "favicon.svg", media_type=_TYPES[".svg"], headers=_HEADERS)


@router.get("/ui/api/session", dependencies=[public()])
async def console_session(request: Request) -> Response:
    """Whether the console must ask for an API key (auth is on) before calling the API."""
    return json_response({"auth": policy_of(request).enabled})


@router.get("/ui/api/me")
async def console_me(access: Annotated[Access, protect("assistants", "read")]) -> Response:
    """Who the console is signed in as (the identity and permissions of the key)."""
    await access.check()
    caller = access.caller
    return json_response(
        {
            "identity": caller.identity,
            "permissions": list(caller.permissions),
            "auth": access.policy.enabled,
        }
    )


@router.get("/ui/api/inbox")
async def console_inbox(
    runtime: RuntimeDep,
    access: Annotated[Access, protect("threads", "search")],
    limit: Annotated[int, Query(ge=1, le=200)] = 100,
) -> Response:
    """Pending approvals across the caller's threads, and other owners' threads waiting for the
    caller's decision (an approver's), newest first (see ``server.console.inbox``)."""
    flt = await access.check({"metadata": {}, "status": "interrupted", "limit": limit})
    return json_response({"items": await inbox_items(runtime, access, flt, limit=limit)})


@router.get("/ui/api/roles")
async def console_roles(
    ctx: Ctx, access: Annotated[Access, protect("assistants", "read")]
) -> Response:
    """Every role with stored versions (each with its diff and the changes undoing it) and every
    instruction of the organisation's roles with its versions."""
    await access.check()
    store = ctx.persistence.store
    return json_response(
        {"roles": await role_history(store), "instructions": await instruction_history(store)}
    )


def _asset(path: str) -> Path:
    target = (STATIC / (path or "index.html")).resolve()
    if not target.is_relative_to(STATIC.resolve()) or not target.is_file():
        fail(404, f"No console file '{path[:200]}'")
    if target.suffix not in _TYPES:
        fail(404, f"No console file '{path[:200]}'")
    return target


@router.get("/ui/{path:path}", dependencies=[public()])
async def console_file(path: str) -> Any:
    """A console file: the page itself (``/ui/``) or its scripts and styles."""
    target = _asset(path)
    return FileResponse(target, media_type=_TYPES[target.suffix], headers=_HEADERS)
