"""Shared pieces for the graph tests: the default organisation and persistence wiring."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from langchain_core.tools import StructuredTool
from langgraph.graph.state import CompiledStateGraph

from state.db import Persistence
from state.roles import Organization, Role, default_roles_dir, load_organization
from tools.registry import ToolRegistry, default_registry


@pytest.fixture(scope="session")
def registry() -> ToolRegistry:
    """The built-in tools."""
    return default_registry()


@pytest.fixture(scope="session")
def org(registry: ToolRegistry) -> Organization:
    """The default organisation from roles/."""
    return load_organization(default_roles_dir(), registry=registry)


def attach(graph: CompiledStateGraph[Any, Any, Any, Any], p: Persistence) -> Any:
    """The graph with the Postgres saver and store, as the server attaches them."""
    return graph.copy(update={"checkpointer": p.checkpointer, "store": p.store})


def thread() -> dict[str, Any]:
    """A config for a new thread."""
    return {"configurable": {"thread_id": str(uuid.uuid4())}}


def author_role(name: str = "author", **extra: Any) -> Role:
    """A role without tools: its offline replies quote the request's further lines."""
    return Role.model_validate({"name": name, "purpose": "Writes reports on request.", **extra})


class Ledger:
    """A write-risk tool for tests that records every call it executes."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def tool(self) -> StructuredTool:
        def publish_note(title: str) -> str:
            """Publish a note with this title to the team board."""
            self.calls.append({"title": title})
            return f"published {title}"

        return StructuredTool.from_function(publish_note, metadata={"risk": "write"})
