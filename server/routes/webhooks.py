"""Webhook URLs of runs and crons: refused at creation when they could never be called."""

from __future__ import annotations

from server.routes._common import fail
from server.runtime.webhooks import WebhookRefused, check_webhook
from state.settings import WebhookSettings

__all__ = ["check_webhook_or_422"]


async def check_webhook_or_422(url: str, settings: WebhookSettings) -> None:
    """Refuse (422) a webhook URL of a run or cron that could never be called."""
    try:
        await check_webhook(url, settings=settings)
    except WebhookRefused as exc:
        fail(422, str(exc))
