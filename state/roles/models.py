"""Roles, circles and the organisation they form, with the lookups graphs use."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import (
    Field,
    PrivateAttr,
    model_validator,
)

from state.roles.approvals import ApprovalPolicy
from state.roles.fields import (
    ModelSpec,
    Name,
    Personality,
    Policies,
    Text,
    _did_you_mean,
    _Model,
    _Origin,
)
from state.tool_risk import ToolCatalog


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
    approvals: ApprovalPolicy = ApprovalPolicy()
    """Who may decide at each approval gate (the ``approvals:`` section)."""

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
