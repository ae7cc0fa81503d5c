"""Who is calling: the :class:`Caller` every protected request resolves to, and key roles.

One identity model for custom auth (``langgraph_sdk.Auth``) and built-in API keys: both end in
a :class:`Caller` with an identity, permissions and the user object that authorization
handlers and graphs see. Graphs see it as the reference server hands it over: in the run's
``configurable`` as ``langgraph_auth_user`` (an object with attribute and mapping access),
``langgraph_auth_user_id`` and ``langgraph_auth_permissions``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from server.permissions import ADMIN, ROLE_PERMISSIONS, ROLES, SHARED_STORE, Role

__all__ = [
    "ADMIN",
    "user_fields",
    "AUTH_KEYS",
    "REQUEST_IDENTITY",
    "ROLES",
    "ROLE_PERMISSIONS",
    "SHARED_STORE",
    "AuthUser",
    "Caller",
    "Role",
    "run_identity",
    "strip_auth_keys",
]

REQUEST_IDENTITY: ContextVar[Mapping[str, Any] | None] = ContextVar(
    "staffgraph_request_identity", default=None
)
"""The ``langgraph_auth_*`` keys of the caller of the request being served (set by the route's
guard), so a run any route creates is the caller's even when it does not pass them."""

AUTH_KEYS = ("langgraph_auth_user", "langgraph_auth_user_id", "langgraph_auth_permissions")
"""The run ``configurable`` keys only the server may set."""


class AuthUser(dict[str, Any]):
    """The authenticated user as graphs and handlers see it: a mapping with attributes.

    A ``dict`` so that it serialises as plain JSON wherever LangGraph stores the run's config,
    with ``identity``, ``display_name``, ``is_authenticated`` and ``permissions`` readable as
    attributes too (``runtime.server_info.user.identity``), like the reference's user proxy.
    """

    @property
    def identity(self) -> str:
        """The user's unique id."""
        return str(self.get("identity", ""))

    @property
    def display_name(self) -> str:
        """A name to show; the identity when none was given."""
        return str(self.get("display_name") or self.identity)

    @property
    def is_authenticated(self) -> bool:
        """Whether the user is authenticated (true unless the authenticator said otherwise)."""
        return bool(self.get("is_authenticated", True))

    @property
    def permissions(self) -> Sequence[str]:
        """The user's permissions."""
        return list(self.get("permissions") or [])

    def __getattr__(self, name: str) -> Any:
        # Extra fields an authenticator returned are readable as attributes, as in the reference.
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


@dataclass(frozen=True)
class Caller:
    """The identity of one request."""

    identity: str
    """The user id; empty for the local operator of an unauthenticated loopback server."""
    permissions: tuple[str, ...] = ()
    user: Any = None
    """What authorization handlers get as ``ctx.user`` (an :class:`AuthUser` or the object a
    custom authenticator returned)."""
    enforced: bool = True
    """False for the local operator when auth is off: nothing is scoped."""
    fields: Mapping[str, Any] = field(default_factory=dict)
    """The user as JSON, stored with the run and handed to the graph."""
    key_id: str | None = None
    """The built-in API key the request was made with, if any."""

    @property
    def is_admin(self) -> bool:
        """Whether owner isolation is lifted for this caller."""
        return not self.enforced or ADMIN in self.permissions

    @property
    def may_write(self) -> bool:
        """Whether this caller may create, change, delete or run (a viewer key may not)."""
        return not self.enforced or "write" in self.permissions or ADMIN in self.permissions

    def stored(self) -> dict[str, Any]:
        """This identity as JSON, kept with something that acts later on the caller's behalf
        (a cron); :meth:`from_stored` reads it back."""
        return {
            "identity": self.identity,
            "permissions": list(self.permissions),
            "fields": dict(self.fields),
            "enforced": self.enforced,
            "key_id": self.key_id,
        }

    @classmethod
    def from_stored(cls, stored: Mapping[str, Any]) -> Caller:
        """The identity :meth:`stored` wrote (the user object becomes an :class:`AuthUser`)."""
        fields = dict(stored.get("fields") or {})
        return cls(
            identity=str(stored.get("identity") or ""),
            permissions=tuple(str(p) for p in stored.get("permissions") or ()),
            user=AuthUser(fields) if fields else None,
            enforced=bool(stored.get("enforced", True)),
            fields=fields,
            key_id=stored.get("key_id"),
        )

    def run_configurable(self) -> dict[str, Any]:
        """The ``langgraph_auth_*`` keys of a run this caller starts (the reference's shape)."""
        if not self.enforced:
            return {
                "langgraph_auth_user": None,
                "langgraph_auth_user_id": "",
                "langgraph_auth_permissions": [],
            }
        return {
            "langgraph_auth_user": dict(self.fields),
            "langgraph_auth_user_id": self.identity,
            "langgraph_auth_permissions": list(self.permissions),
        }


def user_fields(user: Any, identity: str, permissions: Sequence[str]) -> dict[str, Any]:
    """The JSON form of a user object (``identity``, ``display_name``, ``is_authenticated``,
    ``permissions`` and, for a mapping, its other JSON-safe fields)."""
    out: dict[str, Any] = {}
    if isinstance(user, Mapping):
        out.update({str(k): v for k, v in user.items() if _json_safe(v)})
    plain = not isinstance(user, Mapping)
    display = getattr(user, "display_name", None) if plain else None
    authenticated = getattr(user, "is_authenticated", True) if plain else None
    out["identity"] = identity
    out.setdefault("display_name", display if isinstance(display, str) else identity)
    out.setdefault("is_authenticated", authenticated if isinstance(authenticated, bool) else True)
    out["permissions"] = list(permissions)
    return out


def _json_safe(value: Any) -> bool:
    if value is None or isinstance(value, str | int | float | bool):
        return True
    if isinstance(value, list | tuple):
        return all(_json_safe(v) for v in value)
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and _json_safe(v) for k, v in value.items())
    return False


def strip_auth_keys(configurable: Mapping[str, Any]) -> dict[str, Any]:
    """``configurable`` without any ``langgraph_auth_*`` key a client supplied."""
    return {k: v for k, v in configurable.items() if not str(k).startswith("langgraph_auth")}


def run_identity(configurable: Mapping[str, Any]) -> dict[str, Any]:
    """``configurable`` of a run about to execute, with ``langgraph_auth_user`` as an object.

    The stored run holds the user as JSON; graphs read it as ``server_info.user.identity``
    (LangGraph builds ``server_info`` from this key when the value has an ``identity``).
    """
    user = configurable.get("langgraph_auth_user")
    if isinstance(user, Mapping) and not isinstance(user, AuthUser):
        return {**configurable, "langgraph_auth_user": AuthUser(user)}
    return dict(configurable)
