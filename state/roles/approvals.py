"""Who may decide an approval: the organisation's ``approvals:`` section.

Every approval request names its gate (``metadata.gate``): ``governance_approval`` (a change
to a role or to a role's learned instructions), ``tool_approval`` (a role agent's call of a
tool its policy gates; langchain's HITL middleware, whose requests carry no metadata, is this
gate), ``pipeline_escalation`` and ``budget_guard``, or any name a graph of your own gives
``ask_approval``. A rule says who may decide at a gate; a caller may when any clause holds:

* ``users``: their identity is listed;
* ``roles``: their key role (``viewer | member | approver | admin``, or the ``role`` field a
  custom authenticator returns) is listed;
* ``permissions``: they hold one of the permissions listed;
* ``thread_owner: true``: they own the thread that waits on the decision.

``self_approval: false`` then takes it away from whoever started the run that raised the
request (separation of duties), whatever the clauses say. A gate without a rule of its own
follows ``default``. Written in any roles file, once::

    approvals:
      default: {roles: [approver, admin], permissions: [approve]}
      gates:
        governance_approval: {roles: [approver, admin], self_approval: false}
        tool_approval: {roles: [approver, admin], thread_owner: true}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated

from pydantic import Field, StringConstraints

from state.roles.fields import Name, _Model

__all__ = [
    "DEFAULT_GATE_RULES",
    "GOVERNANCE_GATE",
    "TOOL_GATE",
    "ApprovalPolicy",
    "Approver",
    "GateRule",
]

GOVERNANCE_GATE = "governance_approval"
"""The gate of the governance graph (role changes and role instructions)."""
TOOL_GATE = "tool_approval"
"""The gate of a role agent's gated tool calls (langchain's ``HumanInTheLoopMiddleware``)."""

_Label = Annotated[str, StringConstraints(min_length=1, max_length=256)]


class GateRule(_Model):
    """Who may decide at one gate."""

    users: tuple[_Label, ...] = Field(default=(), max_length=500)
    """Identities that may decide."""
    roles: tuple[_Label, ...] = Field(default=(), max_length=50)
    """Key roles that may decide (``approver``, ``admin``, or a custom auth user's ``role``)."""
    permissions: tuple[_Label, ...] = Field(default=(), max_length=50)
    """Permissions any one of which lets a caller decide."""
    thread_owner: bool = False
    """The owner of the waiting thread may decide."""
    self_approval: bool = True
    """Whoever started the run that raised the request may decide (if a clause lets them)."""

    def describe(self) -> str:
        """Who may decide, in words (for 403 bodies)."""
        parts = []
        if self.roles:
            parts.append("role " + " or ".join(self.roles))
        if self.permissions:
            parts.append("permission " + " or ".join(self.permissions))
        if self.users:
            parts.append(f"one of {len(self.users)} named user(s)")
        if self.thread_owner:
            parts.append("the thread's owner")
        who = ", ".join(parts) if parts else "nobody"
        return who if self.self_approval else f"{who}, not whoever raised the request"


_APPROVERS = ("approver", "admin")
_APPROVE = ("approve",)

DEFAULT_GATE_RULES: dict[str, GateRule] = {
    GOVERNANCE_GATE: GateRule(roles=_APPROVERS, permissions=_APPROVE, self_approval=False),
    TOOL_GATE: GateRule(roles=_APPROVERS, permissions=_APPROVE, thread_owner=True),
    "pipeline_escalation": GateRule(roles=_APPROVERS, permissions=_APPROVE, thread_owner=True),
    "budget_guard": GateRule(roles=_APPROVERS, permissions=_APPROVE),
}
"""The rules when the organisation names none for a gate."""


class ApprovalPolicy(_Model):
    """The ``approvals:`` section of the organisation."""

    default: GateRule = GateRule(roles=_APPROVERS, permissions=_APPROVE)
    """The rule of a gate that has none of its own here or in :data:`DEFAULT_GATE_RULES`."""
    gates: dict[Name, GateRule] = Field(default_factory=dict, max_length=200)
    """Rules per gate, replacing the built-in rule of that gate."""

    def rule_for(self, gate: str) -> GateRule:
        """The rule that applies at ``gate``."""
        return self.gates.get(gate) or DEFAULT_GATE_RULES.get(gate) or self.default


@dataclass(frozen=True)
class Approver:
    """Who is asking to decide, as a rule sees them."""

    identity: str
    role: str | None = None
    permissions: Sequence[str] = ()
    unrestricted: bool = False
    """The local operator of a server without authentication: may decide anything."""

    @classmethod
    def from_user(cls, user: Mapping[str, object] | None, identity: str) -> Approver:
        """From the ``langgraph_auth_user`` JSON a run carries (``None``: the local operator)."""
        if user is None:
            return cls(identity=identity, unrestricted=not identity)
        role = user.get("role")
        perms = user.get("permissions")
        return cls(
            identity=identity,
            role=role if isinstance(role, str) else None,
            permissions=tuple(str(p) for p in perms) if isinstance(perms, list | tuple) else (),
        )

    def refusal(
        self, rule: GateRule, *, owner: str | None = None, requested_by: str | None = None
    ) -> str | None:
        """Why this caller may not decide under ``rule`` (``None``: they may).

        Args:
            rule: The gate's rule.
            owner: The owner of the thread that waits.
            requested_by: Who started the run that raised the request.
        """
        if self.unrestricted:
            return None
        if not rule.self_approval and requested_by and requested_by == self.identity:
            return "whoever raised the request may not decide it (separation of duties)"
        allowed = (
            self.identity in rule.users
            or (self.role is not None and self.role in rule.roles)
            or any(p in rule.permissions for p in self.permissions)
            or (rule.thread_owner and bool(owner) and owner == self.identity)
        )
        return None if allowed else f"it takes {rule.describe()}"
