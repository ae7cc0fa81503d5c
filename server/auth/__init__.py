"""Authentication and authorization: custom auth, built-in API keys, owner isolation.

See :mod:`server.auth.guard` for how a route declares its decision and
:mod:`server.auth.policy` for the owner rules.
"""

from server.auth.custom import CustomAuthError, CustomPolicy
from server.auth.filters import Filter, filter_sql, matches
from server.auth.guard import (
    Access,
    Guard,
    RouteDecision,
    app_routes,
    protect,
    public,
    route_decision,
)
from server.auth.identity import ADMIN, ROLES, SHARED_STORE, AuthUser, Caller
from server.auth.keys import KeysRepo
from server.auth.policy import KeyPolicy, OpenPolicy, Policy

__all__ = [
    "ADMIN",
    "ROLES",
    "SHARED_STORE",
    "Access",
    "AuthUser",
    "Caller",
    "CustomAuthError",
    "CustomPolicy",
    "Filter",
    "Guard",
    "KeyPolicy",
    "KeysRepo",
    "OpenPolicy",
    "Policy",
    "RouteDecision",
    "app_routes",
    "filter_sql",
    "matches",
    "protect",
    "public",
    "route_decision",
]
