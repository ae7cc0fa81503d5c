"""The registry that maps tool names to LangChain tools, each with its risk level.

The risk lives in two places on purpose: in ``tool.metadata["risk"]``, so that anything holding
only the tool (a middleware, a trace) can read it, and in the registry, so that roles can be
checked by name before any tool object is built into a graph. Risk levels and the approval rule
themselves live in :mod:`state.tool_risk`, below every tool.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator

from langchain_core.tools import BaseTool

from state.errors import GraphSetupError
from state.tool_risk import RISK_VALUES, ToolRisk, UnknownToolError, parse_risk
from tools.calculator import make_calculator_tool
from tools.documents import (
    make_document_stats_tool,
    make_extract_keywords_tool,
    make_split_document_tool,
)
from tools.http_get import HttpPolicy, Resolver, make_http_get_tool

__all__ = [
    "ToolRegistry",
    "ToolRisk",
    "UnknownToolError",
    "default_registry",
    "tool_risk",
]


def tool_risk(tool: BaseTool) -> ToolRisk:
    """Return the risk level a tool declares in ``tool.metadata["risk"]``.

    Args:
        tool: Any LangChain tool.

    Returns:
        The declared risk.

    Raises:
        GraphSetupError: The tool declares no risk or an unknown one.
    """
    metadata = tool.metadata or {}
    if "risk" not in metadata:
        raise GraphSetupError(
            f"Tool {tool.name!r} declares no risk level. Register it with "
            f"ToolRegistry.register(tool, risk=...) or set tool.metadata['risk'] to one of "
            f"{RISK_VALUES}."
        )
    return parse_risk(metadata["risk"], tool_name=tool.name)


class ToolRegistry:
    """Tools by name, each with its risk level.

    A registry is a plain mutable container: build one per application (see
    :func:`tools.default_registry`) and add your own tools to it; there is no process-wide
    instance.
    """

    def __init__(self, tools: Iterable[BaseTool] = ()) -> None:
        """Create a registry holding ``tools`` (each must declare its risk in metadata)."""
        self._tools: dict[str, BaseTool] = {}
        self._risks: dict[str, ToolRisk] = {}
        for item in tools:
            self.register(item)

    def register(
        self, tool: BaseTool, *, risk: ToolRisk | str | None = None, replace: bool = False
    ) -> BaseTool:
        """Add a tool.

        Args:
            tool: The tool. Its name is the key roles grant.
            risk: Its risk level. May be left out when the tool already declares one in
                ``metadata["risk"]``; when both are given they must agree. The registry writes
                the level into the tool's metadata so the two never drift apart.
            replace: Replace a tool already registered under the same name instead of failing.

        Returns:
            The registered tool.

        Raises:
            GraphSetupError: No risk declared, the declared risks disagree, or the name is
                taken and ``replace`` is false.
        """
        declared = (tool.metadata or {}).get("risk")
        if risk is None and declared is None:
            raise GraphSetupError(
                f"Tool {tool.name!r} declares no risk level. Pass risk=... to register() or "
                f"set tool.metadata['risk'] to one of {RISK_VALUES}."
            )
        level = parse_risk(risk if risk is not None else declared, tool_name=tool.name)
        if declared is not None and parse_risk(declared, tool_name=tool.name) != level:
            raise GraphSetupError(
                f"Tool {tool.name!r} declares risk {declared!r} in its metadata but was "
                f"registered with risk {level.value!r}; make them agree."
            )
        if tool.name in self._tools and not replace:
            raise GraphSetupError(
                f"A tool named {tool.name!r} is already registered. Rename the new tool or "
                "pass replace=True to override the existing one."
            )
        # Copy rather than mutate: the caller's metadata dict may be shared with other tools.
        tool.metadata = {**(tool.metadata or {}), "risk": level.value}
        self._tools[tool.name] = tool
        self._risks[tool.name] = level
        return tool

    def get(self, name: str) -> BaseTool:
        """Return the tool registered as ``name``.

        Raises:
            UnknownToolError: No such tool; the error names registered tools with close names.
        """
        try:
            return self._tools[name]
        except KeyError:
            raise UnknownToolError(name, self.suggest(name)) from None

    def select(self, names: Iterable[str]) -> list[BaseTool]:
        """Return the tools for ``names``, in that order.

        Raises:
            UnknownToolError: For the first name that is not registered.
        """
        return [self.get(name) for name in names]

    def risk_of(self, name: str) -> ToolRisk:
        """Return the risk level of the tool registered as ``name``.

        Raises:
            UnknownToolError: No such tool.
        """
        if name not in self._risks:
            raise UnknownToolError(name, self.suggest(name))
        return self._risks[name]

    def names(self) -> list[str]:
        """Return the registered tool names, sorted."""
        return sorted(self._tools)

    def suggest(self, name: str, *, limit: int = 3) -> list[str]:
        """Return up to ``limit`` registered names that look like ``name``, best first."""
        return difflib.get_close_matches(name, list(self._tools), n=limit, cutoff=0.6)

    def copy(self) -> ToolRegistry:
        """Return a new registry with the same tools (the tool objects are shared)."""
        clone = ToolRegistry()
        clone._tools = dict(self._tools)
        clone._risks = dict(self._risks)
        return clone

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[BaseTool]:
        return iter(list(self._tools.values()))

    def __len__(self) -> int:
        return len(self._tools)

    def __repr__(self) -> str:
        return f"ToolRegistry({', '.join(self.names())})"


def default_registry(
    *, http_policy: HttpPolicy | None = None, http_resolver: Resolver | None = None
) -> ToolRegistry:
    """Return a new registry holding every built-in tool.

    Built-ins: ``calculator``, ``split_document``, ``document_stats``, ``extract_keywords``
    (all ``read``) and ``http_get`` (``external``). Each call builds fresh tool objects, so
    registering more tools on the result affects nobody else.

    Args:
        http_policy: Hosts and limits for ``http_get``. The default allows no host, so
            ``http_get`` refuses every URL until an operator configures one.
        http_resolver: Replaces the system DNS resolver used by ``http_get``.

    Returns:
        The registry.
    """
    return ToolRegistry(
        [
            make_calculator_tool(),
            make_split_document_tool(),
            make_document_stats_tool(),
            make_extract_keywords_tool(),
            make_http_get_tool(policy=http_policy, resolver=http_resolver),
        ]
    )
