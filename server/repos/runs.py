"""Runs in Postgres: the run queue (create, claim, heartbeat, finish, sweep) and run queries.

Usage sums live in :mod:`server.repos.run_usage` (``USER_SQL`` is re-exported here).

The queue decisions are SQL functions (``state/migrations/0003_run_queue.sql``, with
``staffgraph_finish_run`` replaced in ``0004_run_usage.sql`` to store the run's token usage)
so each one is a single round trip holding the thread's row lock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from datetime import datetime
from typing import Any, Literal

from psycopg import AsyncConnection, AsyncCursor, AsyncRawCursor
from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool

from server.repos._db import encoded_jsonb, jsonb
from server.repos.run_results import CancelResult, CreateResult, FinishResult, run_to_api
from server.repos.run_usage import USER_SQL, UsageTotals, usage_totals
from state.checkpoint_writes import FencedWrites
from state.checkpoints import CHECKPOINT_COLUMNS, CLAIMED_CHECKPOINT, PrefetchedCheckpoint

__all__ = [
    "USER_SQL",
    "CancelResult",
    "CreateResult",
    "FinishResult",
    "RunsRepo",
    "UsageTotals",
    "run_to_api",
]

_CREATE_CALL = {
    False: "staffgraph_create_run(" + ", ".join(["%s"] * 15) + ")",
    True: "staffgraph_create_run_limited(" + ", ".join(["%s"] * 17) + ")",
}
"""The creation's function call, without and with the caller's limit (its user, its most)."""
_CREATE_SQL = {limited: f"SELECT * FROM {call}" for limited, call in _CREATE_CALL.items()}
_CLAIM_SQL = {
    limited: f"SELECT c.*, l.* FROM {call} AS c "
    f"LEFT JOIN LATERAL {CLAIMED_CHECKPOINT}(c.run) AS l ON true"
    for limited, call in _CREATE_CALL.items()
}
"""The creation, and when it claimed the run its thread's latest checkpoint."""


_FINISH_SQL = "SELECT * FROM staffgraph_finish_run(" + ", ".join(["%s"] * 13) + ")"


def _ids(values: Sequence[Any] | None) -> list[str]:
    return [str(v) for v in values or ()]


class RunsRepo:
    """SQL for ``runs``."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self._pool: AsyncConnectionPool[AsyncConnection[DictRow]] = pool

    @property
    def pool(self) -> AsyncConnectionPool[AsyncConnection[DictRow]]:
        """The pool (for a transaction around :meth:`create`)."""
        return self._pool

    async def create(
        self,
        *,
        run_id: str,
        thread_id: str,
        assistant_id: str,
        metadata: dict[str, Any],
        kwargs: dict[str, Any],
        config: dict[str, Any],
        context: dict[str, Any],
        strategy: str,
        if_not_exists: str,
        temporary: bool,
        on_completion: str | None,
        after_seconds: float,
        owner: str | None,
        lease_seconds: float,
        conn: AsyncConnection[DictRow] | None = None,
        thread_filter: Mapping[str, Any] | None = None,
        limit: tuple[str, int] | None = None,
    ) -> CreateResult:
        """Create a run (claimed for ``owner`` straight away when nothing is ahead of it).

        ``conn``: create it inside the caller's transaction (a cron firing) instead of on a
        connection of the pool. ``thread_filter``: the caller's authorization filter; a thread
        whose metadata does not match it is treated as missing (checked in the same statement,
        under the thread's lock). ``limit``: the caller's user id and the most runs it may have
        pending or running; checked in the same statement (at the limit the statement fails
        with SQLSTATE ``SGR29`` and nothing is created).
        """
        args: tuple[Any, ...] = (
            run_id,
            thread_id,
            assistant_id,
            jsonb(metadata),
            jsonb(kwargs),
            jsonb(config),
            jsonb(context),
            strategy,
            if_not_exists,
            temporary,
            on_completion,
            after_seconds,
            owner,
            lease_seconds,
            jsonb(dict(thread_filter)) if thread_filter else None,
        )
        if limit is not None:
            args = (*args, *limit)
        prefetched = None
        prefetch = owner is not None and not temporary and conn is None
        async with nullcontext(conn) if conn is not None else self._pool.connection() as conn:
            if not prefetch:
                cur = await conn.execute(_CREATE_SQL[limit is not None], args)
            else:
                # Claimed at once: its thread's latest checkpoint (the run's first read) comes
                # in the same statement, read after the claim, in binary as the checkpointer
                # reads it. Read only when the claim happened (the run is running).
                cur = await conn.cursor(binary=True).execute(_CLAIM_SQL[limit is not None], args)
            row: Any = await cur.fetchone()
            if prefetch:
                run = row["run"]
                if run is not None and run["status"] == "running":
                    checkpoint = (
                        None
                        if row["checkpoint_id"] is None
                        else {column: row[column] for column in CHECKPOINT_COLUMNS}
                    )
                    prefetched = PrefetchedCheckpoint(str(run["thread_id"]), checkpoint)
        return CreateResult(
            outcome=row["outcome"],
            graph_id=row["graph_id"],
            run=row["run"],
            cancel_ids=_ids(row["cancel_ids"]),
            settled_ids=_ids(row["settled_ids"]),
            checkpoint=prefetched,
        )

    async def claim(self, owner: str, *, lease_seconds: float, limit: int) -> list[dict[str, Any]]:
        """Claim up to ``limit`` runnable runs for ``owner``."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT * FROM staffgraph_claim_runs(%s, %s, %s)", (owner, lease_seconds, limit)
            )
            return await cur.fetchall()

    async def finish(
        self,
        *,
        run_id: str,
        thread_id: str,
        token: int,
        status: str,
        thread_status: str,
        values: Any,
        interrupts: dict[str, Any] | None,
        error: dict[str, Any] | None,
        delete_run: bool,
        owner: str | None,
        lease_seconds: float,
        usage: dict[str, Any] | None = None,
        cancel_action: str | None = None,
        values_json: bytes | None = None,
        before: FencedWrites | None = None,
    ) -> FinishResult:
        """Record the end of a run and move its thread on (see the SQL function).

        ``values_json``: ``values`` as :func:`server.serde.dumps` wrote them, sent as they are.

        ``usage`` (the run's token usage JSON) is stored in the same statement as the status.
        ``cancel_action`` is the cancel the outcome carries out (None: the run ended by
        itself); an outcome that does not carry out the cancel flagged on the run is refused
        (``cancelled``), so an accepted cancel cannot be lost on its way to the worker.

        ``before``: the run's last checkpoint writes (:meth:`state.held_writes.HeldWrites.take`),
        made in the same statement when they fit in one (else first, in the same transaction
        and round trip): the final state and the run's end commit together or not at all.
        Their fence failing raises the fence's error (wrap the call in
        :func:`state.fencing.lease_lost_as` to see :class:`~state.fencing.LeaseLost`).
        """
        args = (
            run_id,
            thread_id,
            token,
            status,
            thread_status,
            jsonb(values) if values_json is None else encoded_jsonb(values_json),
            jsonb(interrupts),
            jsonb(error),
            delete_run,
            owner,
            lease_seconds,
            jsonb(usage),
            cancel_action,
        )
        fused = before.ending_with("staffgraph_finish_run", args) if before else None
        async with self._pool.connection() as conn:
            if fused is not None:
                # The writes and the end as one statement (one implicit transaction): the
                # final state and the run's end commit together or not at all.
                cur: AsyncCursor[DictRow] = await AsyncRawCursor(conn).execute(*fused)
            elif before:
                # Writes too many for one statement: one pipeline, so one implicit transaction
                # up to its Sync; the row is fetched once it has ended (fetching inside would
                # cost a round trip of its own).
                async with conn.pipeline():
                    writes = conn.cursor(binary=True)
                    for query, params in before.statements_after_thread_lock():
                        await writes.execute(query, params)
                    cur = await conn.execute(_FINISH_SQL, args)
            else:
                cur = await conn.execute(_FINISH_SQL, args)
            row: Any = await cur.fetchone()
        return FinishResult(
            row["outcome"], bool(row["thread_deleted"]), row["next_run"], row["cancel_action"]
        )

    async def usage_totals(
        self,
        *,
        assistant_id: str | None = None,
        user_id: str | None = None,
        graph_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        group_by: Literal["assistant", "user", "graph"] | None = None,
    ) -> UsageTotals:
        """Token usage of finished runs (see :func:`server.repos.run_usage.usage_totals`)."""
        return await usage_totals(
            self._pool,
            assistant_id=assistant_id,
            user_id=user_id,
            graph_id=graph_id,
            since=since,
            until=until,
            group_by=group_by,
        )

    async def heartbeat(
        self, owner: str, run_ids: Sequence[str], *, lease_seconds: float
    ) -> dict[str, str | None]:
        """Extend ``owner``'s leases. Returns ``{run_id: cancel_action}`` for leases still held."""
        if not run_ids:
            return {}
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "UPDATE runs SET lease_expires_at = now() + make_interval(secs => %s) "
                "WHERE run_id = ANY(%s::uuid[]) AND lease_owner = %s AND status = 'running' "
                "RETURNING run_id::text AS run_id, cancel_action",
                (lease_seconds, list(run_ids), owner),
            )
            return {row["run_id"]: row["cancel_action"] for row in await cur.fetchall()}

    async def release(self, run_id: str, token: int) -> None:
        """Put a run this worker holds back in the queue (graceful shutdown) and wake others."""
        async with self._pool.connection() as conn:
            await conn.execute(
                "UPDATE runs SET status = 'pending', lease_owner = NULL, lease_expires_at = NULL, "
                "available_at = now(), updated_at = now() "
                "WHERE run_id = %s AND fencing_token = %s AND status = 'running'",
                (run_id, token),
            )
            await conn.execute("SELECT pg_notify('staffgraph_runs', '')")

    async def notify_cancel(self, run_id: str, action: str) -> None:
        """Tell every worker process (``LISTEN staffgraph_cancel``) to stop ``run_id``."""
        async with self._pool.connection() as conn:
            await conn.execute("SELECT pg_notify('staffgraph_cancel', %s)", (f"{run_id}:{action}",))

    async def sweep(self, *, max_attempts: int) -> list[dict[str, Any]]:
        """Requeue (or fail) runs whose lease lapsed."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT run_id::text AS run_id, thread_id::text AS thread_id, outcome "
                "FROM staffgraph_sweep_runs(%s)",
                (max_attempts,),
            )
            return await cur.fetchall()

    async def get(self, thread_id: str, run_id: str) -> dict[str, Any] | None:
        """The run, or ``None``."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT * FROM runs WHERE run_id = %s AND thread_id = %s", (run_id, thread_id)
            )
            return await cur.fetchone()

    async def get_any(self, run_id: str) -> dict[str, Any] | None:
        """The run whatever its thread, or ``None``."""
        async with self._pool.connection() as conn:
            cur = await conn.execute("SELECT * FROM runs WHERE run_id = %s", (run_id,))
            return await cur.fetchone()

    async def for_thread(
        self, thread_id: str, *, limit: int, offset: int, status: str | None
    ) -> list[dict[str, Any]]:
        """The thread's runs, newest first."""
        params: list[Any] = [thread_id]
        extra = ""
        if status is not None:
            extra = " AND status = %s"
            params.append(status)
        params += [limit, offset]
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT * FROM runs WHERE thread_id = %s{extra} "
                "ORDER BY created_at DESC, run_id DESC LIMIT %s OFFSET %s",
                params,
            )
            return await cur.fetchall()

    async def latest_of(self, thread_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Each thread's newest run, by thread id (one query for many threads)."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT DISTINCT ON (thread_id) * FROM runs WHERE thread_id = ANY(%s::uuid[]) "
                "ORDER BY thread_id, created_at DESC, run_id DESC",
                (list(thread_ids),),
            )
            return {str(row["thread_id"]): row for row in await cur.fetchall()}

    async def delete(self, thread_id: str, run_id: str) -> dict[str, Any] | None:
        """Delete the run; returns the deleted row (``None`` if there was none)."""
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute(
                "SELECT 1 FROM threads WHERE thread_id = %s FOR UPDATE", (thread_id,)
            )
            cur = await conn.execute(
                "DELETE FROM runs WHERE run_id = %s AND thread_id = %s RETURNING *",
                (run_id, thread_id),
            )
            row = await cur.fetchone()
            if row is not None and row["status"] == "pending":
                await _settle_thread(conn, thread_id)
            return row

    async def settle_thread(self, thread_id: str) -> None:
        """The thread is no longer ``busy`` if nothing of it is queued or running."""
        async with self._pool.connection() as conn:
            await _settle_thread(conn, thread_id)

    async def inflight(self, thread_id: str) -> list[str]:
        """Runs of the thread that are queued or running, in the order they run.

        The running run comes first, then the queue by creation (the order workers claim it).
        Without the ``ORDER BY`` the order would be the table's, which an update to a run (a
        heartbeat) changes.
        """
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT run_id::text AS run_id FROM runs WHERE thread_id = %s "
                "AND status IN ('pending', 'running') "
                "ORDER BY status = 'running' DESC, created_at, run_id",
                (thread_id,),
            )
            return [row["run_id"] for row in await cur.fetchall()]

    async def cancel(
        self,
        *,
        action: str,
        thread_id: str | None = None,
        run_ids: Sequence[str] | None = None,
        status: str | None = None,
        assistant_id: str | None = None,
    ) -> CancelResult:
        """Stop runs: queued ones are ended here, running ones flagged for their worker.

        Select by ``run_ids`` (optionally on ``thread_id``), by ``thread_id`` alone, by
        ``status`` (``pending``, ``running`` or ``all``), or by ``assistant_id``.
        """
        clauses = ["status IN ('pending', 'running')"]
        params: list[Any] = []
        if assistant_id is not None:
            clauses.append("assistant_id = %s")
            params.append(assistant_id)
        if run_ids is not None:
            clauses.append("run_id = ANY(%s::uuid[])")
            params.append(list(run_ids))
        if thread_id is not None:
            clauses.append("thread_id = %s")
            params.append(thread_id)
        if status in ("pending", "running"):
            clauses.append("status = %s")
            params.append(status)
        where = " AND ".join(clauses)
        running: list[tuple[str, str]] = []
        settled: list[str] = []
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "SELECT DISTINCT thread_id::text AS thread_id FROM runs WHERE " + where,
                params,
            )
            threads = sorted(row["thread_id"] for row in await cur.fetchall())
            for tid in threads:  # lock in a fixed order: no deadlock between cancellers
                await conn.execute("SELECT 1 FROM threads WHERE thread_id = %s FOR UPDATE", (tid,))
            cur = await conn.execute(
                "UPDATE runs SET cancel_action = %s, updated_at = now() WHERE "
                + where
                + " AND status = 'running' RETURNING thread_id::text AS t, run_id::text AS r",
                [action, *params],
            )
            running = [(row["t"], row["r"]) for row in await cur.fetchall()]
            if action == "rollback":
                cur = await conn.execute(
                    "DELETE FROM runs WHERE " + where + " AND status = 'pending' "
                    "RETURNING run_id::text AS r",
                    params,
                )
            else:
                cur = await conn.execute(
                    "UPDATE runs SET status = 'interrupted', ended_at = now(), updated_at = now() "
                    "WHERE " + where + " AND status = 'pending' RETURNING run_id::text AS r",
                    params,
                )
            settled = [row["r"] for row in await cur.fetchall()]
            if settled:
                for tid in threads:
                    await _settle_thread(conn, tid)
        return CancelResult(running=running, settled=settled)

    async def settle_cancelled(self, thread_ids: Sequence[str]) -> None:
        """Leave threads whose runs were just cancelled ``idle``, as the reference does when
        an assistant is deleted: unless another run is in flight or a real interrupt waits.
        """
        if not thread_ids:
            return
        async with self._pool.connection() as conn:
            await conn.execute(
                "UPDATE threads SET status = 'idle', updated_at = now() "
                "WHERE thread_id = ANY(%s::uuid[]) AND status = 'interrupted' "
                "AND interrupts = '{}'::jsonb AND NOT EXISTS (SELECT 1 FROM runs r "
                "WHERE r.thread_id = threads.thread_id AND r.status IN ('pending', 'running'))",
                (list(thread_ids),),
            )

    async def delete_checkpoints_of_run(self, thread_id: str, run_id: str) -> None:
        """Remove the checkpoints a run wrote (rollback), with their pending writes."""
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "DELETE FROM checkpoints WHERE thread_id = %s AND metadata ->> 'run_id' = %s "
                "RETURNING checkpoint_ns, checkpoint_id",
                (thread_id, run_id),
            )
            gone = await cur.fetchall()
            if gone:
                await conn.execute(
                    "DELETE FROM checkpoint_writes WHERE thread_id = %s "
                    "AND checkpoint_id = ANY(%s)",
                    (thread_id, [row["checkpoint_id"] for row in gone]),
                )

    async def latest_checkpoint_run(self, thread_id: str) -> str | None:
        """``run_id`` in the metadata of the thread's newest root checkpoint."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT metadata ->> 'run_id' AS run_id FROM checkpoints WHERE thread_id = %s "
                "AND checkpoint_ns = '' ORDER BY checkpoint_id DESC LIMIT 1",
                (thread_id,),
            )
            row = await cur.fetchone()
            return row["run_id"] if row else None


async def _settle_thread(conn: Any, thread_id: str) -> None:
    # A thread whose queue emptied without a run finishing (queued runs cancelled or deleted)
    # is no longer busy.
    await conn.execute(
        "UPDATE threads SET status = CASE WHEN status = 'busy' THEN "
        "(CASE WHEN error IS NOT NULL THEN 'error' WHEN interrupts <> '{}'::jsonb "
        "THEN 'interrupted' ELSE 'idle' END) ELSE status END, updated_at = now() "
        "WHERE thread_id = %s AND NOT EXISTS (SELECT 1 FROM runs WHERE thread_id = %s "
        "AND status IN ('pending', 'running'))",
        (thread_id, thread_id),
    )
