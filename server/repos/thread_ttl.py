"""Thread TTLs in Postgres: setting a thread's expiry and sweeping the threads that expired.

A sweep claims expired threads with ``FOR UPDATE SKIP LOCKED``, so any number of server
processes can sweep at once and each expired thread is handled by exactly one of them. A thread
with a queued or running run is left for a later sweep: its TTL never cuts a run short.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool

from server.repos.threads import (
    audit_thread_deleted,
    delete_checkpoints,
    keep_latest_checkpoint,
)

__all__ = ["SweepResult", "ThreadTTLRepo"]


@dataclass(frozen=True)
class SweepResult:
    """Threads one sweep handled."""

    deleted: list[str]
    pruned: list[str]


class ThreadTTLRepo:
    """SQL for the ``ttl_strategy`` / ``ttl_minutes`` / ``expires_at`` columns of ``threads``."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self._pool: AsyncConnectionPool[AsyncConnection[DictRow]] = pool

    async def set(self, thread_id: str, *, strategy: str, minutes: float | None) -> None:
        """Expire the thread ``minutes`` from now (``None``: never) with ``strategy``."""
        async with self._pool.connection() as conn:
            await conn.execute(
                "UPDATE threads SET ttl_strategy = %s, ttl_minutes = %s, expires_at = CASE "
                "WHEN %s::float8 IS NULL THEN NULL "
                "ELSE now() + make_interval(secs => %s::float8 * 60) END WHERE thread_id = %s",
                (strategy, minutes, minutes, minutes, thread_id),
            )

    async def get(self, thread_id: str) -> dict[str, Any] | None:
        """``{"strategy", "ttl", "expires_at"}`` of the thread, or ``None`` when it has none."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT ttl_strategy AS strategy, ttl_minutes AS ttl, expires_at FROM threads "
                "WHERE thread_id = %s AND expires_at IS NOT NULL",
                (thread_id,),
            )
            return await cur.fetchone()

    async def sweep(self, *, limit: int) -> SweepResult:
        """Delete or prune up to ``limit`` expired threads that have no run in flight."""
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "SELECT thread_id::text AS thread_id, ttl_strategy FROM threads t "
                "WHERE expires_at <= now() AND status <> 'busy' AND NOT EXISTS ("
                "SELECT 1 FROM runs r WHERE r.thread_id = t.thread_id "
                "AND r.status IN ('pending', 'running')) "
                "ORDER BY expires_at LIMIT %s FOR UPDATE SKIP LOCKED",
                (limit,),
            )
            rows = await cur.fetchall()
            deleted = [r["thread_id"] for r in rows if r["ttl_strategy"] != "keep_latest"]
            pruned = [r["thread_id"] for r in rows if r["ttl_strategy"] == "keep_latest"]
            if deleted:
                await conn.execute(
                    "DELETE FROM threads WHERE thread_id = ANY(%s::uuid[])", (deleted,)
                )
            for thread_id in deleted:
                await delete_checkpoints(conn, thread_id)
            for thread_id in pruned:
                await keep_latest_checkpoint(conn, thread_id)
            if pruned:
                # Pruned once: the thread lives on without a TTL until one is set again.
                await conn.execute(
                    "UPDATE threads SET expires_at = NULL WHERE thread_id = ANY(%s::uuid[])",
                    (pruned,),
                )
            await audit_thread_deleted(conn, deleted, actor=None, reason="ttl")
        return SweepResult(deleted=deleted, pruned=pruned)
