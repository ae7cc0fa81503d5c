"""Lease fencing of a run's writes: the run's id and lease token, and the check in SQL.

The server sets :data:`RUN_FENCE` around the execution of a claimed run. Writes made for that
run (checkpoints, effect-ledger records) check in the same transaction that the run is still
``running`` under that token, holding the row ``FOR SHARE`` until they commit, so a worker that
lost the lease (another one claimed the run and bumped the token) writes nothing.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

__all__ = ["RUN_FENCE", "LeaseLost", "RunFence", "check_fence"]


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


async def check_fence(cursor: Any, fence: RunFence) -> None:
    """Inside a transaction: lock the run row in share mode if the token is current.

    Raises:
        LeaseLost: the run is not ``running`` under ``fence.token``.
    """
    await cursor.execute(
        "SELECT 1 FROM runs WHERE run_id = %s AND fencing_token = %s AND status = 'running' "
        "FOR SHARE",
        (fence.run_id, fence.token),
    )
    if await cursor.fetchone() is None:
        raise LeaseLost(fence)
