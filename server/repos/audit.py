"""Reading the audit log: filtered pages by ``seq`` (cursor pagination) and a full export."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from psycopg import AsyncConnection, sql
from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool

from state.audit import AuditEntry, entry_from_row

__all__ = ["AuditFilter", "AuditRepo"]

_COLUMNS = "seq, at, actor, action, resource_type, resource_id, details, prev_hash, hash"
_EXPORT_BATCH = 1000

Order = Literal["asc", "desc"]


@dataclass(frozen=True)
class AuditFilter:
    """Which entries: every condition given must hold."""

    actions: tuple[str, ...] = ()
    """Any of these actions (none: every action)."""
    actor: str | None = None
    resource_type: str | None = None
    resource_id: str | None = None
    since: datetime | None = None
    """Entries at or after this time."""
    until: datetime | None = None
    """Entries before this time."""

    def where(self, *, after: int | None, order: Order) -> tuple[sql.Composable, list[Any]]:
        """The WHERE clause (and its parameters), continuing after ``seq`` ``after``."""
        parts: list[sql.Composable] = [sql.SQL("true")]
        params: list[Any] = []
        if self.actions:
            parts.append(sql.SQL("action = ANY(%s)"))
            params.append(list(self.actions))
        for column, value in (
            ("actor", self.actor),
            ("resource_type", self.resource_type),
            ("resource_id", self.resource_id),
        ):
            if value is not None:
                parts.append(sql.SQL("{} = %s").format(sql.Identifier(column)))
                params.append(value)
        if self.since is not None:
            parts.append(sql.SQL("at >= %s"))
            params.append(self.since)
        if self.until is not None:
            parts.append(sql.SQL("at < %s"))
            params.append(self.until)
        if after is not None:
            parts.append(sql.SQL("seq > %s" if order == "asc" else "seq < %s"))
            params.append(after)
        return sql.SQL(" AND ").join(parts), params


class AuditRepo:
    """SQL reads of ``audit_log`` (writes go through :func:`state.audit.append_entry`)."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self._pool: AsyncConnectionPool[AsyncConnection[DictRow]] = pool

    async def page(
        self, flt: AuditFilter, *, after: int | None, limit: int, order: Order
    ) -> tuple[list[AuditEntry], int | None]:
        """Up to ``limit`` entries after the cursor, and the cursor of the next page (``None``
        on the last page). Stable: entries are never changed or removed, and new ones only
        come after the newest (``asc``)."""
        where, params = flt.where(after=after, order=order)
        query = sql.SQL("SELECT {} FROM audit_log WHERE {} ORDER BY seq {} LIMIT %s").format(
            sql.SQL(_COLUMNS), where, sql.SQL("ASC" if order == "asc" else "DESC")
        )
        async with self._pool.connection() as conn:
            cur = await conn.execute(query, [*params, limit + 1])
            rows = await cur.fetchall()
        entries = [entry_from_row(row) for row in rows[:limit]]
        return entries, (entries[-1].seq if len(rows) > limit else None)

    async def export(
        self, flt: AuditFilter, *, after: int | None, order: Order
    ) -> AsyncIterator[AuditEntry]:
        """Every matching entry, a batch at a time (a connection is held per batch only)."""
        while True:
            entries, after = await self.page(flt, after=after, limit=_EXPORT_BATCH, order=order)
            for entry in entries:
                yield entry
            if after is None:
                return
