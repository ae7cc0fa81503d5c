"""The governance graph's access to what it changes: role versions and role instructions.

Not public API: :mod:`graphs.governance` builds on it. Both live in the run's store; a run
without one fails with a message saying how to attach it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, NotRequired

from langchain_core.messages import AIMessage
from langgraph.config import get_config
from langgraph.runtime import Runtime
from typing_extensions import TypedDict

from nodes.approval import GateDecision
from nodes.governance import RoleChange, describe_change
from nodes.memory import resolve_scope
from state.errors import GraphSetupError
from state.memory import Memory, MemoryScope, MemoryStore, ProcedureStatus
from state.role_store import AuditNote, RoleStore, record_governance
from state.roles import Organization, Role


class Outcome(TypedDict):
    """How the change ended."""

    status: Literal["applied", "rejected", "already_in_effect"]
    """``already_in_effect``: approved, but another change made it first (nothing stored)."""
    role: str
    version: NotRequired[int]
    """The stored version when applied: the role's, or the instruction's for instructions."""
    reason: NotRequired[str]
    """Why it was rejected, or how it was already in effect."""
    decided_by: NotRequired[str]
    """The authenticated identity of the reviewer who decided (absent without auth)."""
    ref: NotRequired[str]
    """The instruction's memory ref (instruction changes that were staged)."""


def in_effect(exc: ValueError) -> bool:
    """Whether applying a change failed because it is made already (added, or removed)."""
    text = str(exc)
    return " is already in the " in text or " is not in the " in text


def signed(outcome: Outcome, decisions: Sequence[GateDecision] | None) -> None:
    """Put the last decision's ``decided_by`` on ``outcome``."""
    who = decisions[-1].get("decided_by") if decisions else None
    if who:
        outcome["decided_by"] = who


def decider(decisions: Sequence[GateDecision] | None) -> str:
    """Who took the last decision (``""`` when nobody is recorded)."""
    return str(decisions[-1].get("decided_by") or "") if decisions else ""


class Records:
    """Role versions and instructions of ``org`` as one governance graph sees them."""

    def __init__(self, org: Organization, *, author: Role, name: str) -> None:
        self.org = org
        self.author = author
        self.name = name

    def role_store(self, runtime: Runtime[Any]) -> RoleStore:
        if runtime.store is None:
            raise ValueError(
                f"Governance graph '{self.name}' needs a store for role versions: compile it with "
                "store=... or run it in a server (which attaches one)."
            )
        return RoleStore(runtime.store)

    def memory_of(self, runtime: Runtime[Any]) -> MemoryStore:
        if runtime.store is None:
            raise ValueError(
                f"Governance graph '{self.name}' needs a store for role instructions: compile it "
                "with store=... or run it in a server (which attaches one)."
            )
        return MemoryStore(runtime.store)

    def scope_for(self, runtime: Runtime[Any], role_name: str) -> MemoryScope:
        role = self.org.role(role_name)
        return resolve_scope(runtime, role=role.name, domains=role.domains)

    def scope_of_ref(self, runtime: Runtime[Any], ref: str) -> MemoryScope:
        # A ref names its area: the role itself or one of the domains the role owns.
        parts = ref.strip().split("/")
        area = parts[1] if len(parts) == 4 and parts[0] == "org" else ""
        owner = self.org.role(area) if self.org.has_role(area) else self.org.domain_owner(area)
        if owner is None:
            raise ValueError(
                f"Governance graph '{self.name}': {ref!r} is not an instruction of a role of this "
                "organisation; expected org/<role>/procedural/<rule>-v<n>."
            )
        return self.scope_for(runtime, owner.name)

    def reviewer(self, runtime: Runtime[Any]) -> str:
        user = resolve_scope(runtime, role=self.author.name).user_id
        return f"human:{user}"[:200] if user else "human:reviewer"

    async def pending_instruction(self, runtime: Runtime[Any], ref: str) -> Memory | None:
        found = await self.memory_of(runtime).get(self.scope_of_ref(runtime, ref), ref)
        if found is None or found.status != ProcedureStatus.PENDING.value:
            return None
        return found

    def staged_matches(self, staged: Memory, proposal: RoleChange) -> bool:
        role = self.org.role(proposal["role"]) if self.org.has_role(proposal["role"]) else None
        return (
            role is not None
            and staged.area in (role.name, *role.domains)
            and staged.value.get("rule") == proposal.get("rule")
            and staged.text == proposal["value"]
        )

    # --- the audit log ------------------------------------------------------------------

    def audit_note(self, state: Mapping[str, Any], **extra: Any) -> AuditNote:
        """What the audit log keeps about this run's change and its last decision."""
        decisions = state.get("decisions") or []
        last = decisions[-1] if decisions else {}
        try:
            thread_id = (get_config().get("configurable") or {}).get("thread_id")
        except RuntimeError:  # outside a run
            thread_id = None
        details = {
            "change_id": state.get("change_id"),
            "change": dict(state.get("proposal") or {}),
            "requested_by": state.get("requested_by") or None,
            "decision": last.get("type"),
            "message": last.get("message"),
            "thread_id": str(thread_id) if thread_id is not None else None,
            **extra,
        }
        return AuditNote(actor=last.get("decided_by"), details=details)

    async def record(
        self, runtime: Runtime[Any], action: str, state: Mapping[str, Any], **extra: Any
    ) -> None:
        """Append ``action`` for this run's change to the audit log (Postgres stores only)."""
        role = str((state.get("proposal") or {}).get("role") or "")
        await record_governance(
            runtime.store, action, role=role, audit=self.audit_note(state, **extra)
        )

    async def already_made(
        self, state: Mapping[str, Any], runtime: Runtime[Any], why: str, version: int
    ) -> dict[str, Any]:
        """The approved change is there already (another change made it): nothing is stored;
        the approval is recorded with ``status: already_in_effect``."""
        proposal = state["proposal"]
        outcome = Outcome(
            status="already_in_effect", role=proposal["role"], version=version, reason=why
        )
        signed(outcome, state.get("decisions"))
        await self.record(runtime, "governance.applied", state, status="already_in_effect")
        text = (
            f"Already in effect: {describe_change(proposal)} {why} Role '{proposal['role']}' "
            f"stays at version {version}."
        )
        return {"outcome": outcome, "messages": [AIMessage(text, name=self.author.name)]}


def proposer_role(org: Organization, proposer: str | None, name: str) -> Role:
    """The role that proposes changes: the one given, or the owner of the ``roles`` domain."""
    if proposer is None:
        owner = org.domain_owner("roles")
        if owner is None:
            raise GraphSetupError(
                f"Governance graph '{name}': no role owns the 'roles' domain; give one role "
                "domains: [roles] or pass proposer=..."
            )
        proposer = owner.name
    if not org.has_role(proposer):
        raise GraphSetupError(f"Governance graph '{name}': proposer '{proposer}' is not a role.")
    return org.role(proposer)
