"""What the lifespan opens once and every request and worker shares."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from langchain_core.embeddings import Embeddings

from server.config import LangGraphConfig
from server.database import DatabaseTarget
from server.graphs import GraphRegistry
from server.observability import LangSmithTracing, Metrics
from server.runtime import Runtime
from server.runtime.cron import CronScheduler
from state.db import Persistence
from state.settings import Settings

__all__ = ["AppContext", "DatabaseTarget"]


@dataclass
class AppContext:
    """Shared, process-wide resources. Built in the lifespan; never a module global."""

    settings: Settings
    config: LangGraphConfig
    graphs: GraphRegistry
    database: DatabaseTarget
    persistence: Persistence
    embeddings: Embeddings | None
    info: dict[str, Any] = field(default_factory=dict)
    runtime: Runtime | None = None
    """Run queue, workers and event broker (``None`` only in apps built without them)."""
    metrics: Metrics | None = None
    """This app's Prometheus metrics (also ``app.state.metrics`` for ``/metrics``)."""
    tracing: LangSmithTracing | None = None
    """LangSmith tracing of runs; ``None`` when ``LANGSMITH_TRACING`` is off."""
    crons: CronScheduler | None = None
    """This process's cron scheduler; ``None`` with ``STAFFGRAPH_CRON_SCHEDULER=false``."""
