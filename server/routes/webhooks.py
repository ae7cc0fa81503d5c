"""How a run's webhook delivery went (staffgraph's own endpoint; the reference has none)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from starlette.responses import Response

from server.auth import Access, matches, protect
from server.deps import Ctx
from server.json_body import JsonRoute
from server.repos.webhooks import WebhooksRepo, delivery_to_api
from server.routes._common import fail, json_response, valid_uuid
from server.runtime.webhooks import WebhookRefused, check_webhook
from state.settings import WebhookSettings

__all__ = ["check_webhook_or_422", "router"]

router = APIRouter(tags=["Runs"], route_class=JsonRoute)


async def check_webhook_or_422(url: str, settings: WebhookSettings) -> None:
    """Refuse (422) a webhook URL of a run or cron that could never be called."""
    try:
        await check_webhook(url, settings=settings)
    except WebhookRefused as exc:
        fail(422, str(exc))


@router.get("/threads/{thread_id}/runs/{run_id}/webhook")
async def get_webhook_delivery(
    thread_id: str, run_id: str, ctx: Ctx, access: Annotated[Access, protect("threads", "read")]
) -> Response:
    """The webhook delivery of a run that ended: ``status`` (``pending``, ``sending``,
    ``delivered``, ``failed``), ``attempts``, the receiver's last status code or the last
    error, and when the next attempt is due. Kept after a stateless run's thread is gone.
    """
    thread_id = valid_uuid(thread_id, "thread")
    run_id = valid_uuid(run_id, "run")
    # A stateless run's delivery outlives its thread: then only an unscoped caller may see it.
    thread = await ctx.runtime.threads.get(thread_id) if ctx.runtime is not None else None
    flt = await access.check({"thread_id": thread_id, "run_id": run_id})
    if flt is not None and (thread is None or not matches(flt, thread["metadata"])):
        fail(404, f"Thread with ID {thread_id} not found")
    row = await WebhooksRepo(ctx.persistence.pool).get(thread_id, run_id)
    if row is None:
        fail(404, f"No webhook delivery for run {run_id}: it has no webhook or has not ended")
    return json_response(delivery_to_api(row))
