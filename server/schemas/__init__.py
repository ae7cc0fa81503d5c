"""Pydantic models of the LangGraph Server API request bodies (assistants, threads, runs)."""

from server.schemas.assistants import (
    AssistantCount,
    AssistantCreate,
    AssistantLatest,
    AssistantPatch,
    AssistantSearch,
    AssistantVersionsSearch,
)
from server.schemas.common import MAX_LIMIT, CheckpointConfig, Request
from server.schemas.runs import (
    STREAM_MODES,
    CommandBody,
    RunConfig,
    RunCreate,
    RunsCancel,
    SendBody,
    StreamMode,
)
from server.schemas.threads import (
    ThreadCount,
    ThreadCreate,
    ThreadHistory,
    ThreadPatch,
    ThreadPrune,
    ThreadSearch,
    ThreadStateAtCheckpoint,
    ThreadStateUpdate,
    ThreadTTL,
)

__all__ = [
    "MAX_LIMIT",
    "STREAM_MODES",
    "AssistantCount",
    "AssistantCreate",
    "AssistantLatest",
    "AssistantPatch",
    "AssistantSearch",
    "AssistantVersionsSearch",
    "CheckpointConfig",
    "CommandBody",
    "Request",
    "RunConfig",
    "RunCreate",
    "RunsCancel",
    "SendBody",
    "StreamMode",
    "ThreadCount",
    "ThreadCreate",
    "ThreadHistory",
    "ThreadPatch",
    "ThreadTTL",
    "ThreadPrune",
    "ThreadSearch",
    "ThreadStateAtCheckpoint",
    "ThreadStateUpdate",
]
