"""Start this process's cron scheduler and webhook deliverer (both Postgres-coordinated)."""

from __future__ import annotations

from server.auth import Policy
from server.repos.crons import CronsRepo
from server.repos.webhooks import WebhooksRepo
from server.runtime.cron import CronScheduler
from server.runtime.runtime import Runtime
from server.runtime.webhook_delivery import WebhookDeliverer
from state.db import Persistence
from state.settings import Settings

__all__ = ["start_schedulers"]


def start_schedulers(
    settings: Settings,
    runtime: Runtime,
    persistence: Persistence,
    database_url: str,
    *,
    policy: Policy,
) -> tuple[CronScheduler | None, WebhookDeliverer]:
    """Start the webhook deliverer and, unless ``STAFFGRAPH_CRON_SCHEDULER=false``, the cron
    scheduler (whose runs are their creators', by ``policy``). The caller stops both (before
    the runtime).
    """
    scheduler = None
    if settings.crons.scheduler:
        scheduler = CronScheduler(
            runtime=runtime,
            crons=CronsRepo(persistence.pool),
            interval=settings.crons.interval_seconds,
            policy=policy,
        )
        scheduler.start()
    deliverer = WebhookDeliverer(
        repo=WebhooksRepo(persistence.pool),
        settings=settings.webhooks,
        database_url=database_url,
    )
    deliverer.start()
    return scheduler, deliverer
