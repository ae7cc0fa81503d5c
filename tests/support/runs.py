"""Runs made straight through the run queue's SQL (``RunsRepo.create``), for tests below the API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from server.ids import new_id
from server.repos import CreateResult, RunsRepo


async def create_run(
    runs: RunsRepo,
    thread_id: str,
    *,
    assistant_id: str,
    kwargs: dict[str, Any] | None = None,
    strategy: str = "enqueue",
    owner: str | None = None,
    lease_seconds: float = 30,
    temporary: bool = False,
    conn: Any = None,
) -> CreateResult:
    """A run created on ``thread_id`` (made if missing), claimed at once by ``owner`` if any
    (a ``temporary`` run's thread is deleted when it ends)."""
    return await runs.create(
        run_id=new_id(),
        thread_id=thread_id,
        assistant_id=assistant_id,
        metadata={},
        kwargs=kwargs or {"input": None},
        config={},
        context={},
        strategy=strategy,
        if_not_exists="create",
        temporary=temporary,
        on_completion="delete" if temporary else None,
        after_seconds=0,
        owner=owner,
        lease_seconds=lease_seconds,
        conn=conn,
    )


async def next_announced(watcher: AsyncIterator[str | None], within: float) -> str | None:
    """The next run id a thread watcher yields within ``within`` seconds (idle ticks skipped),
    else None."""
    try:
        async with asyncio.timeout(within):
            while (announced := await anext(watcher)) is None:
                pass
            return announced
    except TimeoutError:
        return None
