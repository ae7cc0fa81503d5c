"""SQL for the server's own tables: assistants, threads and runs (the run queue)."""

from server.repos._db import (
    UnstorableJson,
    jsonb,
    page_headers,
    storable,
    storable_json,
)
from server.repos.assistants import AssistantsRepo
from server.repos.runs import CancelResult, CreateResult, FinishResult, RunsRepo, run_to_api
from server.repos.threads import ThreadsRepo

__all__ = [
    "AssistantsRepo",
    "CancelResult",
    "CreateResult",
    "FinishResult",
    "RunsRepo",
    "ThreadsRepo",
    "UnstorableJson",
    "jsonb",
    "page_headers",
    "run_to_api",
    "storable",
    "storable_json",
]
