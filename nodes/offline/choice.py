"""Which bound tool the offline model calls for a request, and how ``tool_choice`` forces one."""

from __future__ import annotations

from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from nodes.offline.schema import _find_expression, _string_category
from nodes.offline.text import _MAX_DESCRIPTION, _MAX_SCAN, _URL_RE, _keywords, _name_words
from nodes.offline.turn import _Turn


@dataclass(frozen=True)
class _ToolSpec:
    name: str
    description: str
    parameters: dict[str, Any]

    @classmethod
    def from_openai(cls, tool: dict[str, Any]) -> _ToolSpec | None:
        function = tool.get("function") if tool.get("type") == "function" else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            return None
        params = function.get("parameters")
        return cls(
            name=function["name"],
            description=str(function.get("description") or "")[:_MAX_DESCRIPTION],
            parameters=params if isinstance(params, dict) else {},
        )

    def score(self, request: str, wanted: set[str]) -> int:
        name_stems = set(_keywords(_name_words(self.name)))
        desc_stems = set(_keywords(self.description)) - name_stems
        total = 2 * len(wanted & name_stems) + len(wanted & desc_stems)
        props = self.parameters.get("properties")
        fields = list(props) if isinstance(props, dict) else []
        categories = {_string_category(f) for f in fields}
        mathy = "expression" in categories or bool(
            name_stems & {"calcul", "arithm", "math", "comput"}
        )
        if mathy and _find_expression(request) is not None:
            total += 3
        if "url" in categories and _URL_RE.search(request[:_MAX_SCAN]):
            total += 3
        return total


def _normalise_tool_choice(tool_choice: Any) -> tuple[str, str | None]:
    """Return (mode, name): mode is "auto", "none", "any" or "named"."""
    if tool_choice is None or tool_choice == "auto" or tool_choice is False:
        return "auto", None
    if tool_choice is True or tool_choice in ("any", "required"):
        return "any", None
    if tool_choice == "none":
        return "none", None
    if isinstance(tool_choice, str):
        return "named", tool_choice
    if isinstance(tool_choice, dict):
        function = tool_choice.get("function")
        name = function.get("name") if isinstance(function, dict) else tool_choice.get("name")
        if isinstance(name, str):
            return "named", name
        if tool_choice.get("type") in ("any", "required"):
            return "any", None
    raise ValueError(
        f"Unsupported tool_choice {tool_choice!r}; use 'auto', 'any', 'none' or a tool name"
    )


def _choose_tool(turn: _Turn, tools: list[_ToolSpec], tool_choice: Any) -> _ToolSpec | None:
    mode, forced = _normalise_tool_choice(tool_choice)
    if not tools or mode == "none":
        return None
    if mode == "named":
        for spec in tools:
            if spec.name == forced:
                return spec
        names = ", ".join(spec.name for spec in tools)
        raise ValueError(f"tool_choice names `{forced}` but the bound tools are: {names}")
    wanted = set(_keywords(turn.request))
    scored = [(spec.score(turn.request, wanted), -i, spec) for i, spec in enumerate(tools)]
    if mode == "any":
        fresh = [entry for entry in scored if entry[2].name not in turn.called]
        if turn.tool_results and fresh:
            fitting = [entry for entry in fresh if entry[0] > 0]
            if fitting:
                return max(fitting, key=itemgetter(0, 1))[2]
            # Forced again after tool work and nothing else fits: take the last tool bound.
            # create_agent appends its structured-response tool last, so this hands in the
            # final answer instead of running every remaining tool.
            return fresh[-1][2]
        return max(fresh or scored, key=itemgetter(0, 1))[2]
    if any(spec.name in turn.called for spec in tools):
        return None
    best = max(scored, key=itemgetter(0, 1))
    return best[2] if best[0] > 0 else None
