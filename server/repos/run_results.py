"""What the run queue's SQL functions answer (a run's creation, its end, a cancel) and what the
API shows of a run's row."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from state.checkpoints import PrefetchedCheckpoint

__all__ = ["CancelResult", "CreateResult", "FinishResult", "run_to_api"]


@dataclass(frozen=True)
class CreateResult:
    """What ``staffgraph_create_run`` decided."""

    outcome: str
    """``created``, ``conflict``, ``no_thread`` or ``no_assistant``."""
    graph_id: str | None
    run: dict[str, Any] | None
    cancel_ids: list[str]
    """Running runs the strategy stops (signal them)."""
    settled_ids: list[str]
    """Queued runs the strategy ended before they started (close their streams)."""
    checkpoint: PrefetchedCheckpoint | None = None
    """For a run claimed at creation: its thread's latest checkpoint, read in the same
    transaction (its first read; see :class:`state.checkpoints.PrefetchedCheckpoint`)."""


@dataclass(frozen=True)
class FinishResult:
    """What ``staffgraph_finish_run`` did."""

    outcome: str
    """``finished``, ``stale`` (another worker owns the run now), ``no_thread``, or
    ``cancelled``: nothing recorded, the run was flagged with a cancel the outcome does not
    carry out (:attr:`cancel_action`); record that cancel instead."""
    thread_deleted: bool
    next_run: dict[str, Any] | None
    """The thread's next queued run, already claimed for the caller."""
    cancel_action: str | None = None
    """With ``cancelled``: the cancel flagged on the run (``interrupt`` / ``rollback``)."""


@dataclass(frozen=True)
class CancelResult:
    """Runs a cancel request touched."""

    running: list[tuple[str, str]]
    """``(thread_id, run_id)`` of running runs now flagged to stop."""
    settled: list[str]
    """Queued runs ended (or deleted, for rollback) at once."""


_API_KEYS = (
    "run_id",
    "thread_id",
    "assistant_id",
    "metadata",
    "status",
    "kwargs",
    "multitask_strategy",
    "created_at",
    "updated_at",
)


def run_to_api(row: dict[str, Any], *, with_usage: bool = False) -> dict[str, Any]:
    """A ``runs`` row (or its ``to_jsonb``) as the API's Run object.

    Args:
        row: the row.
        with_usage: add ``usage``, the run's token usage and cost (``{}`` until the run
            ends; see :meth:`server.observability.RunUsage.to_dict`). Reading runs returns
            it; creating one does not, so create responses stay exactly the reference's. An
            extra top-level key because ``metadata`` belongs to the client; the SDK's ``Run``
            is a ``TypedDict`` and passes unknown keys through.
    """
    out = {key: row.get(key) for key in _API_KEYS}
    out["langsmith_session_name"] = None
    if with_usage:
        out["usage"] = row.get("usage") or {}
    return out
