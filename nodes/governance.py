"""Role changes for the governance graph: the proposal schema, applying, and assessing.

A :class:`RoleChange` is one edit to one role: set its purpose or token budget, or add/remove
one accountability, domain, granted tool, approval rule or handoff. :func:`assess_change`
applies it to the current organisation (stored versions included) and runs the same checks as
at build time, so a change that would break governance (a risky tool without approval, a
domain owned twice, a handoff outside the allowed circles) is shown as invalid before anyone
approves it.

A change of attribute ``instructions`` gives a role a learned instruction instead. It is not
part of the role definition but procedural memory (:mod:`state.memory`): a new version of a
named rule, stored ``pending`` and used by the role's agents only once a human approves it.
:func:`assess_instruction` checks it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal, NotRequired

from pydantic import BaseModel, Field, ValidationError, create_model
from typing_extensions import TypedDict

from state.errors import RoleDefinitionError
from state.memory import MemoryScope, MemoryStore, ProcedureStatus
from state.role_store import RoleStore
from state.roles import Organization, Role, validate_organization
from tools.registry import ToolRegistry, ToolRisk

__all__ = [
    "INSTRUCTIONS",
    "ChangeProposal",
    "Impact",
    "RoleChange",
    "apply_change",
    "assess_change",
    "assess_instruction",
    "changes_between",
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
    "instructions",
]
Operation = Literal["add", "remove", "set"]

INSTRUCTIONS: Literal["instructions"] = "instructions"
"""The attribute of a change that proposes a learned instruction (procedural memory)."""

_LISTS: dict[str, tuple[str, ...]] = {
    "tool_grant": ("policies", "allowed_tools"),
    "accountabilities": ("accountabilities",),
    "domains": ("domains",),
    "approval_required": ("policies", "approval_required"),
    "handoffs": ("handoffs",),
}
_TOKEN_BUDGET = ("policies", "token_budget")
_NAMED = frozenset({"tool_grant", "domains", "handoffs", "approval_required"})
_WORD = re.compile(r"[a-z][a-z0-9_]*")
_RULE = re.compile(r"[a-z][a-z0-9_]{0,63}")  # as state.memory accepts
_RULE_STOP = frozenset(
    "a an and always any be before by each every for from in into is it its never of on or "
    "should that the their this to when with".split()
)


class RoleChange(TypedDict):
    """One change to one role."""

    role: str
    attribute: ChangeAttribute
    operation: Operation
    value: str
    """The item added or removed, the new purpose / token budget, or the instruction text."""
    motivation: str
    rule: NotRequired[str]
    """For ``instructions`` only: the instruction's name; a newly approved version of a name
    replaces the one approved before."""


class ChangeProposal(BaseModel):
    """A proposed change to one role of the organisation."""

    role: str = Field(description="The role to change.")
    attribute: ChangeAttribute = Field(
        description="What to change: tool_grant (tools it may use), purpose, accountabilities, "
        "domains, approval_required, handoffs, token_budget, or instructions (a standing "
        "instruction the role's agents follow once approved)."
    )
    operation: Operation = Field(
        description="add or remove one item of a list; set the purpose or token_budget; "
        "add an instruction."
    )
    value: str = Field(
        min_length=1,
        max_length=2_000,
        description="The item, the new purpose or budget, or the instruction's text.",
    )
    motivation: str = Field(max_length=2_000, description="Why this resolves the tension.")
    rule: str = Field(
        default="",
        max_length=200,
        description="Only for instructions: a short snake_case name such as cite_sources; "
        "a new version of a name replaces the approved one.",
    )

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
    if attribute == INSTRUCTIONS:
        rule = change.get("rule") or "?"
        if operation == "remove":
            return f"Retire the instruction '{rule}' of role '{role}'."
        return f"Give role '{role}' the instruction '{rule}': {value.rstrip('.')}."
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
    if proposal.attribute == INSTRUCTIONS:
        text = " ".join(value.split())
        return RoleChange(
            role=proposal.role,
            attribute=proposal.attribute,
            operation=proposal.operation,
            value=text,
            motivation=proposal.motivation.strip(),
            rule=_rule_name(proposal.rule, text),
        )
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


def _rule_name(rule: str, text: str) -> str:
    """A valid rule name: ``rule`` in snake_case, else the instruction's first key words."""
    candidate = "_".join(re.findall(r"[a-z0-9]+", rule.lower()))
    if _RULE.fullmatch(candidate) and len(candidate) <= 40:
        return candidate
    # A model that wrote prose (or nothing) for the name: name the rule after its content.
    words = [w for w in re.findall(r"[a-z][a-z0-9]*", text.lower()) if w not in _RULE_STOP]
    return "_".join(words[:4])[:40].rstrip("_") or "instruction"


def _mentioned(text: str, names: Sequence[str]) -> str | None:
    words = re.findall(r"[a-z][a-z0-9_]*", text.lower())
    for word in words:
        if word in names:
            return word
    return None


def _change_list(
    data: dict[str, Any], role_name: str, attribute: str, operation: str, value: Any
) -> None:
    """Add ``value`` to, or remove it from, the list ``attribute`` of a dumped role."""
    if operation == "set":
        raise ValueError(f"{attribute} is a list: use add or remove, not set.")
    *parents, leaf = _LISTS[attribute]
    target = data
    for key in parents:
        target = target[key]
    items = list(target[leaf])
    if operation == "add":
        if value in items:
            raise ValueError(f"'{value}' is already in the {attribute} of '{role_name}'.")
        items.append(value)
    else:
        if value not in items:
            raise ValueError(f"'{value}' is not in the {attribute} of '{role_name}'.")
        items.remove(value)
    target[leaf] = items


def _set_scalar(data: dict[str, Any], attribute: str, operation: str, value: Any) -> None:
    """Replace ``purpose`` or ``token_budget`` of a dumped role (only ``set`` fits them)."""
    if attribute == "purpose":
        if operation != "set":
            raise ValueError("purpose is replaced with set, not added to or removed from.")
        data["purpose"] = value
        return
    if operation != "set":
        raise ValueError("token_budget is replaced with set.")
    try:
        data["policies"]["token_budget"] = int(value)
    except ValueError:
        raise ValueError(f"token_budget must be a whole number, not '{value}'.") from None


def apply_change(role: Role, change: Mapping[str, Any]) -> Role:
    """Return ``role`` with ``change`` applied.

    Raises:
        ValueError: The operation does not fit the attribute, the item is already there (add)
            or missing (remove), or the result is not a valid role.
    """
    data = role.model_dump(mode="json")
    attribute, operation, value = change["attribute"], change["operation"], change["value"]
    if attribute == INSTRUCTIONS:
        raise ValueError(
            "instructions are procedural memory, not part of the role definition: "
            "assess them with assess_instruction and store them with propose_procedure."
        )
    if attribute in _LISTS:
        _change_list(data, role.name, attribute, operation, value)
    elif attribute in ("purpose", "token_budget"):
        _set_scalar(data, attribute, operation, value)
    else:
        raise ValueError(f"Unknown attribute '{attribute}'.")
    try:
        return Role.model_validate(data)
    except ValidationError as exc:
        raise ValueError(_errors(exc)) from None


def changes_between(
    before: Mapping[str, Any], after: Mapping[str, Any], *, motivation: str = ""
) -> list[RoleChange]:
    """The changes that turn one dumped role definition into another, one item per change.

    What a rollback proposes: ``changes_between(newer, older)`` undoes ``newer``. Only what a
    :class:`RoleChange` can change is compared (the listed attributes, purpose, token budget).
    """
    role = str(after.get("name") or before.get("name") or "")
    out: list[RoleChange] = []
    for attribute, path in _LISTS.items():
        old, new = list(_at(before, path) or ()), list(_at(after, path) or ())
        out += [_change(role, attribute, "remove", i, motivation) for i in old if i not in new]
        out += [_change(role, attribute, "add", i, motivation) for i in new if i not in old]
    for attribute, path in (("purpose", ("purpose",)), ("token_budget", _TOKEN_BUDGET)):
        old_value, new_value = _at(before, path), _at(after, path)
        if old_value != new_value and new_value is not None:
            out.append(_change(role, attribute, "set", new_value, motivation))
    return out


def _at(data: Mapping[str, Any], path: Sequence[str]) -> Any:
    target: Any = data
    for key in path:
        if not isinstance(target, Mapping) or key not in target:
            return None
        target = target[key]
    return target


def _change(role: str, attribute: str, operation: str, value: Any, motivation: str) -> RoleChange:
    return RoleChange(
        role=role,
        attribute=attribute,  # type: ignore[typeddict-item]
        operation=operation,  # type: ignore[typeddict-item]
        value=str(value),
        motivation=motivation,
    )


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
    """The role's current version, which the change builds on (for instructions: the rule's
    approved version, 0 when none is)."""


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

    Raises:
        ValueError: ``change`` is an instruction (see :func:`assess_instruction`).
    """
    if change["attribute"] == INSTRUCTIONS:
        raise ValueError("an instruction is assessed with assess_instruction, not assess_change")
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
    proposed = Organization(circles=org.circles, roles=tuple(roles), approvals=org.approvals)
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


async def assess_instruction(
    change: RoleChange, *, org: Organization, memory: MemoryStore, org_id: str | None
) -> Impact:
    """Check a proposed instruction for a role and say what approving it would do.

    Instructions are organisation memory of the role: every agent of the role follows the
    approved version of each rule, whoever it works for.

    Args:
        change: A change of attribute ``instructions``.
        org: The organisation.
        memory: The long-term memory the instruction is kept in.
        org_id: The organisation whose memory it is; ``None`` when the run names none.

    Returns:
        The :class:`Impact`; ``base_version`` is the rule's approved version (0 if none).
    """
    name, rule = change["role"], change.get("rule") or ""
    if not org.has_role(name):
        return _invalid(change, [f"No role named '{name}' in the organisation."], 0)
    problems: list[str] = []
    if change["operation"] == "remove":
        problems.append(
            "An instruction is not removed on its own: propose a new version of the same rule "
            "that replaces it, or reject this proposal."
        )
    if not _RULE.fullmatch(rule):
        problems.append(f"rule '{rule}' must be lower_snake_case, at most 64 characters.")
    if org_id is None:
        problems.append(
            "Instructions are organisation memory, but this run names no organisation: set "
            "context.org_id."
        )
    approved = 0
    if org_id is not None and not problems:
        scope = MemoryScope(role=name, org_id=org_id, domains=org.role(name).domains)
        for version in await memory.procedures(scope, status=ProcedureStatus.APPROVED):
            if version.area == name and version.value.get("rule") == rule:
                approved = int(version.value.get("version", 0))
    summary = (
        f"{describe_change(change)} It is kept as a pending instruction; approving makes "
        f"every '{name}' agent follow it"
    )
    summary += f" in place of approved version {approved}." if approved else "."
    return Impact(
        valid=not problems,
        problems=problems,
        summary=summary,
        affected_roles=[name],
        new_risks=[],
        base_version=approved,
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
