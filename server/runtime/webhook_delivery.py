"""Delivering queued webhooks: claim, POST with retries and backoff, record the outcome.

When a run with a ``webhook`` ends, Postgres queues a delivery in the same transaction (see
``state/migrations/0031_webhook_deliveries.sql``). Every server and worker process runs a
:class:`WebhookDeliverer` that wakes on ``NOTIFY staffgraph_webhooks`` (and at least every
``_IDLE_SECONDS``), claims due deliveries under a lease and POSTs the run's final payload.

The payload is what the reference server posts: the Run object, ``status``,
``run_started_at``, ``run_ended_at``, ``webhook_sent_at``, the thread's final ``values``
(``null`` when the thread was deleted with the run) and, for a failed run, ``error``.

A call that fails on the network, times out or gets a 408/425/429/5xx is retried after
``STAFFGRAPH_WEBHOOK_BACKOFF_SECONDS``, doubled after each failure (at most an hour), up to
``STAFFGRAPH_WEBHOOK_MAX_ATTEMPTS`` calls; another 4xx, or an address the guard refuses, fails
the delivery at once. None of this touches the run: its status stays what it was, and the
delivery's state is read at ``GET /threads/{thread_id}/runs/{run_id}/webhook``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from typing import Any

import psycopg

from server.repos import run_to_api
from server.repos.webhooks import WebhooksRepo
from server.runtime.webhooks import Resolver, post_webhook
from server.serde import dumps
from state.settings import WebhookSettings

__all__ = ["WebhookDeliverer", "webhook_payload"]

log = logging.getLogger(__name__)

_BATCH = 20
_IDLE_SECONDS = 30.0
"""Longest sleep with nothing due: a fallback for a NOTIFY lost while reconnecting."""
_MAX_BACKOFF = 3600.0


def webhook_payload(run: dict[str, Any], values: Any, *, sent_at: datetime) -> dict[str, Any]:
    """The JSON body posted for a run that ended (``run``: its row as JSON)."""
    payload = {
        **run_to_api(run),
        "status": run.get("status"),
        "run_started_at": run.get("started_at"),
        "run_ended_at": run.get("ended_at"),
        "webhook_sent_at": sent_at.isoformat(),
        "values": values,
    }
    if run.get("error") is not None:
        payload["error"] = run["error"]
    return payload


class WebhookDeliverer:
    """Sends this deployment's due webhooks from one process (any number may run at once)."""

    def __init__(
        self,
        *,
        repo: WebhooksRepo,
        settings: WebhookSettings,
        database_url: str,
        resolver: Resolver | None = None,
    ) -> None:
        """Wire the deliverer (nothing runs until :meth:`start`).

        Args:
            repo: the deliveries table.
            settings: guard, signature, timeout, attempts and backoff.
            database_url: libpq URL for the ``LISTEN`` connection.
            resolver: replaces the system DNS resolver (tests).
        """
        self._repo = repo
        self._settings = settings
        self._database_url = database_url
        self._resolver = resolver
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Start delivering and listening for new deliveries."""
        self._tasks = [
            asyncio.create_task(self._loop(), name="webhook-deliverer"),
            asyncio.create_task(self._listen(), name="webhook-listener"),
        ]

    async def stop(self) -> None:
        """Stop; a call in flight is abandoned and retried by any process once its lease lapses."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def deliver_due(self) -> int:
        """Make one attempt at every due delivery. Returns how many were attempted."""
        total = 0
        lease = self._settings.timeout_seconds + 30.0
        while True:
            claimed = await self._repo.claim(
                limit=_BATCH, lease_seconds=lease, max_attempts=self._settings.max_attempts
            )
            await asyncio.gather(*(self._attempt(row) for row in claimed))
            total += len(claimed)
            if len(claimed) < _BATCH:
                return total

    async def _attempt(self, row: dict[str, Any]) -> None:
        run_id = str(row["run_id"])
        attempt = int(row["attempts"])
        body = dumps(webhook_payload(row["run"], row["values"], sent_at=datetime.now(UTC)))
        outcome = await post_webhook(
            row["url"],
            body,
            settings=self._settings,
            delivery=run_id,
            attempt=attempt,
            now=int(time.time()),
            resolver=self._resolver,
        )
        if outcome.delivered:
            status, retry_in = "delivered", None
        elif outcome.retry and attempt < self._settings.max_attempts:
            status = "pending"
            retry_in = min(self._settings.backoff_seconds * 2 ** (attempt - 1), _MAX_BACKOFF)
        else:
            status, retry_in = "failed", None
        if status != "delivered":
            log.warning(
                "webhook for run %s, attempt %d: %s (%s)", run_id, attempt, outcome.error, status
            )
        await self._repo.record(
            run_id,
            attempt=attempt,
            status=status,
            status_code=outcome.status_code,
            error=outcome.error,
            retry_in=retry_in,
        )

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.deliver_due()
                delay = await self._repo.seconds_until_due()
            except asyncio.CancelledError:
                raise
            except Exception:  # a database outage: try again shortly
                log.exception("webhook deliverer: could not deliver due webhooks")
                delay = 5.0
            wait = _IDLE_SECONDS if delay is None else min(_IDLE_SECONDS, max(delay, 0.0))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=wait)

    async def _listen(self) -> None:
        delay = 0.1
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self._database_url, autocommit=True)
                try:
                    await conn.execute("LISTEN staffgraph_webhooks")
                    delay = 0.1
                    self._wake.set()  # anything queued while we were not listening
                    async for _ in conn.notifies():
                        self._wake.set()
                finally:
                    await conn.close()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("lost the webhook LISTEN connection; reconnecting", exc_info=True)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
