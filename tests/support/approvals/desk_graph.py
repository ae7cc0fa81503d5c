"""A desk whose editor publishes notes: a write tool behind langchain's HITL middleware.

Served next to the repo's governance and pipeline graphs by ``langgraph.json`` here, so the
approval tests cover every kind of gate: tool approvals in a role agent, governance, and the
pipeline's escalation.
"""

from __future__ import annotations

from langchain_core.tools import StructuredTool

from graphs.chat import build_chat
from state.roles import Circle, Organization, Role
from tools.registry import default_registry

PUBLISHED: list[str] = []


def publish_note(title: str) -> str:
    """Publish a note with this title to the team board."""
    PUBLISHED.append(title)
    return f"published {title}"


def _desk() -> tuple[Organization, object]:
    registry = default_registry()
    registry.register(StructuredTool.from_function(publish_note, metadata={"risk": "write"}))
    editor = Role.model_validate(
        {
            "name": "editor",
            "purpose": "Publishes notes to the team board.",
            "tools": ["publish_note"],
            "policies": {"approval_required": ["write"]},
        }
    )
    circle = Circle(name="desk", purpose="Keeps the team board.", lead="editor")
    return Organization(circles=(circle,), roles=(editor,)), registry


_org, _registry = _desk()
desk = build_chat("editor", org=_org, registry=_registry)  # type: ignore[arg-type]
