"""Request bodies of the crons endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import ConfigDict, Field

from server.schemas.common import JsonObject, Limit, Offset, Request, SortOrder
from server.schemas.runs import Durability, MultitaskStrategy, NodeName, RunConfig, StreamMode

__all__ = [
    "CronCount",
    "CronCreate",
    "CronPatch",
    "CronSearch",
    "CronSelectField",
    "CronSortBy",
    "ThreadCronCreate",
]

CronSortBy = Literal[
    "cron_id", "assistant_id", "thread_id", "next_run_date", "end_time", "created_at", "updated_at"
]
CronSelectField = Literal[
    "cron_id",
    "assistant_id",
    "thread_id",
    "on_run_completed",
    "end_time",
    "schedule",
    "timezone",
    "created_at",
    "updated_at",
    "user_id",
    "payload",
    "next_run_date",
    "metadata",
    "enabled",
]


class _CronRun(Request):
    """The run each firing creates: the fields a cron shares with a run request."""

    input: JsonObject | list[JsonObject] | None = None
    metadata: JsonObject | None = None
    config: RunConfig | None = None
    context: JsonObject | None = None
    webhook: str | None = Field(default=None, min_length=1, max_length=65_536)
    interrupt_before: Literal["*"] | list[NodeName] | None = Field(default=None, max_length=1000)
    interrupt_after: Literal["*"] | list[NodeName] | None = Field(default=None, max_length=1000)
    stream_mode: StreamMode | list[StreamMode] | None = None
    stream_subgraphs: bool | None = None
    stream_resumable: bool | None = None
    durability: Durability | None = None
    checkpoint_during: bool | None = None


class ThreadCronCreate(_CronRun):
    """``POST /threads/{thread_id}/runs/crons``: runs on that thread."""

    assistant_id: str = Field(min_length=1, max_length=200)
    schedule: str = Field(min_length=1, max_length=200)
    timezone: str | None = Field(default=None, min_length=1, max_length=100)
    end_time: datetime | None = None
    enabled: bool = True
    multitask_strategy: MultitaskStrategy | None = None


class CronCreate(ThreadCronCreate):
    """``POST /runs/crons``: each firing runs on a new thread.

    Keys this server does not know are kept in the cron's payload, as the reference does.
    """

    model_config = ConfigDict(extra="allow")

    on_run_completed: Literal["delete", "keep"] | None = None


class CronPatch(_CronRun):
    """``PATCH /runs/crons/{cron_id}``: only the fields sent change.

    ``end_time: null`` clears the end time; leaving it out keeps it.
    """

    schedule: str | None = Field(default=None, min_length=1, max_length=200)
    timezone: str | None = Field(default=None, min_length=1, max_length=100)
    end_time: datetime | None = None
    enabled: bool | None = None
    on_run_completed: Literal["delete", "keep"] | None = None


class CronSearch(Request):
    """``POST /runs/crons/search``."""

    assistant_id: str | None = Field(default=None, max_length=100)
    thread_id: str | None = Field(default=None, max_length=100)
    enabled: bool | None = None
    metadata: JsonObject | None = None
    limit: Limit = 10
    offset: Offset = 0
    sort_by: CronSortBy = "created_at"
    sort_order: SortOrder = "desc"
    select: list[CronSelectField] | None = Field(default=None, max_length=20)


class CronCount(Request):
    """``POST /runs/crons/count``."""

    assistant_id: str | None = Field(default=None, max_length=100)
    thread_id: str | None = Field(default=None, max_length=100)
    metadata: JsonObject | None = None
