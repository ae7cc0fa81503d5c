"""Deleting long-term memories (store items) together with their audit entry.

LangGraph's store deletes on a connection of its own, so an audit entry written beside it
could commit without the deletion or the other way round. These deletions run as SQL on the
store's own tables instead (rows of ``store``; their vectors in ``store_vectors`` go with them
by the store's foreign key), in one transaction with ``memory.deleted``. Namespace prefixes
match as LangGraph's store matches them: the namespace itself and everything below it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool

from state.audit import append_entry
from state.memory import MEMORY_ROOT, owner_label

__all__ = ["delete_store_item", "delete_user_memories"]

_MAX_RESOURCE_ID = 512


def _prefix(namespace: Sequence[str]) -> str:
    return ".".join(namespace)


def _like_below(prefix: str) -> str:
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"{escaped}.%"


async def delete_store_item(
    pool: AsyncConnectionPool[Any], namespace: Sequence[str], key: str, *, actor: str | None
) -> bool:
    """Delete one item, recording ``memory.deleted``; ``False`` (and no entry) when missing."""
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
            details={"namespace": list(namespace), "key": key},
        )
        return True


async def delete_user_memories(
    pool: AsyncConnectionPool[Any], user_id: str, *, actor: str | None
) -> int:
    """Delete every memory of ``user_id`` (all areas and kinds), recording ``memory.deleted``.

    Returns:
        How many items were deleted (no entry when none).

    Raises:
        MemoryInputError: ``user_id`` is empty, too long or holds a NUL byte.
    """
    prefix = _prefix((MEMORY_ROOT, owner_label("user", user_id)))
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
                resource_type="user_memories",
                resource_id=user_id,
                details={"deleted": deleted, "namespace_prefix": prefix},
            )
        return deleted
