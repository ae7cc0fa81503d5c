"""Webhook deliveries in Postgres (queued by a trigger when a run ends; see migration 0031)."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool

__all__ = ["DELIVERY_FIELDS", "WebhooksRepo", "delivery_to_api"]

DELIVERY_FIELDS = (
    "run_id",
    "thread_id",
    "url",
    "status",
    "attempts",
    "last_status_code",
    "last_error",
    "next_attempt_at",
    "delivered_at",
    "created_at",
    "updated_at",
)
"""What ``GET /threads/{thread_id}/runs/{run_id}/webhook`` shows of a delivery."""


def delivery_to_api(row: dict[str, Any]) -> dict[str, Any]:
    """A delivery row as the API shows it (ids as strings; no retry time once settled)."""
    out = {key: row.get(key) for key in DELIVERY_FIELDS}
    out["run_id"], out["thread_id"] = str(out["run_id"]), str(out["thread_id"])
    if out["status"] in ("delivered", "failed"):
        out["next_attempt_at"] = None
    return out


class WebhooksRepo:
    """SQL for ``webhook_deliveries``."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self._pool: AsyncConnectionPool[AsyncConnection[DictRow]] = pool

    async def get(self, thread_id: str, run_id: str) -> dict[str, Any] | None:
        """The delivery for the run, or ``None`` (the run had no webhook, or has not ended)."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT * FROM webhook_deliveries WHERE run_id = %s AND thread_id = %s",
                (run_id, thread_id),
            )
            return await cur.fetchone()

    async def claim(
        self, *, limit: int, lease_seconds: float, max_attempts: int
    ) -> list[dict[str, Any]]:
        """Take up to ``limit`` due deliveries for one attempt each (``attempts`` counts it).

        A delivery whose sender's lease lapsed is due again; one that has used all its
        attempts that way is marked ``failed`` instead.
        """
        async with self._pool.connection() as conn:
            await conn.execute(
                "UPDATE webhook_deliveries SET status = 'failed', updated_at = now(), "
                "last_error = coalesce(last_error, 'the sender stopped before it finished') "
                "WHERE status = 'sending' AND lease_expires_at < now() AND attempts >= %s",
                (max_attempts,),
            )
            cur = await conn.execute(
                "UPDATE webhook_deliveries SET status = 'sending', attempts = attempts + 1, "
                "lease_expires_at = now() + make_interval(secs => %s), updated_at = now() "
                "WHERE run_id IN (SELECT run_id FROM webhook_deliveries "
                "WHERE (status = 'pending' AND next_attempt_at <= now()) "
                "OR (status = 'sending' AND lease_expires_at < now()) "
                "ORDER BY next_attempt_at LIMIT %s FOR UPDATE SKIP LOCKED) RETURNING *",
                (lease_seconds, limit),
            )
            return await cur.fetchall()

    async def record(
        self,
        run_id: str,
        *,
        attempt: int,
        status: str,
        status_code: int | None,
        error: str | None,
        retry_in: float | None,
    ) -> None:
        """Record attempt ``attempt``: ``delivered``, ``failed``, or ``pending`` again in
        ``retry_in`` seconds. Ignored when another sender has taken the delivery since."""
        async with self._pool.connection() as conn:
            await conn.execute(
                "UPDATE webhook_deliveries SET status = %s, last_status_code = %s, "
                "last_error = %s, lease_expires_at = NULL, updated_at = now(), "
                "delivered_at = CASE WHEN %s = 'delivered' THEN now() END, "
                "next_attempt_at = now() + make_interval(secs => %s) "
                "WHERE run_id = %s AND attempts = %s AND status = 'sending'",
                (status, status_code, error, status, retry_in or 0.0, run_id, attempt),
            )

    async def seconds_until_due(self) -> float | None:
        """Seconds until the next pending delivery is due (may be negative); None if none."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT extract(epoch FROM min(CASE WHEN status = 'pending' THEN next_attempt_at "
                "ELSE lease_expires_at END) - now()) AS wait FROM webhook_deliveries "
                "WHERE status IN ('pending', 'sending')"
            )
            row = await cur.fetchone()
        return float(row["wait"]) if row and row["wait"] is not None else None
