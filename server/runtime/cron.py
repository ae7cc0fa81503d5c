"""Cron schedules and the scheduler that fires them.

Schedules are parsed by ``croniter``: five fields (minute hour day month weekday), an optional
sixth for seconds (``* * * * * */10``: every ten seconds), and the ``@hourly`` / ``@daily`` …
shorthands, read in the cron's IANA ``timezone`` (UTC when none), so ``0 9 * * *`` in
``Europe/Paris`` follows daylight saving time.

Every server and worker process runs a :class:`CronScheduler` unless
``STAFFGRAPH_CRON_SCHEDULER=false``. A tick fires exactly once across all of them: a scheduler
locks due crons with ``SELECT … FOR UPDATE SKIP LOCKED`` and, in that same transaction, creates
each cron's run and moves its ``next_run_date`` to the first tick after the database's clock
once that run exists. Another process either skips the locked row or, once the transaction
committed, no longer finds it due; a crash before the commit leaves neither the run nor the
move behind.

Ticks missed while no scheduler ran (every process down) are not replayed one by one: a cron
whose ``next_run_date`` passed fires once when a scheduler next looks, and its next date is
computed from then. The same holds for a cron re-enabled after its date passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter
from pydantic import ValidationError

from server.auth import OpenPolicy, Policy
from server.repos.crons import CronsRepo
from server.runtime.cron_creator import CreatorGone, CreatorRefused, as_creator
from server.runtime.runtime import RunError, Runtime
from server.schemas import RunCreate

__all__ = [
    "CronScheduler",
    "ScheduleError",
    "check_schedule",
    "check_timezone",
    "next_run_date",
]

log = logging.getLogger(__name__)

_BATCH = 50
"""Crons one transaction fires; a scheduler loops at once while batches come back full."""


class ScheduleError(ValueError):
    """A schedule or timezone that cannot be used; the message names the field."""


def check_schedule(schedule: str) -> None:
    """Refuse a schedule croniter cannot read, or one that never fires.

    Raises:
        ScheduleError: with the reference server's wording for an unreadable schedule.
    """
    if not croniter.is_valid(schedule):
        raise ScheduleError(
            f"Invalid cron schedule: '{schedule}'. Reason: Invalid cron schedule. Ensure the "
            "schedule uses the standard cron format (minute hour day_of_month month "
            "day_of_week). Example: '*/5 * * * *' for every 5 minutes."
        )
    if next_run_date(schedule, None, after=datetime.now(UTC)) is None:
        raise ScheduleError(f"Invalid cron schedule: '{schedule}'. Reason: it never fires.")


def check_timezone(timezone: str | None) -> None:
    """Refuse a timezone that is not an IANA name known here.

    Raises:
        ScheduleError: naming the timezone.
    """
    if timezone is None:
        return
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError, KeyError):
        raise ScheduleError(
            f"Invalid timezone: '{timezone}'. Use IANA timezone format (e.g. 'America/New_York')."
        ) from None


def next_run_date(schedule: str, timezone: str | None, *, after: datetime) -> datetime | None:
    """The first tick of ``schedule`` strictly after ``after``, in UTC; None if there is none.

    Args:
        schedule: a schedule :func:`check_schedule` accepts.
        timezone: IANA name the schedule is read in; None for UTC.
        after: an aware datetime.
    """
    base = after.astimezone(ZoneInfo(timezone)) if timezone else after.astimezone(UTC)
    try:
        moment: datetime = croniter(schedule, base).get_next(datetime)
    except CroniterBadDateError:  # e.g. "0 0 31 2 *": no such day
        return None
    return moment.astimezone(UTC)


def run_body(cron: dict[str, Any]) -> RunCreate:
    """The run request one firing of ``cron`` makes: its payload plus the cron's metadata.

    Raises:
        ValidationError: the stored payload is not a valid run request.
    """
    payload = dict(cron["payload"])
    payload["metadata"] = {**(cron["metadata"] or {}), **(payload.get("metadata") or {})}
    if cron["thread_id"] is None:
        payload["on_completion"] = "keep" if cron["on_run_completed"] == "keep" else "delete"
    else:
        payload.setdefault("multitask_strategy", "enqueue")
    return RunCreate.model_validate(payload)


class CronScheduler:
    """Fires this deployment's due crons from one process (any number may run at once)."""

    def __init__(
        self,
        *,
        runtime: Runtime,
        crons: CronsRepo,
        interval: float,
        policy: Policy | None = None,
    ) -> None:
        """Wire the scheduler (nothing runs until :meth:`start`).

        Args:
            runtime: creates the runs.
            crons: the crons table.
            interval: most seconds between two looks for due crons; sooner when the next
                cron is due sooner or a cron was created or changed in this process.
            policy: the server's auth policy: each run is its cron's creator's
                (:mod:`server.runtime.cron_creator`); none: no authentication.
        """
        self._runtime = runtime
        self._crons = crons
        self._interval = interval
        self._policy: Policy = policy if policy is not None else OpenPolicy()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the scheduling loop."""
        self._task = asyncio.create_task(self._loop(), name="cron-scheduler")

    async def stop(self) -> None:
        """Stop the loop; a firing in progress is rolled back and happens elsewhere or later."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def wake(self) -> None:
        """Look again now: a cron was created or changed."""
        self._wake.set()

    async def tick(self) -> int:
        """Fire every cron due now. Returns how many fired."""
        total = 0
        while True:
            fired = await self._fire_batch()
            total += fired
            if fired < _BATCH:
                return total

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.tick()
                delay = await self._crons.seconds_until_due()
            except asyncio.CancelledError:
                raise
            except Exception:  # a database outage: retry after the interval
                log.exception("cron scheduler: could not fire due crons")
                delay = None
            wait = self._interval if delay is None else min(self._interval, max(delay, 0.0))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=wait)

    async def _fire_batch(self) -> int:
        async with self._crons.due(limit=_BATCH) as (conn, due):
            for cron in due:
                await self._fire(conn, cron)
                # From the clock once the run exists, not the transaction's start: a tick that
                # passed while this one fired (a second boundary, a long batch) is covered by
                # the run just created, not fired again at once.
                fired_at = await self._crons.clock(conn)
                upcoming = next_run_date(cron["schedule"], cron["timezone"], after=fired_at)
                await self._crons.set_next_run_date(conn, str(cron["cron_id"]), upcoming)
            return len(due)

    async def _fire(self, conn: Any, cron: dict[str, Any]) -> None:
        cron_id = str(cron["cron_id"])
        thread_id = str(cron["thread_id"]) if cron["thread_id"] is not None else None
        try:
            body = run_body(cron)
            firing = await as_creator(self._policy, self._runtime, cron, body)
            # A savepoint: a run that cannot be created (thread busy under `reject`, …) still
            # lets the cron move on to its next tick.
            async with conn.transaction():
                created = await self._runtime.create_run(
                    body,
                    thread_id=thread_id,
                    claim=False,
                    conn=conn,
                    identity=firing.identity,
                    thread_metadata=firing.thread_metadata,
                    thread_filter=firing.thread_filter,
                )
        except CreatorGone as exc:
            await self._crons.disable(conn, cron_id)
            log.warning("cron %s disabled: %s", cron_id, exc)
            return
        except (RunError, ValidationError, CreatorRefused) as exc:
            log.warning("cron %s did not start a run: %s", cron_id, exc)
            return
        except Exception:  # one broken cron must not hold back the others in its batch
            log.exception("cron %s did not start a run", cron_id)
            return
        log.info("cron %s started run %s", cron_id, created.run_id)
