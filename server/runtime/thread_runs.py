"""The runs a thread stream must follow that its broker may not announce to it.

A thread stream (``GET /threads/{id}/stream``, the protocol's thread stream) watches its
broker for runs that start on the thread, then reads the runs already in flight. The Postgres
broker announces a run only once the stream's want has reached the process that starts it: a
notification away, or, for a process that was not listening when the want was sent (starting
up, or reconnecting its ``LISTEN`` connection), up to a heartbeat later, when the stream
renews it. A run that starts and ends within that gap is never announced. Asking Postgres for
the runs in flight after each run followed and on each idle tick found only the ones still
running; a short run was missed for good.

:class:`UnannouncedRuns` asks for the runs in flight **or ended since its previous question**,
the first question looking back to a moment of the database's clock taken before the watcher
started. Every run that ends after that moment is therefore found by the first question asked
after its end, running or not; the broker's announcements stay the fast path, and the stream
follows each run once whichever way it came.

Not found: a run deleted as it ended (``on_completion=delete``, a rollback), and a run whose
end began before that first moment and committed after it (``ended_at`` is the finishing
transaction's start): it ended as the client connected, and is treated as ended before.
"""

from __future__ import annotations

from collections.abc import Container
from datetime import datetime
from typing import Any

from psycopg_pool import AsyncConnectionPool

from server.repos.run_ends import database_now, inflight_or_ended

__all__ = ["UnannouncedRuns"]


class UnannouncedRuns:
    """One thread stream's questions to Postgres for runs its watcher may not announce."""

    def __init__(self, pool: AsyncConnectionPool[Any], thread_id: str, since: datetime) -> None:
        """Start asking from ``since`` (the database's clock; see :meth:`begin`)."""
        self._pool = pool
        self._thread_id = thread_id
        self._since = since

    @classmethod
    async def begin(cls, pool: AsyncConnectionPool[Any], thread_id: str) -> UnannouncedRuns:
        """Take the database's clock now: call it before the stream starts watching."""
        return cls(pool, thread_id, await database_now(pool))

    async def check(self, followed: Container[str] = ()) -> list[str]:
        """The thread's runs in flight or ended since the last check, less ``followed``.

        Ended ones come first, then the running run, then the queue, each by creation.
        """
        run_ids, self._since = await inflight_or_ended(self._pool, self._thread_id, self._since)
        return [run_id for run_id in run_ids if run_id not in followed]
