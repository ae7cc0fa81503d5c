"""Crons in Postgres: the API's reads and writes, and the scheduler's claim of due crons."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool

from server.auth.filters import Filter, filter_sql
from server.repos._db import jsonb

__all__ = ["CRON_FIELDS", "CronsRepo", "cron_to_api"]

CRON_FIELDS = (
    "cron_id",
    "assistant_id",
    "thread_id",
    "user_id",
    "end_time",
    "schedule",
    "timezone",
    "payload",
    "next_run_date",
    "metadata",
    "on_run_completed",
    "enabled",
    "created_at",
    "updated_at",
)
"""The API's Cron object, in the reference server's key order."""

_SORTABLE = frozenset(
    {
        "cron_id",
        "assistant_id",
        "thread_id",
        "next_run_date",
        "end_time",
        "created_at",
        "updated_at",
    }
)
_COUNT = sql.SQL("SELECT count(*) AS n FROM crons{}")
_DUE = "enabled AND next_run_date <= now() AND (end_time IS NULL OR end_time > now())"


def cron_to_api(row: dict[str, Any]) -> dict[str, Any]:
    """A ``crons`` row as the API's Cron object (ids as strings)."""
    out = {key: row.get(key) for key in CRON_FIELDS}
    for key in ("cron_id", "assistant_id", "thread_id"):
        if out[key] is not None:
            out[key] = str(out[key])
    return out


def _filters(
    *,
    assistant_id: str | None,
    thread_id: str | None,
    enabled: bool | None = None,
    metadata: dict[str, Any] | None,
    auth: Filter | None = None,
) -> tuple[sql.Composable, dict[str, Any]]:
    clauses: list[sql.Composable] = []
    params: dict[str, Any] = {}
    if auth:
        clauses.append(filter_sql(auth, params))
    for column, value in (
        ("assistant_id", assistant_id),
        ("thread_id", thread_id),
        ("enabled", enabled),
    ):
        if value is not None:
            clauses.append(
                sql.SQL("{} = {}").format(sql.Identifier(column), sql.Placeholder(column))
            )
            params[column] = value
    if metadata:
        clauses.append(sql.SQL("metadata @> %(metadata)s"))
        params["metadata"] = jsonb(metadata)
    where = sql.SQL(" WHERE ") + sql.SQL(" AND ").join(clauses) if clauses else sql.SQL("")
    return where, params


class CronsRepo:
    """SQL for ``crons``."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self._pool: AsyncConnectionPool[AsyncConnection[DictRow]] = pool

    async def create(
        self,
        *,
        cron_id: str,
        assistant_id: str,
        thread_id: str | None,
        user_id: str,
        schedule: str,
        timezone: str | None,
        end_time: datetime | None,
        enabled: bool,
        on_run_completed: str | None,
        payload: dict[str, Any],
        metadata: dict[str, Any],
        next_run_date: datetime | None,
        auth: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Insert a cron (``auth``: its creator's stored identity)."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "INSERT INTO crons (cron_id, assistant_id, thread_id, user_id, schedule, "
                "timezone, end_time, enabled, on_run_completed, payload, metadata, next_run_date, "
                "auth) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING *",
                (
                    cron_id,
                    assistant_id,
                    thread_id,
                    user_id,
                    schedule,
                    timezone,
                    end_time,
                    enabled,
                    on_run_completed,
                    jsonb(payload),
                    jsonb(metadata),
                    next_run_date,
                    jsonb(auth) if auth is not None else None,
                ),
            )
            row = await cur.fetchone()
        assert row is not None
        return row

    async def get(self, cron_id: str) -> dict[str, Any] | None:
        """The cron, or ``None``."""
        async with self._pool.connection() as conn:
            cur = await conn.execute("SELECT * FROM crons WHERE cron_id = %s", (cron_id,))
            return await cur.fetchone()

    async def update(self, cron_id: str, changes: dict[str, Any]) -> dict[str, Any] | None:
        """Set the given columns (``payload`` / ``metadata`` as JSON); ``None`` when missing."""
        if not changes:
            return await self.get(cron_id)
        assignments = [sql.SQL("{} = %s").format(sql.Identifier(column)) for column in changes] + [
            sql.SQL("updated_at = now()")
        ]
        params = [
            jsonb(value) if column in ("payload", "metadata", "auth") else value
            for column, value in changes.items()
        ]
        query = sql.SQL("UPDATE crons SET {} WHERE cron_id = %s RETURNING *").format(
            sql.SQL(", ").join(assignments)
        )
        async with self._pool.connection() as conn:
            cur = await conn.execute(query, [*params, cron_id])
            return await cur.fetchone()

    async def delete(self, cron_id: str) -> bool:
        """Delete the cron; whether it existed."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "DELETE FROM crons WHERE cron_id = %s RETURNING cron_id", (cron_id,)
            )
            return await cur.fetchone() is not None

    async def search(
        self,
        *,
        assistant_id: str | None,
        thread_id: str | None,
        enabled: bool | None,
        metadata: dict[str, Any] | None,
        limit: int,
        offset: int,
        sort_by: str,
        sort_order: str,
        auth: Filter | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        """One page of matching crons and the number of matches.

        ``sort_by`` is a column name (validated by the request model, quoted here); ``auth``
        is the caller's authorization filter on the crons' metadata, applied in SQL.
        """
        where, params = _filters(
            assistant_id=assistant_id,
            thread_id=thread_id,
            enabled=enabled,
            metadata=metadata,
            auth=auth,
        )
        direction = sql.SQL("ASC" if sort_order == "asc" else "DESC")
        query = sql.SQL(
            "SELECT *, count(*) OVER () AS total FROM crons{} ORDER BY {} {}, cron_id {} "
            "LIMIT %(_limit)s OFFSET %(_offset)s"
        ).format(where, sql.Identifier(sort_by), direction, direction)
        async with self._pool.connection() as conn:
            cur = await conn.execute(query, {**params, "_limit": limit, "_offset": offset})
            rows = await cur.fetchall()
            if rows:
                return rows, int(rows[0]["total"])
            cur = await conn.execute(_COUNT.format(where), params)
            counted = await cur.fetchone()
        return [], int(counted["n"]) if counted else 0

    async def count(
        self,
        *,
        assistant_id: str | None,
        thread_id: str | None,
        metadata: dict[str, Any] | None,
        auth: Filter | None = None,
    ) -> int:
        """How many crons match (``auth``: the caller's filter, applied in SQL)."""
        where, params = _filters(
            assistant_id=assistant_id, thread_id=thread_id, metadata=metadata, auth=auth
        )
        async with self._pool.connection() as conn:
            cur = await conn.execute(_COUNT.format(where), params)
            row = await cur.fetchone()
        return int(row["n"]) if row else 0

    # -- the scheduler ----------------------------------------------------------------------

    @asynccontextmanager
    async def due(
        self, *, limit: int
    ) -> AsyncIterator[tuple[AsyncConnection[DictRow], Sequence[dict[str, Any]]]]:
        """A transaction holding the row locks of up to ``limit`` due crons.

        Yields ``(connection, crons)``. Crons another scheduler holds are skipped, not waited
        for. Everything done on the connection commits together when the block ends.
        """
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                f"SELECT * FROM crons WHERE {_DUE} "
                "ORDER BY next_run_date LIMIT %s FOR UPDATE SKIP LOCKED",
                (limit,),
            )
            yield conn, await cur.fetchall()

    async def clock(self, conn: AsyncConnection[DictRow]) -> datetime:
        """The database's clock now (``clock_timestamp()``, which moves within a transaction)."""
        cur = await conn.execute("SELECT clock_timestamp() AS now")
        row = await cur.fetchone()
        assert row is not None
        return row["now"]

    async def set_next_run_date(
        self, conn: AsyncConnection[DictRow], cron_id: str, next_run_date: datetime | None
    ) -> None:
        """Move a locked cron to its next tick (``None``: it has no more)."""
        await conn.execute(
            "UPDATE crons SET next_run_date = %s WHERE cron_id = %s", (next_run_date, cron_id)
        )

    async def disable(self, conn: AsyncConnection[DictRow], cron_id: str) -> None:
        """Disable a locked cron (its creator can no longer run it)."""
        await conn.execute(
            "UPDATE crons SET enabled = false, updated_at = now() WHERE cron_id = %s", (cron_id,)
        )

    async def seconds_until_due(self) -> float | None:
        """Seconds until the earliest enabled cron is due (may be negative); None if none is."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT extract(epoch FROM min(next_run_date) - now()) AS wait FROM crons "
                "WHERE enabled AND (end_time IS NULL OR end_time > now())"
            )
            row = await cur.fetchone()
        return float(row["wait"]) if row and row["wait"] is not None else None
