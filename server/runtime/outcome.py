"""How a run ended: the done marker of its event log and what is recorded in Postgres."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from langgraph.pregel import Pregel
from langgraph.types import StateSnapshot

from server.repos import FinishResult, RunsRepo
from server.runtime.events import StreamConverter
from server.serde import dumps, interrupt_to_dict
from state.held_writes import HELD_WRITES
from state.retry import retrying

log = logging.getLogger(__name__)

__all__ = [
    "RUN_NOT_FOUND",
    "RUN_NOT_FOUND_ERROR",
    "THREAD_STATUS",
    "Outcome",
    "announce_if_deleted",
    "cancelled",
    "decode_done",
    "deleted_while_running",
    "encode_done",
    "error_body",
    "pending_interrupts",
    "succeeded",
]

THREAD_STATUS = {"success": "idle", "error": "error", "interrupted": "interrupted"}
"""The thread's status after a run ended with each status (nothing else queued)."""


def encode_done(status: str, output: bytes) -> bytes:
    """Data of a done marker: the final status and the run's output (JSON)."""
    return status.encode() + b"\n" + output


def decode_done(data: bytes) -> tuple[str, bytes]:
    """``(status, output JSON)`` from a done marker's data."""
    status, _, output = data.partition(b"\n")
    return status.decode(), output


RUN_NOT_FOUND_ERROR = dumps({"error": "HTTPException", "message": "404: Run not found"})
"""The ``error`` event that ends a stream of a run that no longer exists (see below)."""

RUN_NOT_FOUND = b'{"__error__":' + RUN_NOT_FOUND_ERROR + b"}"
"""The output of a run that no longer exists, for ``runs/wait`` and ``join``: it was deleted, or
its thread was, while it ran (or before the join). As the reference answers it: 200, with the
error as the JSON document."""


def error_body(exc: BaseException) -> dict[str, str]:
    """``{"error": <exception class>, "message": <str(exc)>}`` as the stream reports failures."""
    return {"error": type(exc).__name__, "message": str(exc)}


@dataclass
class Outcome:
    """How one execution of a run ended, before it is recorded."""

    status: str
    values: Any
    interrupts: dict[str, Any]
    error: dict[str, Any] | None
    output: bytes
    delete_run: bool = False
    thread_status: str | None = None
    cancel: str | None = None
    """The cancel (``interrupt`` / ``rollback``) this outcome carries out; None: the run ended
    by itself."""
    values_json: bytes | None = None
    """:attr:`values` as :func:`server.serde.dumps` writes them, when already made: a state is
    serialised once for the stream, the output and the thread's row."""


def pending_interrupts(state: StateSnapshot) -> dict[str, Any]:
    """The interrupts waiting in ``state``, per task id, as the thread shows them."""
    return {
        task.id: [interrupt_to_dict(item) for item in task.interrupts]
        for task in state.tasks
        if task.interrupts
    }


async def succeeded(graph: Pregel, thread_id: str, converter: StreamConverter) -> Outcome:
    """The outcome of a graph that streamed to its end: ``success``, or ``interrupted`` when it
    stopped at an interrupt."""
    values = converter.final_values()
    output = converter.last_values_json()
    # The thread keeps the final state itself, unless interrupts had to be taken out of it.
    values_json = output if values is not None and values is converter.last_values else None
    if not converter.interrupted:
        return Outcome("success", values, {}, None, output, values_json=values_json)
    interrupts: dict[str, Any] = {}
    if converter.interrupts:  # dynamic interrupts: the thread shows them per task
        state = await graph.aget_state({"configurable": {"thread_id": thread_id}})
        interrupts = pending_interrupts(state)
    return Outcome("interrupted", values, interrupts, None, output, values_json=values_json)


async def cancelled(
    runs: RunsRepo,
    graph: Pregel | None,
    row: Mapping[str, Any],
    converter: StreamConverter,
    action: str,
) -> Outcome:
    """How a run cancelled with ``action`` ended; for ``rollback``, its checkpoints are deleted."""
    thread_id = str(row["thread_id"])
    if action == "rollback":
        run_id = str(row["run_id"])
        if (held := HELD_WRITES.get()) is not None:
            await held.discard()  # nothing of the run's may land after its rollback
        await retrying(
            lambda: runs.delete_checkpoints_of_run(thread_id, run_id),
            what=f"rolling back run {run_id}",
        )
    values: Any = converter.final_values()
    interrupts: dict[str, Any] = {}
    thread_status = "interrupted"
    if graph is not None:
        state = await retrying(
            lambda: graph.aget_state({"configurable": {"thread_id": thread_id}}),
            what=f"reading the state of thread {thread_id}",
        )
        values = state.values if state.created_at is not None else None
        interrupts = pending_interrupts(state)
        if action == "rollback":
            thread_status = "interrupted" if state.next else "idle"
    output = dumps(values if values is not None else {})
    return Outcome(
        "interrupted",
        values,
        interrupts,
        None,
        output,
        delete_run=action == "rollback",
        thread_status=thread_status,
        cancel=action,
        values_json=None if values is None else output,
    )


async def deleted_while_running(
    runs: RunsRepo, row: Mapping[str, Any], outcome: Outcome, result: FinishResult
) -> bool:
    """Whether the run's row is gone as it ends: its thread was deleted (its end found no
    thread), or the run was (``DELETE`` of a running run flags it, deletes it, then stops it).

    Read only for runs stopped by an ``interrupt`` cancel whose end kept the thread: a rolled-back
    run's end deletes the run, a stateless run's its thread; neither is a deletion while it ran.
    """
    if result.outcome == "no_thread":
        return True
    if outcome.cancel != "interrupt" or outcome.delete_run or result.thread_deleted:
        return False  # a stateless run's end deletes its thread, and the run with it
    thread_id, run_id = str(row["thread_id"]), str(row["run_id"])
    try:
        return await runs.get(thread_id, run_id) is None
    except Exception:  # the end is recorded; this only chooses what its followers are told
        log.warning("could not check whether run %s still exists", run_id, exc_info=True)
        return False


async def announce_if_deleted(
    runs: RunsRepo, broker: Any, row: Mapping[str, Any], *, resumable: bool
) -> None:
    """Close out a run stopped by a lost lease when the lease was lost because the run's row is
    gone (the run or its thread deleted before its worker heard the cancel): its thread stops
    showing ``busy``, and its followers learn the end now rather than from Postgres once their
    stream goes quiet. A run another worker took over still has its row, and its new worker
    records its end."""
    run_id = str(row["run_id"])
    try:
        if await runs.get_any(run_id) is None:
            await runs.settle_thread(str(row["thread_id"]))
            await broker.finish(
                run_id, encode_done("interrupted", RUN_NOT_FOUND), resumable=resumable
            )
    except Exception:  # followers still read the end from Postgres
        log.warning("could not close out deleted run %s", run_id, exc_info=True)
