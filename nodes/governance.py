"""Role changes for the governance graph: the proposal schema, applying, and assessing.

A :class:`RoleChange` is one edit to one role: set its purpose or token budget, or add/remove
one accountability, domain, granted tool, approval rule or handoff. :func:`assess_change`
applies it to the current organisation (stored versions included) and runs the same checks as
at build time, so a change that would break governance (a risky tool without approval, a
domain owned twice, a handoff outside the allowed circles) is shown as invalid before anyone
approves it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, create_model
from typing_extensions import TypedDict

from state.errors import RoleDefinitionError
from state.role_store import RoleStore
from state.roles import Organization, Role, validate_organization
from tools.registry import ToolRegistry, ToolRisk

__all__ = [
    "ChangeProposal",
    "Impact",
    "RoleChange",
    "apply_change",
    "assess_change",
    "describe_change",
    "normalise_change",
]

ChangeAttribute = Literal[
    "tool_grant",
    "purpose",
    "accountabilities",
    "domains",
    "approval_required",
    "handoffs",
    "token_budget",
]
Operation = Literal["add", "remove", "set"]

_LISTS: dict[str, tuple[str, ...]] = {
    "tool_grant": ("policies", "allowed_tools"),
    "accountabilities": ("accountabilities",),
    "domains": ("domains",),
    "approval_required": ("policies", "approval_required"),
    "handoffs": ("handoffs",),
}
_NAMED = frozenset({"tool_grant", "domains", "handoffs", "approval_required"})
_WORD = re.compile(r"[a-z][a-z0-9_]*")


class RoleChange(TypedDict):
    """One change to one role."""

    role: str
    attribute: ChangeAttribute
    operation: Operation
    value: str
    """The item added or removed, or the new purpose / token budget."""
    motivation: str


class ChangeProposal(BaseModel):
    """A proposed change to one role of the organisation."""

    role: str = Field(description="The role to change.")
    attribute: ChangeAttribute = Field(
        description="What to change: tool_grant (tools it may use), purpose, accountabilities, "
        "domains, approval_required, handoffs or token_budget."
    )
    operation: Operation = Field(
        description="add or remove one item of a list; set the purpose or token_budget."
    )
    value: str = Field(
        min_length=1, max_length=2_000, description="The item, or the new purpose or budget."
    )
    motivation: str = Field(max_length=2_000, description="Why this resolves the tension.")

    @classmethod
    def for_roles(cls, names: Sequence[str]) -> type[ChangeProposal]:
        """The schema with ``role`` limited to ``names``."""
        literal: Any = Literal[tuple(names)]
        return create_model(
            "ChangeProposal",
            __base__=cls,
            __doc__=cls.__doc__,
            role=(literal, Field(description="The role to change.")),
        )


def describe_change(change: Mapping[str, Any]) -> str:
    """One sentence: ``Add 'calculator' to the tool_grant of role 'writer'.``"""
    role, attribute = change.get("role", "?"), change.get("attribute", "?")
    value = str(change.get("value", ""))[:200]
    operation = change.get("operation")
    if operation == "add":
        return f"Add '{value}' to the {attribute} of role '{role}'."
    if operation == "remove":
        return f"Remove '{value}' from the {attribute} of role '{role}'."
    return f"Set the {attribute} of role '{role}' to '{value}'."


def normalise_change(
    raw: Any, *, org: Organization, registry: ToolRegistry, tension: str
) -> RoleChange:
    """Turn a model's or reviewer's proposal into a :class:`RoleChange`.

    Names are normalised (``"Calculator"`` -> ``"calculator"``); when a tool grant's value is
    prose, the first registered tool it (or else the tension) mentions is taken.

    Raises:
        ValueError: The proposal does not fit :class:`ChangeProposal`.
    """
    data = raw.model_dump() if isinstance(raw, BaseModel) else dict(raw or {})
    try:
        proposal = ChangeProposal.model_validate(data)
    except ValidationError as exc:
        raise ValueError("Invalid role change: " + _errors(exc)) from None
    value = proposal.value.strip()
    if proposal.attribute in _NAMED:
        candidate = "_".join(value.lower().split())
        if not _WORD.fullmatch(candidate) and proposal.attribute == "tool_grant":
            candidate = (
                _mentioned(value, registry.names())
                or _mentioned(tension, registry.names())
                or candidate
            )
        value = candidate
    return RoleChange(
        role=proposal.role,
        attribute=proposal.attribute,
        operation=proposal.operation,
        value=value,
        motivation=proposal.motivation.strip(),
    )


def _mentioned(text: str, names: Sequence[str]) -> str | None:
    words = re.findall(r"[a-z][a-z0-9_]*", text.lower())
    for word in words:
        if word in names:
            return word
    return None


def apply_change(role: Role, change: Mapping[str, Any]) -> Role:
    """Return ``role`` with ``change`` applied.

    Raises:
        ValueError: The operation does not fit the attribute, the item is already there (add)
            or missing (remove), or the result is not a valid role.
    """
    data = role.model_dump(mode="json")
    attribute, operation, value = change["attribute"], change["operation"], change["value"]
    if attribute in _LISTS:
        if operation == "set":
            raise ValueError(f"{attribute} is a list: use add or remove, not set.")
        *parents, leaf = _LISTS[attribute]
        target = data
        for key in parents:
            target = target[key]
        items = list(target[leaf])
        if operation == "add":
            if value in items:
                raise ValueError(f"'{value}' is already in the {attribute} of '{role.name}'.")
            items.append(value)
        else:
            if value not in items:
                raise ValueError(f"'{value}' is not in the {attribute} of '{role.name}'.")
            items.remove(value)
        target[leaf] = items
    elif attribute == "purpose":
        if operation != "set":
            raise ValueError("purpose is replaced with set, not added to or removed from.")
        data["purpose"] = value
    elif attribute == "token_budget":
        if operation != "set":
            raise ValueError("token_budget is replaced with set.")
        try:
            data["policies"]["token_budget"] = int(value)
        except ValueError:
            raise ValueError(f"token_budget must be a whole number, not '{value}'.") from None
    else:
        raise ValueError(f"Unknown attribute '{attribute}'.")
    try:
        return Role.model_validate(data)
    except ValidationError as exc:
        raise ValueError(_errors(exc)) from None


class Impact(TypedDict):
    """What a change would do, found before anyone approves it."""

    valid: bool
    """Whether the organisation passes every governance check with the change."""
    problems: list[str]
    """Why it is invalid (one line each)."""
    summary: str
    affected_roles: list[str]
    """The changed role and the roles that hand off to it."""
    new_risks: list[str]
    """Tools of risk ``write`` or ``external`` the change grants."""
    base_version: int
    """The role's current version, which the change builds on."""


async def assess_change(
    change: RoleChange, *, org: Organization, registry: ToolRegistry, store: RoleStore
) -> Impact:
    """Apply ``change`` to the current organisation and check it.

    Args:
        change: The change.
        org: The organisation's version-0 definition.
        registry: Tools roles may be granted.
        store: Where the current role versions are.

    Returns:
        The :class:`Impact`.
    """
    name = change["role"]
    try:
        current, version = await store.current(org, name)
    except LookupError as exc:
        return _invalid(change, [str(exc)], 0)
    try:
        changed = apply_change(current, change)
    except ValueError as exc:
        return _invalid(change, [str(exc)], version)
    roles = []
    for role in org.roles:
        roles.append(changed if role.name == name else (await store.current(org, role.name))[0])
    proposed = Organization(circles=org.circles, roles=tuple(roles))
    problems: list[str] = []
    try:
        validate_organization(proposed, registry)
    except RoleDefinitionError as exc:
        problems = [problem.describe() for problem in exc.problems]
    new_risks = [
        tool
        for tool in changed.tools
        if tool not in current.tools
        and tool in registry
        and registry.risk_of(tool) in (ToolRisk.WRITE, ToolRisk.EXTERNAL)
    ]
    affected = [name] + sorted(
        r.name
        for r in proposed.roles
        if r.name != name and any(t.name == name for t in proposed.handoff_targets(r.name))
    )
    summary = (
        f"{describe_change(change)} Role '{name}' is at version {version}; approving stores "
        f"version {version + 1}. Affects: {', '.join(affected)}."
    )
    if new_risks:
        summary += f" Grants risky tools: {', '.join(new_risks)}."
    return Impact(
        valid=not problems,
        problems=problems,
        summary=summary,
        affected_roles=affected,
        new_risks=new_risks,
        base_version=version,
    )


def _invalid(change: RoleChange, problems: list[str], version: int) -> Impact:
    return Impact(
        valid=False,
        problems=problems,
        summary=(
            f"{describe_change(change)} Role '{change['role']}' is at version {version}; "
            "this change cannot be applied."
        ),
        affected_roles=[change["role"]],
        new_risks=[],
        base_version=version,
    )


def _errors(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in exc.errors()
    )
