"""The built-in key roles and what each may do.

A module of its own, outside :mod:`server.auth`, because ``staffgraph keys`` offers the roles
as choices before anything heavy is imported; :mod:`server.auth.identity` re-exports them.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["ADMIN", "ROLES", "ROLE_PERMISSIONS", "SHARED_STORE", "Role"]

Role = Literal["viewer", "member", "approver", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "member", "approver", "admin")

ADMIN = "admin"
"""The permission that lifts owner isolation (sees every owner's resources and usage)."""
SHARED_STORE = "store:shared"
"""The permission to read and write store namespaces that belong to no single user."""

ROLE_PERMISSIONS: dict[str, tuple[str, ...]] = {
    "viewer": ("read",),
    "member": ("read", "write"),
    "approver": ("read", "write", "approve", SHARED_STORE),
    "admin": ("read", "write", "approve", SHARED_STORE, ADMIN),
}
"""What each built-in key role may do; custom auth returns its own permissions."""
