"""Graphs the console's browser tests serve: an editor whose write tool needs approval.

``desk`` is the repo's chat graph with one role, ``editor``, granted ``publish_note`` (risk
``write``, so every call waits for a human). The tool answers with what it published, so a test
sees the arguments a decision let through.
"""

from __future__ import annotations

from langchain_core.tools import StructuredTool

from graphs.chat import build_chat
from state.roles import Circle, Organization, Role
from tools.registry import default_registry


def publish_note(title: str, pinned: bool = False) -> str:
    """Publish a note with this title to the team board."""
    return f"published {title}" + (" (pinned)" if pinned else "")


def _desk() -> Organization:
    editor = Role.model_validate(
        {
            "name": "editor",
            "purpose": "Publishes notes to the team board.",
            "tools": ["publish_note"],
            "policies": {"approval_required": ["write"]},
        }
    )
    circle = Circle(name="desk", purpose="Keeps the team board.", lead="editor")
    return Organization(circles=(circle,), roles=(editor,))


_registry = default_registry()
_registry.register(StructuredTool.from_function(publish_note, metadata={"risk": "write"}))

desk = build_chat("editor", org=_desk(), registry=_registry, name="desk")
