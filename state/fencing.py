"""Lease fencing of a run's writes: the run's id and lease token, and the check in SQL.

The server sets :data:`RUN_FENCE` around the execution of a claimed run. Writes made for that
run (checkpoints, effect-ledger records) check in the same transaction that the run is still
``running`` under that token, holding the row ``FOR SHARE`` until they commit, so a worker that
lost the lease (another one claimed the run and bumped the token) writes nothing.

The check is the SQL function ``staffgraph_check_fence`` (migration 0140), which raises
(SQLSTATE ``SGL01``) rather than returning nothing: it can be sent in one pipeline with the
writes and the ``COMMIT`` (one round trip), and a lost lease aborts the transaction before any
write of it lands.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import psycopg

__all__ = [
    "FENCE_SQL",
    "LEASE_LOST_SQLSTATE",
    "RUN_FENCE",
    "LeaseLost",
    "RunFence",
    "check_fence",
    "lease_lost_as",
]

FENCE_SQL = "SELECT staffgraph_check_fence(%s, %s)"
"""Fails with :data:`LEASE_LOST_SQLSTATE` unless the run is ``running`` under the token."""

LEASE_LOST_SQLSTATE = "SGL01"


@dataclass(frozen=True)
class RunFence:
    """The run whose writes are being made and the lease token its worker holds."""

    run_id: str
    token: int


RUN_FENCE: ContextVar[RunFence | None] = ContextVar("staffgraph_run_fence", default=None)
"""The fence of the run executing in this context (None outside a run)."""


class LeaseLost(RuntimeError):
    """The run's lease is no longer held with this token: the write was refused."""

    def __init__(self, fence: RunFence) -> None:
        super().__init__(
            f"run {fence.run_id} is no longer held with lease token {fence.token}; "
            "another worker owns it or it ended"
        )
        self.fence = fence


@contextmanager
def lease_lost_as(fence: RunFence) -> Iterator[None]:
    """Turn the fence function's error, raised anywhere inside, into :class:`LeaseLost`."""
    try:
        yield
    except psycopg.Error as exc:
        if exc.sqlstate == LEASE_LOST_SQLSTATE:
            raise LeaseLost(fence) from exc
        raise


async def check_fence(cursor: Any, fence: RunFence) -> None:
    """Inside a transaction: lock the run row in share mode if the token is current.

    In pipeline mode the error surfaces when the pipeline syncs; wrap the whole transaction in
    :func:`lease_lost_as` to see it as :class:`LeaseLost`.

    Raises:
        LeaseLost: the run is not ``running`` under ``fence.token``.
    """
    with lease_lost_as(fence):
        await cursor.execute(FENCE_SQL, (fence.run_id, fence.token))
