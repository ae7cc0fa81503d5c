"""The value a custom-auth ``threads`` ``create_run`` handler is given, as in the reference."""

from __future__ import annotations

from typing import Any

from server.schemas import RunCreate

__all__ = ["create_run_value"]


def create_run_value(
    body: RunCreate, thread_id: str | None, *, if_not_exists: str | None, after_seconds: float
) -> dict[str, Any]:
    """Build what a ``threads`` ``create_run`` authorization handler gets for a run.

    Args:
        body: the run as requested (interactively, or by a cron's payload).
        thread_id: the run's thread; ``None`` for a stateless run.
        if_not_exists: what the run does when its thread is missing (``None``: ``reject``);
            a stateless run always creates its thread.
        after_seconds: the run's requested delay.

    Returns:
        ``thread_id``, ``assistant_id``, ``run_id`` (``None``), ``status``, ``metadata``,
        ``prevent_insert_if_inflight``, ``multitask_strategy``, ``if_not_exists``,
        ``after_seconds`` and ``kwargs`` (input, config, context).
    """
    return {
        "thread_id": thread_id,
        "assistant_id": body.assistant_id,
        "run_id": None,
        "status": "pending",
        "metadata": dict(body.metadata or {}),
        "prevent_insert_if_inflight": False,
        "multitask_strategy": body.multitask_strategy or "enqueue",
        "if_not_exists": "create" if thread_id is None else (if_not_exists or "reject"),
        "after_seconds": after_seconds,
        "kwargs": {
            "input": body.input,
            "config": body.config.model_dump(exclude_none=True) if body.config else {},
            "context": dict(body.context or {}),
        },
    }
