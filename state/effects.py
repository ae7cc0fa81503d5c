"""The effect ledger: side-effecting tool calls happen once per task, however often it runs.

A task of a graph can execute more than once: its worker crashed before the task's writes were
checkpointed, the run was requeued at shutdown, or another worker took over a lapsed lease.
Tools that only read can simply run again; tools that write or reach outside must not act
twice. The ledger records what each such call returned, keyed by ``(thread, checkpoint
namespace, task, tool call id)``, and a re-execution of the same call gets the recorded result
back without calling the tool.

How one call goes (:meth:`EffectLedger.once`):

1. One transaction claims the key (``INSERT``; a second execution of the same call waits on
   that row until the first commits, then reads its result), checks the run's lease token when
   a run makes the call (:mod:`state.fencing`), calls the tool, stores its result and commits:
   a committed claim always carries its result.
2. Just before the tool is called, an attempt is counted and committed on its own
   (``tool_effect_attempts``). A crash *during* the call rolls the claim back but not the
   attempt, so the next execution that wins the claim sees an earlier attempt: it calls the
   tool again only if the tool declared itself idempotent; otherwise it gets
   :class:`EffectUnknown` (recorded, so every later execution gets the same answer). A failure
   before the call (Postgres lost while claiming) leaves no attempt behind.

Not covered: a call whose result cannot be stored as JSON; a tool that fails (raises) is not an
effect and is called again; a task whose tool call ids change between executions (a model
re-asked after a crash writes new ids: the model's reply was never checkpointed).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from state.fencing import RUN_FENCE, check_fence

__all__ = ["CURRENT_LEDGER", "EffectKey", "EffectLedger", "EffectUnknown"]

log = logging.getLogger(__name__)

_KEY = "thread_id = %s AND checkpoint_ns = %s AND task_id = %s AND tool_call_id = %s"


@dataclass(frozen=True)
class EffectKey:
    """Which call: the thread, the task's checkpoint namespace, the task and the tool call id."""

    thread_id: str
    checkpoint_ns: str
    task_id: str
    tool_call_id: str

    def params(self) -> tuple[str, str, str, str]:
        """The key as SQL parameters, in the order of the primary key."""
        return (self.thread_id, self.checkpoint_ns, self.task_id, self.tool_call_id)


class EffectUnknown(RuntimeError):
    """A non-idempotent call crashed mid-call before: whether it acted is unknown."""


CURRENT_LEDGER: ContextVar[EffectLedger | None] = ContextVar(
    "staffgraph_effect_ledger", default=None
)
"""The ledger of the run executing in this context (the server sets it; None elsewhere)."""


_UNKNOWN = "__effect_unknown__"


class EffectLedger:
    """Exactly-once tool effects, recorded in Postgres (``tool_effects``)."""

    def __init__(self, pool: AsyncConnectionPool[Any], *, url: str | None = None) -> None:
        """Use ``pool`` (autocommit connections, dict rows: the shared pool).

        Args:
            pool: the shared pool.
            url: libpq URL for the attempt counter's own connections (default: the pool's).
        """
        self._pool = pool
        self._url = url if url is not None else str(pool.conninfo)

    async def recorded(self, key: EffectKey) -> tuple[bool, Any]:
        """``(True, result)`` when the call's result is recorded, else ``(False, None)``."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(f"SELECT result FROM tool_effects WHERE {_KEY}", key.params())
            row = await cur.fetchone()
        return (False, None) if row is None else (True, _unwrap(row["result"]))

    async def once(
        self,
        key: EffectKey,
        call: Callable[[], Awaitable[Any]],
        *,
        tool_name: str,
        idempotent: bool = False,
    ) -> Any:
        """The result of ``call()``, called at most once per key (see the module doc).

        Args:
            key: which call.
            call: makes the call; its result must be JSON (what is returned and recorded).
            tool_name: recorded with the result, for operators.
            idempotent: the tool may be called again after a crash mid-call.

        Raises:
            EffectUnknown: an earlier execution crashed mid-call and the tool is not idempotent.
            state.fencing.LeaseLost: the calling run's lease was taken over.
            Exception: whatever ``call()`` raised (nothing is recorded then).
        """
        found, result = await self.recorded(key)
        if found:
            return result
        fence = RUN_FENCE.get()
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "INSERT INTO tool_effects (thread_id, checkpoint_ns, task_id, tool_call_id, "
                "tool_name, run_id) VALUES (%s, %s, %s, %s, %s, %s) "
                "ON CONFLICT DO NOTHING RETURNING 1 AS claimed",
                (*key.params(), tool_name, fence.run_id if fence else None),
            )
            if await cur.fetchone() is None:  # another execution recorded it while we waited
                cur = await conn.execute(
                    f"SELECT result FROM tool_effects WHERE {_KEY}", key.params()
                )
                row = await cur.fetchone()
                return _unwrap(row["result"]) if row else None
            if fence is not None:
                await check_fence(cur, fence)
            if await self._count_attempt(key) > 1 and not idempotent:
                # The claim is ours, so every earlier attempt that reached the tool ended
                # without committing a result: it crashed (or lost Postgres) mid-call.
                result = {_UNKNOWN: f"{tool_name} was interrupted mid-call; not called again"}
            else:
                try:
                    result = await call()
                except Exception:
                    await self._forget_attempt(key)  # it failed cleanly: not an effect
                    raise
            await conn.execute(
                f"UPDATE tool_effects SET result = %s WHERE {_KEY}",
                (Jsonb({"v": result}), *key.params()),
            )
        return _unwrap({"v": result})

    async def _count_attempt(self, key: EffectKey) -> int:
        """Count an attempt at calling the tool, committed at once; how many, this one too.

        On a connection of its own, outside the pool: the caller holds a pool connection (the
        claim), and asking the pool for a second could starve a busy pool.
        """
        async with await psycopg.AsyncConnection.connect(self._url, autocommit=True) as conn:
            cur = await conn.execute(
                "INSERT INTO tool_effect_attempts (thread_id, checkpoint_ns, task_id, "
                "tool_call_id) VALUES (%s, %s, %s, %s) ON CONFLICT (thread_id, checkpoint_ns, "
                "task_id, tool_call_id) DO UPDATE SET attempts = tool_effect_attempts.attempts "
                "+ 1 RETURNING attempts",
                key.params(),
            )
            row = await cur.fetchone()
        return int(row[0]) if row else 1

    async def _forget_attempt(self, key: EffectKey) -> None:
        try:
            async with await psycopg.AsyncConnection.connect(self._url, autocommit=True) as conn:
                await conn.execute(f"DELETE FROM tool_effect_attempts WHERE {_KEY}", key.params())
        except Exception:  # the failure being reported matters more than this bookkeeping
            log.warning("could not clear the attempt of tool call %s", key.tool_call_id)


def _unwrap(stored: Any) -> Any:
    # Results are stored wrapped ({"v": ...}) so that a JSON null result is still a result.
    value = stored.get("v") if isinstance(stored, dict) else stored
    if isinstance(value, dict) and _UNKNOWN in value:
        raise EffectUnknown(str(value[_UNKNOWN]))
    return value
