"""What the server writes to the audit log itself: who acted, and refused requests.

Changes are recorded by the code that makes them, in the same transaction
(:func:`state.audit.append_entry`); this module adds the actor of a request
(:func:`actor_of`) and :class:`DeniedRequestAudit`, the middleware that records 401 and 403
answers as ``auth.denied`` — at most one entry per caller and route every
:data:`DENIED_WINDOW_SECONDS`, and at most :data:`DENIED_PER_WINDOW` entries per window in all,
so a client cannot flood the log by being refused.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.auth import Caller
from state.audit import append_entry

__all__ = [
    "DENIED_PER_WINDOW",
    "DENIED_WINDOW_SECONDS",
    "DeniedRequestAudit",
    "DenialLimiter",
    "actor_of",
]

log = logging.getLogger(__name__)

DENIED_WINDOW_SECONDS = 60.0
"""One ``auth.denied`` entry per caller and route in this many seconds (per server process)."""
DENIED_PER_WINDOW = 1000
"""At most this many ``auth.denied`` entries per window from one server process."""
_WRITE_TIMEOUT = 2.0  # a refused request is not held up longer than this by its audit entry
_MAX_PATH = 256


def actor_of(caller: Caller | None) -> str | None:
    """The audit ``actor`` of a request's caller: its user id; ``None`` when there is none
    (no auth: the local operator; or not authenticated)."""
    if caller is None or not caller.enforced or not caller.identity:
        return None
    return caller.identity[:512]


class DenialLimiter:
    """Decides which refusals get an entry: the first per key in each window, up to a budget.

    In process memory: each server process records at most ``per_window`` entries a window,
    whatever the callers do. ``suppressed`` counts the refusals of a key that were not
    recorded, and goes into that key's next entry.
    """

    def __init__(
        self, *, window: float = DENIED_WINDOW_SECONDS, per_window: int = DENIED_PER_WINDOW
    ) -> None:
        self.window = window
        self.per_window = per_window
        self._last: dict[tuple[str, str], float] = {}
        self._suppressed: dict[tuple[str, str], int] = {}
        self._window_start = 0.0
        self._recorded = 0

    def admit(self, key: tuple[str, str], now: float | None = None) -> int | None:
        """``None`` to skip this refusal, else how many of this key's were skipped before it."""
        now = time.monotonic() if now is None else now
        if now - self._window_start >= self.window:
            self._window_start, self._recorded = now, 0
            self._last = {k: t for k, t in self._last.items() if now - t < self.window}
        last = self._last.get(key)
        if (last is not None and now - last < self.window) or self._recorded >= self.per_window:
            # Bounded: counts are kept for at most per_window keys.
            if key in self._suppressed or len(self._suppressed) < self.per_window:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return None
        self._last[key] = now
        self._recorded += 1
        return self._suppressed.pop(key, 0)


def _route_of(scope: Scope) -> str:
    route = scope.get("route")
    template = getattr(route, "path", None)
    if isinstance(template, str):
        return template
    return str(scope.get("path", ""))[:_MAX_PATH]


class DeniedRequestAudit:
    """ASGI middleware: a 401 or 403 answer appends ``auth.denied`` before it is sent.

    The entry's actor is the authenticated caller (a 403) or ``None`` (a 401); its details
    carry the status, method, route template, the client's address and how many refusals of
    the same caller and route were left unrecorded since the previous entry. Recording fails
    open: a refusal is answered even when its entry cannot be written.
    """

    def __init__(self, app: ASGIApp, *, limiter: DenialLimiter | None = None) -> None:
        self.app = app
        self.limiter = limiter or DenialLimiter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_after_audit(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] in (401, 403):
                await self._record(scope, message["status"])
            await send(message)

        await self.app(scope, receive, send_after_audit)

    async def _record(self, scope: Scope, status: int) -> None:
        ctx = getattr(scope["app"].state, "ctx", None)
        if ctx is None:
            return
        caller = scope.get("state", {}).get("caller")
        actor = actor_of(caller if isinstance(caller, Caller) else None)
        client = scope.get("client")
        address = str(client[0]) if client else None
        route = _route_of(scope)
        suppressed = self.limiter.admit((actor or f"@{address}", f"{scope['method']} {route}"))
        if suppressed is None:
            return
        details: dict[str, Any] = {
            "status": status,
            "method": scope["method"],
            "route": route,
            "client": address,
        }
        if suppressed:
            details["suppressed"] = suppressed
        try:
            async with asyncio.timeout(_WRITE_TIMEOUT):
                async with ctx.persistence.pool.connection() as conn, conn.transaction():
                    await append_entry(
                        conn,
                        "auth.denied",
                        actor=actor,
                        resource_type="route",
                        resource_id=route,
                        details=details,
                    )
        except Exception:
            log.warning("could not record a refused request in the audit log", exc_info=True)
