"""Run workers inside a server process: claim, execute, heartbeat, sweep.

Runs are claimed from Postgres (``SELECT … FOR UPDATE SKIP LOCKED`` inside
``staffgraph_claim_runs``) with a lease. Each worker renews its leases by heartbeat; a lease
that lapses (the process died) is put back in the queue by the sweeper of any process, and the
fencing token makes the old owner's late writes count for nothing.

Workers wake up at once when a run is created: in this process through :meth:`WorkerPool.wake`,
from other processes through Postgres ``NOTIFY staffgraph_runs``; a slow poll is the fallback.

A worker stops a run the moment its lease is no longer provably its own: a heartbeat that finds
the lease taken, or heartbeats failing for so long that the lease may have lapsed (the last
renewal's expiry minus one heartbeat of margin). Checkpoint writes are fenced by the lease
token as well (``state.checkpoints``), so a run stopped late still writes nothing.

Shutdown is graceful: claiming stops at once, runs in flight get ``shutdown_grace`` seconds to
finish (heartbeats go on meanwhile), and only the ones still going after that are stopped and
put back in the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import psycopg

from server.observability import log_context
from server.repos import FinishResult, RunsRepo
from server.runtime.active import ActiveRun
from server.runtime.broker import Broker
from server.runtime.executor import Executor
from server.runtime.outcome import encode_done
from server.serde import dumps
from state.checkpoints import PrefetchedCheckpoint
from state.retry import retrying

__all__ = ["PgNotifier", "WorkerPool"]

log = logging.getLogger(__name__)


class PgNotifier:
    """One ``LISTEN`` connection delivering ``staffgraph_runs`` / ``staffgraph_cancel`` signals."""

    def __init__(
        self,
        url: str,
        *,
        on_wake: Callable[[], None],
        on_cancel: Callable[[str, str], None],
    ) -> None:
        """Listen on ``url`` (a libpq URL) and call the handlers from the event loop."""
        self._url = url
        self._on_wake = on_wake
        self._on_cancel = on_cancel
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start listening in the background (reconnects on its own)."""
        self._task = asyncio.create_task(self._run(), name="pg-notifier")

    async def stop(self) -> None:
        """Stop listening."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        delay = 0.1
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
                try:
                    await conn.execute("LISTEN staffgraph_runs")
                    await conn.execute("LISTEN staffgraph_cancel")
                    delay = 0.1
                    self._on_wake()  # anything queued while we were not listening
                    async for note in conn.notifies():
                        if note.channel == "staffgraph_cancel":
                            run_id, _, action = note.payload.partition(":")
                            self._on_cancel(run_id, action or "interrupt")
                        else:
                            self._on_wake()
                finally:
                    await conn.close()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("lost the Postgres LISTEN connection; reconnecting", exc_info=True)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


class WorkerPool:
    """Executes up to ``capacity`` runs at a time in this process."""

    def __init__(
        self,
        *,
        runs: RunsRepo,
        executor: Executor,
        broker: Broker,
        owner: str,
        capacity: int,
        lease_seconds: float,
        heartbeat_seconds: float,
        poll_seconds: float = 2.0,
        max_attempts: int = 3,
        shutdown_grace: float = 30.0,
    ) -> None:
        """Create the pool (call :meth:`start` to begin claiming).

        Args:
            runs: the run queue.
            executor: executes claimed runs.
            broker: ends the streams of runs the sweeper fails.
            owner: this process's lease owner name.
            capacity: most runs executing at a time.
            lease_seconds: lease of a claimed run.
            heartbeat_seconds: interval between lease renewals.
            poll_seconds: longest wait between two looks at the queue.
            max_attempts: attempts after which a run whose worker died fails.
            shutdown_grace: seconds :meth:`stop` lets runs in flight finish.
        """
        self._runs = runs
        self._executor = executor
        self._broker = broker
        self.owner = owner
        self.capacity = capacity
        self.lease_seconds = lease_seconds
        self._heartbeat_seconds = heartbeat_seconds
        self._poll_seconds = poll_seconds
        self._max_attempts = max_attempts
        self._shutdown_grace = shutdown_grace
        self.active: dict[str, ActiveRun] = {}
        # Cancels of runs not executing here (yet): a run claimed just before its cancel was
        # flagged is registered only after the claim returns, and its signal must not be lost.
        self._early_cancels: dict[str, tuple[str, float]] = {}
        self._reserved = 0
        self._wake = asyncio.Event()
        self._backlog = False
        """Whether runs may be queued that a full pool could not claim (see :meth:`_forget`)."""
        self._loops: list[asyncio.Task[None]] = []
        self._stopping = False

    # -- capacity ---------------------------------------------------------------------------

    def reserve(self) -> bool:
        """Hold a slot for a run about to be created already claimed by this process."""
        if self._stopping or len(self.active) + self._reserved >= self.capacity:
            return False
        self._reserved += 1
        return True

    def release(self) -> None:
        """Give back a slot from :meth:`reserve` (the run was not claimed after all)."""
        self._reserved = max(0, self._reserved - 1)
        self.wake()

    def wake(self) -> None:
        """Make the claim loop look for runs now."""
        self._wake.set()

    def stop_claiming(self) -> None:
        """Take no more runs; those executing go on (called on SIGTERM, before :meth:`stop`)."""
        self._stopping = True

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Start claiming, heart-beating and sweeping."""
        self._loops = [
            asyncio.create_task(self._claim_loop(), name="worker-claim"),
            asyncio.create_task(self._heartbeat_loop(), name="worker-heartbeat"),
            asyncio.create_task(self._sweep_loop(), name="worker-sweep"),
        ]

    async def stop(self) -> None:
        """Stop claiming; let runs in flight finish within the grace; requeue the rest."""
        self._stopping = True
        claim = self._loops[0] if self._loops else None
        background = self._loops[1:]
        if claim is not None:
            claim.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await claim
        # Heartbeats go on while runs finish, or their leases would lapse under them.
        if self.active:
            log.info(
                "waiting up to %.0f s for %d runs in flight", self._shutdown_grace, len(self.active)
            )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._shutdown_grace):
                    while self.active:
                        await next(iter(self.active.values())).done.wait()
        for task in background:
            task.cancel()
        for task in background:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        running = list(self.active.values())
        for active in running:
            if active.task is not None:
                active.task.cancel()
        for active in running:
            if active.task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await active.task
        if running:
            log.warning("requeueing %d runs still going after the shutdown grace", len(running))
            await self._requeue([a for a in running if not a.lost])

    async def _requeue(self, runs: list[ActiveRun]) -> None:
        for active in runs:
            try:
                await retrying(
                    lambda a=active: self._runs.release(a.run_id, a.token),  # type: ignore[misc]
                    what=f"requeueing run {active.run_id}",
                )
            except Exception:
                log.warning("could not requeue run %s", active.run_id, exc_info=True)

    # -- execution --------------------------------------------------------------------------

    def start_claimed(
        self,
        row: Mapping[str, Any],
        *,
        reserved: bool = False,
        checkpoint: PrefetchedCheckpoint | None = None,
        claimed_at: float | None = None,
    ) -> ActiveRun:
        """Execute a run this process holds the lease of.

        ``checkpoint``: its thread's latest checkpoint, read when the run was claimed.
        ``claimed_at``: when its lease was granted (monotonic clock), if not just now.
        """
        if reserved:
            self._reserved = max(0, self._reserved - 1)
        run_id = str(row["run_id"])
        early = self._early_cancels.pop(run_id, None)
        active = ActiveRun(
            run_id=run_id,
            thread_id=str(row["thread_id"]),
            token=int(row["fencing_token"]),
            # Cancelled while queued for a retry (e.g. released at a shutdown), or signalled
            # while being claimed: the executor records the cancel without running the graph.
            cancel_action=row.get("cancel_action") or (early[0] if early else None),
            checkpoint=checkpoint,
        )
        if claimed_at is not None:
            active.claimed_at = claimed_at
        self.active[active.run_id] = active
        # Before the caller (a runs/wait or runs/stream request) subscribes to its events.
        kwargs = row.get("kwargs") or {}
        self._broker.begin(run_id, resumable=bool(kwargs.get("resumable")))
        active.task = asyncio.create_task(self._execute(row, active), name=f"run-{active.run_id}")
        # Bookkeeping in a done callback, not in the coroutine's ``finally``: a task cancelled
        # before its first step never runs its body, and its run would stay here (and its lease
        # renewed) forever.
        active.task.add_done_callback(lambda _task, a=active: self._forget(a))  # type: ignore[misc]
        return active

    def _forget(self, active: ActiveRun) -> None:
        if self.active.get(active.run_id) is active:
            del self.active[active.run_id]
            # A freed slot is worth a look at the queue only if runs may be waiting for one:
            # otherwise every finished run would cost a claim query that finds nothing.
            if self._backlog:
                self.wake()
        active.done.set()

    async def _execute(self, row: Mapping[str, Any], active: ActiveRun) -> None:
        result: FinishResult | None = None
        try:
            result = await self._executor.execute(row, active, owner=self.owner)
        except asyncio.CancelledError:
            return
        except Exception:
            log.exception("run %s could not be recorded", active.run_id)
        finally:
            self._forget(active)
        if result is not None and result.next_run is not None:
            # The thread's next queued run was claimed for us in the same transaction, with a
            # lease from then. An end that took long to announce (a broker retrying through an
            # outage) may have outlived it, and another worker may hold the run now: give it
            # back (fenced by its token) rather than start it under a lease not provably ours.
            claimed_at = active.ending_at if active.ending_at is not None else time.monotonic()
            if self._stopping or time.monotonic() >= self._provable_until(claimed_at):
                await self._requeue([_claimed(result.next_run)])
            else:
                self.start_claimed(result.next_run, claimed_at=claimed_at)

    def cancel_local(self, run_id: str, action: str) -> bool:
        """Stop a run executing here. Returns whether it was here.

        A run not here may be about to be: its claim was committed but has not returned yet.
        The cancel is kept for a lease's time and applied if the run starts here.
        (A signal that misses anyway is caught by the next heartbeat, and at the latest when
        the run's end is recorded: Postgres refuses an end that ignores a flagged cancel.)
        """
        active = self.active.get(run_id)
        if active is None:
            self._keep_early_cancel(run_id, action)
            return False
        active.stop(action)
        return True

    def _keep_early_cancel(self, run_id: str, action: str) -> None:
        now = time.monotonic()
        if len(self._early_cancels) >= 1000:
            horizon = now - self.lease_seconds
            for old in [r for r, (_, at) in self._early_cancels.items() if at < horizon]:
                del self._early_cancels[old]
            if len(self._early_cancels) >= 1000:
                self._early_cancels.pop(next(iter(self._early_cancels)))
        if action == "rollback" or run_id not in self._early_cancels:  # the stronger one wins
            self._early_cancels[run_id] = (action, now)

    # -- background loops -------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll_seconds):
                    await self._wake.wait()
            self._wake.clear()
            if self._stopping:
                return
            try:
                while not self._stopping:
                    free = self.capacity - len(self.active) - self._reserved
                    if free <= 0:
                        self._backlog = True
                        break
                    rows = await self._runs.claim(
                        self.owner, lease_seconds=self.lease_seconds, limit=free
                    )
                    for row in rows:
                        self.start_claimed(row)
                    if len(rows) < free:
                        self._backlog = False
                        break
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("claiming runs failed; retrying", exc_info=True)

    async def _heartbeat_loop(self) -> None:
        # Until when each run's lease is provably ours (:meth:`_provable_until` its last renewal).
        provable: dict[str, float] = {}
        while True:
            await asyncio.sleep(self._heartbeat_seconds)
            ids = list(self.active)
            for run_id in [r for r in provable if r not in self.active]:
                del provable[run_id]
            if not ids:
                continue
            sent = time.monotonic()
            try:
                held = await self._runs.heartbeat(self.owner, ids, lease_seconds=self.lease_seconds)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("heartbeat failed", exc_info=True)
                self._drop_unprovable(provable, ids)
                continue
            for run_id in ids:
                active = self.active.get(run_id)
                if active is None:
                    continue
                if run_id not in held:
                    # Not running any more: its own finish may have committed after ``ids``
                    # was taken (it is then recording its end, see ActiveRun.ending_at).
                    if active.ending_at is None:
                        log.warning("lost the lease of run %s; stopping it here", run_id)
                        active.lose()
                    continue
                provable[run_id] = self._provable_until(sent)
                if held[run_id] is not None:
                    active.stop(str(held[run_id]))
                    active.ensure_stopped(self._heartbeat_seconds)

    def _provable_until(self, granted: float) -> float:
        """Until when a lease granted (or renewed) at ``granted`` is provably this process's:
        its expiry less a heartbeat of margin, for clocks and for a renewal that is late."""
        return granted + self.lease_seconds - self._heartbeat_seconds

    def _drop_unprovable(self, provable: dict[str, float], ids: list[str]) -> None:
        """Stop the runs whose lease may have lapsed while heartbeats fail."""
        now = time.monotonic()
        for run_id in ids:
            active = self.active.get(run_id)
            if active is None:
                continue
            # A run claimed since the last renewal holds the lease it was claimed with.
            until = provable.setdefault(run_id, self._provable_until(active.claimed_at))
            if now >= until:
                log.warning(
                    "cannot renew the lease of run %s and it may have lapsed; stopping it here",
                    run_id,
                )
                active.lose()

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(max(self.lease_seconds / 2, 0.5))
            try:
                swept = await self._runs.sweep(max_attempts=self._max_attempts)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("sweeping lapsed runs failed", exc_info=True)
                continue
            for item in swept:
                with log_context(run_id=item["run_id"], thread_id=item["thread_id"]):
                    await self._settle_swept(item["run_id"], item["outcome"])
            if swept:
                self.wake()

    async def _settle_swept(self, run_id: str, outcome: str) -> None:
        """Log a run whose worker stopped and end its stream if the sweeper ended it."""
        if outcome == "failed":
            log.error("run %s failed: WorkerLost: its worker stopped responding", run_id)
            body = {"error": "WorkerLost", "message": "the run's worker stopped"}
            done = encode_done("error", dumps({"__error__": body}))
        elif outcome == "interrupted":  # it was being cancelled
            log.warning("run %s lost its worker while being cancelled: interrupted", run_id)
            done = encode_done("interrupted", b"{}")
        else:
            log.warning("run %s lost its worker: %s", run_id, outcome)
            return
        try:
            await self._broker.finish(run_id, done, resumable=True)
        except Exception:  # followers read the end from Postgres
            log.warning("could not end the stream of run %s", run_id)


def _claimed(row: Mapping[str, Any]) -> ActiveRun:
    return ActiveRun(
        run_id=str(row["run_id"]), thread_id=str(row["thread_id"]), token=int(row["fencing_token"])
    )
