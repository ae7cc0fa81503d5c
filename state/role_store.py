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

from langgraph.store.base import BaseStore, Item, PutOp
from langgraph.store.postgres.aio import AsyncPostgresStore
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool
from typing_extensions import TypedDict

from state.audit import append_entry
from state.roles import Organization, Role, validate_organization
from state.tool_risk import ToolCatalog

__all__ = ["NAMESPACE", "AuditNote", "RoleStore", "RoleVersion", "record_governance"]

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
    approved_by: str
    """Who approved the change (the reviewer's identity; empty when not recorded)."""
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
        self,
        role: Role,
        *,
        change_id: str,
        base_version: int,
        summary: str,
        audit: AuditNote | None = None,
        approved_by: str = "",
    ) -> RoleVersion:
        """Store ``role`` as a new version, once per ``change_id``.

        Args:
            role: The changed role.
            change_id: Id of the change; storing the same id again returns the first version.
            base_version: The version the change was made against.
            summary: One line describing the change.
            audit: Record it in the audit log as ``governance.applied``, in the same
                transaction as the version (on a Postgres store; other stores keep no log).
            approved_by: Who approved it.

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
                "approved_by": approved_by[:200],
                "definition": role.model_dump(mode="json"),
            }
            # ttl=None: role versions are records, never swept like memories.
            put = PutOp(namespace, change_id, value, index=False, ttl=None)
            pool = _audited_pool(self.store) if audit is not None else None
            if pool is None or audit is None:
                await self.store.aput(namespace, change_id, value, index=False, ttl=None)
            else:
                await _put_audited(self.store, pool, put, audit, role.name)
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


class AuditNote(TypedDict):
    """What the audit log records about a governance change."""

    actor: str | None
    """Who decided it (``None``: staffgraph itself)."""
    details: dict[str, Any]


def _audited_pool(store: BaseStore) -> AsyncConnectionPool[Any] | None:
    """The pool of a Postgres store (where the audit log lives), else ``None``."""
    if isinstance(store, AsyncPostgresStore) and isinstance(store.conn, AsyncConnectionPool):
        return store.conn
    return None


async def _put_audited(
    store: BaseStore, pool: AsyncConnectionPool[Any], put: PutOp, audit: AuditNote, role: str
) -> None:
    """Write ``put`` and its ``governance.applied`` entry in one transaction."""
    assert isinstance(store, AsyncPostgresStore)
    async with pool.connection() as conn, conn.transaction():
        async with conn.cursor(row_factory=dict_row) as cur:
            await store._batch_put_ops([(0, put)], cur)
        await append_entry(
            conn,
            "governance.applied",
            actor=audit["actor"],
            resource_type="role",
            resource_id=role,
            details=audit["details"],
        )


async def record_governance(
    store: BaseStore | None, action: str, *, role: str, audit: AuditNote
) -> None:
    """Append a governance entry on its own (a rejection, an instruction's outcome).

    Only on a Postgres store (where the audit log lives); elsewhere nothing is recorded.
    """
    pool = _audited_pool(store) if store is not None else None
    if pool is None:
        return
    async with pool.connection() as conn, conn.transaction():
        await append_entry(
            conn,
            action,
            actor=audit["actor"],
            resource_type="role",
            resource_id=role,
            details=audit["details"],
        )


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
        approved_by=str(value.get("approved_by", "")),
        definition=dict(value.get("definition") or {}),
        created_at=created.isoformat() if isinstance(created, datetime) else str(created),
    )
