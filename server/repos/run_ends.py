"""A thread's runs in flight or ended since a moment: what a thread stream checks in Postgres.

See :mod:`server.runtime.thread_runs` for why a thread stream asks. Migration 0150 indexes a
thread's ended runs by their end, so a check reads the runs that ended since, not every run the
thread ever had.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg_pool import AsyncConnectionPool

__all__ = ["database_now", "inflight_or_ended"]


async def database_now(pool: AsyncConnectionPool[Any]) -> datetime:
    """The database's clock (``now()``): what the runs' own timestamps are read against."""
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT now() AS now")
        row: Any = await cur.fetchone()
    return row["now"]


async def inflight_or_ended(
    pool: AsyncConnectionPool[Any], thread_id: str, since: datetime
) -> tuple[list[str], datetime]:
    """Runs of the thread queued or running, or that ended at or after ``since``.

    Ended ones first, then the running run, then the queue, each by creation. Also returns the
    database's clock as the runs were read: passed as the next call's ``since``, no run that
    ends in between is left out (one whose end had begun but was not committed when they were
    read is still running then).
    """
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT now() AS now, ARRAY(SELECT run_id::text FROM runs WHERE thread_id = %s "
            "AND (status IN ('pending', 'running') OR ended_at >= %s) "
            "ORDER BY status IN ('pending', 'running'), status = 'running' DESC, "
            "created_at, run_id) AS run_ids",
            (thread_id, since),
        )
        row: Any = await cur.fetchone()
    return list(row["run_ids"]), row["now"]
