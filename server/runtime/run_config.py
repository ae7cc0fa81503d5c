"""What a claimed run is executed with: its LangGraph config, input, context and user.

Pure functions of the run row (and the graph), kept apart from the executor that streams it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from langgraph.types import Command, Send

from nodes.interrupts import interrupts_configurable
from server.auth.identity import run_identity
from server.versions import LANGGRAPH_VERSION, STAFFGRAPH_VERSION

__all__ = ["command_from", "queue_wait", "run_config", "run_user"]


def run_user(
    stored_config: Mapping[str, Any], context: Mapping[str, Any] | None = None
) -> str | None:
    """The user a run belongs to, for traces and usage totals; None when nobody is named.

    First non-empty string of: ``configurable.langgraph_auth_user_id`` (set by auth),
    ``context.user_id`` (what memory scopes by), ``configurable.user_id``,
    ``metadata.user_id``. ``server.repos.runs.USER_SQL`` is the same rule in SQL.
    """
    configurable = stored_config.get("configurable")
    metadata = stored_config.get("metadata")
    sources: tuple[tuple[Any, str], ...] = (
        (configurable, "langgraph_auth_user_id"),
        (context, "user_id"),
        (configurable, "user_id"),
        (metadata, "user_id"),
    )
    for source, key in sources:
        if isinstance(source, Mapping):
            value = source.get(key)
            if isinstance(value, str) and value:
                return value
    return None


def _moment(value: Any) -> datetime | None:
    # Rows come as psycopg rows (datetimes) or as to_jsonb output (ISO strings).
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


def queue_wait(row: Mapping[str, Any]) -> float | None:
    """Seconds a run waited between becoming due and a worker taking it (first attempt only).

    Due is the later of ``created_at`` and ``available_at`` (``after_seconds`` delays it).
    A retried run's ``started_at`` is its first start, so retries report None.
    """
    if row.get("attempt") != 1:
        return None
    started = _moment(row.get("started_at"))
    due = [m for m in (_moment(row.get("created_at")), _moment(row.get("available_at"))) if m]
    if started is None or not due:
        return None
    return max(0.0, (started - max(due)).total_seconds())


def run_config(row: Mapping[str, Any], kwargs: Mapping[str, Any], *, api_url: str) -> Any:
    """The LangGraph config of a claimed run: stored config plus the reference's metadata.

    Args:
        row: the run row.
        kwargs: its stored request (``row["kwargs"]``).
        api_url: this server's base URL (the reference puts it in run metadata).
    """
    run_id = str(row["run_id"])
    thread_id = str(row["thread_id"])
    stored: dict[str, Any] = dict(kwargs.get("config") or {})
    configurable = run_identity(
        {
            **(stored.get("configurable") or {}),
            "run_id": run_id,
            "thread_id": thread_id,
            "user_id": "",
            # interrupt_before/after names inside members (`writer:model`) reach the members.
            **interrupts_configurable(
                kwargs.get("interrupt_before"), kwargs.get("interrupt_after")
            ),
        }
    )
    metadata = {
        **(stored.get("metadata") or {}),
        # The reference writes the authenticated user here ("" without auth); a user the
        # client named is kept, so traces and usage can be attributed to them.
        "user_id": run_user(stored, kwargs.get("context")) or "",
        "run_attempt": row["attempt"],
        "langgraph_version": LANGGRAPH_VERSION,
        "langgraph_api_version": STAFFGRAPH_VERSION,
        "langgraph_host": "self-hosted",
        "langgraph_api_url": api_url,
        "run_id": run_id,
        "thread_id": thread_id,
    }
    return {
        **{k: v for k, v in stored.items() if k not in ("configurable", "metadata")},
        "configurable": configurable,
        "metadata": metadata,
        "run_id": uuid.UUID(run_id),
    }


def command_from(body: Mapping[str, Any]) -> Command[Any]:
    """A LangGraph ``Command`` from its API body (``goto`` may hold ``Send`` dicts)."""
    goto: Any = body.get("goto")
    if isinstance(goto, dict):
        goto = Send(goto["node"], goto.get("input"))
    elif isinstance(goto, list):
        goto = [Send(g["node"], g.get("input")) if isinstance(g, dict) else g for g in goto]
    return Command(
        update=body.get("update"),
        resume=body.get("resume"),
        goto=goto if goto is not None else (),
    )
