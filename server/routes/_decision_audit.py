"""Approval decisions in the audit log, written in the transaction that creates the run.

A run that answers approval requests (``command.resume``) or gets past them
(``command.goto`` / ``update``, by a caller with the authority) is created in one transaction
with an ``approval.decision`` entry per request: who decided, the gate and its policy, and per
action its name, the decision, the arguments before and — after an edit — after. If the run
cannot be created (a 409 under ``reject``), neither is the entry.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from server.auth.approvals import PendingGate
from server.runtime import CreatedRun, Runtime
from server.schemas import RunCreate
from state.audit import append_entry

__all__ = ["create_with_decisions", "decision_details", "record_state_write"]

_MAX_MESSAGE = 4_000


def _answer_of(resume: Any, gate: PendingGate, only: bool) -> Any:
    if isinstance(resume, Mapping) and gate.interrupt_id and gate.interrupt_id in resume:
        return resume[gate.interrupt_id]
    return resume if only else None


def _actions(gate: PendingGate, answer: Any) -> list[dict[str, Any]]:
    requests = gate.request.get("action_requests")
    decisions = answer.get("decisions") if isinstance(answer, Mapping) else None
    decisions = decisions if isinstance(decisions, list) else []
    out: list[dict[str, Any]] = []
    for index, request in enumerate(requests if isinstance(requests, list) else []):
        request = request if isinstance(request, Mapping) else {}
        decision = decisions[index] if index < len(decisions) else None
        decision = decision if isinstance(decision, Mapping) else {}
        entry: dict[str, Any] = {
            "name": request.get("name"),
            "decision": decision.get("type"),
            "args_before": request.get("args"),
        }
        edited = decision.get("edited_action")
        if decision.get("type") == "edit" and isinstance(edited, Mapping):
            entry["args_after"] = edited.get("args")
        message = decision.get("message")
        if isinstance(message, str):
            entry["message"] = message[:_MAX_MESSAGE]
        out.append(entry)
    return out


def decision_details(body: RunCreate, gates: list[PendingGate]) -> list[dict[str, Any]]:
    """The ``details`` of one ``approval.decision`` entry per request the run answers."""
    command = body.command
    resume = command.resume if command is not None else None
    steered = [
        name
        for name, value in (
            ("goto", command.goto if command else None),
            ("update", command.update if command else None),
        )
        if value is not None
    ]
    found = []
    for gate in gates:
        details: dict[str, Any] = {
            "gate": gate.gate,
            "policy": gate.policy,
            "interrupt_id": gate.interrupt_id,
            "requested_by": gate.requested_by,
            "actions": _actions(gate, _answer_of(resume, gate, len(gates) == 1)),
        }
        if steered:
            details["steered"] = steered  # past the request without answering it
        found.append(details)
    return found


async def create_with_decisions(
    runtime: Runtime,
    body: RunCreate,
    *,
    thread_id: str,
    identity: Mapping[str, Any],
    actor: str | None,
    gates: list[PendingGate],
    stream_modes: list[str] | None = None,
    thread_filter: Mapping[str, Any] | None = None,
) -> CreatedRun:
    """Create the run and its ``approval.decision`` entries in one transaction.

    Raises:
        RunError: the run cannot be created (nothing is written).
    """
    async with runtime.pool.connection() as raw, raw.transaction():
        conn: Any = raw  # the pool hands out dict-row connections, as the repos expect
        created = await runtime.create_run(body, thread_id=thread_id, conn=conn, identity=identity)
        for details in decision_details(body, gates):
            await append_entry(
                conn,
                "approval.decision",
                actor=actor,
                resource_type="thread",
                resource_id=thread_id,
                details={**details, "run_id": created.run_id},
            )
    return created


async def record_state_write(
    runtime: Runtime,
    *,
    thread_id: str,
    actor: str | None,
    gates: list[PendingGate],
    as_node: str | None,
    checkpoint_id: str | None,
) -> None:
    """Record an ``update_state`` that wrote as or past approval gates (one entry each)."""
    async with runtime.pool.connection() as conn, conn.transaction():
        for gate in gates:
            await append_entry(
                conn,
                "approval.decision",
                actor=actor,
                resource_type="thread",
                resource_id=thread_id,
                details={
                    "gate": gate.gate,
                    "policy": gate.policy,
                    "interrupt_id": gate.interrupt_id,
                    "via": "update_state",
                    "as_node": as_node,
                    "checkpoint_id": checkpoint_id,
                },
            )
