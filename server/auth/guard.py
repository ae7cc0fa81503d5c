"""Every route's auth decision, as a FastAPI dependency the route table can be checked for.

A route declares exactly one decision:

* ``access: Annotated[Access, protect("threads", "read")]`` — the caller must authenticate;
  the route then asks :meth:`Access.check` (with the value the LangGraph handler expects) and
  applies the filter it returns. ``resource``/``action`` are LangGraph's (threads, assistants,
  crons, store, runs; create, read, update, delete, search, create_run; store: put, get,
  search, delete, list_namespaces).
* ``dependencies=[public()]`` — open to anyone (``/ok``, ``/info``; ``/metrics`` and ``/docs``
  when configured open).

``tests/integration/server/test_isolation.py`` walks ``app.routes`` and fails for a route with
no decision, then drives every protected route as another user and as nobody.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.routing import APIRoute, iter_route_contexts

from server.auth.filters import Filter, matches
from server.auth.identity import REQUEST_IDENTITY, SHARED_STORE, Caller
from server.auth.policy import OpenPolicy, Policy
from server.limits import RateLimiter, rate_exceeded
from state.roles.approvals import ApprovalPolicy

__all__ = [
    "Access",
    "Guard",
    "RouteDecision",
    "app_routes",
    "forbid",
    "open_if",
    "policy_of",
    "protect",
    "public",
    "route_decision",
]

_OPEN = OpenPolicy()


def policy_of(request: Request) -> Policy:
    """The app's policy (``app.state.auth_policy``; no auth when the app has none)."""
    policy: Policy | None = getattr(request.app.state, "auth_policy", None)
    return policy if policy is not None else _OPEN


@dataclass
class Access:
    """An authenticated caller on one route, and the questions the route asks about them."""

    caller: Caller
    policy: Policy
    resource: str
    action: str
    approvals: ApprovalPolicy = field(default_factory=ApprovalPolicy)
    """Who may decide at each approval gate (the organisation's ``approvals:``)."""

    async def check(
        self,
        value: dict[str, Any] | None = None,
        *,
        resource: str | None = None,
        action: str | None = None,
    ) -> Filter | None:
        """Authorize this request (or another ``resource``/``action`` it also performs).

        Returns:
            ``None`` (unscoped) or the filter the caller's resources must match; ``value`` may
            have been changed by the handler (e.g. metadata stamped with the owner).

        Raises:
            HTTPException: 403 (or the handler's status) when the caller may not.
        """
        return await self.policy.authorize(
            self.caller, resource or self.resource, action or self.action, value or {}
        )

    async def visible(
        self,
        metadata: Any,
        value: dict[str, Any] | None = None,
        *,
        resource: str | None = None,
        action: str | None = None,
    ) -> bool:
        """Authorize and say whether a resource with ``metadata`` is visible to the caller."""
        return matches(await self.check(value, resource=resource, action=action), metadata)

    @property
    def shared_store(self) -> bool:
        """Whether the caller may use shared store namespaces."""
        return self.caller.is_admin or SHARED_STORE in self.caller.permissions


class Guard:
    """The auth decision of a route (called by FastAPI on each request)."""

    def __init__(
        self,
        resource: str | None,
        action: str | None,
        *,
        open_setting: str | None = None,
        limited: bool = True,
    ) -> None:
        self.resource = resource
        self.action = action
        self.open_setting = open_setting
        self.limited = limited
        """Whether the caller's request rate is limited (not for health routes)."""

    @property
    def is_public(self) -> bool:
        """Whether the route is open to anyone whatever the settings."""
        return self.resource is None and self.open_setting is None

    def __repr__(self) -> str:
        if self.open_setting is not None:
            return f"open_if({self.open_setting!r})"
        return "public" if self.is_public else f"protect({self.resource!r}, {self.action!r})"

    def _open(self, request: Request) -> bool:
        if self.open_setting is None:
            return self.is_public
        ctx = getattr(request.app.state, "ctx", None)
        settings = getattr(ctx, "settings", None) or getattr(request.app.state, "settings", None)
        return bool(getattr(getattr(settings, "server", None), self.open_setting, False))

    async def __call__(self, request: Request) -> Access:
        policy = policy_of(request)
        if self._open(request):
            if self.limited:
                await _count_request(request, None)
            return Access(caller=Caller("", enforced=False), policy=_OPEN, resource="", action="")
        caller: Caller | None = getattr(request.state, "caller", None)
        if caller is None:
            caller = await policy.authenticate(request)
            request.state.caller = caller
            REQUEST_IDENTITY.set(caller.run_configurable())
        if self.limited:
            await _count_request(request, caller)
        approvals = getattr(request.app.state, "approvals", None)
        return Access(
            caller=caller,
            policy=policy,
            resource=self.resource or "",
            action=self.action or "",
            approvals=approvals if isinstance(approvals, ApprovalPolicy) else ApprovalPolicy(),
        )


async def _count_request(request: Request, caller: Caller | None) -> None:
    """Count the request against its caller's rate (429 when over it; once per request)."""
    limiter: RateLimiter | None = getattr(request.app.state, "rate_limiter", None)
    if limiter is None or getattr(request.state, "rate_counted", False):
        return
    request.state.rate_counted = True
    if caller is not None and caller.enforced and caller.identity:
        key = f"id:{caller.identity}"
    else:  # nobody authenticated: the client address is the caller
        key = f"addr:{request.client.host if request.client else '-'}"
    wait = await limiter.hit(key)
    if wait > 0:
        raise rate_exceeded(request.app.state.settings.limits, wait)


def protect(resource: str, action: str) -> Any:
    """The decision "authenticate, then authorize ``resource``/``action``"."""
    return Depends(Guard(resource, action))


def public(*, limited: bool = True) -> Any:
    """The decision "open to anyone" (``limited=False``: not rate-limited, for health routes)."""
    return Depends(Guard(None, None, limited=limited))


def open_if(setting: str, *, limited: bool = True) -> Any:
    """The decision "open when ``settings.server.<setting>`` is true, else authenticated"."""
    return Depends(Guard(None, None, open_setting=setting, limited=limited))


@dataclass(frozen=True)
class RouteDecision:
    """One route of the app and the auth decisions it declares."""

    methods: frozenset[str]
    path: str
    guards: tuple[Guard, ...]
    api_route: bool
    """False for a route FastAPI did not build (a mounted app, a plain Starlette route)."""


def route_decision(route: Any) -> list[Guard]:
    """The decisions a route (or an included route's context) declares."""
    found: list[Guard] = []
    root = getattr(route, "dependant", None)
    pending = list(root.dependencies) if root is not None else []
    while pending:
        dependant = pending.pop()
        if isinstance(dependant.call, Guard):
            found.append(dependant.call)
        pending.extend(dependant.dependencies)
    return found


def app_routes(app: FastAPI) -> list[RouteDecision]:
    """Every route the app serves (included routers flattened) with its decisions."""
    out = []
    for context in iter_route_contexts(app.routes):
        api = isinstance(context.original_route, APIRoute)
        out.append(
            RouteDecision(
                methods=frozenset(context.methods or ()),
                path=str(context.path),
                guards=tuple(route_decision(context)) if api else (),
                api_route=api,
            )
        )
    return out


def forbid(detail: str) -> HTTPException:
    """A 403 with ``{"detail": detail}``."""
    return HTTPException(403, detail=detail)
