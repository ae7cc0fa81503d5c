"""Assistants and their versions in Postgres."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from psycopg import AsyncConnection, sql
from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool

from server.auth.filters import Filter, filter_sql
from server.repos._db import jsonb
from server.repos.threads import audit_thread_deleted, delete_checkpoints
from state.audit import append_entry

__all__ = ["AssistantsRepo"]

_COLUMNS = (
    "assistant_id, graph_id, config, context, metadata, name, created_at, updated_at, version, "
    "description"
)
_SORTABLE = {"assistant_id", "created_at", "updated_at", "name", "graph_id"}


async def _record_version(
    conn: AsyncConnection[DictRow],
    assistant_id: str,
    *,
    stamp: Literal["created_at", "updated_at"],
) -> None:
    """Copy the assistant's current row into ``assistant_versions``.

    ``stamp`` names the column that dates the version: a new assistant's ``created_at``, a
    patched one's ``updated_at``.
    """
    await conn.execute(
        sql.SQL(
            "INSERT INTO assistant_versions (assistant_id, version, graph_id, name, "
            "description, config, context, metadata, created_at) "
            "SELECT assistant_id, version, graph_id, name, description, config, context, "
            "metadata, {} FROM assistants WHERE assistant_id = %s"
        ).format(sql.Identifier(stamp)),
        (assistant_id,),
    )


def _filters(
    *,
    graph_id: str | None,
    name: str | None,
    metadata: dict[str, Any] | None,
    auth: Filter | None = None,
) -> tuple[sql.Composable, dict[str, Any]]:
    clauses: list[sql.Composable] = []
    params: dict[str, Any] = {}
    if auth:
        clauses.append(filter_sql(auth, params))
    if graph_id is not None:
        clauses.append(sql.SQL("graph_id = %(graph_id)s"))
        params["graph_id"] = graph_id
    if name is not None:
        clauses.append(sql.SQL("name ILIKE %(name)s"))
        params["name"] = f"%{_escape_like(name)}%"
    if metadata:
        clauses.append(sql.SQL("metadata @> %(metadata)s"))
        params["metadata"] = jsonb(metadata)
    where = sql.SQL(" WHERE ") + sql.SQL(" AND ").join(clauses) if clauses else sql.SQL("")
    return where, params


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class AssistantsRepo:
    """SQL for ``assistants`` and ``assistant_versions``."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self._pool: AsyncConnectionPool[AsyncConnection[DictRow]] = pool

    async def sync_defaults(self, graph_ids: Sequence[tuple[str, str]]) -> None:
        """Make sure each ``(assistant_id, graph_id)`` default assistant exists (idempotent)."""
        async with self._pool.connection() as conn, conn.transaction():
            for assistant_id, graph_id in graph_ids:
                cur = await conn.execute(
                    "INSERT INTO assistants (assistant_id, graph_id, name, metadata) "
                    "VALUES (%s, %s, %s, %s) ON CONFLICT (assistant_id) DO NOTHING "
                    "RETURNING assistant_id",
                    (assistant_id, graph_id, graph_id, jsonb({"created_by": "system"})),
                )
                if await cur.fetchone() is not None:
                    await conn.execute(
                        "INSERT INTO assistant_versions (assistant_id, version, graph_id, name, "
                        "metadata) VALUES (%s, 1, %s, %s, %s) ON CONFLICT DO NOTHING",
                        (assistant_id, graph_id, graph_id, jsonb({"created_by": "system"})),
                    )

    async def create(
        self,
        assistant_id: str,
        *,
        graph_id: str,
        name: str,
        description: str | None,
        config: dict[str, Any],
        context: dict[str, Any],
        metadata: dict[str, Any],
    ) -> dict[str, Any] | None:
        """Insert a new assistant (version 1). ``None`` when the id is taken."""
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "INSERT INTO assistants (assistant_id, graph_id, name, description, config, "
                "context, metadata) VALUES (%s, %s, %s, %s, %s, %s, %s) "
                f"ON CONFLICT (assistant_id) DO NOTHING RETURNING {_COLUMNS}",
                (
                    assistant_id,
                    graph_id,
                    name,
                    description,
                    jsonb(config),
                    jsonb(context),
                    jsonb(metadata),
                ),
            )
            row = await cur.fetchone()
            if row is None:
                return None
            await _record_version(conn, assistant_id, stamp="created_at")
            return row

    async def get(self, assistant_id: str) -> dict[str, Any] | None:
        """The assistant, or ``None``."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT {_COLUMNS} FROM assistants WHERE assistant_id = %s", (assistant_id,)
            )
            return await cur.fetchone()

    async def patch(self, assistant_id: str, changes: dict[str, Any]) -> dict[str, Any] | None:
        """Record a new version with ``changes`` applied (metadata merged) and make it current.

        Returns ``None`` when the assistant does not exist.
        """
        sets: list[sql.Composable] = [
            sql.SQL("version = latest.v + 1"),
            sql.SQL("updated_at = now()"),
        ]
        params: dict[str, Any] = {"id": assistant_id}
        for key in ("graph_id", "name", "description"):
            if key in changes:
                sets.append(sql.SQL("{} = %({})s").format(sql.Identifier(key), sql.SQL(key)))
                params[key] = changes[key]
        for key in ("config", "context"):
            if key in changes:
                sets.append(sql.SQL("{} = %({})s").format(sql.Identifier(key), sql.SQL(key)))
                params[key] = jsonb(changes[key])
        if "metadata" in changes:
            sets.append(sql.SQL("metadata = a.metadata || %(metadata)s"))
            params["metadata"] = jsonb(changes["metadata"])
        query = sql.SQL(
            "UPDATE assistants a SET {sets} FROM (SELECT max(version) AS v FROM "
            "assistant_versions WHERE assistant_id = %(id)s) latest "
            "WHERE a.assistant_id = %(id)s RETURNING {cols}"
        ).format(
            sets=sql.SQL(", ").join(sets),
            cols=sql.SQL(", ").join(
                sql.SQL("a.{}").format(sql.Identifier(c.strip())) for c in _COLUMNS.split(",")
            ),
        )
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute(
                "SELECT 1 FROM assistants WHERE assistant_id = %s FOR UPDATE", (assistant_id,)
            )
            cur = await conn.execute(query, params)
            row = await cur.fetchone()
            if row is None:
                return None
            await _record_version(conn, assistant_id, stamp="updated_at")
            return row

    async def set_latest(self, assistant_id: str, version: int) -> dict[str, Any] | None:
        """Make stored ``version`` current. ``None`` when the assistant or version is missing."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "UPDATE assistants a SET graph_id = v.graph_id, name = v.name, "
                "description = v.description, config = v.config, context = v.context, "
                "metadata = v.metadata, version = v.version, updated_at = now() "
                "FROM assistant_versions v WHERE a.assistant_id = %s "
                "AND v.assistant_id = a.assistant_id AND v.version = %s RETURNING "
                + ", ".join(f"a.{c.strip()}" for c in _COLUMNS.split(",")),
                (assistant_id, version),
            )
            return await cur.fetchone()

    async def delete(self, assistant_id: str, *, delete_threads: bool, actor: str | None) -> bool:
        """Delete the assistant (and, if asked, threads whose metadata names it).

        Records ``assistant.deleted`` (and ``thread.deleted`` for each thread) by ``actor``.
        """
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "DELETE FROM assistants WHERE assistant_id = %s RETURNING assistant_id, graph_id",
                (assistant_id,),
            )
            row = await cur.fetchone()
            if row is None:
                return False
            threads: list[str] = []
            if delete_threads:
                cur = await conn.execute(
                    "DELETE FROM threads WHERE metadata @> %s RETURNING thread_id::text AS t",
                    (jsonb({"assistant_id": assistant_id}),),
                )
                threads = [r["t"] for r in await cur.fetchall()]
                for thread_id in threads:
                    await delete_checkpoints(conn, thread_id)
            # Appended after every delete: the audit head stays locked until commit.
            await append_entry(
                conn,
                "assistant.deleted",
                actor=actor,
                resource_type="assistant",
                resource_id=str(assistant_id),
                details={"graph_id": row["graph_id"], "deleted_threads": len(threads)},
            )
            await audit_thread_deleted(
                conn, threads, actor=actor, reason="assistant deleted", assistant_id=assistant_id
            )
            return True

    async def search(
        self,
        *,
        graph_id: str | None,
        name: str | None,
        metadata: dict[str, Any] | None,
        limit: int,
        offset: int,
        sort_by: str | None,
        sort_order: str | None,
        auth: Filter | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        """A page of assistants and the total that match (``auth``: only visible ones)."""
        where, params = _filters(graph_id=graph_id, name=name, metadata=metadata, auth=auth)
        column = sort_by if sort_by in _SORTABLE else "created_at"
        direction = sql.SQL("ASC" if sort_order == "asc" else "DESC")
        query = sql.SQL(
            "SELECT {cols}, count(*) OVER () AS _total FROM assistants{where} "
            "ORDER BY {col} {dir}, assistant_id {dir} LIMIT %(limit)s OFFSET %(offset)s"
        ).format(
            cols=sql.SQL(_COLUMNS),
            where=where,
            col=sql.Identifier(column),
            dir=direction,
        )
        params.update(limit=limit, offset=offset)
        async with self._pool.connection() as conn:
            rows = await (await conn.execute(query, params)).fetchall()
            if rows:
                total = int(rows[0]["_total"])
            else:
                total = await self._count(conn, where, params)
        for row in rows:
            del row["_total"]
        return rows, total

    async def count(
        self,
        *,
        graph_id: str | None,
        name: str | None,
        metadata: dict[str, Any] | None,
        auth: Filter | None = None,
    ) -> int:
        """How many assistants match (``auth``: only visible ones)."""
        where, params = _filters(graph_id=graph_id, name=name, metadata=metadata, auth=auth)
        async with self._pool.connection() as conn:
            return await self._count(conn, where, params)

    @staticmethod
    async def _count(conn: Any, where: sql.Composable, params: dict[str, Any]) -> int:
        cur = await conn.execute(
            sql.SQL("SELECT count(*) AS n FROM assistants{}").format(where), params
        )
        row = await cur.fetchone()
        return int(row["n"]) if row else 0

    async def versions(
        self, assistant_id: str, *, metadata: dict[str, Any] | None, limit: int, offset: int
    ) -> list[dict[str, Any]]:
        """Stored versions, newest first."""
        params: dict[str, Any] = {"id": assistant_id, "limit": limit, "offset": offset}
        extra = ""
        if metadata:
            extra = " AND metadata @> %(metadata)s"
            params["metadata"] = jsonb(metadata)
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT assistant_id, version, graph_id, config, context, metadata, created_at, "
                "name, description FROM assistant_versions WHERE assistant_id = %(id)s"
                + extra
                + " ORDER BY version DESC LIMIT %(limit)s OFFSET %(offset)s",
                params,
            )
            return await cur.fetchall()
