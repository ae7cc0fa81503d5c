"""Request bodies of the threads endpoints."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from server.schemas.common import CheckpointConfig, JsonObject, Limit, Offset, Request, SortOrder

MAX_TTL_MINUTES = 10 * 366 * 24 * 60
"""Ten years: beyond that a TTL means nothing (and Postgres intervals stay exact)."""

__all__ = [
    "ThreadCount",
    "ThreadCreate",
    "ThreadHistory",
    "ThreadPatch",
    "ThreadPrune",
    "ThreadSearch",
    "ThreadSelectField",
    "ThreadStateAtCheckpoint",
    "ThreadStateUpdate",
    "ThreadStatus",
    "ThreadTTL",
    "SuperstepUpdate",
    "Superstep",
]

ThreadStatus = Literal["idle", "busy", "interrupted", "error"]
ThreadSelectField = Literal[
    "thread_id",
    "created_at",
    "updated_at",
    "state_updated_at",
    "metadata",
    "config",
    "status",
    "values",
    "interrupts",
]


class SuperstepUpdate(Request):
    """One write of a pre-seeded superstep."""

    values: JsonObject | list[Any] | None = None
    command: JsonObject | None = None
    as_node: str = Field(min_length=1, max_length=200)


class Superstep(Request):
    """Updates applied together as one step."""

    updates: list[SuperstepUpdate] = Field(max_length=100)


class ThreadTTL(Request):
    """A thread's time-to-live: what happens when it runs out, and in how many minutes."""

    strategy: Literal["delete", "keep_latest"] = Field(
        default="delete",
        description="'delete' removes the thread; 'keep_latest' prunes it to its latest state.",
    )
    ttl: float | None = Field(
        default=None,
        ge=-MAX_TTL_MINUTES,
        le=MAX_TTL_MINUTES,
        description="Minutes from now until the thread is swept (0 or less: the next sweep).",
    )


class ThreadCreate(Request):
    """``POST /threads``."""

    thread_id: str | None = Field(default=None, max_length=100)
    metadata: JsonObject | None = None
    if_exists: Literal["raise", "do_nothing"] | None = None
    ttl: ThreadTTL | None = None
    supersteps: list[Superstep] | None = Field(default=None, max_length=100)


class ThreadPatch(Request):
    """``PATCH /threads/{id}``: metadata is merged into the stored metadata."""

    metadata: JsonObject | None = None
    ttl: ThreadTTL | None = None


class ThreadSearch(Request):
    """``POST /threads/search``."""

    ids: list[str] | None = Field(default=None, max_length=1000)
    metadata: JsonObject | None = None
    values: JsonObject | None = None
    status: ThreadStatus | None = None
    limit: Limit = 10
    offset: Offset = 0
    sort_by: (
        Literal["thread_id", "status", "created_at", "updated_at", "state_updated_at"] | None
    ) = None
    sort_order: SortOrder | None = None
    select: list[ThreadSelectField] | None = Field(default=None, max_length=20)
    extract: dict[str, str] | None = Field(default=None, max_length=10)


class ThreadCount(Request):
    """``POST /threads/count``."""

    metadata: JsonObject | None = None
    values: JsonObject | None = None
    status: ThreadStatus | None = None


class ThreadPrune(Request):
    """``POST /threads/prune``."""

    thread_ids: list[str] = Field(max_length=1000)
    strategy: Literal["delete", "keep_latest"] = "delete"


class ThreadStateUpdate(Request):
    """``POST /threads/{id}/state``."""

    values: JsonObject | list[Any] | None = None
    checkpoint: CheckpointConfig | None = None
    checkpoint_id: str | None = Field(default=None, max_length=100)
    as_node: str | None = Field(default=None, max_length=200)


class ThreadStateAtCheckpoint(Request):
    """``POST /threads/{id}/state/checkpoint``."""

    checkpoint: CheckpointConfig
    subgraphs: bool = False


class ThreadHistory(Request):
    """``POST /threads/{id}/history``."""

    limit: Limit = 10
    before: CheckpointConfig | str | None = None
    metadata: JsonObject | None = None
    checkpoint: CheckpointConfig | None = None
