"""Pieces shared by the request models: bounded JSON objects, checkpoints, sort orders."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "MAX_LIMIT",
    "CheckpointConfig",
    "JsonObject",
    "Limit",
    "Offset",
    "Request",
    "SortOrder",
]

MAX_LIMIT = 1000
"""Largest page any list endpoint returns."""

JsonObject = dict[str, Any]
Limit = Annotated[int, Field(ge=1, le=MAX_LIMIT)]
Offset = Annotated[int, Field(ge=0, le=1_000_000)]
SortOrder = Literal["asc", "desc"]


class Request(BaseModel):
    """Base of every request body: unknown keys are ignored, as the official server does.

    Clients built for newer servers send fields this one does not know (``langsmith_tracer``,
    ``strict_resume``…); refusing them would break those clients for no gain.
    """

    model_config = ConfigDict(extra="ignore")


class CheckpointConfig(Request):
    """A checkpoint address: ``checkpoint_id`` within ``checkpoint_ns`` of a thread."""

    thread_id: str | None = Field(default=None, max_length=100)
    checkpoint_ns: str | None = Field(default="", max_length=1000)
    checkpoint_id: str | None = Field(default=None, max_length=100)
    checkpoint_map: JsonObject | None = None

    def configurable(self) -> dict[str, Any]:
        """The non-empty fields as a ``configurable`` dict for LangGraph."""
        out: dict[str, Any] = {"checkpoint_ns": self.checkpoint_ns or ""}
        if self.checkpoint_id:
            out["checkpoint_id"] = self.checkpoint_id
        if self.checkpoint_map:
            out["checkpoint_map"] = self.checkpoint_map
        return out
