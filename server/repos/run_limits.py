"""Runs at once per caller: counted in Postgres when a run is created.

Postgres holds the runs, so the count is right for every replica and no slot leaks when a
process dies. Creations by one caller are serialised by a transaction-scoped advisory lock on
the caller (key space 80), so two concurrent requests cannot both take the last slot; the lock,
the count and the insert are one statement: ``staffgraph_create_run_limited`` (migration 0142)
calls the check ``staffgraph_check_run_limit`` (0141), which fails at the limit, then creates.
"""

from __future__ import annotations

from typing import Any

import psycopg

from server.limits import runs_exceeded
from server.repos.runs import CreateResult, RunsRepo
from state.limit_settings import LimitSettings

__all__ = ["AT_LIMIT_SQLSTATE", "create_within_limit"]

AT_LIMIT_SQLSTATE = "SGR29"


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
    try:
        return await runs.create(**create, limit=(user, max_runs))
    except psycopg.Error as exc:
        if exc.sqlstate == AT_LIMIT_SQLSTATE:
            raise runs_exceeded(limits) from exc
        raise
