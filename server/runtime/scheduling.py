"""Start this process's cron scheduler (coordinated with the other processes in Postgres)."""

from __future__ import annotations

from server.repos.crons import CronsRepo
from server.runtime.cron import CronScheduler
from server.runtime.runtime import Runtime
from state.db import Persistence
from state.settings import Settings

__all__ = ["start_schedulers"]


def start_schedulers(
    settings: Settings, runtime: Runtime, persistence: Persistence, database_url: str
) -> CronScheduler | None:
    """Start the cron scheduler unless ``STAFFGRAPH_CRON_SCHEDULER=false``. The caller stops
    it (before the runtime).
    """
    scheduler = None
    if settings.crons.scheduler:
        scheduler = CronScheduler(
            runtime=runtime,
            crons=CronsRepo(persistence.pool),
            interval=settings.crons.interval_seconds,
        )
        scheduler.start()
    return scheduler
