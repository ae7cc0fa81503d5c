"""Bounded retries with backoff for operations that fail because a connection failed.

Postgres restarts, Redis restarts and network blips break connections; the operation behind
them is usually fine a moment later. :func:`retrying` retries only *connection-level* errors
(:func:`is_transient`): a broken or refused connection, a pool with no connection to give, a
socket timeout. Anything else (a constraint violation, a bug, a lost lease) is raised at once.

Every operation retried here must be safe to repeat: an upsert, a fenced update, a read. The
callers say so where they use it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import sys
from collections.abc import Awaitable, Callable
from functools import cache
from typing import TypeVar

import psycopg
from psycopg_pool import PoolTimeout, TooManyRequests

__all__ = [
    "TRANSIENT_ERRORS",
    "RetryPolicy",
    "is_transient",
    "redis_transient_errors",
    "retrying",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

# psycopg raises OperationalError for a dead or refused connection and for a server shutting
# down (AdminShutdown is its subclass); InterfaceError for a connection already closed.
# is_transient() narrows these down; the classes are what an error handler registers for.
# Redis's are apart (redis_transient_errors): importing redis costs a fifth of the server's own
# start-up imports, and a server without REDIS_URL never imports it.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
    PoolTimeout,
    TooManyRequests,
    ConnectionError,
    TimeoutError,
)


@cache
def redis_transient_errors() -> tuple[type[Exception], ...]:
    """Redis's connection-level errors (imports redis: for servers configured with Redis)."""
    import redis.exceptions as redis_errors

    return (redis_errors.ConnectionError, redis_errors.TimeoutError, redis_errors.BusyLoadingError)


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is a connection-level failure that a retry may get past."""
    if isinstance(exc, psycopg.errors.QueryCanceled | psycopg.errors.LockNotAvailable):
        return False  # statement_timeout / lock_timeout: the query itself, not the connection
    if isinstance(exc, TRANSIENT_ERRORS):
        return True
    # A Redis error can only exist once something imported redis.
    return "redis.exceptions" in sys.modules and isinstance(exc, redis_transient_errors())


class RetryPolicy:
    """How long to keep retrying: ``attempts`` tries, backoff doubling up to ``max_delay``."""

    def __init__(
        self,
        *,
        attempts: int = 6,
        first_delay: float = 0.1,
        max_delay: float = 2.0,
        deadline: float | None = None,
    ) -> None:
        """Create a policy.

        Args:
            attempts: most tries in all (at least 1).
            first_delay: seconds before the second try; doubled for each next one.
            max_delay: longest single wait.
            deadline: most seconds spent in all; overrides ``attempts`` when given, so an
                outage of known length (a broker restart) can be waited out.
        """
        self.attempts = max(1, attempts)
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.deadline = deadline

    def delays(self) -> list[float]:
        """The waits between tries (jittered by up to 20 % so retries do not stampede)."""
        out: list[float] = []
        delay, spent = self.first_delay, 0.0
        while True:
            if self.deadline is None and len(out) + 1 >= self.attempts:
                return out
            if self.deadline is not None and spent >= self.deadline:
                return out
            wait = min(delay, self.max_delay) * (1 + random.random() * 0.2)
            out.append(wait)
            spent += wait
            delay *= 2


DEFAULT_POLICY = RetryPolicy()
"""About 6 tries over some 3 s: rides out a Postgres or Redis restart."""


async def retrying(
    operation: Callable[[], Awaitable[T]],
    *,
    what: str,
    policy: RetryPolicy = DEFAULT_POLICY,
) -> T:
    """Await ``operation()``, calling it again after a connection-level failure.

    Args:
        operation: makes a fresh awaitable each call (a lambda around the call).
        what: what it does, for the log ("finishing run 1f…").
        policy: how many times and how long.

    Raises:
        The last error when every try failed, or the first non-transient one at once.
    """
    delays: list[float] | None = None  # drawn at the first failure: most calls have none
    attempt = 0
    while True:
        try:
            return await operation()
        except Exception as exc:
            if delays is None:
                delays = policy.delays()
            if attempt >= len(delays) or not is_transient(exc):
                raise
            delay = delays[attempt]
            attempt += 1
            log.warning(
                "%s failed (%s: %s); retry %d in %.1f s",
                what,
                type(exc).__name__,
                exc,
                attempt,
                delay,
            )
            await asyncio.sleep(delay)
