"""Custom auth from langgraph.json ``auth.path``: a ``langgraph_sdk.Auth`` object, unchanged.

``@auth.authenticate`` runs on every protected request and may take, by name, any of
``request``, ``body``, ``path``, ``method``, ``path_params``, ``query_params``, ``headers``
(``dict[bytes, bytes]``) and ``authorization`` (the header, or ``None``). It returns a string
(the identity), a dict with ``identity`` (and optionally ``permissions``, ``display_name``,
``is_authenticated``, anything else) or an object with an ``identity`` attribute.
``Auth.exceptions.HTTPException`` becomes its status and ``{"detail": ...}`` body; any other
exception is logged and answered 401 (its message is not shown to the client).

Authorization picks the most specific handler: ``@auth.on.<resource>.<action>``, then
``@auth.on.<resource>``, then ``@auth.on(actions=...)``, then ``@auth.on``; without one the
request is allowed. The handler gets ``ctx`` (``Auth.types.AuthContext``: user, permissions,
resource, action) and the value the reference passes; it may change ``value`` (e.g. stamp
``value["metadata"]["owner"]`` on create). ``None``/``True`` allow, ``False`` is a 403, a dict is
a filter (:mod:`server.auth.filters`), ``Auth.exceptions.HTTPException`` its status, an
``AssertionError`` a 403.

LangGraph Studio sends ``x-auth-scheme: langsmith``. As ``langgraph dev`` does, such requests
are the Studio user (``Auth.types.StudioUser``) without calling ``authenticate`` — but only on a
loopback bind, since this server cannot verify a LangSmith login — unless
``auth.disable_studio_auth`` is true. Resource handlers still run for the Studio user.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import HTTPException, Request
from langgraph_sdk import Auth
from starlette.concurrency import run_in_threadpool

from server.auth.filters import Filter, check_filter
from server.auth.identity import AuthUser, Caller, user_fields
from server.auth.policy import unauthorized

__all__ = ["AUTHENTICATE_PARAMETERS", "CustomAuthError", "CustomPolicy"]

log = logging.getLogger(__name__)

AUTHENTICATE_PARAMETERS = frozenset(
    {"request", "body", "path", "method", "path_params", "query_params", "headers", "authorization"}
)
STUDIO_USER = "langgraph-studio-user"


class CustomAuthError(ValueError):
    """The ``auth.path`` object cannot be used; the message says why (shown at start-up)."""


def _parameters(fn: Callable[..., Any]) -> list[str]:
    names: list[str] = []
    for name, param in inspect.signature(fn).parameters.items():
        if param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
            continue
        if name not in AUTHENTICATE_PARAMETERS:
            if param.default is param.empty:
                raise CustomAuthError(
                    f"@auth.authenticate handler {fn.__name__} takes {name!r}; it may take "
                    f"{', '.join(sorted(AUTHENTICATE_PARAMETERS))}"
                )
            continue
        names.append(name)
    return names


class CustomPolicy:
    """A ``langgraph_sdk.Auth`` object as this server's policy."""

    enabled = True

    def __init__(self, auth: Any, *, studio_auth: bool) -> None:
        """Check the object.

        Args:
            auth: the object ``auth.path`` names.
            studio_auth: let LangGraph Studio in as the Studio user (loopback, and
                ``disable_studio_auth`` not set).

        Raises:
            CustomAuthError: not an ``Auth``, or it has no ``@auth.authenticate`` handler.
        """
        if not isinstance(auth, Auth):
            raise CustomAuthError(
                f"auth.path must name a langgraph_sdk.Auth instance, got {type(auth).__name__}"
            )
        fn = auth._authenticate_handler
        if fn is None:
            raise CustomAuthError(
                "the Auth object has no @auth.authenticate handler: add one that returns the "
                "caller's identity"
            )
        self._auth = auth
        self._fn: Callable[..., Awaitable[Any]] = (
            fn if inspect.iscoroutinefunction(fn) else _threaded(fn)
        )
        self._wants = _parameters(fn)
        self._studio = studio_auth

    async def authenticate(self, request: Request) -> Caller:
        """Run ``@auth.authenticate`` and turn what it returns into a :class:`Caller`."""
        if self._studio and request.headers.get("x-auth-scheme") == "langsmith":
            studio = Auth.types.StudioUser(STUDIO_USER)
            return Caller(
                identity=STUDIO_USER,
                user=studio,
                fields={**user_fields({}, STUDIO_USER, []), "kind": "StudioUser"},
            )
        arguments = {name: await _argument(name, request) for name in self._wants}
        try:
            result = await self._fn(**arguments)
        except Auth.exceptions.HTTPException as exc:
            raise HTTPException(
                exc.status_code, detail=_detail(exc.detail), headers=_headers(exc.headers)
            ) from None
        except Exception:
            log.exception("@auth.authenticate raised; answering 401")
            raise unauthorized("Authentication failed") from None
        return _caller(result)

    async def resume(self, stored: Mapping[str, Any]) -> Caller | None:
        """The stored user as it was authenticated (there is no credential to present again);
        the authorization handlers decide, each time, what it may still do."""
        if not stored.get("enforced", False) or not stored.get("identity"):
            return None  # stored without authentication: not this policy's user
        return Caller.from_stored(stored)

    async def authorize(
        self, caller: Caller, resource: str, action: str, value: dict[str, Any]
    ) -> Filter | None:
        """Run the most specific handler for ``(resource, action)``."""
        handler = self._handler(resource, action)
        if handler is None:
            return None
        ctx = Auth.types.AuthContext(
            permissions=list(caller.permissions),
            user=caller.user,
            resource=resource,  # type: ignore[arg-type]
            action=action,  # type: ignore[arg-type]
        )
        try:
            result = await handler(ctx=ctx, value=value)
        except Auth.exceptions.HTTPException as exc:
            raise HTTPException(
                exc.status_code, detail=_detail(exc.detail), headers=_headers(exc.headers)
            ) from None
        except AssertionError as exc:
            raise HTTPException(403, detail=str(exc) or "Forbidden") from None
        if result is None or result is True:
            return None
        if result is False:
            raise HTTPException(403, detail="Forbidden")
        return check_filter(result)

    def _handler(self, resource: str, action: str) -> Callable[..., Awaitable[Any]] | None:
        handlers: Mapping[tuple[str, str], list[Any]] = self._auth._handlers
        for key in ((resource, action), (resource, "*"), ("*", action), ("*", "*")):
            if key in handlers and handlers[key]:
                return handlers[key][-1]  # type: ignore[no-any-return,unused-ignore]
        found = self._auth._global_handlers
        return found[-1] if found else None


def _threaded(fn: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    async def call(**kwargs: Any) -> Any:
        return await run_in_threadpool(fn, **kwargs)

    return call


async def _argument(name: str, request: Request) -> Any:
    if name == "request":
        return request
    if name == "body":
        try:
            return await request.json()
        except ValueError:
            return None
    if name == "path":
        return request.url.path
    if name == "method":
        return request.method
    if name == "path_params":
        return dict(request.path_params)
    if name == "query_params":
        return dict(request.query_params)
    if name == "headers":
        return dict(request.headers.raw)
    return request.headers.get("authorization")


def _detail(detail: Any) -> str:
    return detail if isinstance(detail, str) else str(detail)


def _headers(headers: Mapping[str, str] | None) -> dict[str, str] | None:
    return dict(headers) if headers else None


def _caller(result: Any) -> Caller:
    """A :class:`Caller` from whatever ``authenticate`` returned.

    Raises:
        HTTPException: 500 when the result names no identity (a server configuration error).
    """
    identity: Any
    user: Any
    permissions: list[Any]
    if isinstance(result, str):
        identity, permissions, user = result, [], None
    elif isinstance(result, Mapping):
        identity = result.get("identity")
        permissions = list(result.get("permissions") or [])
        user = result
    else:
        identity = getattr(result, "identity", None)
        permissions = list(getattr(result, "permissions", None) or [])
        user = result
    if not isinstance(identity, str) or not identity:
        log.error("@auth.authenticate returned no identity: %s", type(result).__name__)
        raise HTTPException(500, detail="Auth handler returned a user without an identity")
    fields = user_fields(user, identity, permissions)
    from_handler = user if user is not None and not isinstance(user, Mapping) else None
    return Caller(
        identity=identity,
        permissions=tuple(str(p) for p in permissions),
        user=from_handler if from_handler is not None else AuthUser(fields),
        fields=fields,
    )
