"""Roles and circles: who the AI staff are, what each may do, and the checks made at build time.

An organisation is a tree of circles. Each circle has a purpose, a lead role, member roles and
sub-circles; each role has a purpose, accountabilities, the domains it alone may change, a
personality, and :class:`Policies` — data the graphs enforce (tool grants, which risk levels
need human approval, token budget, where it may hand work off, PII handling, content rules,
call limits), not prompt text.

Definitions are YAML (``roles/*.yaml``), loaded with :func:`load_organization`, which checks
them with :func:`validate_organization` before anything is built. Every problem found is
reported at once, each naming the file, line, role or circle, and field.

A roles file holds ``circle:`` (one circle), ``circles:`` (a list) and ``roles:`` (a list)::

    circle:
      name: research
      purpose: Find and analyse information.
      lead: researcher
      members: [analyst]
    roles:
      - name: researcher
        purpose: Finds sources on the web.
        tools: [http_get]
        policies:
          approval_required: [external]
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from state.errors import RoleDefinitionError, RoleFileError, SetupProblem
from state.tool_risk import ToolCatalog, ToolRisk, UnknownToolError, needs_approval_policy

__all__ = [
    "BUILTIN_PII_TYPES",
    "CallLimits",
    "Circle",
    "ContentRules",
    "Organization",
    "Personality",
    "PiiRule",
    "Policies",
    "Role",
    "default_roles_dir",
    "load_organization",
    "validate_organization",
]

BUILTIN_PII_TYPES = ("email", "credit_card", "ip", "mac_address", "url")
"""PII types langchain's ``PIIMiddleware`` detects without a custom ``detector``."""

_MAX_FILE_BYTES = 1_000_000
_MAX_FILES = 500
_NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,63}")
_MODEL_SPEC = re.compile(r"[A-Za-z0-9_.-]+:\S+")


def _check_name(value: str) -> str:
    if not _NAME_PATTERN.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid name; use lower_snake_case (a-z, 0-9, _), starting "
            "with a letter, at most 64 characters"
        )
    return value


def _check_model_spec(value: str) -> str:
    if not _MODEL_SPEC.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a model spec; write 'provider:model', e.g. 'openai:gpt-4o'"
        )
    return value


Name = Annotated[str, AfterValidator(_check_name)]
ShortText = Annotated[str, Field(min_length=1, max_length=200)]
Text = Annotated[str, Field(min_length=1, max_length=2000)]
ModelSpec = Annotated[str, Field(max_length=200), AfterValidator(_check_model_spec)]
PiiStrategy = Literal["block", "redact", "mask", "hash"]


class _Model(BaseModel):
    # Frozen because Organization indexes roles and circles once; extra="forbid" so that a
    # misspelt YAML key is an error instead of a silently ignored setting.
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class _Origin:
    """Where a role or circle was defined: the file and the raw YAML data with its lines."""

    def __init__(self, file: str, data: Mapping[str, Any], line: int | None) -> None:
        self.file = file
        self.data = data
        self.line = line

    def line_of(self, path: Iterable[str | int]) -> int | None:
        """The line of the deepest YAML node along ``path`` that exists."""
        node: Any = self.data
        line = self.line
        for step in path:
            lines = getattr(node, "lines", None)
            if lines is None:
                break
            try:
                line = lines[step]
                node = node[step]
            except (KeyError, IndexError, TypeError):
                break
        return line


class Personality(_Model):
    """How a role comes across: a few traits and a tone of voice."""

    traits: tuple[ShortText, ...] = Field(default=(), max_length=20)
    tone: str = Field(default="", max_length=200)


class PiiRule(_Model):
    """How one kind of personal data is handled, in langchain ``PIIMiddleware`` terms.

    In YAML a bare strategy is enough: ``pii: {email: redact}``.
    """

    strategy: PiiStrategy = "redact"
    detector: str | None = Field(
        default=None,
        max_length=500,
        description="Regular expression for custom PII types; built-in types need none.",
    )
    apply_to_input: bool = True
    apply_to_output: bool = False
    apply_to_tool_results: bool = False

    @model_validator(mode="before")
    @classmethod
    def _from_strategy(cls, value: Any) -> Any:
        return {"strategy": value} if isinstance(value, str) else value

    @field_validator("detector")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"detector is not a valid regular expression: {exc}") from None
        return value


class ContentRules(_Model):
    """What the policy-check node refuses in a role's output."""

    banned_terms: tuple[ShortText, ...] = Field(default=(), max_length=200)
    """Terms that must not appear (matched case-insensitively)."""
    max_length: int | None = Field(default=None, ge=1, le=1_000_000)
    """Most characters in one reply."""


class CallLimits(_Model):
    """Caps on model and tool calls, as langchain's call-limit middleware counts them."""

    model_calls_per_run: int | None = Field(default=None, ge=1, le=10_000)
    tool_calls_per_run: int | None = Field(default=None, ge=1, le=10_000)


class Policies(_Model):
    """Rules the graphs enforce for a role. Data, never prompt text."""

    allowed_tools: tuple[Name, ...] = Field(default=(), max_length=100)
    """The role's grant: names of registry tools it may call. In YAML also ``tools:``."""
    approval_required: tuple[ShortText, ...] = Field(default=(), max_length=100)
    """Risk levels (``write``, ``external``) or tool names whose calls a human approves."""
    token_budget: int | None = Field(default=None, ge=1, le=100_000_000)
    """Most tokens (input + output) the role may spend in one run."""
    handoff_circles: tuple[Name, ...] = Field(default=(), max_length=100)
    """Circles (with their sub-circles) whose roles this role may hand work off to."""
    pii: dict[str, PiiRule] = Field(default_factory=dict, max_length=50)
    """PII type -> rule, e.g. ``{"email": PiiRule(strategy="redact")}``."""
    content: ContentRules = ContentRules()
    limits: CallLimits = CallLimits()

    @field_validator("pii")
    @classmethod
    def _pii_names(cls, value: dict[str, PiiRule]) -> dict[str, PiiRule]:
        for key in value:
            _check_name(key)
        return value

    @property
    def approval_risks(self) -> frozenset[ToolRisk]:
        """The risk levels listed in ``approval_required``."""
        levels = {risk.value for risk in ToolRisk}
        return frozenset(ToolRisk(entry) for entry in self.approval_required if entry in levels)

    @property
    def approval_tools(self) -> frozenset[str]:
        """The tool names listed in ``approval_required``."""
        levels = {risk.value for risk in ToolRisk}
        return frozenset(entry for entry in self.approval_required if entry not in levels)

    def requires_approval(self, tool_name: str, risk: ToolRisk | str) -> bool:
        """Whether a call of ``tool_name`` (of ``risk``) must wait for a human decision."""
        return ToolRisk(risk) in self.approval_risks or tool_name in self.approval_tools

    def lacks_approval(self, tool_name: str, risk: ToolRisk | str) -> bool:
        """Whether granting ``tool_name`` (of ``risk``) breaks the approval rule.

        True when the risk needs an approval policy (:func:`state.tool_risk.needs_approval_policy`)
        and these policies do not gate the tool. Loading an organisation and building a role
        agent both refuse such a grant through this one method.
        """
        return needs_approval_policy(risk) and not self.requires_approval(tool_name, risk)


class Role(_Model):
    """One member of the AI staff."""

    name: Name
    purpose: Text
    """What the role is for. The offline model routes requests by matching this text."""
    accountabilities: tuple[Text, ...] = Field(default=(), max_length=50)
    """Ongoing activities others can expect the role to do."""
    domains: tuple[Name, ...] = Field(default=(), max_length=50)
    """What only this role may change, e.g. ``budget`` or ``roles``."""
    policies: Policies = Policies()
    personality: Personality = Personality()
    handoffs: tuple[Name, ...] = Field(default=(), max_length=50)
    """Roles or circles this role hands work off to; must lie in ``policies.handoff_circles``."""
    model: ModelSpec | None = None
    """Chat model as ``provider:model``; None uses the deployment's default."""

    _origin: _Origin | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _tools_shorthand(cls, value: Any) -> Any:
        # ``tools:`` on the role reads naturally in YAML; policies stay the single home.
        if not isinstance(value, Mapping) or "tools" not in value:
            return value
        data = dict(value)
        tools = data.pop("tools")
        policies = data.get("policies")
        if policies is None:
            policies = {}
        if not isinstance(policies, Mapping):
            return value  # let field validation report the bad ``policies`` value
        if "allowed_tools" in policies:
            raise ValueError(
                "give the tool grant once: either 'tools' or 'policies.allowed_tools', not both"
            )
        data["policies"] = {**policies, "allowed_tools": tools}
        return data

    @property
    def tools(self) -> tuple[str, ...]:
        """The tool grant (same as ``policies.allowed_tools``)."""
        return self.policies.allowed_tools

    @property
    def source(self) -> str | None:
        """The file the role was loaded from, if any."""
        return self._origin.file if self._origin else None

    def describe(self) -> str:
        """Return one paragraph describing the role, for routing and system prompts."""
        parts = [f"{self.name}: {self.purpose}"]
        if self.accountabilities:
            parts.append("Accountabilities: " + "; ".join(self.accountabilities) + ".")
        if self.domains:
            parts.append("Owns: " + ", ".join(self.domains) + ".")
        return " ".join(parts)

    def tools_requiring_approval(self, registry: ToolCatalog) -> list[str]:
        """Return the granted tools whose calls need human approval under this role's policy.

        Raises:
            UnknownToolError: A granted tool is not in ``registry``.
        """
        return [
            name
            for name in self.policies.allowed_tools
            if self.policies.requires_approval(name, registry.risk_of(name))
        ]


class Circle(_Model):
    """A group of roles with a shared purpose, a lead, and optional sub-circles."""

    name: Name
    purpose: Text
    lead: Name
    """The role that leads the circle: it receives work for the circle and delegates."""
    members: tuple[Name, ...] = Field(default=(), max_length=200)
    """Other roles in the circle (listing the lead again is allowed)."""
    sub_circles: tuple[Name, ...] = Field(default=(), max_length=100)

    _origin: _Origin | None = PrivateAttr(default=None)

    @property
    def roles(self) -> tuple[str, ...]:
        """Lead first, then the members, each once."""
        return tuple(dict.fromkeys((self.lead, *self.members)))

    @property
    def source(self) -> str | None:
        """The file the circle was loaded from, if any."""
        return self._origin.file if self._origin else None


class Organization(_Model):
    """Circles and roles, with lookups by name.

    Lookups work on any organisation, but their answers are only meaningful once
    :func:`validate_organization` has passed (unique names, a tree of circles).
    """

    circles: tuple[Circle, ...] = ()
    roles: tuple[Role, ...] = ()

    _roles: dict[str, Role] = PrivateAttr(default_factory=dict)
    _circles: dict[str, Circle] = PrivateAttr(default_factory=dict)
    _circle_of: dict[str, str] = PrivateAttr(default_factory=dict)
    _parent: dict[str, str] = PrivateAttr(default_factory=dict)

    def model_post_init(self, context: Any, /) -> None:
        # First definition wins; duplicates are reported by validate_organization.
        for role in self.roles:
            self._roles.setdefault(role.name, role)
        for circle in self.circles:
            self._circles.setdefault(circle.name, circle)
        for circle in self._circles.values():
            for role_name in circle.roles:
                self._circle_of.setdefault(role_name, circle.name)
            for child in circle.sub_circles:
                if child != circle.name:
                    self._parent.setdefault(child, circle.name)

    def role(self, name: str) -> Role:
        """Return the role called ``name``.

        Raises:
            LookupError: No such role; the message names roles with close names.
        """
        if name not in self._roles:
            raise LookupError(f"No role named {name!r}.{_did_you_mean(name, self._roles)}")
        return self._roles[name]

    def circle(self, name: str) -> Circle:
        """Return the circle called ``name``.

        Raises:
            LookupError: No such circle; the message names circles with close names.
        """
        if name not in self._circles:
            raise LookupError(f"No circle named {name!r}.{_did_you_mean(name, self._circles)}")
        return self._circles[name]

    def has_role(self, name: str) -> bool:
        """Whether a role called ``name`` exists."""
        return name in self._roles

    def has_circle(self, name: str) -> bool:
        """Whether a circle called ``name`` exists."""
        return name in self._circles

    def circle_of(self, role_name: str) -> Circle:
        """Return the circle a role belongs to (as lead or member).

        Raises:
            LookupError: The role is unknown or in no circle.
        """
        self.role(role_name)
        if role_name not in self._circle_of:
            raise LookupError(f"Role {role_name!r} belongs to no circle.")
        return self._circles[self._circle_of[role_name]]

    def lead_of(self, circle_name: str) -> Role:
        """Return the lead role of a circle.

        Raises:
            LookupError: The circle or its lead role is unknown.
        """
        return self.role(self.circle(circle_name).lead)

    def leads(self) -> dict[str, Role]:
        """Return circle name -> lead role, for circles whose lead exists."""
        return {
            name: self._roles[circle.lead]
            for name, circle in self._circles.items()
            if circle.lead in self._roles
        }

    def is_lead(self, role_name: str) -> bool:
        """Whether the role leads some circle."""
        return any(circle.lead == role_name for circle in self._circles.values())

    def members(self, circle_name: str, *, recursive: bool = False) -> list[Role]:
        """Return the roles of a circle, lead first.

        Args:
            circle_name: The circle.
            recursive: Also include the roles of all sub-circles, depth first.
        """
        names = [self.circle(circle_name).name]
        if recursive:
            names = [circle.name for circle in self.descendants(circle_name, include_self=True)]
        seen: dict[str, Role] = {}
        for name in names:
            for role_name in self._circles[name].roles:
                if role_name in self._roles:
                    seen.setdefault(role_name, self._roles[role_name])
        return list(seen.values())

    def sub_circles(self, circle_name: str) -> list[Circle]:
        """Return the direct sub-circles of a circle (unknown names are skipped)."""
        circle = self.circle(circle_name)
        return [self._circles[name] for name in circle.sub_circles if name in self._circles]

    def parent_of(self, circle_name: str) -> Circle | None:
        """Return the circle that holds ``circle_name`` as a sub-circle, or None at the top."""
        self.circle(circle_name)
        parent = self._parent.get(circle_name)
        return self._circles[parent] if parent else None

    def root_circles(self) -> list[Circle]:
        """Return the circles that are nobody's sub-circle, in definition order."""
        return [circle for name, circle in self._circles.items() if name not in self._parent]

    def descendants(self, circle_name: str, *, include_self: bool = False) -> list[Circle]:
        """Return every circle below ``circle_name``, depth first (safe on cycles)."""
        start = self.circle(circle_name)
        found: list[Circle] = [start] if include_self else []
        seen = {start.name}
        stack = list(reversed(self.sub_circles(start.name)))
        while stack:
            circle = stack.pop()
            if circle.name in seen:
                continue
            seen.add(circle.name)
            found.append(circle)
            stack.extend(reversed(self.sub_circles(circle.name)))
        return found

    def circle_tree(self) -> dict[str, Any]:
        """Return the circles as nested dicts of names: ``{"ops": {"research": {}}}``."""

        def build(name: str, path: frozenset[str]) -> dict[str, Any]:
            return {
                child.name: build(child.name, path | {child.name})
                for child in self.sub_circles(name)
                if child.name not in path
            }

        return {root.name: build(root.name, frozenset({root.name})) for root in self.root_circles()}

    def domain_owner(self, domain: str) -> Role | None:
        """Return the role that owns ``domain``, or None if nobody does."""
        for role in self._roles.values():
            if domain in role.domains:
                return role
        return None

    def handoff_targets(self, role_name: str) -> list[Role]:
        """Return the roles a role hands off to; a circle target means that circle's lead."""
        targets: dict[str, Role] = {}
        for target in self.role(role_name).handoffs:
            if target in self._roles:
                targets.setdefault(target, self._roles[target])
            elif target in self._circles and self._circles[target].lead in self._roles:
                lead = self._circles[target].lead
                targets.setdefault(lead, self._roles[lead])
        return list(targets.values())


def _did_you_mean(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.6)
    return (" Did you mean " + " or ".join(repr(c) for c in close) + "?") if close else ""


# --------------------------------------------------------------------------------------------
# Validation


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


# --------------------------------------------------------------------------------------------
# Loading


class _LineDict(dict[Any, Any]):
    """A YAML mapping that remembers the line of each key."""

    lines: dict[Any, int]


class _LineList(list[Any]):
    """A YAML sequence that remembers the line of each item."""

    lines: dict[int, int]


class _RoleFileLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also records line numbers and refuses aliases and duplicate keys.

    It constructs only plain YAML types, exactly as ``yaml.safe_load`` does; the additions
    let schema errors point at a line and keep a small file from expanding into a huge one
    through nested aliases.
    """

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None,
                None,
                "aliases (*name) are not supported in roles files; repeat the value instead",
                event.start_mark,
            )
        return super().compose_node(parent, index)


def _construct_mapping(loader: _RoleFileLoader, node: yaml.MappingNode) -> Iterator[_LineDict]:
    data = _LineDict()
    data.lines = {}
    yield data
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str | int | float | bool) and key is not None:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                "found an unsupported key type",
                key_node.start_mark,
            )
        if key in data:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"found duplicate key {key!r}",
                key_node.start_mark,
            )
        data[key] = loader.construct_object(value_node, deep=True)
        data.lines[key] = key_node.start_mark.line + 1


def _construct_sequence(loader: _RoleFileLoader, node: yaml.SequenceNode) -> Iterator[_LineList]:
    data = _LineList()
    data.lines = {}
    yield data
    for index, child in enumerate(node.value):
        data.append(loader.construct_object(child, deep=True))
        data.lines[index] = child.start_mark.line + 1


_RoleFileLoader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)
_RoleFileLoader.add_constructor("tag:yaml.org,2002:seq", _construct_sequence)


def _read_yaml(path: Path, label: str) -> Any:
    try:
        size = path.stat().st_size
        if size > _MAX_FILE_BYTES:
            raise RoleFileError(
                f"file is {size} bytes; roles files may be at most {_MAX_FILE_BYTES} bytes. "
                "Split it into one file per circle.",
                file=label,
            )
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise RoleFileError(f"file is not UTF-8 text ({exc.reason}).", file=label) from None
    except OSError as exc:
        raise RoleFileError(f"cannot read file: {exc.strerror or exc}.", file=label) from None
    try:
        # _RoleFileLoader is a SafeLoader: only plain YAML types are ever constructed.
        return yaml.load(text, Loader=_RoleFileLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "cannot parse"
        if isinstance(exc, yaml.scanner.ScannerError | yaml.parser.ParserError):
            problem += ". Fix the syntax at this line"
        raise RoleFileError(
            f"invalid YAML: {problem}.",
            file=label,
            line=mark.line + 1 if mark else None,
            column=mark.column + 1 if mark else None,
        ) from None
    except yaml.YAMLError as exc:
        raise RoleFileError(f"invalid YAML: {exc}.", file=label) from None


_TOP_LEVEL_KEYS = ("circle", "circles", "roles")


def _model_field_names(model: type[BaseModel], loc: tuple[str | int, ...]) -> list[str]:
    """Field names of the model found at ``loc`` inside ``model`` (for unknown-key hints)."""
    current: type[BaseModel] | None = model
    for step in loc:
        if current is None:
            return []
        # list indexes and dict keys (``pii.email``) do not change the model
        if isinstance(step, str) and step in current.model_fields:
            current = _model_in(current.model_fields[step].annotation)
    if current is None:
        return []
    names = list(current.model_fields)
    return [*names, "tools"] if current is Role else names


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model class inside an annotation such as ``Policies`` or ``dict[str, PiiRule]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _schema_problems(
    exc: ValidationError,
    model: type[Role] | type[Circle],
    origin: _Origin,
    subject: str,
) -> list[SetupProblem]:
    problems = []
    for error in exc.errors():
        loc: tuple[str | int, ...] = tuple(error["loc"])
        if loc[:2] == ("policies", "allowed_tools") and "tools" in origin.data:
            loc = ("tools", *loc[2:])  # report the grant where it was written
        if error["type"] == "extra_forbidden":
            key = str(loc[-1])
            known = _model_field_names(model, loc[:-1])
            message = f"unknown field '{key}'.{_did_you_mean(key, known)}"
            hint = f"Known fields here: {', '.join(known)}." if known else ""
        else:
            message = error["msg"].removeprefix("Value error, ")
            message = message[0].lower() + message[1:] if message else "invalid value"
            if not message.endswith("."):
                message += "."
            hint = ""
        label = _field_label(None, loc)
        problems.append(
            SetupProblem(
                message=message,
                hint=hint,
                file=origin.file,
                line=origin.line_of(loc),
                subject=subject,
                field=label or None,
            )
        )
    return problems


def _load_entries(
    data: Any, label: str, roles: list[Role], circles: list[Circle], problems: list[SetupProblem]
) -> None:
    if data is None:
        problems.append(
            SetupProblem(
                message="file is empty.",
                hint="Add a 'circle:' and 'roles:' section or delete the file.",
                file=label,
            )
        )
        return
    if not isinstance(data, Mapping):
        problems.append(
            SetupProblem(
                message="the top level must be a mapping with 'circle', 'circles' or 'roles'.",
                hint="See roles/operations.yaml for the layout.",
                file=label,
                line=1,
            )
        )
        return
    lines = getattr(data, "lines", {})
    for key in data:
        if key not in _TOP_LEVEL_KEYS:
            problems.append(
                SetupProblem(
                    message=f"unknown top-level key '{key}'."
                    + _did_you_mean(str(key), _TOP_LEVEL_KEYS),
                    hint="Use 'circle', 'circles' or 'roles'.",
                    file=label,
                    line=lines.get(key),
                )
            )
    if "circle" in data and "circles" in data:
        problems.append(
            SetupProblem(
                message="both 'circle' and 'circles' are given.",
                hint="Use 'circle' for one circle or 'circles' for a list, not both.",
                file=label,
                line=lines.get("circles"),
            )
        )
    sections: list[tuple[str, Any, type[Role] | type[Circle]]] = []
    if "circle" in data:
        single = _LineList([data["circle"]])
        single.lines = {0: lines.get("circle", 1)}
        sections.append(("circle", single, Circle))
    if "circles" in data:
        sections.append(("circles", data["circles"], Circle))
    if "roles" in data:
        sections.append(("roles", data["roles"], Role))
    for key, entries, model in sections:
        if not isinstance(entries, list):
            problems.append(
                SetupProblem(
                    message=f"'{key}' must be a list.",
                    hint=f"Write each entry under '{key}:' as '- name: ...'.",
                    file=label,
                    line=lines.get(key),
                )
            )
            continue
        entry_lines = getattr(entries, "lines", {})
        for index, entry in enumerate(entries):
            kind = "role" if model is Role else "circle"
            line = entry_lines.get(index)
            raw_name = entry.get("name") if isinstance(entry, Mapping) else None
            subject = (
                f"{kind} '{raw_name}'" if isinstance(raw_name, str) else f"{kind} #{index + 1}"
            )
            if not isinstance(entry, Mapping):
                problems.append(
                    SetupProblem(
                        message=f"each {kind} must be a mapping of fields.",
                        hint="Start the entry with 'name:'.",
                        file=label,
                        line=line,
                        subject=subject,
                    )
                )
                continue
            origin = _Origin(label, entry, line)
            try:
                item = model.model_validate(entry)
            except ValidationError as exc:
                problems.extend(_schema_problems(exc, model, origin, subject))
                continue
            item._origin = origin
            if isinstance(item, Role):
                roles.append(item)
            else:
                circles.append(item)


def _files(path: Path) -> list[Path]:
    if not path.exists():
        raise RoleFileError("no such file or directory.", file=str(path))
    if path.is_file():
        return [path]
    files = sorted(p for p in path.glob("*.yaml") if p.is_file())
    if not files:
        raise RoleFileError(
            "no *.yaml files in this directory; add one file per circle.", file=str(path)
        )
    if len(files) > _MAX_FILES:
        raise RoleFileError(
            f"{len(files)} roles files; at most {_MAX_FILES} are read.", file=str(path)
        )
    return files


def load_organization(
    path_or_dir: str | os.PathLike[str], *, registry: ToolCatalog
) -> Organization:
    """Load circles and roles from one YAML file or every ``*.yaml`` file in a directory.

    Files are parsed with a ``yaml.SafeLoader`` (no Python objects are ever constructed),
    checked against the schema, merged into one organisation and validated with
    :func:`validate_organization`.

    Args:
        path_or_dir: A ``.yaml`` file, or a directory whose ``*.yaml`` files are read in name
            order (not recursively).
        registry: The tools roles may be granted, e.g. ``tools.default_registry()``.

    Returns:
        The validated organisation.

    Raises:
        RoleFileError: A file is missing, unreadable, too large or not valid YAML (with line).
        RoleDefinitionError: Schema or governance problems, all of them, one per line.
    """
    root = Path(path_or_dir)
    roles: list[Role] = []
    circles: list[Circle] = []
    problems: list[SetupProblem] = []
    for file in _files(root):
        _load_entries(_read_yaml(file, str(file)), str(file), roles, circles, problems)
    if problems:
        raise RoleDefinitionError(problems)
    org = Organization(circles=tuple(circles), roles=tuple(roles))
    validate_organization(org, registry)
    return org


def default_roles_dir() -> Path:
    """Return the directory of the shipped default organisation (``roles/`` in the repo)."""
    return Path(__file__).resolve().parent.parent / "roles"
