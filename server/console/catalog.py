"""What a served graph's agents may call: each tool's argument schema, risk and roles.

The inbox shows an approval request next to the schema of the tool it is about, so the page can
check edited arguments before sending them. The tools are found in the compiled graph itself
(every ``ToolNode`` of the graph and its subgraphs), so any graph works, ours or a user's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from langgraph.prebuilt import ToolNode
from langgraph.pregel import Pregel

from nodes.governance import ChangeProposal
from state.usage import ROLE_METADATA_KEY

__all__ = ["GATE_SCHEMAS", "ToolInfo", "tool_catalog"]

log = logging.getLogger(__name__)

GATE_SCHEMAS: dict[str, dict[str, Any]] = {
    "change_role": ChangeProposal.model_json_schema(),
    "add_instruction": ChangeProposal.model_json_schema(),
}
"""Argument schemas of the actions our own approval gates ask about (not tools)."""

_MAX_DEPTH = 8


@dataclass
class ToolInfo:
    """One tool as the agents of a graph hold it."""

    schema: dict[str, Any]
    risk: str | None
    roles: list[str] = field(default_factory=list)


def _role_of(graph: Any, fallback: str) -> str:
    metadata = (getattr(graph, "config", None) or {}).get("metadata") or {}
    return str(metadata.get(ROLE_METADATA_KEY) or fallback)


def _schema(tool: Any) -> dict[str, Any]:
    try:
        schema = tool.tool_call_schema.model_json_schema()
    except Exception:  # a tool whose schema pydantic cannot describe: edits go unchecked
        log.warning("tool %s has no JSON schema", getattr(tool, "name", "?"))
        return {}
    return schema if isinstance(schema, dict) else {}


def _walk(graph: Any, name: str, found: dict[str, ToolInfo], depth: int) -> None:
    role = _role_of(graph, name)
    for node in getattr(graph, "nodes", {}).values():
        bound = getattr(node, "bound", None)
        if not isinstance(bound, ToolNode):
            continue
        for tool_name, tool in bound.tools_by_name.items():
            info = found.get(tool_name)
            if info is None:
                risk = (tool.metadata or {}).get("risk")
                info = found[tool_name] = ToolInfo(_schema(tool), str(risk) if risk else None)
            if role and role not in info.roles:
                info.roles.append(role)
    if depth >= _MAX_DEPTH:
        return
    for sub_name, sub in graph.get_subgraphs():
        _walk(sub, sub_name.split("|")[-1], found, depth + 1)


def tool_catalog(graph: Pregel) -> dict[str, ToolInfo]:
    """Every tool the graph's agents hold, by name."""
    found: dict[str, ToolInfo] = {}
    _walk(graph, "", found, 0)
    return found
