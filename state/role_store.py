"""Versioned role definitions kept in LangGraph's long-term store.

Governance changes a role by adding a new version, never by editing its YAML file: the
YAML is version 0, each approved change is stored as the next version in namespace
``("staffgraph", "roles", <role>)`` under the change's id. Because the key is the change id, a
change applied twice (a node re-run after a crash or a resume) is stored once. Version
numbers follow the order in which the store created the items, so concurrent changes never
overwrite each other.

Any ``BaseStore`` works: ``AsyncPostgresStore`` in the server (the versions live in Postgres),
the in-memory store under ``langgraph dev``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from langgraph.store.base import BaseStore, Item
from typing_extensions import TypedDict

from state.roles import Organization, Role, validate_organization
from state.tool_risk import ToolCatalog

__all__ = ["NAMESPACE", "RoleStore", "RoleVersion"]

NAMESPACE = ("staffgraph", "roles")
"""Where role versions live in the store (one sub-namespace per role)."""

_PAGE = 100
_MAX_VERSIONS = 10_000


class RoleVersion(TypedDict):
    """One stored version of a role."""

    role: str
    version: int
    """1 for the first stored change (the YAML definition is version 0)."""
    change_id: str
    """The governance change that produced it; also its key in the store."""
    base_version: int
    """The version the change was made against."""
    summary: str
    definition: dict[str, Any]
    """The whole role, as ``Role.model_dump(mode="json")``."""
    created_at: str


class RoleStore:
    """Read and add role versions in a LangGraph store."""

    def __init__(self, store: BaseStore, *, namespace: tuple[str, ...] = NAMESPACE) -> None:
        """Wrap ``store``; versions go under ``namespace + (role,)``."""
        self.store = store
        self.namespace = namespace

    def _ns(self, role_name: str) -> tuple[str, ...]:
        return (*self.namespace, role_name)

    async def versions(self, role_name: str) -> list[RoleVersion]:
        """Return the stored versions of a role, oldest first (empty when only the YAML exists).

        Raises:
            RuntimeError: The role has more than 10 000 stored versions.
        """
        items: list[Item] = []
        while True:
            page = await self.store.asearch(self._ns(role_name), limit=_PAGE, offset=len(items))
            items.extend(item for item in page if tuple(item.namespace) == self._ns(role_name))
            if len(page) < _PAGE:
                break
            if len(items) >= _MAX_VERSIONS:
                raise RuntimeError(
                    f"Role '{role_name}' has over {_MAX_VERSIONS} stored versions; "
                    "archive old ones."
                )
        items.sort(key=lambda item: (_timestamp(item.created_at), item.key))
        return [_version(item, number) for number, item in enumerate(items, start=1)]

    async def latest(self, role_name: str) -> RoleVersion | None:
        """Return the newest stored version of a role, or None."""
        versions = await self.versions(role_name)
        return versions[-1] if versions else None

    async def find(self, role_name: str, change_id: str) -> RoleVersion | None:
        """Return the version a change produced, or None if it was never applied."""
        for version in await self.versions(role_name):
            if version["change_id"] == change_id:
                return version
        return None

    async def current(self, org: Organization, role_name: str) -> tuple[Role, int]:
        """Return a role as it stands now and its version number (0: as in the YAML).

        Raises:
            LookupError: The role is neither in ``org`` nor stored.
        """
        latest = await self.latest(role_name)
        if latest is not None:
            return Role.model_validate(latest["definition"]), latest["version"]
        return org.role(role_name), 0

    async def apply(
        self, role: Role, *, change_id: str, base_version: int, summary: str
    ) -> RoleVersion:
        """Store ``role`` as a new version, once per ``change_id``.

        Args:
            role: The changed role.
            change_id: Id of the change; storing the same id again returns the first version.
            base_version: The version the change was made against.
            summary: One line describing the change.

        Returns:
            The stored version.
        """
        namespace = self._ns(role.name)
        existing = await self.store.aget(namespace, change_id)
        if existing is None:
            value = {
                "role": role.name,
                "change_id": change_id,
                "base_version": base_version,
                "summary": summary[:1_000],
                "definition": role.model_dump(mode="json"),
            }
            # ttl=None: role versions are records, never swept like memories.
            await self.store.aput(namespace, change_id, value, index=False, ttl=None)
        stored = await self.find(role.name, change_id)
        if stored is not None:
            return stored
        raise RuntimeError(f"Role version {change_id} was written but cannot be read back.")

    async def organization(self, base: Organization, registry: ToolCatalog) -> Organization:
        """Return ``base`` with every role at its latest stored version, validated.

        Raises:
            RoleDefinitionError: The combined organisation fails validation.
        """
        roles = []
        for role in base.roles:
            current, _ = await self.current(base, role.name)
            roles.append(current)
        org = Organization(circles=base.circles, roles=tuple(roles), approvals=base.approvals)
        validate_organization(org, registry)
        return org


def _timestamp(value: datetime | str | None) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, str):
        return datetime.fromisoformat(value).timestamp()
    return 0.0


def _version(item: Item, number: int) -> RoleVersion:
    value: Mapping[str, Any] = item.value
    created = item.created_at
    return RoleVersion(
        role=str(value.get("role", item.namespace[-1])),
        version=number,
        change_id=item.key,
        base_version=int(value.get("base_version", 0)),
        summary=str(value.get("summary", "")),
        definition=dict(value.get("definition") or {}),
        created_at=created.isoformat() if isinstance(created, datetime) else str(created),
    )
