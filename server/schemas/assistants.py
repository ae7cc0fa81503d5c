"""Request bodies of the assistants endpoints."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from server.schemas.common import JsonObject, Limit, Offset, Request, SortOrder

__all__ = [
    "AssistantCount",
    "AssistantCreate",
    "AssistantLatest",
    "AssistantPatch",
    "AssistantSearch",
    "AssistantSelectField",
    "AssistantVersionsSearch",
]

AssistantSelectField = Literal[
    "assistant_id",
    "graph_id",
    "name",
    "description",
    "config",
    "context",
    "created_at",
    "updated_at",
    "metadata",
    "version",
]


class AssistantCreate(Request):
    """``POST /assistants``."""

    graph_id: str = Field(min_length=1, max_length=200)
    assistant_id: str | None = Field(default=None, max_length=100)
    config: JsonObject | None = None
    context: JsonObject | None = None
    metadata: JsonObject | None = None
    if_exists: Literal["raise", "do_nothing"] | None = None
    name: str | None = Field(default=None, max_length=1000)
    description: str | None = Field(default=None, max_length=10_000)


class AssistantPatch(Request):
    """``PATCH /assistants/{id}``: every field given replaces the stored one (metadata merges)."""

    graph_id: str | None = Field(default=None, min_length=1, max_length=200)
    config: JsonObject | None = None
    context: JsonObject | None = None
    metadata: JsonObject | None = None
    name: str | None = Field(default=None, max_length=1000)
    description: str | None = Field(default=None, max_length=10_000)


class AssistantSearch(Request):
    """``POST /assistants/search``."""

    metadata: JsonObject | None = None
    graph_id: str | None = Field(default=None, max_length=200)
    name: str | None = Field(default=None, max_length=1000)
    limit: Limit = 10
    offset: Offset = 0
    sort_by: Literal["assistant_id", "created_at", "updated_at", "name", "graph_id"] | None = None
    sort_order: SortOrder | None = None
    select: list[AssistantSelectField] | None = Field(default=None, max_length=20)


class AssistantCount(Request):
    """``POST /assistants/count``."""

    metadata: JsonObject | None = None
    graph_id: str | None = Field(default=None, max_length=200)
    name: str | None = Field(default=None, max_length=1000)


class AssistantVersionsSearch(Request):
    """``POST /assistants/{id}/versions``."""

    metadata: JsonObject | None = None
    limit: Limit = 10
    offset: Offset = 0


class AssistantLatest(Request):
    """``POST /assistants/{id}/latest``: the version to make current."""

    version: int = Field(ge=1)
