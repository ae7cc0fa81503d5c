"""Tool risk levels, the approval rule, and what roles need to know about a tool registry.

Every tool declares how much harm a wrong call can do: ``read`` tools only look at data,
``write`` tools change something we own, ``external`` tools reach outside (the network, a
third party). Role policies decide which risk levels need a human to approve each call.

This module is the bottom of the tool stack: role definitions (``state.roles``) check grants
against any :class:`ToolCatalog`; ``tools.registry.ToolRegistry`` is the catalog the product
builds. The rule "write and external tools need an approval policy" lives in
:func:`needs_approval_policy` only, called both when an organisation is loaded and when a
role agent is built.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol

from state.errors import GraphSetupError

__all__ = [
    "RISK_VALUES",
    "ToolCatalog",
    "ToolRisk",
    "UnknownToolError",
    "needs_approval_policy",
    "parse_risk",
]


class ToolRisk(StrEnum):
    """How much harm a wrong call of a tool can do."""

    READ = "read"
    """Only reads data; no side effects."""
    WRITE = "write"
    """Changes state the platform owns (files, records, memory)."""
    EXTERNAL = "external"
    """Reaches outside the platform: network, e-mail, third-party APIs."""


RISK_VALUES = ", ".join(repr(risk.value) for risk in ToolRisk)
"""The risk levels as a reader sees them in error messages: ``'read', 'write', 'external'``."""

_GATED_RISKS = frozenset({ToolRisk.WRITE, ToolRisk.EXTERNAL})


def needs_approval_policy(risk: ToolRisk | str) -> bool:
    """Whether a role granted a tool of ``risk`` must have a policy that gates its calls.

    The one home of the rule: ``write`` and ``external`` tools change things or reach
    outside, so a human approves each call; ``read`` tools need no policy.

    Raises:
        ValueError: ``risk`` is not a risk level.
    """
    return ToolRisk(risk) in _GATED_RISKS


class UnknownToolError(GraphSetupError, LookupError):
    """A tool name that is not in the registry.

    Attributes:
        name: The name that was asked for.
        suggestions: Registered names close to it, best first.
    """

    def __init__(self, name: str, suggestions: list[str]) -> None:
        self.name = name
        self.suggestions = suggestions
        message = f"Tool {name!r} is not registered."
        if suggestions:
            message += " Did you mean " + " or ".join(repr(s) for s in suggestions) + "?"
        message += " Register it with ToolRegistry.register(tool) before building the graph."
        super().__init__(message)


def parse_risk(value: object, *, tool_name: str) -> ToolRisk:
    """Read a declared risk level.

    Raises:
        GraphSetupError: ``value`` is not a risk level; the message names the tool.
    """
    try:
        return ToolRisk(str(value))
    except ValueError:
        raise GraphSetupError(
            f"Tool {tool_name!r} declares risk {value!r}; use one of {RISK_VALUES}."
        ) from None


class ToolCatalog(Protocol):
    """What checking a role's grant needs from a tool registry: names and risk levels.

    ``tools.registry.ToolRegistry`` implements it; role definitions accept any object that
    does, so they never import the tools themselves.
    """

    def __contains__(self, name: object) -> bool:
        """Whether a tool is registered as ``name``."""
        ...

    def risk_of(self, name: str) -> ToolRisk:
        """The risk level of the tool registered as ``name``.

        Raises:
            UnknownToolError: No such tool.
        """
        ...

    def names(self) -> list[str]:
        """The registered tool names, sorted."""
        ...

    def suggest(self, name: str, *, limit: int = 3) -> list[str]:
        """Registered names that look like ``name``, best first."""
        ...
