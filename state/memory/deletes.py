"""Deleting memories (store items) together with their audit entry, on Postgres.

LangGraph's store deletes on a connection of its own, so an audit entry written beside it
could commit without the deletion or the other way round. When the store is LangGraph's
``AsyncPostgresStore`` on a connection pool (the server's), deletions run as SQL on the store's
own tables instead (rows of ``store``; their vectors in ``store_vectors`` go with them by the
store's foreign key), in one transaction with ``memory.deleted``
(:func:`state.audit.append_entry`). Namespace prefixes match as LangGraph's store matches
them: the namespace itself and everything below it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from langgraph.store.base import BaseStore
from langgraph.store.postgres import AsyncPostgresStore
from psycopg import AsyncConnection
from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool

from state.audit import append_entry

__all__ = ["audited_pool", "delete_item_audited", "delete_prefix_audited"]

_MAX_RESOURCE_ID = 512


def audited_pool(store: BaseStore) -> AsyncConnectionPool[Any] | None:
    """The Postgres pool under ``store`` when deletions can be audited in one transaction."""
    if isinstance(store, AsyncPostgresStore) and isinstance(store.conn, AsyncConnectionPool):
        return store.conn
    return None


def _prefix(namespace: Sequence[str]) -> str:
    return ".".join(namespace)


def _like_below(prefix: str) -> str:
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"{escaped}.%"


async def delete_item_audited(
    pool: AsyncConnectionPool[Any],
    namespace: Sequence[str],
    key: str,
    *,
    actor: str | None,
    details: Mapping[str, Any] | None = None,
) -> bool:
    """Delete one item, recording ``memory.deleted``; ``False`` (and no entry) when missing.

    The entry's resource is ``store_item`` ``<namespace joined by dots>/<key>``; its details
    hold the namespace and key, plus ``details``.
    """
    prefix = _prefix(namespace)
    conns: AsyncConnectionPool[AsyncConnection[DictRow]] = pool
    async with conns.connection() as conn, conn.transaction():
        cur = await conn.execute(
            "DELETE FROM store WHERE prefix = %s AND key = %s RETURNING key", (prefix, key)
        )
        if await cur.fetchone() is None:
            return False
        await append_entry(
            conn,
            "memory.deleted",
            actor=actor,
            resource_type="store_item",
            resource_id=f"{prefix}/{key}"[:_MAX_RESOURCE_ID],
            details={"namespace": list(namespace), "key": key, **(details or {})},
        )
        return True


async def delete_prefix_audited(
    pool: AsyncConnectionPool[Any],
    namespace: Sequence[str],
    *,
    actor: str | None,
    resource_type: str,
    resource_id: str,
) -> int:
    """Delete every item in ``namespace`` and below, recording one ``memory.deleted``.

    Returns:
        How many items were deleted (no entry when none).
    """
    prefix = _prefix(namespace)
    conns: AsyncConnectionPool[AsyncConnection[DictRow]] = pool
    async with conns.connection() as conn, conn.transaction():
        cur = await conn.execute(
            "DELETE FROM store WHERE prefix = %s OR prefix LIKE %s ESCAPE '\\'",
            (prefix, _like_below(prefix)),
        )
        deleted = cur.rowcount
        if deleted:
            await append_entry(
                conn,
                "memory.deleted",
                actor=actor,
                resource_type=resource_type,
                resource_id=resource_id[:_MAX_RESOURCE_ID],
                details={"deleted": deleted, "namespace_prefix": prefix},
            )
        return deleted
