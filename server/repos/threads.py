"""Threads in Postgres, and the thread-scoped rows of LangGraph's checkpoint tables."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool

from server.auth.filters import Filter, filter_sql
from server.repos._db import jsonb
from state.audit import append_entry

__all__ = ["ThreadsRepo"]

COLUMNS = (
    "thread_id, created_at, updated_at, state_updated_at, metadata, status, config, "
    '"values", error, interrupts'
)
_SORTABLE = {"thread_id", "status", "created_at", "updated_at", "state_updated_at"}
_CHECKPOINT_TABLES = ("checkpoint_writes", "checkpoint_blobs", "checkpoints")


def _filters(
    *,
    ids: Sequence[str] | None = None,
    metadata: dict[str, Any] | None = None,
    values: dict[str, Any] | None = None,
    status: str | None = None,
    auth: Filter | None = None,
) -> tuple[sql.Composable, dict[str, Any]]:
    clauses: list[sql.Composable] = []
    params: dict[str, Any] = {}
    if auth:
        clauses.append(filter_sql(auth, params))
    if ids is not None:
        clauses.append(sql.SQL("thread_id = ANY(%(ids)s::uuid[])"))
        params["ids"] = list(ids)
    if metadata:
        clauses.append(sql.SQL("metadata @> %(metadata)s"))
        params["metadata"] = jsonb(metadata)
    if values:
        clauses.append(sql.SQL('"values" @> %(values)s'))
        params["values"] = jsonb(values)
    if status is not None:
        clauses.append(sql.SQL("status = %(status)s"))
        params["status"] = status
    where = sql.SQL(" WHERE ") + sql.SQL(" AND ").join(clauses) if clauses else sql.SQL("")
    return where, params


async def audit_thread_deleted(
    conn: AsyncConnection[Any],
    thread_ids: Sequence[str],
    *,
    actor: str | None,
    reason: str | None = None,
    **details: Any,
) -> None:
    """Record ``thread.deleted`` for each thread, in ``conn``'s transaction (after the deletes:
    the audit head stays locked until commit, so append last)."""
    extra = {**details, **({"reason": reason} if reason else {})}
    for thread_id in thread_ids:
        await append_entry(
            conn,
            "thread.deleted",
            actor=actor,
            resource_type="thread",
            resource_id=str(thread_id),
            details=extra,
        )


async def delete_checkpoints(conn: AsyncConnection[Any], thread_id: str) -> None:
    """Remove every checkpoint, blob and pending write of ``thread_id``."""
    for table in _CHECKPOINT_TABLES:
        await conn.execute(
            sql.SQL("DELETE FROM {} WHERE thread_id = %s").format(sql.Identifier(table)),
            (thread_id,),
        )


class ThreadsRepo:
    """SQL for ``threads`` (and checkpoint housekeeping that is per thread)."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self._pool: AsyncConnectionPool[AsyncConnection[DictRow]] = pool

    async def create(
        self, thread_id: str, *, metadata: dict[str, Any], if_exists: str
    ) -> tuple[dict[str, Any] | None, bool]:
        """Insert a thread. Returns ``(row, created)``; ``(None, False)`` when taken and raising."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "INSERT INTO threads (thread_id, metadata) VALUES (%s, %s) "
                f"ON CONFLICT (thread_id) DO NOTHING RETURNING {COLUMNS}",
                (thread_id, jsonb(metadata)),
            )
            row = await cur.fetchone()
            if row is not None:
                return row, True
            if if_exists == "do_nothing":
                cur = await conn.execute(
                    f"SELECT {COLUMNS} FROM threads WHERE thread_id = %s", (thread_id,)
                )
                return await cur.fetchone(), False
            return None, False

    async def get(self, thread_id: str) -> dict[str, Any] | None:
        """The thread, or ``None``."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT {COLUMNS} FROM threads WHERE thread_id = %s", (thread_id,)
            )
            return await cur.fetchone()

    async def patch(self, thread_id: str, *, metadata: dict[str, Any]) -> dict[str, Any] | None:
        """Merge ``metadata`` into the thread's. ``None`` when it does not exist."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "UPDATE threads SET metadata = metadata || %s, updated_at = now() "
                f"WHERE thread_id = %s RETURNING {COLUMNS}",
                (jsonb(metadata), thread_id),
            )
            return await cur.fetchone()

    async def record_state(
        self,
        thread_id: str,
        *,
        values: Any,
        interrupts: dict[str, Any],
        status: str | None,
    ) -> None:
        """Store the thread's current values and interrupts after a state change.

        ``status`` applies only when the thread is not busy: a running run owns the status.
        """
        async with self._pool.connection() as conn:
            await conn.execute(
                'UPDATE threads SET "values" = %s, interrupts = %s, '
                "status = CASE WHEN status = 'busy' OR %s::text IS NULL THEN status "
                "ELSE %s::text END, updated_at = now(), state_updated_at = now() "
                "WHERE thread_id = %s",
                (jsonb(values), jsonb(interrupts), status, status, thread_id),
            )

    async def delete(self, thread_id: str, *, actor: str | None, reason: str | None = None) -> bool:
        """Delete the thread, its runs and its checkpoints, recording ``thread.deleted``.

        Args:
            thread_id: the thread.
            actor: who deleted it (audit actor; ``None``: staffgraph itself).
            reason: why, when it was not asked for directly (kept in the audit entry).
        """
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "DELETE FROM threads WHERE thread_id = %s RETURNING thread_id", (thread_id,)
            )
            if await cur.fetchone() is None:
                return False
            await delete_checkpoints(conn, thread_id)
            await audit_thread_deleted(conn, [thread_id], actor=actor, reason=reason)
            return True

    async def search(
        self,
        *,
        ids: Sequence[str] | None,
        metadata: dict[str, Any] | None,
        values: dict[str, Any] | None,
        status: str | None,
        limit: int,
        offset: int,
        sort_by: str | None,
        sort_order: str | None,
        auth: Filter | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        """A page of matching threads and how many match in all (``auth``: only visible ones)."""
        where, params = _filters(
            ids=ids, metadata=metadata, values=values, status=status, auth=auth
        )
        column = sort_by if sort_by in _SORTABLE else "created_at"
        direction = sql.SQL("ASC" if sort_order == "asc" else "DESC")
        query = sql.SQL(
            "SELECT {cols}, count(*) OVER () AS _total FROM threads{where} "
            "ORDER BY {col} {dir}, thread_id {dir} LIMIT %(limit)s OFFSET %(offset)s"
        ).format(cols=sql.SQL(COLUMNS), where=where, col=sql.Identifier(column), dir=direction)
        params.update(limit=limit, offset=offset)
        async with self._pool.connection() as conn:
            rows = await (await conn.execute(query, params)).fetchall()
            total = int(rows[0]["_total"]) if rows else await self._count(conn, where, params)
        for row in rows:
            del row["_total"]
        return rows, total

    async def count(
        self,
        *,
        metadata: dict[str, Any] | None,
        values: dict[str, Any] | None,
        status: str | None,
        auth: Filter | None = None,
    ) -> int:
        """How many threads match (``auth``: only visible ones)."""
        where, params = _filters(metadata=metadata, values=values, status=status, auth=auth)
        async with self._pool.connection() as conn:
            return await self._count(conn, where, params)

    @staticmethod
    async def _count(
        conn: AsyncConnection[Any], where: sql.Composable, params: dict[str, Any]
    ) -> int:
        cur = await conn.execute(
            sql.SQL("SELECT count(*) AS n FROM threads{}").format(where), params
        )
        row: Any = await cur.fetchone()
        return int(row["n"]) if row else 0

    async def with_active_runs(self, *, status: str | None, auth: Filter | None) -> list[str]:
        """Visible threads that have queued or running runs (``status`` narrows to one)."""
        states = ("pending", "running") if status in (None, "all") else (status,)
        params: dict[str, Any] = {"states": list(states)}
        query = sql.SQL(
            "SELECT t.thread_id::text AS thread_id FROM threads t WHERE {flt} AND EXISTS "
            "(SELECT 1 FROM runs r WHERE r.thread_id = t.thread_id "
            "AND r.status = ANY(%(states)s))"
        ).format(flt=filter_sql(auth, params, "metadata"))
        async with self._pool.connection() as conn:
            cur = await conn.execute(query, params)
            return [row["thread_id"] for row in await cur.fetchall()]

    async def copy(self, thread_id: str, new_id: str) -> dict[str, Any] | None:
        """Clone a thread and all its checkpoints under ``new_id``. ``None`` if it is missing."""
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                'INSERT INTO threads (thread_id, metadata, config, status, "values", '
                "interrupts, error) SELECT %s, metadata, config, "
                "CASE WHEN status = 'busy' THEN 'idle' ELSE status END, \"values\", interrupts, "
                f"error FROM threads WHERE thread_id = %s RETURNING {COLUMNS}",
                (new_id, thread_id),
            )
            row = await cur.fetchone()
            if row is None:
                return None
            await conn.execute(
                "INSERT INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, "
                "parent_checkpoint_id, type, checkpoint, metadata) SELECT %s, checkpoint_ns, "
                "checkpoint_id, parent_checkpoint_id, type, checkpoint, "
                "metadata || jsonb_build_object('thread_id', %s::text) "
                "FROM checkpoints WHERE thread_id = %s",
                (new_id, new_id, thread_id),
            )
            await conn.execute(
                "INSERT INTO checkpoint_blobs (thread_id, checkpoint_ns, channel, version, type, "
                "blob) SELECT %s, checkpoint_ns, channel, version, type, blob "
                "FROM checkpoint_blobs WHERE thread_id = %s",
                (new_id, thread_id),
            )
            await conn.execute(
                "INSERT INTO checkpoint_writes (thread_id, checkpoint_ns, checkpoint_id, task_id, "
                "idx, channel, type, blob, task_path) SELECT %s, checkpoint_ns, checkpoint_id, "
                "task_id, idx, channel, type, blob, task_path FROM checkpoint_writes "
                "WHERE thread_id = %s",
                (new_id, thread_id),
            )
            return row

    async def prune(self, thread_ids: Sequence[str], *, strategy: str, actor: str | None) -> int:
        """Delete threads, or keep only their latest checkpoint. Returns how many were pruned.

        Deleted threads are recorded as ``thread.deleted`` by ``actor``.
        """
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "SELECT thread_id::text AS thread_id FROM threads "
                "WHERE thread_id = ANY(%s::uuid[]) FOR UPDATE",
                (list(thread_ids),),
            )
            found = [row["thread_id"] for row in await cur.fetchall()]
            for thread_id in found:
                if strategy == "delete":
                    await conn.execute("DELETE FROM threads WHERE thread_id = %s", (thread_id,))
                    await delete_checkpoints(conn, thread_id)
                else:
                    await keep_latest_checkpoint(conn, thread_id)
            if strategy == "delete":
                await audit_thread_deleted(conn, found, actor=actor, reason="prune")
            return len(found)

    async def storage(self, thread_id: str) -> dict[str, Any]:
        """Bytes the thread's checkpoints, channel values and pending writes take."""
        async with self._pool.connection() as conn:
            cp = await (
                await conn.execute(
                    "SELECT count(*) AS n, coalesce(sum(pg_column_size(checkpoint) + "
                    "pg_column_size(metadata)), 0) AS b FROM checkpoints WHERE thread_id = %s",
                    (thread_id,),
                )
            ).fetchone()
            blobs = await (
                await conn.execute(
                    "SELECT channel, count(*) AS n, coalesce(sum(octet_length(blob)), 0) AS b "
                    "FROM checkpoint_blobs WHERE thread_id = %s GROUP BY channel ORDER BY channel",
                    (thread_id,),
                )
            ).fetchall()
            writes = await (
                await conn.execute(
                    "SELECT count(*) AS n, coalesce(sum(octet_length(blob)), 0) AS b "
                    "FROM checkpoint_writes WHERE thread_id = %s",
                    (thread_id,),
                )
            ).fetchone()
        assert cp is not None and writes is not None
        by_channel = {r["channel"]: {"versions": int(r["n"]), "bytes": int(r["b"])} for r in blobs}
        channel_bytes = sum(v["bytes"] for v in by_channel.values())
        total = int(cp["b"]) + channel_bytes + int(writes["b"])
        return {
            "thread_id": thread_id,
            "total_bytes": total,
            "checkpoints": {"count": int(cp["n"]), "bytes": int(cp["b"])},
            "channel_values": {
                "count": sum(v["versions"] for v in by_channel.values()),
                "bytes": channel_bytes,
                "by_channel": by_channel,
            },
            "pending_writes": {"count": int(writes["n"]), "bytes": int(writes["b"])},
        }


async def keep_latest_checkpoint(conn: AsyncConnection[Any], thread_id: str) -> None:
    # Checkpoint ids are time-ordered (uuid6), so the greatest id per namespace is the latest.
    await conn.execute(
        "DELETE FROM checkpoints c WHERE c.thread_id = %(t)s AND c.checkpoint_id <> "
        "(SELECT max(l.checkpoint_id) FROM checkpoints l WHERE l.thread_id = %(t)s "
        "AND l.checkpoint_ns = c.checkpoint_ns)",
        {"t": thread_id},
    )
    await conn.execute(
        "DELETE FROM checkpoint_writes w WHERE w.thread_id = %(t)s AND NOT EXISTS ("
        "SELECT 1 FROM checkpoints c WHERE c.thread_id = w.thread_id "
        "AND c.checkpoint_ns = w.checkpoint_ns AND c.checkpoint_id = w.checkpoint_id)",
        {"t": thread_id},
    )
    await conn.execute(
        "DELETE FROM checkpoint_blobs b WHERE b.thread_id = %(t)s AND NOT EXISTS ("
        "SELECT 1 FROM checkpoints c WHERE c.thread_id = b.thread_id "
        "AND c.checkpoint_ns = b.checkpoint_ns "
        "AND c.checkpoint -> 'channel_versions' ->> b.channel = b.version)",
        {"t": thread_id},
    )
