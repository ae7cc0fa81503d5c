"""A run's checkpoint writes held back until they must land, so most go with the next round trip.

A run's checkpointer writes used to cost a round trip and a commit each turn of the event loop
that made some: for a one-node graph, the input checkpoint, then the node's writes with the
next checkpoint, and after them the run's finish, each its own transaction. Inside a run
(:data:`HELD_WRITES` set by the executor) :class:`FencedPostgresSaver` hands its writes to a
:class:`HeldWrites` instead, which sends them, in order and behind the run's lease fence:

- **as a node starts once nodes made a checkpoint** (:class:`FlushBeforeNodes`, a callback on
  ``on_chain_start``; :meth:`HeldWrites.holds_step`): with ``durability="sync"``, before the
  node, so every step after the first starts from the durable checkpoint of the step before, as
  LangGraph's own sync mode waits for that checkpoint between steps; otherwise alongside it, as
  LangGraph's own ``"async"`` writes go on while the next step runs. The checkpoints the run's
  input made (the input checkpoint, and the one after the graph's ``__start__`` step) are not
  sent as the first real step starts: no node has run yet, and should the process die the
  run's stored input makes them again. (LangGraph's own sync mode does not wait for the first
  either, but waits for the second.) So a one-node run sends all its writes with its finish;
- **before the run reads a checkpoint** (the saver flushes first): it reads what it wrote;
- **within :data:`HOLD_SECONDS`** of the first write held (a timer): a step whose parallel
  branches run for minutes keeps the writes of those that finished, and the thread's state
  read from outside lags a running step by that much at most;
- **with the run's finish**: the executor takes what is left (:meth:`HeldWrites.take`) and sends
  it in the transaction that records the end, so the final state and the run's status commit
  together, in one round trip.

A write that never lands because the process died is one LangGraph recovers from: the last
durable checkpoint with its pending writes gives the same next step (it is what ``"async"``
durability relies on), and a run's end is never recorded without its final writes.

Not for runs whose stream lets the client read state before the run's finish (checkpoint ids
in ``checkpoints`` and ``debug`` modes; protocol v2's ``completed`` event): the executor does
not hold their writes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from contextvars import ContextVar
from typing import Any
from uuid import UUID

from langchain_core.callbacks import AsyncCallbackHandler
from langgraph.constants import START
from psycopg_pool import AsyncConnectionPool

from state.checkpoint_writes import CHECKPOINT, FencedWrites, execute, fenced_statements
from state.fencing import LeaseLost, RunFence, lease_lost_as

__all__ = ["HELD_WRITES", "HOLD_SECONDS", "FlushBeforeNodes", "HeldWrites"]

log = logging.getLogger(__name__)

HOLD_SECONDS = 0.05
"""Longest a write is held when nothing sends it sooner (no node starts, the run goes on)."""

_START_TASK_PATH = f"~__pregel_pull, {START}"
"""The ``task_path`` LangGraph saves the writes of a graph's ``__start__`` task under."""


class HeldWrites:
    """One run's checkpointer writes not sent yet, and the one send in flight.

    Writes are taken off only once they landed: a send that failed (a lost connection past the
    retries) leaves them for the next one; every write is an upsert, so sending one twice is
    harmless. Sends never overlap, so writes land in the order they were made.
    """

    def __init__(self, pool: AsyncConnectionPool[Any], fence: RunFence) -> None:
        """Hold writes of the run ``fence`` names, to be sent on ``pool`` (from the running
        event loop)."""
        self._pool = pool
        self.fence = fence
        self.loop = asyncio.get_running_loop()
        self._held: list[tuple[str, dict[str, Any], str | None]] = []
        """``(kind, params, source)``: ``source``, a checkpoint's metadata source."""
        self._sending: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._quiet: asyncio.Task[None] | None = None
        self.open = True
        """False once taken or discarded: later writes go to Postgres at once."""
        self.lost = False
        """A send nobody waited for found the run's lease lost."""

    def add(self, kind: str, params: dict[str, Any], *, source: str | None = None) -> None:
        """Hold one write (see :mod:`state.checkpoint_writes` for ``kind``); ``source``: a
        checkpoint's metadata source (``"input"``, ``"loop"``...)."""
        self._held.append((kind, params, source))
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(HOLD_SECONDS, self._on_timer)

    def holds_step(self) -> bool:
        """Whether a checkpoint that nodes made is held or being sent (not landed yet).

        The run's input checkpoint is not one, nor the checkpoint after it whose step only the
        graph's ``__start__`` task wrote in (a ``StateGraph`` maps its input into its channels
        there): both come from the run's input and the thread's state before it. A checkpoint
        whose step's writes were not all seen before it counts as one.
        """
        inputs: set[tuple[str, str]] = set()
        start_only: dict[tuple[str, str], bool] = {}  # (ns, checkpoint id) of the writes
        for kind, params, source in self._held:
            ns = params["ns"]
            if kind != CHECKPOINT:
                key = (ns, params["checkpoint_id"])
                start_only[key] = start_only.get(key, True) and (
                    params["task_path"] == _START_TASK_PATH
                )
            elif source == "input":
                inputs.add((ns, params["checkpoint_id"]))
            elif not start_only.get(parent := (ns, params["parent_id"]), False) or (
                parent not in inputs
            ):
                return True
        return False

    async def flush(self) -> None:
        """Send every write held, and wait until they (and any send in flight) landed.

        Raises:
            LeaseLost: the run's lease is no longer held with its token.
        """
        while (sending := self._in_flight()) is not None or self._held:
            if sending is None:
                self._cancel_timer()
                sending = asyncio.get_running_loop().create_task(self._send(len(self._held)))
                sending.add_done_callback(_retrieved)
                self._sending = sending
            await asyncio.shield(sending)

    async def take(self) -> FencedWrites:
        """Stop holding; the writes not sent yet, for the caller's transaction.

        A send in flight is waited for first (its writes, had it failed, are in the answer).
        """
        self.open = False
        self._cancel_timer()
        await self._settle()
        held, self._held = self._held, []
        return FencedWrites(self.fence, _writes(held))

    async def discard(self) -> None:
        """Stop holding and drop what is held, once a send in flight has ended (the run's
        checkpoints are about to be rolled back: nothing may land after that)."""
        self.close()
        await self._settle()

    def close(self) -> None:
        """Stop holding and drop what is held (the run ended, or is no longer this worker's);
        a send in flight goes on."""
        self.open = False
        self._cancel_timer()
        self._held.clear()

    async def _settle(self) -> None:
        while (sending := self._in_flight()) is not None:
            try:
                await asyncio.shield(sending)
            except Exception:  # its writes are still held
                pass

    def _in_flight(self) -> asyncio.Task[None] | None:
        """The send not finished yet, if any. (Awaiting a finished task does not yield, so a
        loop waiting for ``_sending`` to be cleared by a callback would spin forever.)"""
        sending = self._sending
        return sending if sending is not None and not sending.done() else None

    async def _send(self, count: int) -> None:
        batch = self._held[:count]
        if not batch:  # dropped by close() before this send began
            return
        with lease_lost_as(self.fence):
            statements = fenced_statements(self.fence, _writes(batch))
            await execute(self._pool, statements, what="saving a step")
        del self._held[:count]  # writes added meanwhile stay for the next send

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timer(self) -> None:
        self._timer = None
        self.send_soon()

    def send_soon(self) -> None:
        """Start sending what is held without waiting for it (errors are met by the next
        flush, read or finish)."""
        if self.open and self._held and self._in_flight() is None:
            self._cancel_timer()
            self._quiet = asyncio.get_running_loop().create_task(self._flush_quietly())

    async def _flush_quietly(self) -> None:
        try:
            await self.flush()
        except LeaseLost:
            self.lost = True
        except Exception as exc:  # held still: the next node, read or the finish sends them
            log.info("held writes of run %s not sent yet: %s", self.fence.run_id, exc)


def _writes(
    held: list[tuple[str, dict[str, Any], str | None]],
) -> list[tuple[str, dict[str, Any]]]:
    return [(kind, params) for kind, params, _ in held]


def _retrieved(task: asyncio.Task[None]) -> None:
    """Mark a send's error seen: whoever waited has it, and it is not logged as lost."""
    if not task.cancelled():
        task.exception()


HELD_WRITES: ContextVar[HeldWrites | None] = ContextVar("staffgraph_held_writes", default=None)
"""Set by the executor for a run whose checkpoint writes may be held (see the module)."""


class FlushBeforeNodes(AsyncCallbackHandler):
    """Sends a run's held writes as any of its nodes (any runnable) starts once a checkpoint
    that nodes made is among them (:meth:`HeldWrites.holds_step`): before the node, for a run
    with ``durability="sync"`` (each step after the first starts from the durable checkpoint of
    the one before); alongside it otherwise (``"async"``: LangGraph's own writes go on while the
    next step runs). Without such a checkpoint (the run's first real step, or a step's first
    branch to finish) the timer, a read or the finish sends them."""

    run_inline = True
    raise_error = True  # a lost lease or a failed send stops the node, as a failed write did
    ignore_llm = ignore_chat_model = ignore_retriever = ignore_agent = ignore_retry = True
    ignore_custom_event = True

    def __init__(self, held: HeldWrites, *, wait: bool) -> None:
        """Send what ``held`` holds at every chain start; ``wait``: before the chain runs."""
        self._held = held
        self._wait = wait

    async def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: dict[str, Any] | Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: Sequence[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Send what is held before the chain (a node, a graph, a step inside a node) runs.

        Not for a chain a synchronous node invokes: LangChain runs this handler for it on an
        event loop of its own in another thread, where the run's pool cannot be used. The node
        itself started (and sent what was held) on the run's loop.
        """
        held = self._held
        if asyncio.get_running_loop() is not held.loop:
            return
        if held.lost:  # no next node for a run that is no longer this worker's
            raise LeaseLost(held.fence)
        if not held.holds_step():
            return
        if self._wait:
            await held.flush()
        else:
            held.send_soon()
