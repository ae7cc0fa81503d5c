"""Auth policies: how a request is authenticated and what a caller may see and do.

Three policies, one interface (:class:`Policy`), chosen at start-up:

* :class:`OpenPolicy` — ``STAFFGRAPH_AUTH=none`` (loopback binds only): the local operator,
  nothing scoped.
* :class:`KeyPolicy` — ``STAFFGRAPH_AUTH=keys``: built-in API keys and the built-in owner
  rules below.
* :class:`server.auth.custom.CustomPolicy` — ``auth.path`` in langgraph.json: the user's
  ``langgraph_sdk.Auth`` handlers decide.

Authorization answers as a LangGraph handler does: ``None`` (allowed, unscoped), a filter on
the resource's metadata (allowed, only matching resources are visible), or an exception (403).
The built-in owner rules are written as such a handler, so isolation works one way whichever
policy produced the filter: on create the caller's identity is stamped as
``metadata.owner``; everything else is filtered to ``{"owner": <identity>}`` (system assistants,
``metadata.created_by == "system"``, are readable by everyone); ``admin`` keys are unscoped;
``viewer`` keys may only read. For the store a filter means "only the caller's own
namespaces" (:mod:`server.auth.store_scope`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from fastapi import HTTPException, Request

from server.auth.filters import Filter
from server.auth.identity import Caller
from server.auth.keys import KeyCache, KeysRepo

__all__ = ["KeyPolicy", "OpenPolicy", "Policy", "owner_rules", "unauthorized"]

_OWNED = ("threads", "assistants", "crons")
_WRITES = frozenset({"create", "update", "delete", "create_run", "put"})
_LOCAL = Caller(identity="", enforced=False)


def unauthorized(detail: str) -> HTTPException:
    """A 401 with ``{"detail": detail}`` and the ``WWW-Authenticate`` challenge."""
    return HTTPException(401, detail=detail, headers={"WWW-Authenticate": "Bearer"})


class Policy(Protocol):
    """What the guards of every route ask."""

    enabled: bool
    """False when nothing is authenticated (the local operator on a loopback bind)."""

    async def authenticate(self, request: Request) -> Caller:
        """The caller, or an ``HTTPException`` (401/403) saying why not."""
        ...

    async def authorize(
        self, caller: Caller, resource: str, action: str, value: dict[str, Any]
    ) -> Filter | None:
        """Allow (``None`` or a filter, possibly after changing ``value``) or raise 403."""
        ...

    async def resume(self, stored: Mapping[str, Any]) -> Caller | None:
        """The caller a stored identity (:meth:`Caller.stored`) stands for now, or ``None``
        when it may no longer act (its key was revoked; it was stored under another policy).

        Used for work done later on a caller's behalf (a cron's runs); what the caller may
        do is then asked of :meth:`authorize` as for a request.
        """
        ...


class OpenPolicy:
    """No authentication: every request is the local operator (loopback binds only)."""

    enabled = False

    async def authenticate(self, request: Request) -> Caller:
        """Always the local operator."""
        return _LOCAL

    async def authorize(
        self, caller: Caller, resource: str, action: str, value: dict[str, Any]
    ) -> Filter | None:
        """Everything is allowed and nothing is scoped."""
        return None

    async def resume(self, stored: Mapping[str, Any]) -> Caller | None:
        """Always the local operator."""
        return _LOCAL


def _presented_key(request: Request) -> str | None:
    key = request.headers.get("x-api-key")
    if key:
        return key.strip()
    scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


class KeyPolicy:
    """Built-in API keys (``x-api-key`` or ``Authorization: Bearer``) and the owner rules."""

    enabled = True

    def __init__(self) -> None:
        self._keys: KeyCache | None = None
        self._repo: KeysRepo | None = None

    async def start(self, keys: KeysRepo, database_url: str) -> None:
        """Use ``keys`` (the lifespan opens the pool after the app is built)."""
        self._repo = keys
        self._keys = KeyCache(keys, database_url)
        self._keys.start()

    async def stop(self) -> None:
        """Stop hearing key revocations."""
        if self._keys is not None:
            await self._keys.stop()

    async def authenticate(self, request: Request) -> Caller:
        """The key's user; 401 when the key is missing, malformed, unknown or revoked."""
        key = _presented_key(request)
        if key is None:
            raise unauthorized(
                "Missing API key: send it in the x-api-key header or as Authorization: Bearer"
            )
        if self._keys is None:  # only before the lifespan ran
            raise HTTPException(503, detail="Server is starting")
        found = await self._keys.verify(key[:200])
        if found is None:
            raise unauthorized("Invalid API key")
        return found.caller()

    async def authorize(
        self, caller: Caller, resource: str, action: str, value: dict[str, Any]
    ) -> Filter | None:
        """The built-in owner rules (see the module docstring)."""
        return owner_rules(caller, resource, action, value)

    async def resume(self, stored: Mapping[str, Any]) -> Caller | None:
        """The stored key's user, read from Postgres now: ``None`` once it is revoked."""
        key_id = stored.get("key_id")
        if not isinstance(key_id, str) or self._repo is None:
            return None
        key = await self._repo.live(key_id)
        if key is None or key.user_id != stored.get("identity"):
            return None
        return key.caller()


def owner_rules(caller: Caller, resource: str, action: str, value: dict[str, Any]) -> Filter | None:
    """The built-in authorization handler.

    Raises:
        HTTPException: 403 when a read-only caller tries to change something.
    """
    if not caller.enforced:
        return None
    if action in _WRITES and not caller.may_write:
        raise HTTPException(403, detail="This key may only read (role viewer)")
    if resource in _OWNED:
        metadata = value.get("metadata")
        if action == "create":
            stamped = dict(metadata or {})
            if resource == "assistants" and stamped.get("created_by") == "system":
                del stamped["created_by"]  # only the server makes system assistants
            stamped["owner"] = caller.identity
            value["metadata"] = stamped
            return None
        if action == "update" and isinstance(metadata, dict):
            metadata.pop("owner", None)  # ownership is not transferable by a patch
    if caller.is_admin:
        return None
    mine: Filter = {"owner": caller.identity}
    if resource == "assistants" and action in ("read", "search"):
        return {"$or": [mine, {"created_by": "system"}]}
    return mine
