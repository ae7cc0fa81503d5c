"""Runs at once per caller: counted in Postgres when a run is created.

Postgres holds the runs, so the count is right for every replica and no slot leaks when a
process dies. Creations by one caller are serialised by a transaction-scoped advisory lock on
the caller (key space 80), so two concurrent requests cannot both take the last slot; the lock,
the count and the insert are one transaction.
"""

from __future__ import annotations

from typing import Any

from server.limits import runs_exceeded
from server.repos.runs import CreateResult, RunsRepo
from state.limit_settings import LimitSettings

__all__ = ["INFLIGHT_SQL", "create_within_limit"]

_LOCK_SPACE = 80
INFLIGHT_SQL = (
    "SELECT count(*) AS n FROM runs WHERE status IN ('pending', 'running') "
    "AND kwargs -> 'config' -> 'configurable' ->> 'langgraph_auth_user_id' = %s"
)
"""Runs of one caller pending or running (index ``runs_user_inflight``, migration 0080)."""


async def create_within_limit(
    runs: RunsRepo, *, user: str, limits: LimitSettings, **create: Any
) -> CreateResult:
    """:meth:`RunsRepo.create` unless ``user`` already has ``max_concurrent_runs`` in flight.

    No limit (``0``) or a caller's own transaction (``conn``, a cron firing) creates without
    counting.

    Raises:
        LimitExceeded: 429, the caller has as many runs in flight as allowed.
    """
    max_runs = limits.max_concurrent_runs
    if max_runs <= 0 or create.get("conn") is not None:
        return await runs.create(**create)
    async with runs.pool.connection() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_LOCK_SPACE, user))
        cur = await conn.execute(INFLIGHT_SQL, (user,))
        row: Any = await cur.fetchone()
        if row["n"] >= max_runs:
            raise runs_exceeded(limits)
        return await runs.create(**{**create, "conn": conn})
