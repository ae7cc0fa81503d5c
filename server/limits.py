"""Per-caller limits: request rate, runs at once, and the models a run may choose.

**Request rate** is a generic cell rate algorithm (GCRA) per caller: each request moves the
caller's "theoretical arrival time" on by ``60 / STAFFGRAPH_RATE_LIMIT_PER_MINUTE`` seconds, and
a request that would put it more than ``STAFFGRAPH_RATE_LIMIT_BURST`` intervals ahead of now is
refused with how long to wait. One number per caller, no window edges to burst across. With
``REDIS_URL`` the number lives in Redis and one Lua script reads and moves it atomically (one
round trip per request, the clock is Redis's), so every replica shares it; otherwise it lives
in this process. While Redis is unreachable the process falls back to its own count for a
second at a time rather than refusing or failing requests.

The caller is the authenticated identity, or the client address when nobody is authenticated
(``STAFFGRAPH_AUTH=none``, open routes). Health routes (``/ok``, ``/ready``, ``/metrics``) are
never limited.

**Runs at once** (``STAFFGRAPH_MAX_CONCURRENT_RUNS``) are counted in Postgres, where runs are,
when a run is created (:mod:`server.repos.run_limits`): shared by every replica, and a process
that dies leaks no slot.

**Models**: ``context.model`` (or ``configurable.model``) of a run or an assistant must be one of
``STAFFGRAPH_ALLOWED_MODELS`` (default: the configured ``MODEL`` and ``offline``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from typing import Any, Protocol

from fastapi import HTTPException

from nodes.models import resolve_model_spec
from server.schemas import RunCreate
from state.limit_settings import ANY_MODEL, LimitSettings
from state.settings import ModelSettings

__all__ = [
    "LimitExceeded",
    "ModelRefused",
    "LocalRateLimiter",
    "RateLimiter",
    "RedisRateLimiter",
    "allowed_models",
    "check_run_models",
    "model_problem",
    "rate_exceeded",
    "rate_limiter",
    "runs_exceeded",
]

log = logging.getLogger(__name__)

_LOCAL_MAX_KEYS = 100_000
"""Callers the in-process limiter remembers; idle ones are forgotten first."""
_REDIS_BACKOFF_SECONDS = 1.0
_RUNS_RETRY_SECONDS = 2
"""What a 429 for too many runs at once says to wait (when a run ends is not known)."""

# KEYS[1]: the caller's key. ARGV: the interval and the burst capacity (interval x burst), in
# seconds. Returns "0" when allowed, else the seconds to wait (a string: Lua numbers returned
# to Redis become integers).
_GCRA = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local interval = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + interval
local wait = new_tat - now - capacity
if wait > 0 then return tostring(wait) end
redis.call('SET', KEYS[1], string.format('%.6f', new_tat), 'PX',
           math.ceil((new_tat - now) * 1000) + 1000)
return '0'
"""


class LimitExceeded(HTTPException):
    """A 429: ``Retry-After`` and ``{"detail", "limit", "retry_after"}``."""

    def __init__(self, limit: str, detail: str, retry_after: float) -> None:
        seconds = max(1, math.ceil(retry_after))
        super().__init__(429, detail=detail, headers={"Retry-After": str(seconds)})
        self.extra = {"limit": limit, "retry_after": seconds}


class ModelRefused(HTTPException):
    """A 422: the run or assistant chose a model outside ``STAFFGRAPH_ALLOWED_MODELS``."""

    def __init__(self, detail: str) -> None:
        super().__init__(422, detail=detail)


class RateLimiter(Protocol):
    """Counts one request of a caller."""

    async def hit(self, key: str) -> float:
        """``0`` when the request may go ahead, else the seconds until it may."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class LocalRateLimiter:
    """GCRA in this process (no Redis)."""

    def __init__(self, *, per_minute: int, burst: int) -> None:
        self.interval = 60.0 / per_minute
        self.capacity = self.interval * burst
        self._tat: dict[str, float] = {}

    async def hit(self, key: str) -> float:
        """See :meth:`RateLimiter.hit`."""
        return self.hit_now(key, time.monotonic())

    def hit_now(self, key: str, now: float) -> float:
        """:meth:`hit` at ``now`` (monotonic seconds)."""
        tat = max(self._tat.get(key, now), now) + self.interval
        wait = tat - now - self.capacity
        if wait > 0:
            return wait
        if key not in self._tat and len(self._tat) >= _LOCAL_MAX_KEYS:
            self._forget_idle(now)
        self._tat[key] = tat
        return 0.0

    def _forget_idle(self, now: float) -> None:
        # A caller whose arrival time has passed is back to a full burst: nothing to remember.
        for key in [k for k, tat in self._tat.items() if tat <= now]:
            del self._tat[key]
        while len(self._tat) >= _LOCAL_MAX_KEYS:
            del self._tat[next(iter(self._tat))]

    async def aclose(self) -> None:
        """Nothing to release."""


class RedisRateLimiter:
    """GCRA in Redis, shared by every process using the same Redis."""

    def __init__(self, url: str, *, per_minute: int, burst: int) -> None:
        from redis.asyncio import Redis

        self._redis = Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._script = self._redis.register_script(_GCRA)
        self._local = LocalRateLimiter(per_minute=per_minute, burst=burst)
        self._args = (repr(self._local.interval), repr(self._local.capacity))
        self._skip_until = 0.0

    async def hit(self, key: str) -> float:
        """See :meth:`RateLimiter.hit`; this process's own count while Redis is unreachable."""
        now = time.monotonic()
        if now < self._skip_until:
            return self._local.hit_now(key, now)
        try:
            answer = await self._script(keys=[f"staffgraph:rate:{key}"], args=self._args)
        except Exception as exc:  # noqa: BLE001 - an outage must not refuse or fail requests
            self._skip_until = now + _REDIS_BACKOFF_SECONDS
            log.warning("rate limit: Redis unreachable (%s); counting in this process", exc)
            return self._local.hit_now(key, now)
        return float(answer)

    async def aclose(self) -> None:
        """Close the Redis connections."""
        await self._redis.aclose()


def rate_limiter(limits: LimitSettings, redis_url: str | None) -> RateLimiter | None:
    """The limiter the settings ask for; ``None`` when the rate is unlimited."""
    if limits.rate_limit_per_minute <= 0:
        return None
    per_minute, burst = limits.rate_limit_per_minute, limits.rate_limit_burst
    if redis_url is None:
        return LocalRateLimiter(per_minute=per_minute, burst=burst)
    return RedisRateLimiter(redis_url, per_minute=per_minute, burst=burst)


def rate_exceeded(limits: LimitSettings, retry_after: float) -> LimitExceeded:
    """The 429 of a caller over the request rate."""
    return LimitExceeded(
        "requests_per_minute",
        f"Too many requests: this caller may make {limits.rate_limit_per_minute} a minute "
        f"(bursts of {limits.rate_limit_burst}); retry after {max(1, math.ceil(retry_after))} s",
        retry_after,
    )


def allowed_models(limits: LimitSettings, model: ModelSettings) -> frozenset[str] | None:
    """The model specs runs may choose; ``None`` when any is allowed."""
    if limits.allowed_models is None:
        return frozenset({resolve_model_spec(settings=model), "offline"})
    if ANY_MODEL in limits.allowed_models:
        return None
    return frozenset(limits.allowed_models)


def model_problem(
    allowed: frozenset[str] | None,
    model: ModelSettings,
    choices: Mapping[str, Any],
) -> str | None:
    """Why a chosen model is refused (naming the field and the allowed models), or ``None``.

    Args:
        allowed: from :func:`allowed_models`.
        model: model settings (``auto`` resolves against them).
        choices: field name (``body.context.model``) to the value sent there.
    """
    if allowed is None:
        return None
    for field, value in choices.items():
        if value is None:
            continue
        spec = value.strip() if isinstance(value, str) else None
        if spec is not None and resolve_model_spec(spec, settings=model) in allowed:
            continue
        return (
            f"{field}: {value!r} is not an allowed model; allowed: {', '.join(sorted(allowed))} "
            "(STAFFGRAPH_ALLOWED_MODELS)"
        )
    return None


def runs_exceeded(limits: LimitSettings) -> LimitExceeded:
    """The 429 of a caller with ``STAFFGRAPH_MAX_CONCURRENT_RUNS`` runs in flight."""
    return LimitExceeded(
        "concurrent_runs",
        f"Too many runs at once: this caller may have {limits.max_concurrent_runs} pending or "
        "running; wait for one to finish",
        _RUNS_RETRY_SECONDS,
    )


def check_run_models(
    allowed: frozenset[str] | None, model: ModelSettings, body: RunCreate, *, where: str = "body"
) -> None:
    """Refuse a run whose ``context.model`` or ``config.configurable.model`` is not allowed.

    Raises:
        ModelRefused: 422 naming the field and the allowed models.
    """
    if allowed is None:
        return
    configurable = (body.config.configurable if body.config else None) or {}
    problem = model_problem(
        allowed,
        model,
        {
            f"{where}.context.model": (body.context or {}).get("model"),
            f"{where}.config.configurable.model": configurable.get("model"),
        },
    )
    if problem is not None:
        raise ModelRefused(problem)
