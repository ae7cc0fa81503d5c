"""Approval authority: which approval requests a thread waits on, and who may decide them.

A thread waits on an approval when one of its pending interrupts is an approval request
(langchain's HITL shape, ``action_requests``; see :mod:`nodes.approval`). Its gate is
``metadata.gate``; a request without one (langchain's ``HumanInTheLoopMiddleware`` in a role
agent) is the ``tool_approval`` gate. The organisation's ``approvals:`` section
(:mod:`state.roles.approvals`) says who may decide at each gate; :func:`require_authority`
answers 403 naming the first gate the caller may not decide.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fastapi import HTTPException

from server.auth.identity import Caller
from state.roles.approvals import TOOL_GATE, ApprovalPolicy, Approver

__all__ = ["PendingGate", "approver_of", "may_review", "pending_gates", "require_authority"]

_MAX_GATES = 100


@dataclass(frozen=True)
class PendingGate:
    """One approval request a thread waits on."""

    gate: str
    interrupt_id: str | None
    actions: tuple[str, ...]
    """The names of the actions up for review."""
    policy: str | None = None
    requested_by: str | None = None
    """Who started the run that raised it, when the request says."""
    request: Mapping[str, Any] = field(default_factory=dict)
    """The interrupt value (``action_requests``, ``review_configs``, ``metadata``)."""

    def describe(self) -> str:
        """``gate 'x' (policy: …)`` for messages."""
        policy = f" (policy: {self.policy})" if self.policy else ""
        return f"approval gate '{self.gate}'{policy}"


def _gate(value: Any, interrupt_id: Any) -> PendingGate | None:
    if not isinstance(value, Mapping) or not isinstance(value.get("action_requests"), list):
        return None
    metadata = value.get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    gate = metadata.get("gate")
    actions = tuple(str(a.get("name")) for a in value["action_requests"] if isinstance(a, Mapping))
    policy = metadata.get("policy")
    requested = metadata.get("requested_by")
    return PendingGate(
        gate=gate if isinstance(gate, str) and gate else TOOL_GATE,
        interrupt_id=interrupt_id if isinstance(interrupt_id, str) else None,
        actions=actions,
        policy=policy if isinstance(policy, str) else None,
        requested_by=requested if isinstance(requested, str) and requested else None,
        request=value,
    )


def pending_gates(interrupts: Any) -> list[PendingGate]:
    """The approval requests among a thread's pending interrupts.

    Args:
        interrupts: the thread row's ``interrupts`` (``{task_id: [{"value", "id"}, …]}``), a
            list of such entries, or ``Interrupt`` objects (a ``StateSnapshot``'s).
    """
    entries: Iterable[Any]
    if isinstance(interrupts, Mapping):
        entries = [e for group in interrupts.values() if isinstance(group, list) for e in group]
    elif isinstance(interrupts, list | tuple):
        entries = interrupts
    else:
        return []
    found: list[PendingGate] = []
    for entry in entries:
        if isinstance(entry, Mapping):
            gate = _gate(entry.get("value"), entry.get("id"))
        else:
            gate = _gate(getattr(entry, "value", None), getattr(entry, "id", None))
        if gate is not None:
            found.append(gate)
        if len(found) >= _MAX_GATES:
            break
    return found


def approver_of(caller: Caller) -> Approver:
    """The caller as an approval rule sees them."""
    if not caller.enforced:
        return Approver(identity="", unrestricted=True)
    role = caller.fields.get("role")
    return Approver(
        identity=caller.identity,
        role=role if isinstance(role, str) else None,
        permissions=tuple(caller.permissions),
    )


def require_authority(
    caller: Caller,
    gates: Iterable[PendingGate],
    policy: ApprovalPolicy,
    *,
    owner: str | None,
    started_by: str | None = None,
    doing: str = "answer",
) -> None:
    """Refuse (403) unless ``caller`` may decide every one of ``gates``.

    Args:
        caller: who asks.
        gates: the approval requests the request would decide or get past.
        policy: the organisation's approval rules.
        owner: the owner of the thread that waits.
        started_by: who started the run that raised them, for requests that do not say.
        doing: what the request does, for the message (``answer``, ``skip``, …).

    Raises:
        HTTPException: 403 naming the gate, its policy and who may decide it.
    """
    approver = approver_of(caller)
    for gate in gates:
        rule = policy.rule_for(gate.gate)
        why = approver.refusal(rule, owner=owner, requested_by=gate.requested_by or started_by)
        if why is not None:
            raise HTTPException(
                403,
                detail=f"You may not {doing} {gate.describe()} on "
                f"{', '.join(gate.actions) or 'its action'}: {why}.",
            )


def may_review(caller: Caller, policy: ApprovalPolicy, thread: Mapping[str, Any]) -> bool:
    """Whether ``caller`` may see and answer another owner's ``thread`` as its approver.

    True when the thread waits on approval and the caller may decide every request pending
    on it by a clause other than ownership (an approver role, permission or name).
    """
    gates = pending_gates(thread.get("interrupts"))
    if not caller.enforced or not gates:
        return False
    approver = approver_of(caller)
    for gate in gates:
        rule = policy.rule_for(gate.gate).model_copy(update={"thread_owner": False})
        if approver.refusal(rule, requested_by=gate.requested_by) is not None:
            return False
    return True
