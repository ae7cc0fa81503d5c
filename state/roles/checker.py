"""The organisation's rules, checked all at once: every problem names its file, line and field."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from state.errors import RoleDefinitionError, SetupProblem
from state.roles.fields import BUILTIN_PII_TYPES, _did_you_mean
from state.roles.models import Circle, Organization, Role
from state.tool_risk import ToolCatalog, ToolRisk, UnknownToolError


@dataclass
class _Checker:
    org: Organization
    registry: ToolCatalog

    def __post_init__(self) -> None:
        self.problems: list[SetupProblem] = []

    def add(
        self,
        item: Role | Circle | None,
        path: tuple[str | int, ...],
        message: str,
        hint: str,
        *,
        line_path: tuple[str | int, ...] | None = None,
    ) -> None:
        origin = item._origin if item is not None else None
        subject = None
        if isinstance(item, Role):
            subject = f"role '{item.name}'"
        elif isinstance(item, Circle):
            subject = f"circle '{item.name}'"
        self.problems.append(
            SetupProblem(
                message=message,
                hint=hint,
                file=origin.file if origin else None,
                line=origin.line_of(_yaml_path(item, line_path or path)) if origin else None,
                subject=subject,
                field=_field_label(item, path) if path else None,
            )
        )

    def run(self) -> list[SetupProblem]:
        self.check_names()
        self.check_circles()
        self.check_membership()
        self.check_domains()
        for role in self.org.roles:
            self.check_tools(role)
            self.check_handoffs(role)
            self.check_pii(role)
        return self.problems

    def check_names(self) -> None:
        first_role: dict[str, Role] = {}
        for role in self.org.roles:
            if role.name in first_role:
                other = first_role[role.name]
                self.add(
                    role,
                    ("name",),
                    f"role name '{role.name}' is already used by the role defined {_where(other)}.",
                    "Rename one of them or delete the duplicate.",
                )
            else:
                first_role[role.name] = role
        first_circle: dict[str, Circle] = {}
        for circle in self.org.circles:
            if circle.name in first_circle:
                other_circle = first_circle[circle.name]
                self.add(
                    circle,
                    ("name",),
                    f"circle name '{circle.name}' is already used by the circle defined "
                    f"{_where(other_circle)}.",
                    "Rename one of them or delete the duplicate.",
                )
            else:
                first_circle[circle.name] = circle
            if circle.name in first_role:
                self.add(
                    circle,
                    ("name",),
                    f"'{circle.name}' names both this circle and the role defined "
                    f"{_where(first_role[circle.name])}.",
                    "Rename one: handoffs and routing refer to roles and circles by name.",
                )

    def check_circles(self) -> None:
        parent_of: dict[str, Circle] = {}
        for circle in self.org.circles:
            if not self.org.has_role(circle.lead):
                self.add(
                    circle,
                    ("lead",),
                    f"lead '{circle.lead}' is not a defined role."
                    + _did_you_mean(circle.lead, self.org._roles),
                    "Define the role or name an existing one as lead.",
                )
            for index, member in enumerate(circle.members):
                if not self.org.has_role(member):
                    self.add(
                        circle,
                        ("members", index),
                        f"member '{member}' is not a defined role."
                        + _did_you_mean(member, self.org._roles),
                        "Define the role or remove it from members.",
                    )
            for index, child in enumerate(circle.sub_circles):
                if not self.org.has_circle(child):
                    self.add(
                        circle,
                        ("sub_circles", index),
                        f"sub-circle '{child}' is not a defined circle."
                        + _did_you_mean(child, self.org._circles),
                        "Define the circle or remove it from sub_circles.",
                    )
                elif child in parent_of and parent_of[child] is not circle:
                    self.add(
                        circle,
                        ("sub_circles", index),
                        f"circle '{child}' is already a sub-circle of "
                        f"'{parent_of[child].name}'; circles form a tree.",
                        "List it under one parent only.",
                    )
                else:
                    parent_of[child] = circle
        self.check_cycles()

    def check_cycles(self) -> None:
        reported: set[frozenset[str]] = set()
        for circle in self.org.circles:
            # Walk parent-to-child edges from this circle; a path that comes back is a cycle.
            stack: list[tuple[str, list[str]]] = [(circle.name, [circle.name])]
            visited: set[str] = set()
            while stack:
                name, path = stack.pop()
                if name in visited or not self.org.has_circle(name):
                    continue
                visited.add(name)
                for child in self.org.circle(name).sub_circles:
                    if child == circle.name:
                        cycle = [*path, child]
                        key = frozenset(cycle)
                        if key not in reported:
                            reported.add(key)
                            self.add(
                                circle,
                                ("sub_circles",),
                                "sub-circles form a cycle: " + " -> ".join(cycle) + ".",
                                "Remove one of these sub_circles entries so circles form a tree.",
                            )
                    else:
                        stack.append((child, [*path, child]))

    def check_membership(self) -> None:
        home: dict[str, Circle] = {}
        for circle in self.org.circles:
            for position, role_name in enumerate(circle.roles):
                if not self.org.has_role(role_name):
                    continue
                if role_name in home and home[role_name] is not circle:
                    path: tuple[str | int, ...] = (
                        ("lead",) if position == 0 else ("members", circle.members.index(role_name))
                    )
                    self.add(
                        circle,
                        path,
                        f"role '{role_name}' is already in circle '{home[role_name].name}'; "
                        "a role belongs to exactly one circle.",
                        "Keep it in one circle; to coordinate across circles use handoffs.",
                    )
                else:
                    home.setdefault(role_name, circle)
        for role in self.org.roles:
            if role.name not in home and self.org._roles.get(role.name) is role:
                self.add(
                    role,
                    ("name",),
                    f"role '{role.name}' belongs to no circle.",
                    "Add it to a circle's lead or members.",
                )

    def check_domains(self) -> None:
        owner: dict[str, Role] = {}
        for role in self.org.roles:
            for index, domain in enumerate(role.domains):
                if domain in owner and owner[domain] is not role:
                    self.add(
                        role,
                        ("domains", index),
                        f"domain '{domain}' is already owned by role '{owner[domain].name}' "
                        f"({_where(owner[domain])}); a domain has exactly one owner.",
                        "Remove it from one of the roles.",
                    )
                else:
                    owner.setdefault(domain, role)

    def check_tools(self, role: Role) -> None:
        policies = role.policies
        levels = {risk.value for risk in ToolRisk}
        for index, entry in enumerate(policies.approval_required):
            if entry not in levels and entry not in self.registry:
                self.add(
                    role,
                    ("policies", "approval_required", index),
                    f"'{entry}' is neither a risk level ({', '.join(sorted(levels))}) nor a "
                    "registered tool." + _did_you_mean(entry, [*levels, *self.registry.names()]),
                    "Fix the spelling or register the tool.",
                )
        for index, name in enumerate(policies.allowed_tools):
            try:
                risk = self.registry.risk_of(name)
            except UnknownToolError as exc:
                hint = (
                    "Register the tool on the ToolRegistry passed to load_organization, "
                    "or remove it from the grant."
                )
                suggestion = (
                    " Did you mean " + " or ".join(repr(s) for s in exc.suggestions) + "?"
                    if exc.suggestions
                    else f" Registered tools: {', '.join(self.registry.names()) or 'none'}."
                )
                self.add(
                    role,
                    ("policies", "allowed_tools", index),
                    f"grants tool '{name}', which is not in the tool registry.{suggestion}",
                    hint,
                )
                continue
            if policies.lacks_approval(name, risk):
                has_field = "approval_required" in _raw_keys(role, "policies")
                self.add(
                    role,
                    ("policies", "approval_required"),
                    f"grants tool '{name}' of risk '{risk.value}', but no approval policy "
                    "covers it.",
                    f"Add '{risk.value}' (or '{name}') to policies.approval_required so a "
                    "human approves each call.",
                    line_path=None if has_field else ("policies", "allowed_tools", index),
                )

    def check_handoffs(self, role: Role) -> None:
        allowed = role.policies.handoff_circles
        for index, circle_name in enumerate(allowed):
            if not self.org.has_circle(circle_name):
                self.add(
                    role,
                    ("policies", "handoff_circles", index),
                    f"circle '{circle_name}' is not a defined circle."
                    + _did_you_mean(circle_name, self.org._circles),
                    "Fix the name or define the circle.",
                )
        reachable: set[str] = set()
        for circle_name in allowed:
            if self.org.has_circle(circle_name):
                reachable.update(
                    c.name for c in self.org.descendants(circle_name, include_self=True)
                )
        for index, target in enumerate(role.handoffs):
            if target == role.name:
                self.add(
                    role,
                    ("handoffs", index),
                    "a role cannot hand off to itself.",
                    "Remove it from handoffs.",
                )
                continue
            if self.org.has_role(target):
                if target not in self.org._circle_of:
                    continue  # reported as a role in no circle
                target_circle = self.org._circle_of[target]
                what = f"role '{target}' in circle '{target_circle}'"
            elif self.org.has_circle(target):
                target_circle = target
                what = f"circle '{target}'"
            else:
                self.add(
                    role,
                    ("handoffs", index),
                    f"hands off to '{target}', which is neither a role nor a circle."
                    + _did_you_mean(target, [*self.org._roles, *self.org._circles]),
                    "Fix the name or define the role.",
                )
                continue
            if target_circle not in reachable:
                permitted = ", ".join(allowed) if allowed else "none"
                self.add(
                    role,
                    ("handoffs", index),
                    f"hands off to {what}, outside the circles this role may hand off to "
                    f"(policies.handoff_circles: {permitted}).",
                    f"Add '{target_circle}' (or a circle above it) to policies.handoff_circles, "
                    "or remove the handoff.",
                )

    def check_pii(self, role: Role) -> None:
        for pii_type, rule in role.policies.pii.items():
            if pii_type not in BUILTIN_PII_TYPES and rule.detector is None:
                self.add(
                    role,
                    ("policies", "pii", pii_type),
                    f"PII type '{pii_type}' is not built in ({', '.join(BUILTIN_PII_TYPES)}) "
                    "and has no detector.",
                    "Give it a 'detector' regular expression or use a built-in type.",
                )


def _where(item: Role | Circle) -> str:
    origin = item._origin
    if origin is None:
        return "in code"
    return f"in {origin.file}:{origin.line}" if origin.line else f"in {origin.file}"


def _raw_keys(item: Role | Circle, *path: str) -> set[str]:
    origin = item._origin
    if origin is None:
        return set()
    node: Any = origin.data
    for step in path:
        node = node.get(step) if isinstance(node, Mapping) else None
    return set(node) if isinstance(node, Mapping) else set()


def _uses_tools_shorthand(item: Role | Circle | None) -> bool:
    return isinstance(item, Role) and item._origin is not None and "tools" in item._origin.data


def _yaml_path(item: Role | Circle | None, path: tuple[str | int, ...]) -> tuple[str | int, ...]:
    """Map a model field path to where it was written in YAML (``tools:`` shorthand)."""
    if path[:2] == ("policies", "allowed_tools") and _uses_tools_shorthand(item):
        return ("tools", *path[2:])
    return path


def _field_label(item: Role | Circle | None, path: tuple[str | int, ...]) -> str:
    label = ""
    for step in _yaml_path(item, path):
        label += f"[{step}]" if isinstance(step, int) else (f".{step}" if label else step)
    return label


def validate_organization(org: Organization, registry: ToolCatalog) -> None:
    """Check an organisation against governance rules before any graph is built.

    Checks: unique role and circle names (and no role named like a circle); circle leads,
    members and sub-circles exist; circles form a tree; each role is in exactly one circle;
    each domain has one owner; granted tools exist in ``registry``; every granted tool of risk
    ``write`` or ``external`` is covered by ``policies.approval_required``; handoffs target
    existing roles or circles inside ``policies.handoff_circles``; custom PII types have a
    detector.

    Args:
        org: The organisation.
        registry: The tools roles may be granted.

    Raises:
        RoleDefinitionError: Listing every problem, each with file, line, role or circle, and
            field.
    """
    problems = _Checker(org, registry).run()
    if problems:
        raise RoleDefinitionError(problems)
